"""durafs-emulator's Cloud Storage JSON API: buckets, every object endpoint,
preconditions, checksums, the resumable protocol with its faults, listing
(paging, prefixes, offsets, versions, fields), copy/rewrite/compose,
persistence across restarts, malformed input, and the counters."""
import concurrent.futures
import hashlib
import http.client
import json
import os
import signal

import pytest

from gcs_util import Gcs, crc32c_b64, md5_b64, pattern, persisted, q

KIB = 1024
CHUNK = 256 * KIB


@pytest.fixture
def gcs(emulator_noauth):
    g = Gcs(emulator_noauth)
    g.mkbucket("bkt")
    return g


def counters(emu):
    return emu.stats()["counters"]


def error_of(reply, status, reason=None):
    assert reply.status == status, reply
    err = reply.json()["error"]
    assert err["code"] == status
    assert err["errors"][0]["domain"] == "global"
    if reason:
        assert err["errors"][0]["reason"] == reason, err
    return err["message"]


# --- buckets ------------------------------------------------------------------

def test_bucket_lifecycle(emulator_noauth):
    g = Gcs(emulator_noauth)
    b = g.mkbucket("alpha", versioning=True)
    assert b["kind"] == "storage#bucket" and b["name"] == "alpha"
    assert b["versioning"] == {"enabled": True} and b["metageneration"] == "1"
    g.mkbucket("beta")
    error_of(g.http("POST", "/storage/v1/b?project=p", {"name": "alpha"}), 409, "conflict")
    error_of(g.http("POST", "/storage/v1/b?project=p", {"name": "Bad Name"}), 400, "invalid")
    error_of(g.http("POST", "/storage/v1/b?project=p", {}), 400, "required")
    r = g.http("GET", "/storage/v1/b?project=p")
    assert [x["name"] for x in r.json()["items"]] == ["alpha", "beta"]
    r = g.http("GET", "/storage/v1/b/beta")
    assert r.status == 200 and r.json()["versioning"] == {"enabled": False}
    r = g.http("PATCH", "/storage/v1/b/beta", {"versioning": {"enabled": True}})
    assert r.status == 200 and r.json()["versioning"]["enabled"] is True
    assert r.json()["metageneration"] == "2"
    error_of(g.http("PATCH", "/storage/v1/b/beta?ifMetagenerationMatch=1", {}), 412,
             "conditionNotMet")
    g.put("beta", "x", b"1")
    error_of(g.http("DELETE", "/storage/v1/b/beta"), 409, "conflict")
    assert g.http("DELETE", "/storage/v1/b/beta/o/x").status == 204
    # versioned: the deleted object is still there as a noncurrent generation
    error_of(g.http("DELETE", "/storage/v1/b/beta"), 409)
    items, _, _ = g.list_all("beta", versions="true")
    for it in items:
        assert g.http("DELETE", "/storage/v1/b/beta/o/x?generation=" + it["generation"]).status == 204
    assert g.http("DELETE", "/storage/v1/b/beta").status == 204
    error_of(g.http("GET", "/storage/v1/b/beta"), 404, "notFound")
    error_of(g.http("GET", "/storage/v1/b/nope/o"), 404, "notFound")
    error_of(g.put("nope", "x", b"1", expect=404), 404, "notFound")


# --- simple uploads, metadata, downloads -----------------------------------------

def test_media_upload_metadata_and_download(gcs, emulator_noauth):
    data = pattern(100000, 1)
    o = gcs.put("bkt", "dir/sub dir/é +&?.bin", data, "application/x-test")
    assert o["kind"] == "storage#object" and o["bucket"] == "bkt"
    assert o["name"] == "dir/sub dir/é +&?.bin"
    assert o["size"] == "100000" and o["contentType"] == "application/x-test"
    assert o["md5Hash"] == md5_b64(data) and o["crc32c"] == crc32c_b64(data)
    assert isinstance(o["generation"], str) and int(o["generation"]) > 0
    assert o["metageneration"] == "1" and o["storageClass"] == "STANDARD"
    assert o["timeCreated"].endswith("Z") and "." in o["timeCreated"]
    assert o["selfLink"].startswith(emulator_noauth.url + "/storage/v1/b/bkt/o/dir%2F")
    assert o["mediaLink"].startswith(emulator_noauth.url + "/download/storage/v1/b/bkt/o/")
    r = gcs.meta("bkt", o["name"])
    assert r.status == 200 and r.json() == o
    assert r.header("x-goog-generation") == o["generation"]
    r = gcs.media("bkt", o["name"])
    assert r.status == 200 and r.body == data
    assert r.header("Content-Type") == "application/x-test"
    assert r.header("Content-Length") == "100000"
    assert r.header("Accept-Ranges") == "bytes"
    assert r.header("x-goog-hash") == "crc32c=%s,md5=%s" % (o["crc32c"], o["md5Hash"])
    assert r.header("x-goog-generation") == o["generation"]
    assert r.header("x-goog-metageneration") == "1"
    assert r.header("x-goog-stored-content-length") == "100000"
    assert r.header("ETag")
    # the mediaLink (the /download path) serves the same bytes
    r = gcs.http("GET", o["mediaLink"])
    assert r.status == 200 and r.body == data
    # an empty object
    o = gcs.put("bkt", "empty", b"")
    assert o["size"] == "0" and o["crc32c"] == "AAAAAA=="
    r = gcs.media("bkt", "empty")
    assert r.status == 200 and r.body == b""
    c = counters(emulator_noauth)
    assert c["gcs.media_requests"] == 3 and c["gcs.media_bytes_sent"] == 200000


