"""durafs-emulator's Google Drive v3 service: every endpoint (files
list/get/create/update/delete, media and ranges, export, generateIds,
emptyTrash, uploads of every type, batch, about, changes, shared drives),
the `q` grammar, paging with page caps, trash semantics, quota and rate
faults, the resumable protocol with cuts and resumes, persistence across a
restart, bad input, and the stats it keeps."""
import hashlib
import http.client
import json
import os
import re
import signal
import time
import urllib.parse

import pytest

FOLDER = "application/vnd.google-apps.folder"
DOC = "application/vnd.google-apps.document"
SHORTCUT = "application/vnd.google-apps.shortcut"
CHUNK = 256 * 1024


def pattern(n, seed=0):
    block = hashlib.sha256(b"drive%d" % seed).digest() * 8
    out = bytearray()
    i = 0
    while len(out) < n:
        out += bytes((x + i) & 0xFF for x in block)
        i += 1
    return bytes(out[:n])


class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        return self.headers.get(name.lower())

    def reason(self):
        return self.json()["error"]["errors"][0]["reason"]

    def __repr__(self):
        return "Reply(%d, %r)" % (self.status, self.body[:400])


class Drive:
    """A small Drive v3 client bound to one emulator (a connection per call)."""

    def __init__(self, emu, token=None):
        self.emu = emu
        self.token = token

    def http(self, method, path, body=None, headers=None):
        u = urllib.parse.urlsplit(self.emu.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            body = body.encode()
        if self.token:
            hdrs["Authorization"] = "Bearer " + self.token
        if body is not None:
            hdrs.setdefault("Content-Length", str(len(body)))
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        finally:
            conn.close()

    def ok(self, method, path, body=None, headers=None, status=200):
        r = self.http(method, path, body, headers)
        assert r.status == status, r
        return r.json() if r.body else None

    def files(self, specs):
        return self.emu.control("drive/files", {"files": specs})["files"]

    def mkdir(self, name, parent="root"):
        return self.ok("POST", "/drive/v3/files?fields=*&supportsAllDrives=true",
                       {"name": name, "mimeType": FOLDER, "parents": [parent]})

    def upload(self, name, data, parent="root", mime="application/octet-stream", extra=None):
        meta = {"name": name, "parents": [parent]}
        meta.update(extra or {})
        body, ctype = multipart(meta, data, mime)
        return self.ok("POST", "/upload/drive/v3/files?uploadType=multipart&fields=*"
                       "&supportsAllDrives=true", body, {"Content-Type": ctype})

    def get(self, fid, fields="*"):
        return self.ok("GET", "/drive/v3/files/%s?supportsAllDrives=true&fields=%s" % (fid, fields))

    def list(self, q=None, **params):
        if q is not None:
            params["q"] = q
        params.setdefault("fields", "nextPageToken,incompleteSearch,files(id,name,mimeType,"
                          "parents,trashed,size)")
        return self.http("GET", "/drive/v3/files?" + urllib.parse.urlencode(params))

    def list_all(self, q=None, **params):
        out, pages, tok = [], 0, None
        while True:
            p = dict(params)
            if tok:
                p["pageToken"] = tok
            r = self.list(q, **p)
            assert r.status == 200, r
            j = r.json()
            pages += 1
            out += j["files"]
            tok = j.get("nextPageToken")
            if not tok:
                return out, pages

    def names(self, q, **params):
        return sorted(f["name"] for f in self.list_all(q, **params)[0])


def multipart(meta, data, mime="application/octet-stream", boundary="drive_bnd_42"):
    body = (b"--" + boundary.encode() + b"\r\nContent-Type: application/json; charset=UTF-8"
            b"\r\n\r\n" + json.dumps(meta).encode() + b"\r\n--" + boundary.encode() +
            b"\r\nContent-Type: " + mime.encode() + b"\r\n\r\n" + data + b"\r\n--" +
            boundary.encode() + b"--\r\n")
    return body, "multipart/related; boundary=" + boundary


def quote_q(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def error_of(r, status, reason=None):
    assert r.status == status, r
    err = r.json()["error"]
    assert err["code"] == status
    if reason:
        assert err["errors"][0]["reason"] == reason, err
    return err


def batch_body(parts, boundary="batch_req_xyz"):
    out = b""
    for cid, line, body in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        out += b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        if cid is not None:
            out += b"Content-ID: <" + cid.encode() + b">\r\n"
        out += b"\r\n" + line.encode() + b"\r\n"
        if body is not None:
            data = json.dumps(body).encode()
            out += b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
            out += data + b"\r\n"
        else:
            out += b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, "multipart/mixed; boundary=" + boundary


def parse_batch_reply(r):
    m = re.search(r"boundary=([^;\s]+)", r.header("content-type"))
    assert m, r.headers
    delim = b"--" + m.group(1).encode()
    out = []
    for chunk in r.body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        head, _, rest = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        cid = None
        for line in head.split(b"\r\n"):
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-id":
                cid = v.strip().decode()
        status_line, _, rest2 = rest.partition(b"\r\n")
        hdrs, _, body = rest2.partition(b"\r\n\r\n")
        out.append((cid, int(status_line.split()[1]), body.rstrip(b"\r\n")))
    return out


@pytest.fixture
def drive(emulator_noauth):
    return Drive(emulator_noauth)


def counters(emu):
    return emu.stats()["counters"]


# --- files: create, get, list ---------------------------------------------------

def test_create_get_and_default_fields(drive, emulator_noauth):
    root = drive.get("root")
    assert root["mimeType"] == FOLDER and root["name"] == "My Drive" and "parents" not in root
    assert emulator_noauth.control("drive/root")["id"] == root["id"]
    d = drive.mkdir("docs")
    assert d["parents"] == [root["id"]] and d["mimeType"] == FOLDER and "size" not in d
    assert re.fullmatch(r"[A-Za-z0-9_-]{33}", d["id"])
    data = pattern(5000, 1)
    f = drive.upload("a.bin", data, d["id"], extra={"appProperties": {"k": "v"},
                                                    "modifiedTime": "2020-01-02T03:04:05.678Z"})
    assert f["size"] == "5000" and f["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert f["sha256Checksum"] == hashlib.sha256(data).hexdigest()
    assert f["modifiedTime"] == "2020-01-02T03:04:05.678Z" and f["appProperties"] == {"k": "v"}
    assert f["trashed"] is False and f["parents"] == [d["id"]] and f["fileExtension"] == "bin"
    assert int(f["version"]) > 0 and f["headRevisionId"]
    # without fields: kind, id, name, mimeType only
    j = drive.ok("GET", "/drive/v3/files/" + f["id"])
    assert j == {"kind": "drive#file", "id": f["id"], "name": "a.bin",
                 "mimeType": "application/octet-stream"}
    j = drive.ok("GET", "/drive/v3/files/%s?fields=id,size,parents" % f["id"])
    assert j == {"id": f["id"], "size": "5000", "parents": [d["id"]]}
    # list without fields: the same four keys per file
    j = drive.ok("GET", "/drive/v3/files?q=" + urllib.parse.quote("'%s' in parents" % d["id"]))
    assert j["kind"] == "drive#fileList" and j["incompleteSearch"] is False
    assert j["files"] == [{"kind": "drive#file", "id": f["id"], "name": "a.bin",
                           "mimeType": "application/octet-stream"}]
    # media and metadata-only creates, 'root' in parents
    m = drive.ok("POST", "/upload/drive/v3/files?uploadType=media&fields=*", b"xyz",
                 {"Content-Type": "text/plain"})
    assert m["name"] == "Untitled" and m["mimeType"] == "text/plain" and m["size"] == "3"
    e = drive.ok("POST", "/drive/v3/files?fields=*", {"name": "empty.txt"})
    assert e["size"] == "0" and e["md5Checksum"] == hashlib.md5(b"").hexdigest()
    assert drive.names("'root' in parents") == ["Untitled", "docs", "empty.txt"]
    # version grows with every change
    v1 = int(drive.get(f["id"])["version"])
    drive.ok("PATCH", "/drive/v3/files/" + f["id"], {"name": "b.bin"})
    assert int(drive.get(f["id"])["version"]) > v1
    error_of(drive.http("GET", "/drive/v3/files/nope"), 404, "notFound")


def test_duplicate_names_slashes_and_dots(drive):
    d = drive.mkdir("dup")
    ids = set()
    for name in ["same", "same", "a/b", ".", "..", "sp ace", "é'q\"\\"]:
        ids.add(drive.upload(name, name.encode(), d["id"])["id"])
    assert len(ids) == 7
    got = drive.names("'%s' in parents" % d["id"])
    assert got == sorted(["same", "same", "a/b", ".", "..", "sp ace", "é'q\"\\"])
    assert drive.names("name = 'same' and '%s' in parents" % d["id"]) == ["same", "same"]
    assert drive.names("name = %s" % quote_q("é'q\"\\")) == ["é'q\"\\"]
    assert drive.names("name = 'a/b'") == ["a/b"]


# --- q grammar --------------------------------------------------------------------

def test_q_grammar(drive):
    d = drive.mkdir("q")
    p = d["id"]
    drive.files([
        {"name": "report.pdf", "parent": p, "mimeType": "application/pdf",
         "modifiedTime": "2021-05-01T00:00:00Z", "properties": {"team": "a"}},
        {"name": "Report Final.docx", "parent": p, "mimeType": "application/x-docx",
         "modifiedTime": "2022-05-01T00:00:00Z", "starred": True},
        {"name": "it's", "parent": p, "modifiedTime": "2023-05-01T00:00:00Z"},
        {"name": "back\\slash", "parent": p, "trashed": True, "modifiedTime": "2021-06-01T00:00:00Z"},
        {"name": "sub", "parent": p, "mimeType": FOLDER, "modifiedTime": "2021-06-01T00:00:00Z"},
        {"name": "notes", "parent": p, "mimeType": DOC, "content": "hello searchable words",
         "modifiedTime": "2021-06-01T00:00:00Z"},
    ])
    inp = "'%s' in parents" % p
    cases = {
        inp: ["Report Final.docx", "back\\slash", "it's", "notes", "report.pdf", "sub"],
        inp + " and trashed = false": ["Report Final.docx", "it's", "notes", "report.pdf", "sub"],
        inp + " and trashed=true": ["back\\slash"],
        inp + " and name = 'it\\'s'": ["it's"],
        inp + " and name = 'back\\\\slash'": ["back\\slash"],
        inp + " and name contains 'report'": ["Report Final.docx", "report.pdf"],
        inp + " and name contains 'final'": ["Report Final.docx"],
        inp + " and name contains 'port'": [],
        inp + " and mimeType = '%s'" % FOLDER: ["sub"],
        inp + " and mimeType != '%s' and trashed = false" % FOLDER:
            ["Report Final.docx", "it's", "notes", "report.pdf"],
        inp + " and mimeType contains 'pdf'": ["report.pdf"],
        inp + " and modifiedTime > '2022-01-01T00:00:00'": ["Report Final.docx", "it's"],
        inp + " and modifiedTime <= '2021-05-01T00:00:00.000Z'": ["report.pdf"],
        inp + " and modifiedTime > '2022-05-01T02:00:00+03:00'": ["Report Final.docx", "it's"],
        # and binds tighter than or
        inp + " and name = 'sub' or name = 'it\\'s'": ["it's", "sub"],
        inp + " and (name = 'sub' or name = 'it\\'s')": ["it's", "sub"],
        "name = 'sub' or name = 'report.pdf' and trashed = true": ["sub"],
        inp + " and not name contains 'report' and not trashed = true":
            ["it's", "notes", "sub"],
        inp + " and not (mimeType = '%s' or trashed = true)" % FOLDER:
            ["Report Final.docx", "it's", "notes", "report.pdf"],
        inp + " and starred = true": ["Report Final.docx"],
        inp + " and properties has { key='team' and value='a' }": ["report.pdf"],
        inp + " and fullText contains 'searchable'": ["notes"],
        inp + " and 'me' in owners and name = 'sub'": ["sub"],
        # whitespace as Google accepts it
        "\n\t'%s'\tin\nparents  and(name='sub'  )" % p: ["sub"],
        "'%s' in parents AND NOT trashed=true And name='sub'" % p: ["sub"],
    }
    for q, want in cases.items():
        assert drive.names(q) == sorted(want), q
    for bad in ["name = 'unterminated", "name = sub", "name == 'x'", "bogus = 'x'",
                "'x' in nowhere", "(name = 'x'", "name = 'x')", "name = 'a\\n'",
                "trashed = maybe", "modifiedTime > 'yesterday'", "name < 'x'",
                "name = 'x' and", "not", "and name = 'x'", "name = 'x' name = 'y'",
                "(" * 100 + "name = 'x'" + ")" * 100, "properties has { key='a' }",
                "name contains"]:
        r = drive.list(bad)
        err = error_of(r, 400, "invalid")
        assert err["errors"][0]["location"] == "q" and err["message"].startswith("Invalid Value")


# --- paging ---------------------------------------------------------------------------

def test_paging_order_and_page_cap(drive, emulator_noauth):
    d = drive.mkdir("pages")
    emulator_noauth.control("drive/bulk", {"parent": d["id"], "count": 250, "prefix": "f",
                                           "width": 4, "content": "x"})
    q = "'%s' in parents and trashed = false" % d["id"]
    files, pages = drive.list_all(q, pageSize=100)
    assert pages == 3 and [f["name"] for f in files] == ["f%04d" % i for i in range(250)]
    assert all(f["size"] == "1" for f in files)
    # page tokens are opaque and stable: adding files does not shift a page
    r = drive.list(q, pageSize=100).json()
    drive.upload("f0000-new", b"n", d["id"])
    r2 = drive.list(q, pageSize=100, pageToken=r["nextPageToken"]).json()
    assert r2["files"][0]["name"] == "f0100"
    emulator_noauth.faults([{"kind": "page_cap", "max": 7, "path": "/drive/v3/files"}])
    files, pages = drive.list_all(q, pageSize=1000)
    assert len(files) == 251 and pages == 36
    emulator_noauth.clear_faults()
    files, _ = drive.list_all(q, pageSize=60, orderBy="name desc")
    assert [f["name"] for f in files][:2] == ["f0249", "f0248"] and len(files) == 251
    drive.mkdir("zfolder", d["id"])
    files, _ = drive.list_all(q, pageSize=50, orderBy="folder,name")
    assert files[0]["name"] == "zfolder" and files[1]["name"] == "f0000"
    files, _ = drive.list_all(q, pageSize=100, orderBy="modifiedTime desc,name")
    assert len(files) == 252
    error_of(drive.list(q, pageSize=0), 400, "invalid")
    error_of(drive.list(q, pageSize=1001), 400, "invalid")
    error_of(drive.list(q, pageToken="garbage!"), 400, "invalid")
    error_of(drive.list(q, orderBy="sizeish"), 400, "invalid")
    # without a page size: 100
    assert len(drive.list(q).json()["files"]) == 100
    assert emulator_noauth.stats()["faults_fired"]["page_cap"] == 36


def test_big_folder_listing_is_fast(drive, emulator_noauth):
    d = drive.mkdir("big")
    t0 = time.time()
    r = emulator_noauth.control("drive/bulk", {"parent": d["id"], "count": 100000,
                                               "prefix": "n", "width": 6})
    t_bulk = time.time() - t0
    assert r["created"] == 100000
    t0 = time.time()
    files, pages = drive.list_all("'%s' in parents and trashed = false" % d["id"],
                                  pageSize=1000, fields="nextPageToken,files(id,name)")
    t_list = time.time() - t0
    assert pages == 100 and len(files) == 100000
    assert files[0]["name"] == "n000000" and files[-1]["name"] == "n099999"
    print("bulk create 100k: %.2fs, list 100 pages of 1000: %.2fs" % (t_bulk, t_list))
    assert t_list < 60 and t_bulk < 30


# --- media, ranges, export ------------------------------------------------------------

def test_media_and_ranges(drive, emulator_noauth):
    data = pattern(100000, 2)
    f = drive.upload("r.bin", data)
    r = drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"])
    assert r.status == 200 and r.body == data and r.header("accept-ranges") == "bytes"
    r = drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"], headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.header("content-range") == "bytes 10-19/100000"
    r = drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"], headers={"Range": "bytes=-5"})
    assert r.status == 206 and r.body == data[-5:]
    r = drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"],
                   headers={"Range": "bytes=99990-"})
    assert r.status == 206 and r.body == data[99990:]
    r = drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"],
                   headers={"Range": "bytes=100000-"})
    assert r.status == 416 and r.header("content-range") == "bytes */100000"
    z = drive.upload("zero", b"")
    r = drive.http("GET", "/drive/v3/files/%s?alt=media" % z["id"])
    assert r.status == 200 and r.body == b""
    assert drive.http("GET", "/drive/v3/files/%s?alt=media" % z["id"],
                      headers={"Range": "bytes=0-0"}).status == 416
    doc = drive.files([{"name": "d", "mimeType": DOC, "content": "text"}])[0]
    error_of(drive.http("GET", "/drive/v3/files/%s?alt=media" % doc["id"]), 403,
             "fileNotDownloadable")
    error_of(drive.http("GET", "/drive/v3/files/root?alt=media"), 403, "fileNotDownloadable")
    c = counters(emulator_noauth)
    assert c["drive.media_requests"] == 5


def test_docs_export(drive):
    doc, sheet, big = drive.files([
        {"name": "Plan", "mimeType": DOC, "content": "line one\nline two\n"},
        {"name": "Sheet", "mimeType": "application/vnd.google-apps.spreadsheet",
         "content": "a,b\n1,2\n"},
        {"name": "Huge", "mimeType": DOC, "content": "x", "exportSize": 11 * 1024 * 1024},
    ])
    assert "size" not in doc and "md5Checksum" not in doc
    assert doc["exportLinks"]["application/pdf"].endswith("mimeType=application%2Fpdf")
    r = drive.http("GET", "/drive/v3/files/%s/export?mimeType=text/plain" % doc["id"])
    assert r.status == 200 and r.body == b"line one\nline two\n"
    assert r.header("content-type").startswith("text/plain")
    r = drive.http("GET", "/drive/v3/files/%s/export?mimeType=%s" % (
        doc["id"], urllib.parse.quote(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document")))
    assert r.status == 200 and r.body.endswith(b"line one\nline two\n") and len(r.body) > 40
    r = drive.http("GET", "/drive/v3/files/%s/export?mimeType=text/csv" % sheet["id"])
    assert r.status == 200 and r.body == b"a,b\n1,2\n"
    error_of(drive.http("GET", "/drive/v3/files/%s/export?mimeType=text/csv" % doc["id"]),
             400, "badRequest")
    error_of(drive.http("GET", "/drive/v3/files/%s/export" % doc["id"]), 400, "required")
    error_of(drive.http("GET", "/drive/v3/files/%s/export?mimeType=application/pdf" % big["id"]),
             403, "exportSizeLimitExceeded")
    f = drive.upload("bin", b"1")
    error_of(drive.http("GET", "/drive/v3/files/%s/export?mimeType=text/plain" % f["id"]), 403,
             "fileNotExportable")
    # a forced size under the cap pads the export to exactly that size
    sized = drive.files([{"name": "S", "mimeType": DOC, "content": "abc", "exportSize": 5000}])[0]
    r = drive.http("GET", "/drive/v3/files/%s/export?mimeType=application/pdf" % sized["id"])
    assert r.status == 200 and len(r.body) == 5000


def test_shortcuts(drive):
    target = drive.upload("target.txt", b"t")
    s = drive.ok("POST", "/drive/v3/files?fields=*", {
        "name": "link", "mimeType": SHORTCUT, "shortcutDetails": {"targetId": target["id"]}})
    assert s["shortcutDetails"] == {"targetId": target["id"], "targetMimeType":
                                    "application/octet-stream"}
    assert "size" not in s
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "mimeType": SHORTCUT,
                                                     "shortcutDetails": {"targetId": "nope"}}),
             404, "notFound")
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "mimeType": SHORTCUT}), 400)
    dangling = drive.files([{"name": "dangling", "target": "1doesnotexist"}])[0]
    assert dangling["mimeType"] == SHORTCUT
    assert dangling["shortcutDetails"]["targetId"] == "1doesnotexist"
    got = drive.list_all("mimeType = '%s'" % SHORTCUT,
                         fields="nextPageToken,files(name,shortcutDetails)")[0]
    assert sorted(f["name"] for f in got) == ["dangling", "link"]
    assert drive.names("shortcutDetails.targetId = '%s'" % target["id"]) == ["link"]
    error_of(drive.http("GET", "/drive/v3/files/%s?alt=media" % s["id"]), 403,
             "fileNotDownloadable")


