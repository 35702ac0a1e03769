// Google's Node.js Cloud Storage client (@google-cloud/storage) against
// durafs-emulator: a resumable upload in small chunks, a paginated listing,
// a ranged download and precondition failures. Prints one JSON object of
// results on stdout; tests/integration/test_fidelity_node.py checks them.
//
// Environment: EMU_URL (http://127.0.0.1:PORT), EMU_TOKEN (a static access
// token for the client's auth object), BUCKET, MODE ("apiEndpoint": the client option;
// "env": STORAGE_EMULATOR_HOST only). No connection may leave loopback: the
// guard below throws on any other host, before DNS.
'use strict';

// The guard is installed before any client library is loaded.
const loopback = require('../loopback_guard.js');
loopback.install();

const crypto = require('crypto');
const { Storage } = require('@google-cloud/storage');
const { OAuth2Client } = require('google-auth-library');

const pattern = loopback.pattern;

async function main() {
  const url = process.env.EMU_URL;
  const bucketName = process.env.BUCKET;
  const mode = process.env.MODE || 'apiEndpoint';
  const auth = new OAuth2Client();
  auth.setCredentials({ access_token: process.env.EMU_TOKEN,
                        expiry_date: Date.now() + 3600 * 1000 });
  const opts = { projectId: 'durafs-test', authClient: auth, useAuthWithCustomEndpoint: true,
                 retryOptions: { autoRetry: true, maxRetries: 2, totalTimeout: 60 } };
  if (mode === 'apiEndpoint') opts.apiEndpoint = url;
  const storage = new Storage(opts);
  const bucket = storage.bucket(bucketName);
  const out = { mode };

  // 1. resumable upload, 256 KiB chunks, client-side checksums validated
  const data = pattern(5 * 256 * 1024 + 4321, 7);
  const file = bucket.file('node/dir/resumable.bin');
  await file.save(data, { resumable: true, chunkSize: 256 * 1024,
                          metadata: { contentType: 'application/x-node',
                                      metadata: { k: 'v' } } });
  const [meta] = await file.getMetadata();
  out.size = Number(meta.size);
  out.md5 = meta.md5Hash;
  out.want_md5 = crypto.createHash('md5').update(data).digest('base64');
  out.contentType = meta.contentType;
  out.custom = meta.metadata;
  out.generation = String(meta.generation);

  // 2. a small (multipart) upload and a whole download validated by the client
  await bucket.file('node/small.txt').save('small and simple', { resumable: false });
  const [whole] = await bucket.file('node/small.txt').download();
  out.small = whole.toString();

  // 3. ranged download
  const [part] = await file.download({ start: 1000, end: 70999 });
  out.range_ok = part.equals(data.subarray(1000, 71000));
  out.range_len = part.length;

  // 4. paginated listing (the objects under page/ were made by the test)
  let pages = 0;
  let names = [];
  let query = { prefix: 'page/', maxResults: 25, autoPaginate: false };
  for (;;) {
    const [files, next] = await bucket.getFiles(query);
    pages += 1;
    names = names.concat(files.map((f) => f.name));
    if (!next) break;
    query = next;
  }
  out.pages = pages;
  out.names = names;
  const [all] = await bucket.getFiles({ prefix: 'page/' });  // autoPaginate
  out.auto_count = all.length;
  const [, , apiResp] = await bucket.getFiles({ prefix: 'node/', delimiter: '/',
                                                 autoPaginate: false });
  out.prefixes = apiResp.prefixes || [];

  // 5. preconditions
  const codes = {};
  try {
    await file.save(Buffer.from('clobber'), { resumable: false,
                                             preconditionOpts: { ifGenerationMatch: 0 } });
    codes.save = 200;
  } catch (e) { codes.save = e.code; }
  try {
    await file.delete({ ifGenerationMatch: 1 });
    codes.delete = 204;
  } catch (e) { codes.delete = e.code; }
  try {
    await file.save(pattern(300 * 1024, 3), { resumable: true,
                                              preconditionOpts: { ifGenerationMatch: 0 } });
    codes.resumable = 200;
  } catch (e) { codes.resumable = e.code || e.status || (e.response && e.response.status) || String(e.message); }
  out.codes = codes;
  const [after] = await file.getMetadata();
  out.unchanged = String(after.generation) === out.generation;

  // 6. delete with the right generation, then it is gone
  await file.delete({ ifGenerationMatch: after.generation });
  const [exists] = await file.exists();
  out.exists_after_delete = exists;
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write('FAILED: ' + (e && e.stack ? e.stack : e) + '\n');
  process.exit(1);
});