def test_range_downloads(gcs):
    data = pattern(1000, 2)
    gcs.put("bkt", "r", data)
    r = gcs.media("bkt", "r", headers={"Range": "bytes=10-19"})
    assert r.status == 206 and r.body == data[10:20]
    assert r.header("Content-Range") == "bytes 10-19/1000"
    r = gcs.media("bkt", "r", headers={"Range": "bytes=990-"})
    assert r.status == 206 and r.body == data[990:]
    r = gcs.media("bkt", "r", headers={"Range": "bytes=-5"})
    assert r.status == 206 and r.body == data[-5:]
    r = gcs.media("bkt", "r", headers={"Range": "bytes=500-5000"})
    assert r.status == 206 and r.body == data[500:]
    r = gcs.media("bkt", "r", headers={"Range": "bytes=1000-"})
    assert r.status == 416 and r.header("Content-Range") == "bytes */1000"
    gcs.put("bkt", "e", b"")
    assert gcs.media("bkt", "e", headers={"Range": "bytes=0-"}).status == 416


def test_multipart_upload(gcs):
    data = b"multi\r\n--part data\x00\xff"
    meta = {"name": "mp/obj", "contentType": "text/x-mp",
            "metadata": {"goog-reserved-file-mtime": "1700000000", "k": "v"},
            "crc32c": crc32c_b64(data), "md5Hash": md5_b64(data)}
    body = (b"--BOUNDARY\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n" +
            json.dumps(meta).encode() + b"\r\n--BOUNDARY\r\nContent-Type: image/png\r\n\r\n" +
            data + b"\r\n--BOUNDARY--\r\n")
    r = gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", body,
                 {"Content-Type": 'multipart/related; boundary="BOUNDARY"'})
    assert r.status == 200, r
    o = r.json()
    assert o["name"] == "mp/obj" and o["contentType"] == "text/x-mp"
    assert o["metadata"] == meta["metadata"]
    assert gcs.media("bkt", "mp/obj").body == data
    # malformed multipart bodies
    for bad in (b"garbage", b"--BOUNDARY\r\n\r\n{}\r\n--BOUNDARY\r\n\r\nno close",
                b"--BOUNDARY\r\n\r\nnot json\r\n--BOUNDARY\r\n\r\nx\r\n--BOUNDARY--"):
        r = gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", bad,
                     {"Content-Type": "multipart/related; boundary=BOUNDARY"})
        assert r.status == 400, r
    r = gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", body,
                 {"Content-Type": "multipart/related"})
    error_of(r, 400, "invalid")


def test_client_checksums_are_verified(gcs, emulator_noauth):
    data = b"checked bytes"
    good = "crc32c=%s,md5=%s" % (crc32c_b64(data), md5_b64(data))
    gcs.put("bkt", "ok", data, headers={"x-goog-hash": good})
    r = gcs.put("bkt", "bad-crc", data, headers={"x-goog-hash": "crc32c=AAAAAA=="}, expect=400)
    assert "CRC32C" in error_of(r, 400, "invalid")
    r = gcs.put("bkt", "bad-md5", data, headers={"x-goog-hash": "md5=" + md5_b64(b"x")},
                expect=400)
    assert "MD5" in error_of(r, 400, "invalid")
    assert gcs.meta("bkt", "bad-crc").status == 404
    assert gcs.meta("bkt", "bad-md5").status == 404
    # multipart metadata
    meta = {"name": "mp-bad", "md5Hash": md5_b64(b"other")}
    body = (b"--b\r\n\r\n" + json.dumps(meta).encode() + b"\r\n--b\r\n\r\n" + data +
            b"\r\n--b--")
    r = gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", body,
                 {"Content-Type": "multipart/related; boundary=b"})
    assert "MD5" in error_of(r, 400, "invalid")
    assert gcs.meta("bkt", "mp-bad").status == 404
    # resumable: the checksum in the initiating metadata is checked at the end
    url = gcs.start_resumable("bkt", "res-bad", {"crc32c": crc32c_b64(b"nope")})
    r = gcs.chunk(url, data, 0, len(data))
    assert "CRC32C" in error_of(r, 400, "invalid")
    assert gcs.meta("bkt", "res-bad").status == 404
    assert gcs.status(url).status == 410
    url = gcs.start_resumable("bkt", "res-ok", {"crc32c": crc32c_b64(data),
                                                "md5Hash": md5_b64(data)})
    assert gcs.chunk(url, data, 0, len(data)).status == 200
    # malformed checksum values
    error_of(gcs.put("bkt", "x", data, headers={"x-goog-hash": "crc32c=!!"}, expect=400), 400)
    error_of(gcs.put("bkt", "x", data, headers={"x-goog-hash": "crc32c"}, expect=400), 400)