# --- update, move, trash, delete -------------------------------------------------------

def test_patch_rename_move_and_properties(drive):
    a, b = drive.mkdir("A"), drive.mkdir("B")
    f = drive.upload("f.txt", b"1", a["id"], extra={"properties": {"x": "1", "y": "2"}})
    g = drive.ok("PATCH", "/drive/v3/files/%s?addParents=%s&removeParents=%s&fields=*" % (
        f["id"], b["id"], a["id"]), {"name": "g.txt", "properties": {"x": None, "z": "3"},
                                     "modifiedTime": "2019-01-01T00:00:00.000Z"})
    assert g["name"] == "g.txt" and g["parents"] == [b["id"]]
    assert g["properties"] == {"y": "2", "z": "3"} and g["modifiedTime"] == "2019-01-01T00:00:00.000Z"
    assert drive.names("'%s' in parents" % a["id"]) == []
    assert drive.names("'%s' in parents" % b["id"]) == ["g.txt"]
    error_of(drive.http("PATCH", "/drive/v3/files/%s?addParents=%s" % (f["id"], a["id"]), {}),
             403, "cannotAddParent")
    error_of(drive.http("PATCH", "/drive/v3/files/%s" % f["id"], {"parents": [a["id"]]}), 403,
             "fieldNotWritable")
    sub = drive.mkdir("sub", a["id"])
    error_of(drive.http("PATCH", "/drive/v3/files/%s?addParents=%s&removeParents=root" % (
        a["id"], sub["id"]), {}), 400, "badRequest")
    error_of(drive.http("PATCH", "/drive/v3/files/%s?addParents=%s&removeParents=%s" % (
        f["id"], g["id"], b["id"]), {}), 400, "invalid")  # not a folder
    error_of(drive.http("PATCH", "/drive/v3/files/%s" % f["id"], b"{bad json",
                        {"Content-Type": "application/json"}), 400, "parseError")
    error_of(drive.http("PATCH", "/drive/v3/files/nope", {"name": "x"}), 404, "notFound")
    # a move of a folder carries its subtree
    drive.upload("deep.txt", b"d", sub["id"])
    drive.ok("PATCH", "/drive/v3/files/%s?addParents=%s&removeParents=%s" % (
        sub["id"], b["id"], a["id"]), {})
    assert drive.names("'%s' in parents" % sub["id"]) == ["deep.txt"]
    assert sorted(drive.names("'%s' in parents" % b["id"])) == ["g.txt", "sub"]


