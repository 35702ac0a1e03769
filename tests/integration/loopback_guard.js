// Shared by the Node fidelity scripts (node/, node_drive/): a guard that
// makes any connection to a host other than loopback throw before DNS, and
// the deterministic xorshift byte pattern both scripts upload.
'use strict';

const net = require('net');
const dns = require('dns');

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

function guard(host) {
  if (host !== undefined && host !== null && !LOOPBACK.has(String(host))) {
    throw new Error('blocked a connection to a non-loopback host: ' + host);
  }
}

// Patch net and dns once per process; later calls do nothing.
let installed = false;
function install() {
  if (installed) return;
  installed = true;
  const realConnect = net.Socket.prototype.connect;
  net.Socket.prototype.connect = function (...args) {
    const a = args[0];
    if (Array.isArray(a)) guard(a[0] && a[0].host);
    else if (a && typeof a === 'object') { if (!a.path) guard(a.host || 'localhost'); }
    else if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) guard(args[1] || 'localhost');
    return realConnect.apply(this, args);
  };
  const realLookup = dns.lookup;
  dns.lookup = function (host, ...rest) {
    guard(host);
    return realLookup.call(this, host, ...rest);
  };
}

// n bytes of a xorshift32 stream seeded with seed (0 counts as 1).
function pattern(n, seed) {
  const out = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

module.exports = { install, guard, pattern };