def test_preconditions(gcs):
    o1 = gcs.put("bkt", "p", b"one", query="&ifGenerationMatch=0")
    g1 = o1["generation"]
    error_of(gcs.put("bkt", "p", b"two", query="&ifGenerationMatch=0", expect=412), 412,
             "conditionNotMet")
    error_of(gcs.put("bkt", "p", b"two", query="&ifGenerationMatch=1", expect=412), 412)
    error_of(gcs.put("bkt", "p", b"two", query="&ifGenerationNotMatch=" + g1, expect=412), 412)
    error_of(gcs.put("bkt", "p", b"two", query="&ifMetagenerationMatch=2", expect=412), 412)
    error_of(gcs.put("bkt", "new", b"two", query="&ifMetagenerationMatch=1", expect=412), 412)
    o2 = gcs.put("bkt", "p", b"two", query="&ifGenerationMatch=%s&ifMetagenerationMatch=1" % g1)
    g2 = o2["generation"]
    assert int(g2) > int(g1)
    # reads
    assert gcs.meta("bkt", "p", "?ifGenerationMatch=" + g2).status == 200
    error_of(gcs.meta("bkt", "p", "?ifGenerationMatch=" + g1), 412)
    assert gcs.meta("bkt", "p", "?ifGenerationNotMatch=" + g2).status == 304
    assert gcs.meta("bkt", "p", "?ifMetagenerationNotMatch=1").status == 304
    assert gcs.media("bkt", "p", "ifGenerationMatch=" + g1).status == 412
    assert gcs.media("bkt", "p", "ifGenerationMatch=" + g2).body == b"two"
    # patch and delete
    error_of(gcs.http("PATCH", "/storage/v1/b/bkt/o/p?ifMetagenerationMatch=9", {}), 412)
    r = gcs.http("PATCH", "/storage/v1/b/bkt/o/p?ifMetagenerationMatch=1",
                 {"metadata": {"a": "1"}})
    assert r.status == 200 and r.json()["metageneration"] == "2"
    error_of(gcs.http("DELETE", "/storage/v1/b/bkt/o/p?ifGenerationMatch=" + g1), 412)
    error_of(gcs.http("DELETE", "/storage/v1/b/bkt/o/p?ifMetagenerationMatch=1"), 412)
    assert gcs.http("DELETE", "/storage/v1/b/bkt/o/p?ifGenerationMatch=" + g2).status == 204
    error_of(gcs.http("DELETE", "/storage/v1/b/bkt/o/p"), 404, "notFound")
    error_of(gcs.put("bkt", "p", b"x", query="&ifGenerationMatch=abc", expect=400), 400)
    # copy: destination and source conditions
    gcs.put("bkt", "src", b"source")
    gcs.put("bkt", "dst", b"dest")
    cp = "/storage/v1/b/bkt/o/src/copyTo/b/bkt/o/dst"
    error_of(gcs.http("POST", cp + "?ifGenerationMatch=0"), 412)
    error_of(gcs.http("POST", cp + "?ifSourceGenerationMatch=1"), 412)
    error_of(gcs.http("POST", cp + "?ifSourceMetagenerationNotMatch=1"), 412)
    r = gcs.http("POST", cp + "?ifSourceMetagenerationMatch=1")
    assert r.status == 200 and gcs.media("bkt", "dst").body == b"source"


def test_patch_and_update(gcs):
    o = gcs.put("bkt", "m", b"x", "text/plain")
    r = gcs.http("PATCH", "/storage/v1/b/bkt/o/m",
                 {"metadata": {"goog-reserved-file-mtime": "1700000000", "k": "v"},
                  "cacheControl": "no-cache"})
    assert r.status == 200
    j = r.json()
    assert j["metadata"] == {"goog-reserved-file-mtime": "1700000000", "k": "v"}
    assert j["cacheControl"] == "no-cache" and j["contentType"] == "text/plain"
    assert j["generation"] == o["generation"] and j["metageneration"] == "2"
    r = gcs.http("PATCH", "/storage/v1/b/bkt/o/m", {"metadata": {"k": None, "n": "1"}})
    assert r.json()["metadata"] == {"goog-reserved-file-mtime": "1700000000", "n": "1"}
    r = gcs.http("PUT", "/storage/v1/b/bkt/o/m", {"contentType": "a/b"})
    j = r.json()
    assert "metadata" not in j and "cacheControl" not in j and j["contentType"] == "a/b"
    assert j["metageneration"] == "4"
    error_of(gcs.http("PATCH", "/storage/v1/b/bkt/o/m", {"metadata": {"k": 1}}), 400, "invalid")
    error_of(gcs.http("PATCH", "/storage/v1/b/bkt/o/m", "{not json"), 400, "parseError")
    error_of(gcs.http("PATCH", "/storage/v1/b/bkt/o/absent", {}), 404)
    assert gcs.media("bkt", "m").body == b"x"


# --- resumable uploads ------------------------------------------------------------

def test_resumable_protocol(gcs, emulator_noauth):
    data = pattern(3 * CHUNK + 1000, 3)
    total = len(data)
    url = gcs.start_resumable("bkt", "big/file", {"contentType": "application/x-r",
                                                  "metadata": {"k": "v"}},
                              headers={"X-Upload-Content-Length": str(total)})
    assert url.startswith(emulator_noauth.url + "/upload/storage/v1/b/bkt/o?")
    assert "uploadType=resumable" in url
    # nothing persisted yet: 308 without Range, both status-query forms
    r = gcs.status(url, total)
    assert r.status == 308 and r.header("Range") is None
    r = gcs.status(url)
    assert r.status == 308 and r.header("Range") is None
    r = gcs.chunk(url, data[:CHUNK], 0, total)
    assert r.status == 308 and r.header("Range") == "bytes=0-%d" % (CHUNK - 1)
    # a chunk that is not a multiple of 256 KiB: only whole units persist
    r = gcs.chunk(url, data[CHUNK:2 * CHUNK + 100], CHUNK)
    assert r.status == 308 and persisted(r) == 2 * CHUNK
    # a chunk beyond what is persisted is refused
    r = gcs.chunk(url, data[3 * CHUNK:], 3 * CHUNK, total)
    assert "exceeds" in error_of(r, 400)
    # overlapping what is persisted: the overlap is skipped
    r = gcs.chunk(url, data[CHUNK:3 * CHUNK], CHUNK, total)
    assert r.status == 308 and persisted(r) == 3 * CHUNK
    r = gcs.status(url, total)
    assert persisted(r) == 3 * CHUNK
    # Content-Range disagreeing with the body
    r = gcs.http("PUT", url, b"abc", {"Content-Range": "bytes %d-%d/%d" % (3 * CHUNK, 3 * CHUNK + 9, total)})
    error_of(r, 400)
    r = gcs.http("PUT", url, b"", {"Content-Range": "bytes 0-1/junk"})
    error_of(r, 400, "invalid")
    r = gcs.chunk(url, data[3 * CHUNK:], 3 * CHUNK, total + 1)
    error_of(r, 400)
    r = gcs.chunk(url, data[3 * CHUNK:], 3 * CHUNK, total)
    assert r.status == 200, r
    o = r.json()
    assert o["name"] == "big/file" and o["size"] == str(total)
    assert o["md5Hash"] == md5_b64(data) and o["contentType"] == "application/x-r"
    assert o["metadata"] == {"k": "v"}
    assert hashlib.md5(gcs.media("bkt", "big/file").body).digest() == hashlib.md5(data).digest()
    # a completed session answers with the object
    r = gcs.status(url, total)
    assert r.status == 200 and r.json()["generation"] == o["generation"]
    c = counters(emulator_noauth)
    assert c["gcs.upload_sessions_started"] == 1
    assert c["gcs.upload_bytes_persisted"] == total
    assert c["gcs.upload_bytes_received"] >= total + CHUNK