def test_trash_untrash_empty_trash(drive, emulator_noauth):
    keep = drive.upload("keep.bin", pattern(1000, 3))
    d = drive.mkdir("tdir")
    inner = drive.upload("inner.bin", pattern(300, 4), d["id"])
    deep = drive.mkdir("deep", d["id"])
    drive.upload("deeper.bin", pattern(200, 5), deep["id"])
    loose = drive.upload("loose.bin", pattern(50, 6))
    t = drive.ok("PATCH", "/drive/v3/files/%s?fields=*" % d["id"], {"trashed": True})
    assert t["trashed"] is True and t["explicitlyTrashed"] is True and "trashedTime" in t
    i = drive.get(inner["id"])
    assert i["trashed"] is True and i["explicitlyTrashed"] is False
    assert drive.names("'%s' in parents and trashed = false" % d["id"]) == []
    assert drive.names("trashed = true") == ["deep", "deeper.bin", "inner.bin", "tdir"]
    about = drive.ok("GET", "/drive/v3/about?fields=storageQuota")
    assert about["storageQuota"]["usageInDriveTrash"] == "500"
    assert about["storageQuota"]["usage"] == "1550"
    drive.ok("PATCH", "/drive/v3/files/" + d["id"], {"trashed": False})
    assert drive.get(inner["id"])["trashed"] is False
    drive.ok("PATCH", "/drive/v3/files/" + d["id"], {"trashed": True})
    drive.ok("PATCH", "/drive/v3/files/" + loose["id"], {"trashed": True})
    r = drive.http("DELETE", "/drive/v3/files/trash")
    assert r.status == 204 and r.body == b""
    for fid in (d["id"], inner["id"], deep["id"], loose["id"]):
        error_of(drive.http("GET", "/drive/v3/files/" + fid), 404, "notFound")
    assert drive.names("trashed = true") == []
    assert drive.get(keep["id"])["trashed"] is False
    assert drive.ok("GET", "/drive/v3/about?fields=storageQuota")["storageQuota"] == {
        "usage": "1000", "usageInDrive": "1000", "usageInDriveTrash": "0"}
    assert counters(emulator_noauth)["drive.trash_files_purged"] == 5


