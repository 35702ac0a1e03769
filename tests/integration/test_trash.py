"""`durafs trash list|purge` against the emulator: listing (text and
--json), purging 5,000 trashed files under injected rate limits with
nothing outside the trash touched, --dry-run, --older-than, --match, the
confirmation rule, emptyTrash with waiting, failures listed with a
non-zero exit, resuming after an interrupted run, credentials against an
emulator that enforces them, and the gs:// purge of noncurrent
generations."""
import json
import os
import signal
import subprocess
import time
import urllib.parse

import conftest

DURAFS = conftest.DURAFS


def run(env_url, *args, emu_var="DURAFS_DRIVE_ENDPOINT", timeout=180, stdin=None):
    env = dict(os.environ)
    env.pop("DURAFS_DRIVE_ENDPOINT", None)
    env.pop("STORAGE_EMULATOR_HOST", None)
    if env_url:
        env[emu_var] = env_url
    return subprocess.run([DURAFS, "trash"] + list(args), env=env, capture_output=True,
                          text=True, timeout=timeout,
                          stdin=stdin if stdin is not None else subprocess.DEVNULL)


def root_id(emu):
    return emu.control("drive/root")["id"]


def mkfiles(emu, files):
    return emu.control("drive/files", {"files": files})["files"]


def folder(emu, name, parent=None):
    return mkfiles(emu, [{"name": name, "parent": parent or root_id(emu),
                          "mimeType": "application/vnd.google-apps.folder"}])[0]["id"]


def list_q(emu, q, fields="id,name,trashed,size"):
    """Every file matching q, through every page."""
    out, tok = [], None
    while True:
        params = {"q": q, "pageSize": 1000, "fields": "nextPageToken,files(%s)" % fields}
        if tok:
            params["pageToken"] = tok
        st, _, body = emu.request("GET", "/drive/v3/files?" + urllib.parse.urlencode(params))
        assert st == 200, body[:300]
        j = json.loads(body)
        out += j.get("files", [])
        tok = j.get("nextPageToken")
        if not tok:
            return out


def trashed(emu):
    return list_q(emu, "trashed = true")


def live(emu):
    return list_q(emu, "trashed = false")


def batch_calls(emu):
    """Calls sent inside batch requests so far (each refused one is sent again)."""
    return emu.stats()["counters"].get("drive.batch_parts", 0)


def test_list_text_and_json(emulator_noauth):
    emu = emulator_noauth
    d = folder(emu, "docs")
    mkfiles(emu, [{"name": "a.txt", "parent": d, "content": "12345", "trashed": True},
                  {"name": "b/c.bin", "parent": d, "content": "xy", "trashed": True},
                  {"name": "line\nbreak", "parent": d, "content": "", "trashed": True},
                  {"name": "alive.txt", "parent": d, "content": "live"}])
    r = run(emu.url, "list", "drive:")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1] == "3 items in the trash, 7 B (7 bytes)"
    assert any("a.txt" in ln for ln in lines)
    assert any("b/c.bin" in ln for ln in lines)
    assert any("line?break" in ln for ln in lines)  # control bytes never printed raw
    assert not any("alive.txt" in ln for ln in lines)
    r = run(emu.url, "list", "drive:", "--json")
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j["count"] == 3 and j["bytes"] == 7
    assert sorted(i["name"] for i in j["items"]) == ["a.txt", "b/c.bin", "line\nbreak"]
    assert all(i["explicitlyTrashed"] and "trashedTime" in i for i in j["items"])
    assert {i["size"] for i in j["items"]} == {5, 2, 0}


def test_purge_5000_rate_limited(emulator_noauth):
    emu = emulator_noauth
    keep = folder(emu, "keep")
    emu.control("drive/bulk", {"parent": keep, "count": 300, "prefix": "live-",
                               "content": "alive"})
    junk = folder(emu, "junk")
    emu.control("drive/bulk", {"parent": junk, "count": 5000, "prefix": "t-",
                               "content": "0123456789", "trashed": True})
    before_live = {f["id"] for f in live(emu)}
    assert len(before_live) == 302
    emu.control("drive/rate", {"writes_per_second": 800})
    calls0 = batch_calls(emu)
    t0 = time.time()
    r = run(emu.url, "purge", "drive:", "--yes", timeout=300)
    took = time.time() - t0
    emu.control("drive/rate", {"writes_per_second": 0})
    assert r.returncode == 0, r.stderr[-2000:]
    assert "deleted 5000 of 5000 items" in r.stdout
    assert "purge: " in r.stderr  # progress lines (not a terminal)
    refused = batch_calls(emu) - calls0 - 5000
    print("5000 deletes in %.1f s, %d calls refused by the rate limit and sent again"
          % (took, refused))
    assert refused > 0  # the limit did bite
    assert refused < 5000  # and the purge paced itself instead of hammering
    assert trashed(emu) == []
    assert {f["id"] for f in live(emu)} == before_live  # nothing else touched
    assert "drive.files.emptyTrash" not in emu.stats()["requests"]