def test_resumable_unknown_total_and_open_end(gcs):
    data = pattern(2 * CHUNK + 7, 4)
    url = gcs.start_resumable("bkt", "stream")
    r = gcs.chunk(url, data[:2 * CHUNK], 0, "*")
    assert r.status == 308 and persisted(r) == 2 * CHUNK
    r = gcs.chunk(url, data[2 * CHUNK:], 2 * CHUNK, len(data))
    assert r.status == 200 and r.json()["size"] == str(len(data))
    # the Node client's form: "bytes 0-*/*" with the whole rest as body
    url = gcs.start_resumable("bkt", "node")
    r = gcs.http("PUT", url, data, {"Content-Range": "bytes 0-*/*"})
    assert r.status == 200 and gcs.media("bkt", "node").body == data
    # finalising with an empty "bytes */N" once everything is persisted
    url = gcs.start_resumable("bkt", "final")
    assert persisted(gcs.chunk(url, data[:CHUNK], 0, "*")) == CHUNK
    r = gcs.status(url, CHUNK)
    assert r.status == 200 and r.json()["size"] == str(CHUNK)
    # a single PUT without Content-Range uploads everything
    url = gcs.start_resumable("bkt", "single", headers={"X-Upload-Content-Type": "text/x-s"})
    r = gcs.http("PUT", url, b"one shot")
    assert r.status == 200 and r.json()["contentType"] == "text/x-s"
    # an empty object
    url = gcs.start_resumable("bkt", "zero")
    r = gcs.status(url, 0)
    assert r.status == 200 and r.json()["size"] == "0"
    # Go clients ask for 200 + X-HTTP-Status-Code-Override instead of 308
    url = gcs.start_resumable("bkt", "go")
    r = gcs.http("POST", url, data[:CHUNK], {"Content-Range": "bytes 0-%d/*" % (CHUNK - 1),
                                             "X-GUploader-No-308": "yes"})
    assert r.status == 200 and r.header("X-HTTP-Status-Code-Override") == "308"
    assert persisted(r) == CHUNK


def test_resumable_cut_then_resume(gcs, emulator_noauth):
    data = pattern(4 * CHUNK, 5)
    url = gcs.start_resumable("bkt", "cut")
    emulator_noauth.faults([{"kind": "cut", "method": "PUT", "path": "/upload/storage/v1/*",
                             "after_bytes": 3 * CHUNK - 1000, "count": 1}])
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        gcs.chunk(url, data, 0, len(data))
    r = gcs.status(url, len(data))
    assert r.status == 308 and persisted(r) == 2 * CHUNK  # rounded down like GCS
    r = gcs.chunk(url, data[2 * CHUNK:], 2 * CHUNK, len(data))
    assert r.status == 200 and gcs.media("bkt", "cut").body == data
    c = counters(emulator_noauth)
    assert c["gcs.upload_sessions_resumed"] == 1
    assert c["gcs.upload_bytes_persisted"] == len(data)
    # the cut chunk counts as received; +2 for the initiating "{}"
    assert c["gcs.upload_bytes_received"] == 3 * CHUNK - 1000 + 2 * CHUNK + 2


def test_cut_simple_upload_stores_nothing(gcs, emulator_noauth):
    emulator_noauth.faults([{"kind": "cut", "path": "/upload/*", "after_bytes": 1000},
                            {"kind": "cut", "method": "PATCH", "path": "/storage/*",
                             "after_bytes": 5}])
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        gcs.put("bkt", "cut-media", pattern(5000, 1))
    body = (b"--b\r\n\r\n{\"name\":\"cut-mp\"}\r\n--b\r\n\r\n" + pattern(5000, 2) +
            b"\r\n--b--")
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=multipart", body,
                 {"Content-Type": "multipart/related; boundary=b"})
    emulator_noauth.clear_faults()
    gcs.put("bkt", "p", b"x")
    emulator_noauth.faults([{"kind": "cut", "method": "PATCH", "path": "/storage/*",
                             "after_bytes": 5}])
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        gcs.http("PATCH", "/storage/v1/b/bkt/o/p", {"metadata": {"k": "v"}})
    emulator_noauth.clear_faults()
    assert gcs.meta("bkt", "cut-media").status == 404
    assert gcs.meta("bkt", "cut-mp").status == 404
    assert gcs.meta("bkt", "p").json()["metageneration"] == "1"


def test_resumable_short308(gcs, emulator_noauth):
    data = pattern(4 * CHUNK, 6)
    url = gcs.start_resumable("bkt", "short")
    emulator_noauth.faults([{"kind": "short308", "path": "/upload/storage/v1/b/bkt/o",
                             "persist_less": CHUNK + 5, "count": 1}])
    r = gcs.chunk(url, data[:3 * CHUNK], 0, len(data))
    assert r.status == 308 and persisted(r) == CHUNK
    r = gcs.chunk(url, data[CHUNK:], CHUNK, len(data))
    assert r.status == 200 and gcs.media("bkt", "short").body == data
    # on the final chunk too: it is not final any more
    url = gcs.start_resumable("bkt", "short2")
    emulator_noauth.faults([{"kind": "short308", "path": "/upload/*", "persist_less": 1,
                             "count": 1}])
    r = gcs.chunk(url, data, 0, len(data))
    assert r.status == 308 and persisted(r) == 3 * CHUNK
    r = gcs.chunk(url, data[3 * CHUNK:], 3 * CHUNK, len(data))
    assert r.status == 200