def test_delete_folder_takes_descendants(drive):
    d = drive.mkdir("gone")
    s = drive.mkdir("s", d["id"])
    f1 = drive.upload("1", b"1", d["id"])
    f2 = drive.upload("2", b"2", s["id"])
    other = drive.upload("other", b"o")
    r = drive.http("DELETE", "/drive/v3/files/" + d["id"])
    assert r.status == 204 and r.body == b""
    for fid in (d["id"], s["id"], f1["id"], f2["id"]):
        error_of(drive.http("GET", "/drive/v3/files/" + fid), 404, "notFound")
    assert drive.get(other["id"])["name"] == "other"
    error_of(drive.http("DELETE", "/drive/v3/files/" + d["id"]), 404, "notFound")
    error_of(drive.http("DELETE", "/drive/v3/files/root"), 403)


def test_generate_ids_and_idempotent_create(drive):
    j = drive.ok("GET", "/drive/v3/files/generateIds?count=5&space=drive")
    assert j["kind"] == "drive#generatedIds" and j["space"] == "drive" and len(j["ids"]) == 5
    assert len(set(j["ids"])) == 5
    fid = j["ids"][0]
    body, ctype = multipart({"id": fid, "name": "once"}, b"data")
    r = drive.http("POST", "/upload/drive/v3/files?uploadType=multipart", body,
                   {"Content-Type": ctype})
    assert r.status == 200 and r.json()["id"] == fid
    r = drive.http("POST", "/upload/drive/v3/files?uploadType=multipart", body,
                   {"Content-Type": ctype})
    error_of(r, 409)
    error_of(drive.http("POST", "/drive/v3/files", {"id": j["ids"][0], "name": "again"}), 409)
    assert drive.ok("POST", "/drive/v3/files", {"id": j["ids"][1], "name": "folder",
                                                "mimeType": FOLDER})["id"] == j["ids"][1]
    error_of(drive.http("POST", "/drive/v3/files", {"id": "1notgeneratedbyus" * 2,
                                                    "name": "x"}), 400, "invalid")
    assert drive.names("name = 'once'") == ["once"]
    error_of(drive.http("GET", "/drive/v3/files/generateIds?count=1001"), 400, "invalid")
    assert len(drive.ok("GET", "/drive/v3/files/generateIds")["ids"]) == 10


