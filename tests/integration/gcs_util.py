"""Helpers for tests that speak the Cloud Storage JSON API to the emulator:
a pure-Python CRC-32C, Google's base64 checksum forms, and a small client
(one HTTP connection per call, so a cut connection never poisons the next)."""
import base64
import concurrent.futures
import hashlib
import http.client
import json
import struct
import urllib.parse

_POLY = 0x82F63B78
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli) of bytes, chainable like zlib.crc32."""
    crc ^= 0xFFFFFFFF
    table = _TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc32c_b64(data):
    return base64.b64encode(struct.pack(">I", crc32c(data))).decode()


def md5_b64(data):
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def q(name):
    """Percent-encode an object name for a path segment ('/' too)."""
    return urllib.parse.quote(name, safe="")


def pattern(n, seed=0):
    """n deterministic, non-repeating-looking bytes."""
    block = hashlib.sha256(b"%d" % seed).digest() * 8  # 256 bytes
    out = bytearray()
    i = 0
    while len(out) < n:
        out += bytes((x + i) & 0xFF for x in block)
        i += 1
    return bytes(out[:n])


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case names
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def reason(self):
        return self.json()["error"]["errors"][0]["reason"]

    def __repr__(self):
        return "Reply(%d, %r, %r)" % (self.status, self.headers, self.body[:300])


class Gcs:
    """A tiny JSON API client bound to one emulator."""

    def __init__(self, emu, token=None):
        self.emu = emu
        self.token = token

    def http(self, method, path, body=None, headers=None, timeout=60):
        """One request on a new connection. Raises on a transport error."""
        url = urllib.parse.urlsplit(self.emu.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=timeout)
        hdrs = dict(headers or {})
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        if path.startswith("http"):
            parts = urllib.parse.urlsplit(path)
            path = parts.path + ("?" + parts.query if parts.query else "")
        try:
            if body is None and method in ("PUT", "POST"):
                hdrs.setdefault("Content-Length", "0")
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def put_many(self, bucket, names, data=b"d", threads=8):
        """Upload many small objects in parallel, one kept-alive connection
        per worker (fast even with thousands of names)."""
        url = urllib.parse.urlsplit(self.emu.url)
        chunks = [names[i::threads] for i in range(threads)]

        def worker(part):
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
            hdrs = {"Content-Type": "application/octet-stream"}
            if self.token:
                hdrs["Authorization"] = "Bearer " + self.token
            try:
                for n in part:
                    conn.request("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s"
                                 % (bucket, q(n)), body=data, headers=hdrs)
                    r = conn.getresponse()
                    body = r.read()
                    assert r.status == 200, (n, r.status, body[:200])
            finally:
                conn.close()
        with concurrent.futures.ThreadPoolExecutor(threads) as ex:
            list(ex.map(worker, chunks))

    # --- buckets and objects ---------------------------------------------
    def mkbucket(self, name, versioning=False):
        r = self.http("POST", "/storage/v1/b?project=test",
                      {"name": name, "versioning": {"enabled": versioning}})
        assert r.status == 200, r
        return r.json()

    def put(self, bucket, name, data, ctype="application/octet-stream", query="",
            headers=None, expect=200):
        hdrs = {"Content-Type": ctype}
        hdrs.update(headers or {})
        r = self.http("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s%s"
                      % (bucket, q(name), query), data, hdrs)
        assert r.status == expect, r
        return r.json() if r.status == 200 else r

    def meta(self, bucket, name, query=""):
        return self.http("GET", "/storage/v1/b/%s/o/%s%s" % (bucket, q(name), query))

    def media(self, bucket, name, query="", headers=None):
        sep = "&" if query else ""
        return self.http("GET", "/storage/v1/b/%s/o/%s?alt=media%s%s"
                         % (bucket, q(name), sep, query.lstrip("?&")), headers=headers)

    def start_resumable(self, bucket, name, meta=None, headers=None, query=""):
        r = self.http("POST", "/upload/storage/v1/b/%s/o?uploadType=resumable&name=%s%s"
                      % (bucket, q(name), query), meta if meta is not None else {},
                      headers)
        assert r.status == 200, r
        loc = r.header("Location")
        assert loc and "upload_id=" in loc, r
        return loc

    def chunk(self, url, data, first, total="*", headers=None):
        hdrs = {"Content-Range": "bytes %d-%d/%s" % (first, first + len(data) - 1, total)}
        hdrs.update(headers or {})
        return self.http("PUT", url, data, hdrs)

    def status(self, url, total="*"):
        return self.http("PUT", url, b"", {"Content-Range": "bytes */%s" % total})

    def list_all(self, bucket, **params):
        """Follow every page; returns (items, prefixes, pages)."""
        items, prefixes, pages = [], [], 0
        token = None
        url = urllib.parse.urlsplit(self.emu.url)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        hdrs = {"Authorization": "Bearer " + self.token} if self.token else {}
        try:
            while True:
                p = dict(params)
                if token:
                    p["pageToken"] = token
                conn.request("GET", "/storage/v1/b/%s/o?%s" % (bucket, urllib.parse.urlencode(p)),
                             headers=hdrs)
                r = conn.getresponse()
                body = r.read()
                assert r.status == 200, (r.status, body[:300])
                j = json.loads(body)
                pages += 1
                items += j.get("items", [])
                prefixes += j.get("prefixes", [])
                token = j.get("nextPageToken")
                if not token:
                    return items, prefixes, pages
        finally:
            conn.close()


def persisted(reply):
    """Bytes a 308 says are persisted (0 when it has no Range)."""
    rng = reply.header("Range")
    if not rng:
        return 0
    assert rng.startswith("bytes=0-"), rng
    return int(rng[len("bytes=0-"):]) + 1