def test_resumable_expire_and_cancel(gcs, emulator_noauth):
    url = gcs.start_resumable("bkt", "exp")
    assert gcs.chunk(url, b"x" * CHUNK, 0).status == 308
    emulator_noauth.faults([{"kind": "expire_session", "path": "/upload/*", "count": 1}])
    error_of(gcs.chunk(url, b"y" * CHUNK, CHUNK), 404, "notFound")
    error_of(gcs.status(url), 404)  # gone for good
    url = gcs.start_resumable("bkt", "cancel")
    r = gcs.http("DELETE", url)
    assert r.status == 499
    assert gcs.status(url).status == 410
    assert gcs.chunk(url, b"z", 0, 1).status == 410
    url = gcs.start_resumable("bkt", "ctl")
    assert emulator_noauth.control("gcs/expire_sessions")["expired"] == 1
    assert gcs.status(url).status == 404
    error_of(gcs.http("PUT", "/upload/storage/v1/b/bkt/o?uploadType=resumable&upload_id=nope",
                      b"", {"Content-Range": "bytes */*"}), 404, "notFound")
    assert gcs.meta("bkt", "exp").status == 404


def test_resumable_hashing_off_the_reply_path(gcs, emulator_noauth, make_emulator, workdir):
    """Chunks are hashed by a helper thread after the 308 went back: the
    checksums must still come out of every chunk, in order, whatever the
    chunk sizes, with several sessions at once, with faults, and after a
    restart with --data-dir in the middle of an upload."""
    data = pattern(24 * CHUNK + 777, 40)
    sums = {"crc32c": crc32c_b64(data), "md5Hash": md5_b64(data)}

    def upload(g, name, sizes, meta=None):
        url = g.start_resumable("bkt", name, meta)
        off, i, r = 0, 0, None
        while off < len(data):
            n = sizes[i % len(sizes)]
            i += 1
            piece = data[off:off + n]
            last = off + len(piece) == len(data)
            r = g.chunk(url, piece, off, len(data) if last else "*")
            if not last:
                assert r.status == 308, r
                off = persisted(r)
            else:
                off += len(piece)
        return r

    # many small chunks, then a mix, with the expected sums declared
    r = upload(gcs, "h/small", [CHUNK], sums)
    assert r.status == 200 and r.json()["md5Hash"] == sums["md5Hash"], r
    assert r.json()["crc32c"] == sums["crc32c"]
    r = upload(gcs, "h/mixed", [3 * CHUNK, CHUNK, 8 * CHUNK], sums)
    assert r.status == 200 and r.json()["md5Hash"] == sums["md5Hash"], r
    # a wrong declared md5 is still caught at the end, after the hashing
    r = upload(gcs, "h/wrong", [4 * CHUNK], {"md5Hash": md5_b64(b"other")})
    assert "MD5" in error_of(r, 400, "invalid")
    assert gcs.meta("bkt", "h/wrong").status == 404
    # eight sessions at once
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        res = list(ex.map(lambda i: upload(gcs, "h/par%d" % i, [(i % 4 + 1) * CHUNK], sums),
                          range(8)))
    for r in res:
        assert r.status == 200 and r.json()["md5Hash"] == sums["md5Hash"], r
    # a short 308 and an expired session with chunks possibly still queued
    emulator_noauth.faults([{"kind": "short308", "path": "/upload/*", "persist_less": CHUNK,
                             "count": 2}])
    r = upload(gcs, "h/short", [6 * CHUNK], sums)
    assert r.status == 200 and r.json()["md5Hash"] == sums["md5Hash"], r
    url = gcs.start_resumable("bkt", "h/exp")
    for k in range(4):
        assert gcs.chunk(url, data[k * 4 * CHUNK:(k + 1) * 4 * CHUNK], k * 4 * CHUNK).status == 308
    emulator_noauth.faults([{"kind": "expire_session", "path": "/upload/*", "count": 1}])
    error_of(gcs.chunk(url, data[16 * CHUNK:20 * CHUNK], 16 * CHUNK), 404, "notFound")
    # with a data dir: stop (SIGKILL) mid-upload, restart, finish; the
    # restored session's sums cover the bytes sent before the restart
    emu = make_emulator(data_dir=os.path.join(workdir, "hdata"), no_auth=True)
    g = Gcs(emu)
    g.mkbucket("bkt")
    url = g.start_resumable("bkt", "h/restart", sums)
    for k in range(3):
        assert persisted(g.chunk(url, data[k * 4 * CHUNK:(k + 1) * 4 * CHUNK],
                                 k * 4 * CHUNK)) == (k + 1) * 4 * CHUNK
    emu.stop(signal.SIGKILL)
    emu.start()
    assert persisted(g.status(url)) == 12 * CHUNK
    r = g.chunk(url, data[12 * CHUNK:], 12 * CHUNK, len(data))
    assert r.status == 200 and r.json()["md5Hash"] == sums["md5Hash"], r
    assert g.media("bkt", "h/restart").body == data


def test_resumable_preconditions(gcs):
    gcs.put("bkt", "exists", b"1")
    r = gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=exists"
                 "&ifGenerationMatch=0", {})
    error_of(r, 412, "conditionNotMet")
    url = gcs.start_resumable("bkt", "race", query="&ifGenerationMatch=0")
    gcs.put("bkt", "race", b"someone else")
    error_of(gcs.chunk(url, b"mine", 0, 4), 412, "conditionNotMet")
    assert gcs.media("bkt", "race").body == b"someone else"
    url = gcs.start_resumable("bkt", "ok", query="&ifGenerationMatch=0")
    assert gcs.chunk(url, b"mine", 0, 4).status == 200
    # the name may come from the metadata instead of the query
    r = gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable", {"name": "m/n"})
    assert r.status == 200
    assert gcs.http("PUT", r.header("Location"), b"abc").json()["name"] == "m/n"
    error_of(gcs.http("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable", {}), 400)
    error_of(gcs.http("POST", "/upload/storage/v1/b/nob/o?uploadType=resumable&name=a", {}), 404)