# --- uploads -----------------------------------------------------------------------------

def test_multipart_and_media_updates(drive, emulator_noauth):
    f = drive.upload("u.txt", b"one", mime="text/plain")
    body, ctype = multipart({"name": "u2.txt"}, b"two two", "text/plain")
    j = drive.ok("PATCH", "/upload/drive/v3/files/%s?uploadType=multipart&fields=*" % f["id"],
                 body, {"Content-Type": ctype})
    assert j["name"] == "u2.txt" and j["size"] == "7" and j["id"] == f["id"]
    assert int(j["version"]) > int(f["version"])
    j = drive.ok("PATCH", "/upload/drive/v3/files/%s?uploadType=media&fields=*" % f["id"],
                 b"three", {"Content-Type": "text/plain"})
    assert j["md5Checksum"] == hashlib.md5(b"three").hexdigest()
    assert drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"]).body == b"three"
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=multipart", b"junk",
                        {"Content-Type": "multipart/related; boundary=zz"}), 400, "badContent")
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=multipart", b"junk",
                        {"Content-Type": "text/plain"}), 400, "badContent")
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=sideways", b"x"), 400)
    folder = drive.mkdir("nf")
    error_of(drive.http("PATCH", "/upload/drive/v3/files/%s?uploadType=media" % folder["id"],
                        b"x"), 400, "badContent")
    kinds = emulator_noauth.stats()["requests"]
    assert kinds["drive.files.update.multipart"] == {"200": 1}
    assert kinds["drive.files.update.media"] == {"200": 1, "400": 1}


def start_session(drive, path, meta, total=None, method="POST"):
    h = {"Content-Type": "application/json; charset=UTF-8", "X-Upload-Content-Type": "app/x-test"}
    if total is not None:
        h["X-Upload-Content-Length"] = str(total)
    r = drive.http(method, path, meta, h)
    assert r.status == 200, r
    loc = r.header("location")
    assert loc.startswith(drive.emu.url) and "upload_id=" in loc
    return loc[len(drive.emu.url):]


def put_chunk(drive, loc, data, first, total, headers=None):
    h = {"Content-Range": "bytes %d-%d/%s" % (first, first + len(data) - 1, total)}
    h.update(headers or {})
    return drive.http("PUT", loc, data, h)


def status_query(drive, loc, total="*"):
    return drive.http("PUT", loc, b"", {"Content-Range": "bytes */%s" % total})


def persisted(r):
    rng = r.header("range")
    return int(rng.split("-")[1]) + 1 if rng else 0


def test_resumable_create_cut_and_resume(drive, emulator_noauth):
    data = pattern(5 * CHUNK + 1234, 7)
    d = drive.mkdir("up")
    loc = start_session(drive, "/upload/drive/v3/files?uploadType=resumable&fields=*",
                        {"name": "big.bin", "parents": [d["id"]]}, len(data))
    r = put_chunk(drive, loc, data[:2 * CHUNK], 0, len(data))
    assert r.status == 308 and r.header("range") == "bytes=0-%d" % (2 * CHUNK - 1)
    # the next request is cut after 300 KiB: one whole 256 KiB unit persists
    emulator_noauth.faults([{"kind": "cut", "method": "PUT", "path": "/upload/drive/*",
                             "after_bytes": 300 * 1024, "count": 1}])
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        put_chunk(drive, loc, data[2 * CHUNK:], 2 * CHUNK, len(data))
    r = status_query(drive, loc, len(data))
    assert r.status == 308 and persisted(r) == 3 * CHUNK
    r = put_chunk(drive, loc, data[3 * CHUNK:], 3 * CHUNK, len(data))
    assert r.status == 201, r
    f = r.json()
    assert f["name"] == "big.bin" and f["parents"] == [d["id"]] and f["size"] == str(len(data))
    assert f["md5Checksum"] == hashlib.md5(data).hexdigest() and f["mimeType"] == "app/x-test"
    assert drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"]).body == data
    # later requests on the finished session repeat the result
    r = status_query(drive, loc, len(data))
    assert r.status == 201 and r.json()["id"] == f["id"]
    c = counters(emulator_noauth)
    assert c["drive.upload_sessions_started"] == 1 and c["drive.upload_sessions_resumed"] == 1
    assert c["drive.upload_bytes_received"] < len(data) + 400 * 1024
    kinds = emulator_noauth.stats()["requests"]
    assert kinds["drive.files.create.resumable"] == {"200": 1}
    assert kinds["drive.upload.status"] == {"308": 1, "201": 1}
    assert kinds["drive.upload.chunk"] == {"308": 1, "cut": 1, "201": 1}


def test_resumable_update_short308_expire_cancel(drive, emulator_noauth):
    f = drive.upload("upd.bin", b"old")
    data = pattern(3 * CHUNK + 10, 8)
    loc = start_session(drive, "/upload/drive/v3/files/%s?uploadType=resumable&fields=*"
                        % f["id"], {"name": "upd2.bin"}, method="PATCH")
    emulator_noauth.faults([{"kind": "short308", "persist_less": CHUNK, "count": 1}])
    r = put_chunk(drive, loc, data[:2 * CHUNK], 0, "*")
    assert r.status == 308 and persisted(r) == CHUNK
    r = put_chunk(drive, loc, data[CHUNK:], CHUNK, len(data))
    assert r.status == 200, r
    j = r.json()
    assert j["id"] == f["id"] and j["name"] == "upd2.bin" and j["size"] == str(len(data))
    assert drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"]).body == data
    # expire: 404 from then on
    loc = start_session(drive, "/upload/drive/v3/files?uploadType=resumable", {"name": "e"})
    assert put_chunk(drive, loc, data[:CHUNK], 0, "*").status == 308
    emulator_noauth.faults([{"kind": "expire_session"}])
    error_of(put_chunk(drive, loc, data[CHUNK:2 * CHUNK], CHUNK, "*"), 404, "notFound")
    emulator_noauth.clear_faults()
    error_of(status_query(drive, loc), 404)
    # cancel: 499, then 410
    loc = start_session(drive, "/upload/drive/v3/files?uploadType=resumable", {"name": "c"})
    assert drive.http("DELETE", loc).status == 499
    error_of(status_query(drive, loc), 410, "gone")
    # control expiry, unknown sessions, bad ranges
    loc = start_session(drive, "/upload/drive/v3/files?uploadType=resumable", {"name": "x"})
    error_of(put_chunk(drive, loc, data[:10], 5, "*"), 400)
    error_of(drive.http("PUT", loc, b"abc", {"Content-Range": "bytes 0-9/10"}), 400)
    error_of(drive.http("PUT", loc, b"abc", {"Content-Range": "bites 0-2/3"}), 400)
    assert emulator_noauth.control("drive/expire_sessions")["expired"] == 1
    error_of(status_query(drive, loc), 404)
    error_of(drive.http("PUT", "/upload/drive/v3/files?uploadType=resumable&upload_id=nope",
                        b""), 404)
    # initiating against a missing file or parent fails at once
    error_of(drive.http("PATCH", "/upload/drive/v3/files/nope?uploadType=resumable", {}), 404)
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=resumable",
                        {"name": "y", "parents": ["nope"]}), 404)