def test_dry_run_deletes_nothing(emulator_noauth):
    emu = emulator_noauth
    emu.control("drive/bulk", {"parent": root_id(emu), "count": 20, "prefix": "d-",
                               "content": "abc", "trashed": True})
    r = run(emu.url, "purge", "drive:", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "dry run: 20 of 20 trashed items selected, 60 B; nothing deleted" in r.stdout
    assert r.stdout.count("would delete") == 20
    assert len(trashed(emu)) == 20
    r = run(emu.url, "purge", "drive:", "--dry-run", "--json", "--match", "d-00001*")
    j = json.loads(r.stdout)
    assert j["dry_run"] and j["selected"] == 10 and j["bytes"] == 30
    assert len(trashed(emu)) == 20
    assert "drive.batch" not in emu.stats()["requests"]


def test_match_selects_exactly(emulator_noauth):
    emu = emulator_noauth
    d = folder(emu, "m")
    mkfiles(emu, [{"name": n, "parent": d, "content": "x", "trashed": True}
                  for n in ("a.tmp", "b.tmp", "c.log", "tmp", "x.TMP", "y.tmp.bak")])
    r = run(emu.url, "purge", "drive:", "--match", "*.tmp", "--yes", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["deleted"] == 2
    assert sorted(f["name"] for f in trashed(emu)) == ["c.log", "tmp", "x.TMP", "y.tmp.bak"]


def test_older_than_selects_exactly(emulator_noauth):
    emu = emulator_noauth
    d = folder(emu, "o")
    mkfiles(emu, [{"name": "old-%d" % i, "parent": d, "content": "x", "trashed": True}
                  for i in range(5)])
    time.sleep(3.0)
    mkfiles(emu, [{"name": "new-%d" % i, "parent": d, "content": "x", "trashed": True}
                  for i in range(5)])
    r = run(emu.url, "purge", "drive:", "--older-than", "2s", "--dry-run", "--json")
    assert sorted(i["name"] for i in json.loads(r.stdout)["items"]) == \
        ["old-%d" % i for i in range(5)]
    r = run(emu.url, "purge", "drive:", "--older-than", "2s", "--yes")
    assert r.returncode == 0, r.stderr
    assert "deleted 5 of 5 items" in r.stdout
    assert sorted(f["name"] for f in trashed(emu)) == ["new-%d" % i for i in range(5)]
    # Nothing is a day old.
    r = run(emu.url, "purge", "drive:", "--older-than", "1d", "--yes")
    assert r.returncode == 0 and "nothing to delete" in r.stdout
    assert len(trashed(emu)) == 5


def test_refuses_without_yes_and_bad_usage(emulator_noauth):
    emu = emulator_noauth
    mkfiles(emu, [{"name": "z", "parent": root_id(emu), "content": "x", "trashed": True}])
    r = run(emu.url, "purge", "drive:")
    assert r.returncode == 1
    assert "without --yes" in r.stderr
    assert len(trashed(emu)) == 1
    for args in (["purge", "drive:", "--older-than", "soon"],
                 ["purge", "drive:", "--empty", "--match", "*"],
                 ["list", "drive:", "--yes"],
                 ["list"],
                 ["wipe", "drive:"],
                 ["list", "s3://x"],
                 ["list", "gs://bucket"]):
        r = run(emu.url, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
    assert len(trashed(emu)) == 1


def test_empty_trash_waits_until_empty(emulator_noauth):
    emu = emulator_noauth
    emu.control("drive/bulk", {"parent": root_id(emu), "count": 1200, "prefix": "e-",
                               "content": "abcd", "trashed": True})
    mkfiles(emu, [{"name": "stays", "parent": root_id(emu), "content": "s"}])
    r = run(emu.url, "purge", "drive:", "--empty", "--yes")
    assert r.returncode == 0, r.stderr
    assert "emptied the trash: 1200 items" in r.stdout
    assert "empty trash: " in r.stderr
    assert trashed(emu) == []
    assert [f["name"] for f in live(emu)] == ["stays"]
    assert emu.stats()["requests"]["drive.files.emptyTrash"]


def test_empty_trash_one_item_singular(emulator_noauth):
    emu = emulator_noauth
    mkfiles(emu, [{"name": "only", "parent": root_id(emu), "content": "ab", "trashed": True}])
    r = run(emu.url, "purge", "drive:", "--empty", "--yes")
    assert r.returncode == 0, r.stderr
    assert "emptied the trash: 1 item, 2 B freed" in r.stdout, r.stdout
    assert trashed(emu) == []


def test_failures_listed_and_nonzero(emulator_noauth):
    emu = emulator_noauth
    d = folder(emu, "f")
    mkfiles(emu, [{"name": "bad-%d" % i, "parent": d, "content": "x", "trashed": True}
                  for i in range(3)])
    emu.faults([{"kind": "status", "path": "/batch/*", "status": 400, "reason": "invalid"}])
    r = run(emu.url, "purge", "drive:", "--yes")
    assert r.returncode == 1
    assert r.stderr.count("failed: bad-") == 3
    assert "HTTP 400 invalid" in r.stderr
    assert "3 items could not be deleted" in r.stderr
    r = run(emu.url, "purge", "drive:", "--yes", "--json")
    assert r.returncode == 1
    j = json.loads(r.stdout)
    assert j["deleted"] == 0 and len(j["failed"]) == 3
    assert {f["status"] for f in j["failed"]} == {400}
    emu.clear_faults()
    r = run(emu.url, "purge", "drive:", "--yes")
    assert r.returncode == 0, r.stderr
    assert trashed(emu) == []


def test_interrupted_then_resumed(emulator_noauth):
    emu = emulator_noauth
    emu.control("drive/bulk", {"parent": root_id(emu), "count": 3000, "prefix": "i-",
                               "content": "x", "trashed": True})
    emu.control("drive/rate", {"writes_per_second": 300})
    env = dict(os.environ, DURAFS_DRIVE_ENDPOINT=emu.url)
    p = subprocess.Popen([DURAFS, "trash", "purge", "drive:", "--yes"], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    time.sleep(2.0)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    left = len(trashed(emu))
    print("interrupted with %d of 3000 left" % left)
    assert 0 < left < 3000
    emu.control("drive/rate", {"writes_per_second": 0})
    r = run(emu.url, "purge", "drive:", "--yes")
    assert r.returncode == 0, r.stderr
    assert "deleted %d of %d items" % (left, left) in r.stdout
    assert trashed(emu) == []


def test_credentials_against_enforcing_emulator(emulator, workdir):
    emu = emulator
    tok = emu.control("oauth/issue", {"scopes": "https://www.googleapis.com/auth/drive"})
    token = tok.get("access_token") or tok.get("token")
    assert token
    st, _, body = emu.request("POST", "/_emulator/drive/files",
                              {"name": "t", "parent": "root", "content": "x",
                               "trashed": True})
    assert st == 200, body
    path = os.path.join(workdir, "token")
    with open(path, "w") as f:
        f.write(token + "\n")
    # No credentials against an enforcing server: refused with a clear error.
    r = run(None, "list", "drive:", "--endpoint", emu.url)
    assert r.returncode == 1
    assert "401" in r.stderr or "auth" in r.stderr.lower()
    r = run(None, "list", "drive:", "--endpoint", emu.url, "--token-file", path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["count"] == 1
    assert token not in r.stdout + r.stderr


def test_gs_purge_noncurrent_generations(emulator_noauth):
    emu = emulator_noauth
    st, _, body = emu.request("POST", "/storage/v1/b", {"name": "vbucket",
                                                        "versioning": {"enabled": True}})
    assert st == 200, body
    for name, data in (("a", b"1"), ("a", b"22"), ("a", b"333"), ("d/b", b"x"),
                       ("d/b", b"yy"), ("other", b"z")):
        st, _, body = emu.request(
            "POST", "/upload/storage/v1/b/vbucket/o?uploadType=media&name=" +
            urllib.parse.quote(name, safe=""), data)
        assert st == 200, body

    def gens():
        st, _, body = emu.request("GET", "/storage/v1/b/vbucket/o?versions=true")
        assert st == 200
        return sorted((o["name"], int(o["size"]), "timeDeleted" in o)
                      for o in json.loads(body).get("items", []))
    assert len(gens()) == 6
    r = run(emu.url, "purge", "gs://vbucket/d", "--yes", emu_var="STORAGE_EMULATOR_HOST")
    assert r.returncode == 0, r.stderr
    assert "deleted 1 noncurrent generations, 1 B freed" in r.stdout
    assert gens() == [("a", 1, True), ("a", 2, True), ("a", 3, False), ("d/b", 2, False),
                      ("other", 1, False)]
    r = run(emu.url, "purge", "gs://vbucket", "--yes", "--json", emu_var="STORAGE_EMULATOR_HOST")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"deleted": 2, "bytes": 3, "failed": []}
    assert gens() == [("a", 3, False), ("d/b", 2, False), ("other", 1, False)]
    r = run(emu.url, "purge", "gs://vbucket", "--dry-run", emu_var="STORAGE_EMULATOR_HOST")
    assert r.returncode == 2