# --- listing ----------------------------------------------------------------------

def test_list_paging_many(gcs, emulator_noauth):
    flat = ["f%05d" % i for i in range(2300)]
    nested = ["d%02d/x%d" % (i % 40, i) for i in range(200)]
    gcs.put_many("bkt", flat + nested)
    items, prefixes, pages = gcs.list_all("bkt")
    assert pages == 3  # 1000 per page at most
    names = [i["name"] for i in items]
    assert names == sorted(flat + nested)
    items, prefixes, pages = gcs.list_all("bkt", maxResults=300, delimiter="/")
    assert [i["name"] for i in items] == flat
    assert prefixes == ["d%02d/" % i for i in range(40)]  # each once, sorted
    assert pages == (2300 + 40 + 299) // 300
    emulator_noauth.faults([{"kind": "page_cap", "path": "/storage/v1/b/bkt/o", "max": 13}])
    items, prefixes, pages = gcs.list_all("bkt", delimiter="/", prefix="d")
    assert prefixes == ["d%02d/" % i for i in range(40)] and items == []
    assert pages == 4  # 40 prefixes, 13 a page
    items, prefixes, pages = gcs.list_all("bkt", prefix="f01", fields="items(name),nextPageToken")
    assert [i["name"] for i in items] == ["f%05d" % i for i in range(1000, 2000)]
    assert all(set(i) == {"name"} for i in items)
    assert pages == 1000 // 13 + 1
    # a cap with a count: only the first pages are short
    emulator_noauth.faults([{"kind": "page_cap", "path": "/storage/v1/b/bkt/o", "max": 1,
                             "count": 2}])
    items, _, pages = gcs.list_all("bkt", prefix="f0000")
    assert [i["name"] for i in items] == ["f%05d" % i for i in range(10)] and pages == 3


def test_list_options(gcs):
    for n in ("a/1", "a/2", "a/", "b/1", "c", "d", "e/f/g"):
        gcs.put("bkt", n, b"x")
    r = gcs.http("GET", "/storage/v1/b/bkt/o?delimiter=/&includeTrailingDelimiter=true")
    j = r.json()
    assert j["prefixes"] == ["a/", "b/", "e/"]
    assert [i["name"] for i in j["items"]] == ["a/", "c", "d"]
    r = gcs.http("GET", "/storage/v1/b/bkt/o?delimiter=/")
    assert [i["name"] for i in r.json()["items"]] == ["c", "d"]
    r = gcs.http("GET", "/storage/v1/b/bkt/o?prefix=e/&delimiter=/")
    assert r.json()["prefixes"] == ["e/f/"] and "items" not in r.json()
    r = gcs.http("GET", "/storage/v1/b/bkt/o?startOffset=b&endOffset=d")
    assert [i["name"] for i in r.json()["items"]] == ["b/1", "c"]
    r = gcs.http("GET", "/storage/v1/b/bkt/o?prefix=zzz")
    assert r.json() == {"kind": "storage#objects"}
    r = gcs.http("GET", "/storage/v1/b/bkt/o?fields=kind,items(name,size)&maxResults=1")
    assert r.json() == {"kind": "storage#objects", "items": [{"name": "a/", "size": "1"}]}
    r = gcs.http("GET", "/storage/v1/b/bkt/o/c?fields=name,generation")
    assert set(r.json()) == {"name", "generation"}
    error_of(gcs.http("GET", "/storage/v1/b/bkt/o?fields=items(name"), 400)
    error_of(gcs.http("GET", "/storage/v1/b/bkt/o?maxResults=-1"), 400)
    error_of(gcs.http("GET", "/storage/v1/b/bkt/o?maxResults=lots"), 400)
    error_of(gcs.http("GET", "/storage/v1/b/bkt/o?pageToken=%%%%garbage"), 400)
    error_of(gcs.http("GET", "/storage/v1/b/bkt/o?pageToken=Zm9v"), 400)


def test_versioning(emulator_noauth):
    g = Gcs(emulator_noauth)
    g.mkbucket("ver", versioning=True)
    v1 = g.put("ver", "f", b"one")
    v2 = g.put("ver", "f", b"two")
    items, _, _ = g.list_all("ver")
    assert [i["generation"] for i in items] == [v2["generation"]]
    items, _, _ = g.list_all("ver", versions="true")
    assert [i["generation"] for i in items] == [v1["generation"], v2["generation"]]
    assert "timeDeleted" in items[0] and "timeDeleted" not in items[1]
    assert g.media("ver", "f", "generation=" + v1["generation"]).body == b"one"
    assert g.meta("ver", "f", "?generation=" + v1["generation"]).json()["size"] == "3"
    assert g.http("DELETE", "/storage/v1/b/ver/o/f").status == 204
    assert g.meta("ver", "f").status == 404
    items, _, pages = g.list_all("ver", versions="true", maxResults=1)
    assert len(items) == 2 and pages == 2
    assert g.http("DELETE", "/storage/v1/b/ver/o/f?generation=" + v1["generation"]).status == 204
    assert g.media("ver", "f", "generation=" + v1["generation"]).status == 404
    assert g.media("ver", "f", "generation=" + v2["generation"]).body == b"two"
    error_of(g.media("ver", "f", "generation=abc"), 400)
    # unversioned buckets drop the old generation
    g.mkbucket("plain")
    p1 = g.put("plain", "f", b"1")
    g.put("plain", "f", b"2")
    assert g.media("plain", "f", "generation=" + p1["generation"]).status == 404


# --- copy, rewrite, compose -----------------------------------------------------