# --- batch -------------------------------------------------------------------------------

def test_batch_deletes_out_of_order(drive, emulator_noauth):
    d = drive.mkdir("batch")
    emulator_noauth.control("drive/bulk", {"parent": d["id"], "count": 101, "prefix": "b"})
    files, _ = drive.list_all("'%s' in parents" % d["id"], pageSize=1000)
    ids = [f["id"] for f in files]
    assert len(ids) == 101
    parts = [("item%d" % i, "DELETE /drive/v3/files/%s?supportsAllDrives=true HTTP/1.1" % fid,
              None) for i, fid in enumerate(ids[:100])]
    body, ctype = batch_body(parts)
    r = drive.http("POST", "/batch/drive/v3", body, {"Content-Type": ctype})
    assert r.status == 200 and r.header("content-type").startswith("multipart/mixed; boundary=")
    got = parse_batch_reply(r)
    assert len(got) == 100
    assert sorted(cid for cid, _, _ in got) == sorted("<response-item%d>" % i for i in range(100))
    assert all(st == 204 for _, st, _ in got)
    assert [cid for cid, _, _ in got] != ["<response-item%d>" % i for i in range(100)]
    assert drive.names("'%s' in parents" % d["id"]) == [files[100]["name"]]
    # 101 parts: refused whole
    body, ctype = batch_body([("x%d" % i, "GET /drive/v3/files/root HTTP/1.1", None)
                              for i in range(101)])
    error_of(drive.http("POST", "/batch/drive/v3", body, {"Content-Type": ctype}), 400)
    # mixed calls, each answered on its own; absolute URLs too
    body, ctype = batch_body([
        ("a", "GET https://www.googleapis.com/drive/v3/files/%s?fields=id,name" % ids[100], None),
        ("b", "PATCH /drive/v3/files/%s?fields=name" % ids[100], {"name": "renamed"}),
        ("c", "DELETE /drive/v3/files/nope", None),
        ("d", "POST /drive/v3/files?fields=name,mimeType", {"name": "bf", "mimeType": FOLDER}),
        ("e", "POST /upload/drive/v3/files?uploadType=media", None),
    ])
    got = {cid: (st, b) for cid, st, b in parse_batch_reply(
        drive.http("POST", "/batch/drive/v3", body, {"Content-Type": ctype}))}
    assert got["<response-a>"][0] == 200
    assert json.loads(got["<response-a>"][1]) == {"id": ids[100], "name": files[100]["name"]}
    assert got["<response-b>"][0] == 200 and json.loads(got["<response-b>"][1]) == {"name": "renamed"}
    assert got["<response-c>"][0] == 404
    assert json.loads(got["<response-c>"][1])["error"]["errors"][0]["reason"] == "notFound"
    assert got["<response-d>"][0] == 200
    assert got["<response-e>"][0] == 400
    for bad in [b"no delimiter here", b"--batch_req_xyz\r\nContent-Type: text/plain\r\n\r\nGET /"
                b"\r\n--batch_req_xyz--", b"--batch_req_xyz\r\nContent-Type: application/http"
                b"\r\n\r\nGET /x HTTP/1.1\r\n"]:
        error_of(drive.http("POST", "/batch/drive/v3", bad,
                            {"Content-Type": "multipart/mixed; boundary=batch_req_xyz"}), 400)
    error_of(drive.http("POST", "/batch/drive/v3", b"x", {"Content-Type": "text/plain"}), 400)
    c = counters(emulator_noauth)
    assert c["drive.batch_parts"] == 105
    assert emulator_noauth.stats()["requests"]["drive.batch"]["200"] == 2


# --- changes, about, shared drives --------------------------------------------------------

def test_changes_feed(drive):
    start = drive.ok("GET", "/drive/v3/changes/startPageToken")["startPageToken"]
    a = drive.upload("ca", b"1")
    b = drive.upload("cb", b"2")
    drive.ok("PATCH", "/drive/v3/files/" + a["id"], {"name": "ca2"})
    drive.ok("PATCH", "/drive/v3/files/" + a["id"], {"name": "ca3"})
    c = drive.upload("cc", b"3")
    drive.ok("PATCH", "/drive/v3/files/" + c["id"], {"trashed": True})
    assert drive.http("DELETE", "/drive/v3/files/" + b["id"]).status == 204
    j = drive.ok("GET", "/drive/v3/changes?pageToken=%s&pageSize=1000&fields=*" % start)
    assert "nextPageToken" not in j and j["kind"] == "drive#changeList"
    by = {ch["fileId"]: ch for ch in j["changes"]}
    assert len(j["changes"]) == 3  # one entry per file: its latest state
    assert by[a["id"]]["file"]["name"] == "ca3" and by[a["id"]]["removed"] is False
    assert by[c["id"]]["file"]["trashed"] is True
    assert by[b["id"]]["removed"] is True and "file" not in by[b["id"]]
    assert all(ch["kind"] == "drive#change" and ch["changeType"] == "file" for ch in j["changes"])
    new = j["newStartPageToken"]
    # paging through the feed
    seen, tok, pages = [], start, 0
    while True:
        j = drive.ok("GET", "/drive/v3/changes?pageToken=%s&pageSize=2&includeItemsFromAllDrives="
                     "true&supportsAllDrives=true" % tok)
        pages += 1
        seen += [ch["fileId"] for ch in j["changes"]]
        if "nextPageToken" in j:
            tok = j["nextPageToken"]
            continue
        assert j["newStartPageToken"] == new
        break
    assert pages == 2 and sorted(seen) == sorted([a["id"], b["id"], c["id"]])
    # default fields: the file carries only kind/id/name/mimeType
    j = drive.ok("GET", "/drive/v3/changes?pageToken=" + start)
    f = [ch for ch in j["changes"] if ch["fileId"] == a["id"]][0]["file"]
    assert set(f) == {"kind", "id", "name", "mimeType"}
    j = drive.ok("GET", "/drive/v3/changes?pageToken=%s&includeRemoved=false" % start)
    assert b["id"] not in [ch["fileId"] for ch in j["changes"]]
    assert drive.ok("GET", "/drive/v3/changes?pageToken=" + new)["changes"] == []
    error_of(drive.http("GET", "/drive/v3/changes"), 400, "required")
    error_of(drive.http("GET", "/drive/v3/changes?pageToken=abc"), 400, "invalid")


