// Google's Node.js Drive client (@googleapis/drive) against durafs-emulator:
// a paginated listing, an upload with a media body stream, a resumable
// upload in 256 KiB chunks (by hand through the client's own auth/gaxios
// transport, as the generated client has no resumable helper), a ranged
// download, a batch delete (a hand-built multipart/mixed request, as users
// of this client do) and Google-shaped errors. Prints one JSON object on
// stdout; tests/integration/test_fidelity_node_drive.py checks it.
//
// Environment: EMU_URL (http://127.0.0.1:PORT), EMU_TOKEN (an access token
// the emulator issued), FOLDER (a folder id holding the files to page
// through). No connection may leave loopback: the guard throws on any
// other host, before DNS.
'use strict';

// The guard is installed before any client library is loaded.
const loopback = require('../loopback_guard.js');
loopback.install();

const crypto = require('crypto');
const { Readable } = require('stream');
const { drive: makeDrive, auth: gauth } = require('@googleapis/drive');

const bytes = loopback.pattern;

const md5 = (b) => crypto.createHash('md5').update(b).digest('hex');

async function listAll(drive, folder, pageSize) {
  const names = [];
  let pageToken;
  let pages = 0;
  do {
    const res = await drive.files.list({
      q: `'${folder}' in parents and trashed = false`,
      pageSize, pageToken, orderBy: 'name',
      fields: 'nextPageToken, files(id, name, size, md5Checksum)',
      supportsAllDrives: true, includeItemsFromAllDrives: true,
    });
    pages++;
    for (const f of res.data.files) names.push({ id: f.id, name: f.name });
    pageToken = res.data.nextPageToken;
  } while (pageToken);
  return { names, pages };
}