def test_copy_and_rewrite_loop(gcs, emulator_noauth):
    data = pattern(3 * 1024 * KIB + 5, 7)
    src = gcs.put("bkt", "src/obj", data, "text/x-src")
    gcs.http("PATCH", "/storage/v1/b/bkt/o/src%2Fobj", {"metadata": {"m": "1"}})
    gcs.mkbucket("other")
    r = gcs.http("POST", "/storage/v1/b/bkt/o/src%2Fobj/copyTo/b/other/o/copied%2Fone")
    assert r.status == 200
    c = r.json()
    assert c["bucket"] == "other" and c["name"] == "copied/one"
    assert c["md5Hash"] == src["md5Hash"] and c["metadata"] == {"m": "1"}
    assert c["contentType"] == "text/x-src"
    r = gcs.http("POST", "/storage/v1/b/bkt/o/src%2Fobj/copyTo/b/bkt/o/copy2",
                 {"contentType": "a/b", "metadata": {"x": "y"}})
    assert r.json()["contentType"] == "a/b" and r.json()["metadata"] == {"x": "y"}
    emulator_noauth.control("gcs/rewrite_max_bytes", {"bytes": 1024 * KIB})
    path = "/storage/v1/b/bkt/o/src%2Fobj/rewriteTo/b/other/o/rewritten"
    token, rounds = None, 0
    while True:
        r = gcs.http("POST", path + ("?rewriteToken=" + token if token else ""))
        assert r.status == 200, r
        j = r.json()
        rounds += 1
        assert j["kind"] == "storage#rewriteResponse" and j["objectSize"] == str(len(data))
        if j["done"]:
            break
        assert int(j["totalBytesRewritten"]) == rounds * 1024 * KIB
        token = j["rewriteToken"]
    assert rounds == 4
    assert j["resource"]["md5Hash"] == src["md5Hash"]
    assert gcs.media("other", "rewritten").body == data
    # maxBytesRewrittenPerCall lowers the limit; a token from another rewrite is refused
    r = gcs.http("POST", path + "?maxBytesRewrittenPerCall=1048576")
    assert r.json()["done"] is False
    other = "/storage/v1/b/bkt/o/src%2Fobj/rewriteTo/b/other/o/elsewhere"
    error_of(gcs.http("POST", other + "?rewriteToken=" + r.json()["rewriteToken"]), 400)
    error_of(gcs.http("POST", other + "?rewriteToken=garbage"), 400)
    error_of(gcs.http("POST", path + "?maxBytesRewrittenPerCall=12"), 400)
    # preconditions and missing sources
    error_of(gcs.http("POST", path + "?ifSourceGenerationMatch=1"), 412)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/none/rewriteTo/b/other/o/x"), 404)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/none/copyTo/b/other/o/x"), 404)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/src%2Fobj/copyTo/b/nob/o/x"), 404)
    # a small rewrite completes at once (rename = rewrite + delete)
    emulator_noauth.control("gcs/rewrite_max_bytes", {"bytes": 8 * 1024 * KIB})
    r = gcs.http("POST", "/storage/v1/b/bkt/o/src%2Fobj/rewriteTo/b/bkt/o/renamed"
                 "?ifGenerationMatch=0")
    assert r.json()["done"] is True
    assert gcs.http("DELETE", "/storage/v1/b/bkt/o/src%2Fobj?ifGenerationMatch="
                    + src["generation"]).status == 204
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/x/rewriteTo/b/bkt/o/y", "[1]"), 400)


def test_compose(gcs):
    parts = [pattern(1000 + i, 10 + i) for i in range(3)]
    srcs = [gcs.put("bkt", "part%d" % i, p, "text/x-part") for i, p in enumerate(parts)]
    body = {"sourceObjects": [{"name": "part0"},
                              {"name": "part1", "generation": srcs[1]["generation"]},
                              {"name": "part2",
                               "objectPreconditions": {"ifGenerationMatch": srcs[2]["generation"]}}],
            "destination": {"contentType": "text/x-whole", "metadata": {"c": "1"}}}
    r = gcs.http("POST", "/storage/v1/b/bkt/o/whole/compose", body)
    assert r.status == 200, r
    o = r.json()
    whole = b"".join(parts)
    assert o["componentCount"] == 3 and "md5Hash" not in o
    assert o["crc32c"] == crc32c_b64(whole) and o["size"] == str(len(whole))
    assert o["contentType"] == "text/x-whole" and o["metadata"] == {"c": "1"}
    m = gcs.media("bkt", "whole")
    assert m.body == whole and m.header("x-goog-hash") == "crc32c=" + o["crc32c"]
    # composing a composite adds up the components
    r = gcs.http("POST", "/storage/v1/b/bkt/o/whole2/compose",
                 {"sourceObjects": [{"name": "whole"}, {"name": "part0"}]})
    assert r.json()["componentCount"] == 4
    bad = dict(body)
    bad["sourceObjects"] = [{"name": "part0", "objectPreconditions": {"ifGenerationMatch": "1"}}]
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/w/compose", bad), 412)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/w/compose",
                      {"sourceObjects": [{"name": "part0"}] * 33}), 400)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/w/compose", {"sourceObjects": []}), 400)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/w/compose",
                      {"sourceObjects": [{"name": "absent"}]}), 404)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/w/compose",
                      {"sourceObjects": [{"name": "part0", "generation": "x"}]}), 400)
    error_of(gcs.http("POST", "/storage/v1/b/bkt/o/whole/compose?ifGenerationMatch=0", body), 412)