def test_about(drive, emulator_noauth):
    error_of(drive.http("GET", "/drive/v3/about"), 400, "required")
    drive.upload("q", b"12345")
    j = drive.ok("GET", "/drive/v3/about?fields=storageQuota,user")
    assert set(j) == {"storageQuota", "user"}
    assert j["user"]["me"] is True and "@" in j["user"]["emailAddress"]
    assert j["storageQuota"] == {"usage": "5", "usageInDrive": "5", "usageInDriveTrash": "0"}
    emulator_noauth.control("drive/quota", {"limit": 100})
    j = drive.ok("GET", "/drive/v3/about?fields=storageQuota(limit,usage)")
    assert j == {"storageQuota": {"limit": "100", "usage": "5"}}
    drive.upload("fits", b"x" * 95)
    body, ctype = multipart({"name": "over"}, b"y")
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=multipart", body,
                        {"Content-Type": ctype}), 403, "storageQuotaExceeded")
    drive.mkdir("folders are free")
    emulator_noauth.control("drive/quota", {"limit": 0})
    drive.upload("over", b"y")


def test_shared_drives(drive, emulator_noauth):
    sd = emulator_noauth.control("drive/shared_drives", {"name": "Team"})
    assert sd["kind"] == "drive#drive" and sd["name"] == "Team"
    sd2 = drive.ok("POST", "/drive/v3/drives?requestId=req-1", {"name": "Other"})
    assert drive.ok("POST", "/drive/v3/drives?requestId=req-1", {"name": "Other"})["id"] == sd2["id"]
    error_of(drive.http("POST", "/drive/v3/drives", {"name": "x"}), 400, "required")
    j = drive.ok("GET", "/drive/v3/drives?pageSize=1")
    assert len(j["drives"]) == 1 and "nextPageToken" in j
    j2 = drive.ok("GET", "/drive/v3/drives?pageSize=1&pageToken=" + j["nextPageToken"])
    assert {j["drives"][0]["id"], j2["drives"][0]["id"]} == {sd["id"], sd2["id"]}
    assert drive.ok("GET", "/drive/v3/drives/" + sd["id"])["name"] == "Team"
    error_of(drive.http("GET", "/drive/v3/drives/nope"), 404, "notFound")
    root = drive.get(sd["id"])
    assert root["mimeType"] == FOLDER and root["driveId"] == sd["id"]
    f = drive.upload("team.txt", b"t", sd["id"])
    assert f["driveId"] == sd["id"] and "ownedByMe" not in f
    error_of(drive.http("GET", "/drive/v3/files/" + f["id"]), 404, "notFound")
    q = "'%s' in parents" % sd["id"]
    assert drive.names(q, supportsAllDrives="true", includeItemsFromAllDrives="true") == ["team.txt"]
    assert drive.names(q) == []
    assert drive.names("trashed = false", corpora="drive", driveId=sd["id"],
                       includeItemsFromAllDrives="true", supportsAllDrives="true") == ["team.txt"]
    error_of(drive.list("trashed = false", driveId=sd["id"]), 400, "invalid")
    error_of(drive.list("trashed = false", corpora="drive", driveId=sd["id"]), 403)
    # moving a My Drive file into the shared drive gives it the drive's id
    m = drive.upload("mover", b"m")
    j = drive.ok("PATCH", "/drive/v3/files/%s?addParents=%s&removeParents=root&"
                 "supportsAllDrives=true&fields=driveId,parents" % (m["id"], sd["id"]), {})
    assert j == {"driveId": sd["id"], "parents": [sd["id"]]}
    ch = drive.ok("GET", "/drive/v3/changes?pageToken=1&driveId=%s&supportsAllDrives=true&"
                  "includeItemsFromAllDrives=true&fields=*" % sd["id"])
    assert {c["fileId"] for c in ch["changes"]} == {f["id"], m["id"]}
    assert all(c["driveId"] == sd["id"] for c in ch["changes"])
    # emptyTrash of a shared drive
    drive.ok("PATCH", "/drive/v3/files/%s?supportsAllDrives=true" % f["id"], {"trashed": True})
    assert drive.http("DELETE", "/drive/v3/files/trash?driveId=" + sd["id"]).status == 204
    error_of(drive.http("GET", "/drive/v3/files/%s?supportsAllDrives=true" % f["id"]), 404)
    error_of(drive.http("DELETE", "/drive/v3/drives/" + sd["id"]), 403)
    assert drive.http("DELETE", "/drive/v3/drives/" + sd2["id"]).status == 204


# --- faults ------------------------------------------------------------------------------

def test_rate_limit_and_storage_quota_faults(drive, emulator_noauth):
    emulator_noauth.control("drive/rate", {"writes_per_second": 5})
    codes = [drive.http("POST", "/drive/v3/files", {"name": "r%d" % i}).status for i in range(20)]
    assert codes.count(200) >= 5 and codes.count(403) >= 10
    r = drive.http("POST", "/drive/v3/files", {"name": "again"})
    if r.status == 403:
        err = r.json()["error"]
        assert err["errors"][0] == {"domain": "usageLimits", "reason": "userRateLimitExceeded",
                                    "message": err["message"]}
    # reads are not writes
    assert drive.http("GET", "/drive/v3/files/root").status == 200
    time.sleep(1.1)
    assert drive.http("POST", "/drive/v3/files", {"name": "after"}).status == 200
    emulator_noauth.control("drive/rate", {"writes_per_second": 0})
    emulator_noauth.control("drive/storage_quota_exceeded", {"on": True})
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=media", b"x"), 403,
             "storageQuotaExceeded")
    error_of(drive.http("POST", "/upload/drive/v3/files?uploadType=resumable", {"name": "x"}),
             403, "storageQuotaExceeded")
    assert drive.http("POST", "/drive/v3/files", {"name": "meta only"}).status == 200
    emulator_noauth.control("drive/storage_quota_exceeded", {"on": False})
    assert drive.http("POST", "/upload/drive/v3/files?uploadType=media", b"x").status == 200
    for bad in [("drive/rate", {"writes_per_second": "fast"}), ("drive/quota", {"limit": -1}),
                ("drive/storage_quota_exceeded", {}), ("drive/files", {"files": [{"nm": 1}]}),
                ("drive/bulk", {"count": -1})]:
        with pytest.raises(RuntimeError):
            emulator_noauth.control(*bad)
    emulator_noauth.faults([{"kind": "status", "status": 503, "path": "/drive/v3/files",
                             "count": 1}])
    assert drive.list("trashed = false").status == 503
    assert drive.list("trashed = false").status == 200
    assert emulator_noauth.stats()["requests"]["drive.fault"] == {"503": 1}


# --- persistence --------------------------------------------------------------------------