async function main() {
  const url = process.env.EMU_URL;
  const folder = process.env.FOLDER;
  const auth = new gauth.OAuth2();
  auth.setCredentials({ access_token: process.env.EMU_TOKEN,
                        expiry_date: Date.now() + 3600 * 1000 });
  const drive = makeDrive({ version: 'v3', auth, rootUrl: url + '/' });
  const out = {};

  // 1. listing through every page
  const listed = await listAll(drive, folder, 100);
  out.list_count = listed.names.length;
  out.list_pages = listed.pages;
  out.list_first = listed.names[0].name;
  out.list_last = listed.names[listed.names.length - 1].name;

  // 2. an upload with a media body stream (the client sends multipart)
  const small = bytes(100000, 3);
  const up = await drive.files.create({
    requestBody: { name: 'node-stream.bin', parents: [folder], appProperties: { by: 'node' } },
    media: { mimeType: 'application/x-node', body: Readable.from([small.subarray(0, 4000), small.subarray(4000)]) },
    fields: 'id, name, size, md5Checksum, mimeType, appProperties, parents',
    supportsAllDrives: true,
  }, { rootUrl: url + '/' });  // the media URL ignores the client-wide rootUrl
                                // (googleapis-common rewrites only `url`)
  out.stream = { status: up.status, size: up.data.size, md5_ok: up.data.md5Checksum === md5(small),
                 mimeType: up.data.mimeType, appProperties: up.data.appProperties,
                 parent_ok: up.data.parents[0] === folder };

  // 3. a resumable upload in 256 KiB chunks through the client's transport
  const big = bytes(3 * 262144 + 5000, 7);
  const start = await auth.request({
    url: `${url}/upload/drive/v3/files?uploadType=resumable&supportsAllDrives=true&fields=id,name,size,md5Checksum`,
    method: 'POST',
    headers: { 'Content-Type': 'application/json; charset=UTF-8',
               'X-Upload-Content-Type': 'application/x-resumable',
               'X-Upload-Content-Length': String(big.length) },
    data: { name: 'node-resumable.bin', parents: [folder] },
  });
  const session = start.headers.location || start.headers.get?.('location');
  const chunk = 2 * 262144;
  const statuses = [];
  let offset = 0;
  let final = null;
  while (offset < big.length) {
    const end = Math.min(offset + chunk, big.length);
    const res = await auth.request({
      url: session, method: 'PUT',
      headers: { 'Content-Range': `bytes ${offset}-${end - 1}/${big.length}` },
      data: big.subarray(offset, end),
      validateStatus: (s) => s === 308 || (s >= 200 && s < 300),
      responseType: 'json',
    });
    statuses.push(res.status);
    if (res.status === 308) {
      const range = res.headers.range || res.headers.get?.('range');
      offset = range ? Number(range.split('-')[1]) + 1 : 0;
    } else {
      final = res.data;
      offset = end;
    }
  }
  out.resumable = { statuses, size: final.size, md5_ok: final.md5Checksum === md5(big) };
  const resumableId = final.id;

  // 4. a ranged download
  const dl = await drive.files.get({ fileId: resumableId, alt: 'media', supportsAllDrives: true },
                                   { responseType: 'arraybuffer', headers: { Range: 'bytes=1000-70999' } });
  const got = Buffer.from(dl.data);
  out.range = { status: dl.status, len: got.length, ok: got.equals(big.subarray(1000, 71000)) };
  const whole = await drive.files.get({ fileId: up.data.id, alt: 'media', supportsAllDrives: true },
                                      { responseType: 'arraybuffer' });
  out.whole_ok = Buffer.from(whole.data).equals(small);

  // 5. a batch delete of the first 50 listed files, by hand
  const victims = listed.names.slice(0, 50);
  const boundary = 'node_batch_' + crypto.randomBytes(6).toString('hex');
  let body = '';
  victims.forEach((f, i) => {
    body += `--${boundary}\r\nContent-Type: application/http\r\nContent-ID: <del${i}>\r\n\r\n`;
    body += `DELETE /drive/v3/files/${f.id}?supportsAllDrives=true HTTP/1.1\r\n\r\n`;
  });
  body += `--${boundary}--\r\n`;
  const br = await auth.request({
    url: `${url}/batch/drive/v3`, method: 'POST',
    headers: { 'Content-Type': `multipart/mixed; boundary=${boundary}` },
    data: body, responseType: 'text',
  });
  const ctype = br.headers['content-type'] || br.headers.get?.('content-type');
  const rb = /boundary=([^;\s]+)/.exec(ctype)[1];
  const parts = String(br.data).split('--' + rb).slice(1).filter((p) => !p.startsWith('--'));
  const byId = {};
  const order = [];
  for (const p of parts) {
    const id = /Content-ID:\s*<response-(del\d+)>/i.exec(p)[1];
    byId[id] = Number(/HTTP\/1\.1 (\d{3})/.exec(p)[1]);
    order.push(id);
  }
  out.batch = { parts: parts.length, all_204: victims.every((_, i) => byId['del' + i] === 204),
                in_order: order.every((id, i) => id === 'del' + i) };
  const after = await listAll(drive, folder, 1000);
  out.after_batch = after.names.length;

  // 6. errors come back as the client's GaxiosError with Google's JSON
  try {
    await drive.files.get({ fileId: 'doesNotExist', supportsAllDrives: true });
    out.notfound = 'no error';
  } catch (e) {
    out.notfound = { status: e.status || e.code || (e.response && e.response.status),
                     reason: (e.errors && e.errors[0] && e.errors[0].reason) ||
                             (e.response && e.response.data && e.response.data.error &&
                              e.response.data.error.errors[0].reason) };
  }
  const ids = await drive.files.generateIds({ count: 1, space: 'drive' });
  const id = ids.data.ids[0];
  await drive.files.create({ requestBody: { id, name: 'with-id', parents: [folder] }, fields: 'id' });
  try {
    await drive.files.create({ requestBody: { id, name: 'with-id', parents: [folder] }, fields: 'id' });
    out.duplicate = 'no error';
  } catch (e) {
    out.duplicate = e.status || (e.response && e.response.status);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((e) => {
  process.stderr.write('drive_fidelity failed: ' + (e && e.stack ? e.stack : e) + '\n');
  if (e && e.response) process.stderr.write('response: ' + JSON.stringify(e.response.data) + '\n');
  process.exit(1);
});