# --- persistence ----------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_state_survives_restart(make_emulator, workdir, sig):
    data_dir = os.path.join(workdir, "data")
    emu = make_emulator(data_dir=data_dir, no_auth=True)
    g = Gcs(emu)
    g.mkbucket("pbk")
    g.mkbucket("vbk", versioning=True)
    blob = pattern(300000, 20)
    o = g.put("pbk", "dir/obj", blob, "text/x-p")
    g.http("PATCH", "/storage/v1/b/pbk/o/dir%2Fobj", {"metadata": {"k": "vbk"}})
    v1 = g.put("vbk", "f", b"old")
    g.put("vbk", "f", b"new")
    big = pattern(3 * CHUNK + 99, 21)
    url = g.start_resumable("pbk", "half", {"metadata": {"r": "1"}})
    assert persisted(g.chunk(url, big[:2 * CHUNK], 0)) == 2 * CHUNK
    emu.stop(sig)
    emu.start()
    r = g.meta("pbk", "dir/obj")
    assert r.status == 200
    j = r.json()
    assert j["generation"] == o["generation"] and j["metageneration"] == "2"
    assert j["metadata"] == {"k": "vbk"} and j["md5Hash"] == o["md5Hash"]
    assert g.media("pbk", "dir/obj").body == blob
    assert g.media("vbk", "f", "generation=" + v1["generation"]).body == b"old"
    assert g.media("vbk", "f").body == b"new"
    assert g.http("GET", "/storage/v1/b/vbk").json()["versioning"]["enabled"] is True
    # the half-done session resumes from what was persisted
    r = g.status(url)
    assert r.status == 308 and persisted(r) == 2 * CHUNK
    r = g.chunk(url, big[2 * CHUNK:], 2 * CHUNK, len(big))
    assert r.status == 200 and r.json()["metadata"] == {"r": "1"}
    assert g.media("pbk", "half").body == big
    assert counters(emu)["gcs.upload_sessions_resumed"] == 1
    # new generations stay above the restored ones
    assert int(g.put("pbk", "dir/obj", b"x")["generation"]) > int(o["generation"])
    emu.control("reset")
    emu.stop()
    emu.start()
    assert g.http("GET", "/storage/v1/b/pbk").status == 404


# --- malformed input, auth, reset ------------------------------------------------

def test_malformed_requests_get_google_errors(gcs, emulator_noauth):
    cases = [
        ("POST", "/storage/v1/b?project=p", b"{not json", {}, 400),
        ("POST", "/storage/v1/b?project=p", b"[1,2]", {}, 400),
        ("GET", "/storage/v1/b/bkt/o/%zz", None, {}, 404),
        ("GET", "/storage/v1/b/bkt/o/a%00b", None, {}, 404),
        ("GET", "/storage/v1/x", None, {}, 404),
        ("GET", "/storage/v1/b/bkt/x/y", None, {}, 404),
        ("DELETE", "/storage/v1/b", None, {}, 405),
        ("POST", "/storage/v1/b/bkt/o/x", b"", {}, 405),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=weird&name=a", b"x", {}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=media", b"x", {}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=", b"x", {}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=a%0Ab", b"x", {}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=" + "n" * 1025, b"x", {}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=a", b"{bad", {}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=a", b"{}",
         {"X-Upload-Content-Length": "-3"}, 400),
        ("POST", "/upload/storage/v1/b/bkt/o?uploadType=resumable&name=a",
         b'{"metadata": {"k": 5}}', {}, 400),
        ("PUT", "/upload/storage/v1/b/bkt/o?uploadType=resumable", b"x", {}, 405),
        ("GET", "/download/storage/v1/b/bkt/o", None, {}, 404),
        ("POST", "/storage/v1/b/bkt/o/x/compose", b"{bad", {}, 400),
    ]
    for method, path, body, headers, status in cases:
        r = gcs.http(method, path, body, headers)
        assert r.status == status, (method, path, r)
        if status != 304:
            err = r.json()["error"]
            assert err["code"] == status and err["errors"][0]["reason"], (path, err)
    url = gcs.start_resumable("bkt", "cr")
    for cr in ("bytes 5-2/10", "bytes x-y/10", "items 0-1/2", "bytes 0-9/5", "bytes"):
        error_of(gcs.http("PUT", url, b"", {"Content-Range": cr}), 400)
    error_of(gcs.http("PUT", url, b"body", {"Content-Range": "bytes */10"}), 400)
    assert gcs.http("GET", "/storage/v1/b/bkt").status == 200  # still alive


def test_auth_enforced_with_issued_token(emulator):
    anon = Gcs(emulator)
    r = anon.http("GET", "/storage/v1/b?project=p")
    assert r.status == 401
    token = emulator.control("oauth/issue", {})["access_token"]
    g = Gcs(emulator, token)
    g.mkbucket("authd")
    g.put("authd", "o", b"secret bytes")
    assert g.media("authd", "o").body == b"secret bytes"
    assert anon.media("authd", "o").status == 401
    assert Gcs(emulator, "ya29.forged").media("authd", "o").status == 401
    assert token not in emulator.log()


def test_reset_clears_everything(gcs, emulator_noauth):
    gcs.put("bkt", "o", b"x")
    url = gcs.start_resumable("bkt", "s")
    emulator_noauth.control("gcs/rewrite_max_bytes", {"bytes": 5})
    emulator_noauth.reset()
    assert gcs.http("GET", "/storage/v1/b/bkt").status == 404
    assert gcs.status(url).status == 404
    with pytest.raises(RuntimeError):
        emulator_noauth.control("gcs/rewrite_max_bytes", {"bytes": 0})
    with pytest.raises(RuntimeError):
        emulator_noauth.control("gcs/no_such_call")


def test_parallel_uploads_and_downloads(gcs):
    blobs = {"par/%d" % i: pattern(200000 + i, 30 + i) for i in range(16)}

    def up(item):
        name, data = item
        url = gcs.start_resumable("bkt", name)
        off = 0
        while off < len(data):
            piece = data[off:off + CHUNK]
            r = gcs.chunk(url, piece, off, len(data) if off + len(piece) == len(data) else "*")
            off += len(piece)
        assert r.status == 200, r

    def down(name):
        return gcs.media("bkt", name).body

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(up, blobs.items()))
        got = dict(zip(blobs, ex.map(down, blobs)))
    assert got == blobs