def test_persistence_across_restart(make_emulator, workdir):
    data_dir = os.path.join(workdir, "data")
    emu = make_emulator(data_dir=data_dir, no_auth=True)
    drive = Drive(emu)
    root = drive.get("root")["id"]
    d = drive.mkdir("keep")
    f = drive.upload("f.bin", pattern(70000, 9), d["id"], extra={"appProperties": {"a": "b"}})
    doc = drive.files([{"name": "Doc", "mimeType": DOC, "content": "doc text", "parent": d["id"]}])[0]
    t = drive.upload("trashed", b"t", d["id"])
    drive.ok("PATCH", "/drive/v3/files/" + t["id"], {"trashed": True})
    gone = drive.upload("gone", b"g")
    drive.http("DELETE", "/drive/v3/files/" + gone["id"])
    sd = emu.control("drive/shared_drives", {"name": "SD"})
    ids = drive.ok("GET", "/drive/v3/files/generateIds?count=2")["ids"]
    drive.ok("POST", "/drive/v3/files", {"id": ids[0], "name": "with id"})
    emu.control("drive/bulk", {"parent": d["id"], "count": 50, "prefix": "bulk", "content": "zz"})
    emu.control("drive/quota", {"limit": 10 ** 9})
    data = pattern(3 * CHUNK + 77, 10)
    loc = start_session(drive, "/upload/drive/v3/files?uploadType=resumable&fields=*",
                        {"name": "resumed.bin", "parents": [d["id"]]})
    assert persisted(put_chunk(drive, loc, data[:2 * CHUNK], 0, "*")) == 2 * CHUNK
    token = drive.ok("GET", "/drive/v3/changes/startPageToken")["startPageToken"]
    before = drive.list_all("'%s' in parents" % d["id"], pageSize=1000,
                            fields="nextPageToken,files(id,name,size,md5Checksum,trashed,"
                            "version,appProperties)")[0]
    emu.stop(signal.SIGKILL)  # no chance to save anything at exit
    emu.start()
    assert drive.get("root")["id"] == root
    after = drive.list_all("'%s' in parents" % d["id"], pageSize=1000,
                           fields="nextPageToken,files(id,name,size,md5Checksum,trashed,"
                           "version,appProperties)")[0]
    key = lambda x: x["id"]
    assert sorted(after, key=key) == sorted(before, key=key) and len(after) == 53
    assert drive.http("GET", "/drive/v3/files/%s?alt=media" % f["id"]).body == pattern(70000, 9)
    assert drive.http("GET", "/drive/v3/files/%s/export?mimeType=text/plain" % doc["id"]).body \
        == b"doc text"
    error_of(drive.http("GET", "/drive/v3/files/" + gone["id"]), 404)
    assert drive.get(sd["id"])["driveId"] == sd["id"]
    assert drive.ok("GET", "/drive/v3/drives")["drives"][0]["name"] == "SD"
    error_of(drive.http("POST", "/drive/v3/files", {"id": ids[0], "name": "dup"}), 409)
    assert drive.ok("POST", "/drive/v3/files", {"id": ids[1], "name": "second"})["id"] == ids[1]
    assert drive.ok("GET", "/drive/v3/about?fields=storageQuota")["storageQuota"]["limit"] == "1000000000"
    # the feed goes on from the same token
    assert int(drive.ok("GET", "/drive/v3/changes/startPageToken")["startPageToken"]) > int(token)
    j = drive.ok("GET", "/drive/v3/changes?pageToken=%s&pageSize=1000" % token)
    assert [c["fileId"] for c in j["changes"]] == [ids[1]]
    # the resumable session survived, with its acknowledged bytes
    r = status_query(drive, loc)
    assert r.status == 308 and persisted(r) == 2 * CHUNK
    r = put_chunk(drive, loc, data[2 * CHUNK:], 2 * CHUNK, len(data))
    assert r.status == 201, r
    assert r.json()["md5Checksum"] == hashlib.md5(data).hexdigest()
    assert counters(emu)["drive.upload_sessions_resumed"] == 1
    # and a graceful restart keeps everything too (compacted journal)
    emu.restart()
    assert len(drive.list_all("'%s' in parents" % d["id"], pageSize=1000)[0]) == 54
    assert drive.get(t["id"])["trashed"] is True
    emu.reset()
    assert drive.names("trashed = false") == []
    emu.restart()
    assert drive.names("trashed = false") == []
    assert drive.get("root")["id"] != root


# --- auth and bad input ---------------------------------------------------------------------

def test_auth_required(emulator):
    d = Drive(emulator)
    error_of(d.http("GET", "/drive/v3/files"), 401, "required")
    error_of(d.http("GET", "/drive/v3/files", headers={"Authorization": "Bearer nope"}), 401,
             "authError")
    tok = emulator.control("oauth/issue", {"scopes": "https://www.googleapis.com/auth/drive"})
    d.token = tok["access_token"]
    assert d.ok("GET", "/drive/v3/files?q=trashed%3Dfalse")["files"] == []
    assert d.ok("POST", "/drive/v3/files", {"name": "authed"})["name"] == "authed"
    body, ctype = batch_body([("1", "GET /drive/v3/files/root", None)])
    assert d.http("POST", "/batch/drive/v3", body, {"Content-Type": ctype}).status == 200


def test_bad_input(drive, emulator_noauth):
    error_of(drive.http("POST", "/drive/v3/files", b"{not json",
                        {"Content-Type": "application/json"}), 400, "parseError")
    error_of(drive.http("POST", "/drive/v3/files", b"[1,2]",
                        {"Content-Type": "application/json"}), 400)
    error_of(drive.http("POST", "/drive/v3/files", {"name": 5}), 400, "invalid")
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "parents": ["a", "b"]}), 403,
             "cannotAddParent")
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "parents": ["nope"]}), 404)
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "modifiedTime": "noon"}), 400)
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "properties": {"k": 1}}), 400)
    f = drive.upload("file", b"1")
    error_of(drive.http("POST", "/drive/v3/files", {"name": "x", "parents": [f["id"]]}), 400)
    error_of(drive.http("GET", "/drive/v3/files?fields=files(id"), 400, "invalidParameter")
    error_of(drive.http("GET", "/drive/v3/files/%s/nothing" % f["id"]), 404)
    error_of(drive.http("GET", "/drive/v3/nothing"), 404)
    error_of(drive.http("PUT", "/drive/v3/files"), 405)
    error_of(drive.http("GET", "/drive/v3/files?corpora=everything"), 400)
    error_of(drive.http("GET", "/drive/v3/files/%E0%A4"), 404)  # not a known id
    error_of(drive.http("GET", "/drive/v3/files/a%ZZ"), 400)
    # the emulator is still serving
    assert drive.get(f["id"])["name"] == "file"
    kinds = emulator_noauth.stats()["requests"]
    assert kinds["drive.files.create"]["400"] >= 4
