"""`durafs mount drive:` against the emulator's Drive service, checked as a
user sees it: fsync means committed (md5 verified on the remote), `sync
--flush`, crash resume of a resumable upload, a faults soak, a 20,000-entry
folder listed exactly through pages of 100, EIO on a failed page, names
with '/', duplicate names, Google Docs as read-only exports, shortcuts,
unlink to the trash (or for good), `rm -rf` as one trash call, rename as
one PATCH, quota and rate-limit errors, `drive:id=` and shared-drive roots,
and `sync --flush --cache-dir` without a daemon."""
import errno
import json
import os
import random
import subprocess

import pytest

import conftest
from drive_util import DOC, SHORTCUT, Drive, counter, md5hex, mount_drive, requests_of
from help_util import ROOT
from mount_util import (blob, mounts, run_durafs, wait_until,  # noqa: F401  (fixture)
                        write_under_faults)

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def drive(emulator_noauth):
    return emulator_noauth, Drive(emulator_noauth)


def test_write_fsync_committed_with_md5(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=30s"])
    data = blob(300 * KiB, 1)
    os.mkdir(m.path("dir"))
    fd = os.open(m.path("dir/a.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)   # returns only once committed, despite the 30 s delay
        f = dr.lookup("dir/a.bin")
        assert f is not None, dr.children()
        assert f["md5Checksum"] == md5hex(data)
        assert int(f["size"]) == len(data)
        assert dr.content(f["id"]) == data
    finally:
        os.close(fd)
    # a large file goes up through a resumable session, checked the same way
    big = blob(7 * MiB, 2)
    m.write("big.bin", big, fsync=True)
    f = dr.lookup("big.bin")
    assert f["md5Checksum"] == md5hex(big)
    assert counter(emu.stats(), "drive.upload_sessions_started") >= 1
    # overwrite in place: the same file id, new content
    first = dr.lookup("dir/a.bin")
    m.write("dir/a.bin", b"second", fsync=True)
    g = dr.lookup("dir/a.bin")
    assert g["id"] == first["id"]
    assert dr.content(g["id"]) == b"second"
    assert len(dr.children(dr.lookup("dir")["id"])["a.bin"]) == 1
    st = m.status()
    assert st["mount"]["backend"] == "drive"
    assert st["mount"]["source"] == "drive:"


def test_flush_many_files(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=1h"])
    files = {"f%02d/%d.txt" % (i % 5, i): blob(i * 997, i) for i in range(40)}
    for name, data in files.items():
        m.write(name, data)
    res = m.flush(json_out=True)
    assert '"result":"ok"' in res.stdout
    for name, data in files.items():
        f = dr.lookup(name)
        assert f is not None, name
        assert f.get("md5Checksum", md5hex(b"")) == md5hex(data), name
    assert m.status()["pending"]["ops"] == 0


def test_docs_read_only_export(drive, mounts):
    emu, dr = drive
    doc = dr.make([{"name": "report", "mimeType": DOC, "content_b64": "",
                    "exportSize": 5000}])[0]
    m = mount_drive(mounts, emu, "drive:")
    names = os.listdir(m.path())
    assert "report.docx" in names
    st = os.stat(m.path("report.docx"))
    assert st.st_mode & 0o222 == 0, oct(st.st_mode)
    # cat gives every byte of the export, whatever size was shown
    with open(m.path("report.docx"), "rb") as f:
        got = f.read()
    st_ex, _, want = emu.request(
        "GET", "/drive/v3/files/%s/export?mimeType=%s" % (
            doc["id"], "application/vnd.openxmlformats-officedocument."
            "wordprocessingml.document"))
    assert st_ex == 200
    assert got == want and len(got) == 5000
    # once read, the size is known and shown
    wait_until(lambda: os.stat(m.path("report.docx")).st_size == 5000, 10,
               what="the export's size")
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_RDWR | os.O_APPEND):
        with pytest.raises(OSError) as ei:
            os.close(os.open(m.path("report.docx"), flags))
        assert ei.value.errno == errno.EACCES
    with pytest.raises(OSError) as ei:
        os.truncate(m.path("report.docx"), 0)
    assert ei.value.errno == errno.EACCES
    with pytest.raises(OSError) as ei:
        open(m.path("report.docx"), "wb")
    assert ei.value.errno == errno.EACCES
    assert m.read("report.docx") == want      # untouched
    # rename and unlink are still allowed; renamed, it stays a read-only export
    os.mkdir(m.path("sub"))
    os.rename(m.path("report.docx"), m.path("sub/moved.docx"))
    assert m.read("sub/moved.docx") == want
    m.flush()
    assert dr.get(doc["id"])["name"] == "moved"
    for path in ("sub/moved.docx",):
        assert os.stat(m.path(path)).st_mode & 0o222 == 0
        assert m.read(path) == want
        with pytest.raises(OSError) as ei:
            open(m.path(path), "r+b")
        assert ei.value.errno == errno.EACCES
    os.rename(m.path("sub/moved.docx"), m.path("moved.docx"))
    os.unlink(m.path("moved.docx"))
    m.flush()
    assert dr.get(doc["id"])["trashed"] is True
    # -o docs=hide: not shown at all
    dr.make([{"name": "hidden", "mimeType": DOC}])
    m2 = mount_drive(mounts, emu, "drive:", ["docs=hide"], name="hide")
    assert not [n for n in os.listdir(m2.path()) if n.startswith("hidden")]


def test_names_slash_and_duplicates(drive, mounts):
    emu, dr = drive
    a = dr.file("a/b.txt", b"slash")
    old = dr.file("dup.txt", b"old", createdTime="2020-01-01T00:00:00Z")
    new = dr.file("dup.txt", b"new", createdTime="2021-01-01T00:00:00Z")
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0"])
    names = sorted(os.listdir(m.path()))
    assert "a\uff0fb.txt" in names
    assert m.read("a\uff0fb.txt") == b"slash"
    dups = [n for n in names if n.startswith("dup")]
    assert len(dups) == 2 and "dup.txt" in dups, dups
    other = [n for n in dups if n != "dup.txt"][0]
    assert other.startswith("dup (") and other.endswith(").txt")
    assert m.read("dup.txt") == b"old"
    assert m.read(other) == b"new"
    # both writable: each write goes to its own file id
    m.write("dup.txt", b"old2", fsync=True)
    m.write(other, b"new2", fsync=True)
    assert dr.content(old["id"]) == b"old2"
    assert dr.content(new["id"]) == b"new2"
    # a new name with a slash goes to Drive with the '/'
    m.write("x\uff0fy", b"round trip", fsync=True)
    f = dr.lookup("x/y") or dr.children().get("x/y", [None])[0]
    assert f is not None and dr.content(f["id"]) == b"round trip"
    assert a["id"]


def test_names_and_symlink_targets_drive_stores(drive, mounts):
    """Drive keeps a symlink's target in an app property (124 bytes with
    its key): a target up to 105 bytes is stored, a longer one fails at
    once (ENAMETOOLONG) instead of failing every upload; names must be
    UTF-8 (EILSEQ), a line feed is fine on Drive."""
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0"])
    target = "t" * 105
    os.symlink(target, m.path("fits"))
    with pytest.raises(OSError) as ei:
        os.symlink(target + "t", m.path("too-long"))
    assert ei.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as ei:
        os.mkdir(os.path.join(os.fsencode(m.path()), b"bad\xff"))
    assert ei.value.errno == errno.EILSEQ
    m.write("line\nfeed", b"lf", fsync=True)
    m.flush()
    assert sorted(os.listdir(m.path())) == ["fits", "line\nfeed"]
    f = dr.get(dr.lookup("fits")["id"], fields="appProperties")
    assert f["appProperties"]["durafsSymlinkTarget"] == target
    assert dr.content(dr.lookup("line\nfeed")["id"]) == b"lf"
    assert os.readlink(m.path("fits")) == target


def test_shortcuts(drive, mounts):
    emu, dr = drive
    target = dr.file("target.txt", b"target bytes")
    dr.make([{"name": "link", "mimeType": SHORTCUT, "target": target["id"]},
             {"name": "dangling", "mimeType": SHORTCUT, "target": "nosuchid000"}])
    m = mount_drive(mounts, emu, "drive:")
    m.allow_log(r"WARN .*dangling")
    names = os.listdir(m.path())
    assert "link" in names
    assert "dangling" not in names
    assert m.read("link") == b"target bytes"


def test_unlink_trash_and_permanent(drive, mounts):
    emu, dr = drive
    f1 = dr.file("t1.txt", b"one")
    f2 = dr.file("t2.txt", b"two")
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0"])
    os.unlink(m.path("t1.txt"))
    m.flush()
    assert dr.get(f1["id"])["trashed"] is True
    res = run_durafs(["trash", "list", "drive:", "--json"],
                     env=dict(m.env, DURAFS_DRIVE_ENDPOINT=emu.url), check=True)
    assert "t1.txt" in res.stdout
    m.unmount()
    m2 = mount_drive(mounts, emu, "drive:", ["writeback_delay=0", "delete=permanent"],
                     name="perm")
    os.unlink(m2.path("t2.txt"))
    m2.flush()
    st, _, _ = emu.request("GET", "/drive/v3/files/%s" % f2["id"])
    assert st == 404


def test_rm_rf_one_trash_call_and_rename_one_patch(drive, mounts):
    emu, dr = drive
    d = dr.folder("big")
    dr.make([{"name": "f%02d" % i, "parent": d, "content_b64": "eA=="} for i in range(50)])
    sub = dr.folder("sub", d)
    dr.file("deep", b"d", parent=sub)
    dr.file("r.txt", b"r")
    dr.folder("dst")
    rdir = dr.folder("rdir")
    dr.file("in-rdir", b"x", parent=rdir)
    m = mount_drive(mounts, emu, "drive:")
    assert len(os.listdir(m.path("big"))) == 51
    before = emu.stats()
    subprocess.run(["rm", "-rf", m.path("big")], check=True)
    m.flush()
    after = emu.stats()
    writes = sum(requests_of(after, k) - requests_of(before, k)
                 for k in ("drive.files.update", "drive.files.delete", "drive.batch"))
    assert writes == 1, writes
    assert dr.get(d)["trashed"] is True
    # rename (and move) of a file and of a folder: one PATCH each
    before = emu.stats()
    os.rename(m.path("r.txt"), m.path("dst/r2.txt"))
    os.rename(m.path("rdir"), m.path("dst/rdir2"))
    m.flush()
    after = emu.stats()
    patches = requests_of(after, "drive.files.update") - requests_of(before, "drive.files.update")
    assert patches == 2, patches
    assert dr.lookup("dst/r2.txt") is not None
    assert dr.lookup("dst/rdir2")["id"] == rdir
    assert m.read("dst/rdir2/in-rdir") == b"x"


def test_storage_quota_enospc_stays_queued(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0", "retry_max=1s"])
    m.allow_log(r"(WARN|ERROR) .*storageQuotaExceeded|(WARN|ERROR) .*quota")
    emu.control("drive/storage_quota_exceeded", {"on": True})
    data = blob(10 * KiB, 3)
    fd = os.open(m.path("full.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        with pytest.raises(OSError) as ei:
            os.fsync(fd)
        assert ei.value.errno == errno.ENOSPC
    finally:
        os.close(fd)
    assert dr.lookup("full.bin") is None
    # kept in the journal, reported with Google's reason
    st = m.status()
    assert [f["path"] for f in st["failed"]] == ["full.bin"], st["failed"]
    assert "storageQuotaExceeded" in st["failed"][0]["reason"]
    assert m.read("full.bin") == data
    # not lost: once there is room, it is committed
    emu.control("drive/storage_quota_exceeded", {"on": False})
    res = m.cli("sync", "--flush", "--retry-failed", m.mnt, timeout=120)
    assert res.returncode == 0, res.stderr
    f = dr.lookup("full.bin")
    assert f is not None and f["md5Checksum"] == md5hex(data)


def test_rate_limited_still_committed(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0"])
    m.allow_log(r"WARN .*(rate|Rate)")
    emu.control("drive/rate", {"writes_per_second": 5})
    files = {"r%02d" % i: blob(100 + i, i) for i in range(30)}
    for n, data in files.items():
        m.write(n, data)
    m.flush(timeout=300)
    emu.control("drive/rate", {"writes_per_second": 0})
    refused = sum(v.get("403", 0) for k, v in emu.stats().get("requests", {}).items()
                  if k.startswith("drive."))
    assert refused > 0          # the limit was hit, and nothing was lost
    kids = dr.children()
    for n, data in files.items():
        assert kids[n][0]["md5Checksum"] == md5hex(data)


def test_id_root_and_shared_drive(drive, mounts):
    emu, dr = drive
    fid = dr.folder("projects")
    dr.file("inside.txt", b"in", parent=fid)
    m = mount_drive(mounts, emu, "drive:id=%s" % fid, ["writeback_delay=0"])
    assert os.listdir(m.path()) == ["inside.txt"]
    m.write("new.txt", b"new", fsync=True)
    assert dr.children(fid)["new.txt"][0]["md5Checksum"] == md5hex(b"new")
    sd = emu.control("drive/shared_drives", {"name": "Team"})
    sd_id = sd.get("id") or sd.get("drive", {}).get("id")
    m2 = mount_drive(mounts, emu, "drive:shared=Team", ["writeback_delay=0"], name="sd")
    m2.write("team.txt", b"team", fsync=True)
    got = dr.children(sd_id)
    assert got["team.txt"][0]["md5Checksum"] == md5hex(b"team")
    # a malformed source is refused before anything else, with a clear message
    bad = os.path.join(os.path.dirname(m.mnt), "bad-mnt")
    os.mkdir(bad)
    for src in ("drive:id=", "drive:shared=", "drive:a//b"):
        res = run_durafs(["mount", src, bad, "--cache-dir", bad + "-cache"], env=m.env)
        assert res.returncode != 0
        assert src in res.stderr or "drive:" in res.stderr, res.stderr
        assert not os.path.ismount(bad)


def test_flush_cache_dir_without_daemon(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=1h", "delete=permanent"])
    # in a folder: its removal waits writeback_delay like the write (a
    # removal at the root goes at once and could commit before the kill)
    gone = dr.file("gone.txt", b"bye", parent=dr.folder("old"))
    os.listdir(m.path("old"))
    m.write("later.txt", b"later")
    os.unlink(m.path("old/gone.txt"))
    m.kill9()
    assert dr.lookup("later.txt") is None
    res = run_durafs(["status", "--cache-dir", m.cache_dir, "--json"], env=m.env, check=True)
    st = json.loads(res.stdout)
    assert st["mount"]["source"] == "drive:" and st["pending"]["ops"] == 2
    res = run_durafs(["sync", "--flush", "--cache-dir", m.cache_dir], env=m.env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert dr.content(dr.lookup("later.txt")["id"]) == b"later"
    # the recorded delete=permanent was honoured without the daemon
    st, _, _ = emu.request("GET", "/drive/v3/files/%s" % gone["id"])
    assert st == 404


def test_mount_helper_and_status(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", mount=False)
    env = dict(m.env, DURAFS_BIN=conftest.DURAFS)
    opts = "rw,_netdev,noauto,nofail,cache_dir=%s,log_file=%s,writeback_delay=1h" % (
        m.cache_dir, m.log_path)
    res = subprocess.run(["/bin/sh", os.path.join(ROOT, "contrib", "mount.durafs"),
                          "drive:", m.mnt, "-n", "-o", opts], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    m.pid = m.status()["mount"]["pid"]
    m.write("helper.txt", b"from mount.durafs")
    res = m.cli("status", m.mnt, check=True)
    assert res.stdout.startswith("drive: on " + m.mnt), res.stdout
    m.flush()
    assert dr.content(dr.lookup("helper.txt")["id"]) == b"from mount.durafs"
    st = m.status()
    assert st["mount"]["backend"] == "drive" and st["mount"]["auth"] == "none"
    m.unmount()


def test_kill9_mid_upload_resumes(drive, mounts):
    emu, dr = drive
    size = 16 * MiB
    data = blob(size, 11)
    # 1 MiB chunks, each held 150 ms by the emulator: "mid-upload" lasts ~3 s
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0", "chunk_size=1M",
                                           "small_file_max=1M"])
    emu.faults([{"kind": "latency", "method": "PUT", "path": "/upload/*", "ms": 150}])
    m.write("big.bin", data)
    wait_until(lambda: counter(emu.stats(), "drive.upload_bytes_persisted") >= 4 * MiB, 60,
               what="a quarter of the upload")
    m.kill9()
    st = emu.stats()
    persisted_at_kill = counter(st, "drive.upload_bytes_persisted")
    assert persisted_at_kill < size, "the upload finished before the kill"
    assert counter(st, "drive.upload_sessions_started") == 1
    assert dr.lookup("big.bin") is None
    emu.clear_faults()
    m.mount()
    m.flush(timeout=120)
    f = dr.lookup("big.bin")
    assert f["md5Checksum"] == md5hex(data)
    st = emu.stats()
    # one session, resumed (the server was asked where it stood), and far
    # less than the whole file sent again
    assert counter(st, "drive.upload_sessions_started") == 1, st["counters"]
    assert counter(st, "drive.upload_sessions_resumed") >= 1, st["counters"]
    assert counter(st, "drive.upload_bytes_received") < \
        size + persisted_at_kill // 2 + 2 * MiB, st["counters"]
    assert m.status()["events"]["sessions_resumed"] >= 1
    assert len(dr.children()["big.bin"]) == 1


def _faults_soak(emu, dr, mounts, count, seed):
    rnd = random.Random(seed)
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0", "chunk_size=256K",
                                           "small_file_max=256K", "retry_max=1s",
                                           "upload_workers=16"])
    m.allow_log(r"WARN  sched: .*will retry")
    m.allow_log(r"WARN .*(rate|Rate) limit")
    files = {}
    for i in range(count):
        r = rnd.random()
        size = 0 if r < 0.05 else rnd.randint(1, 8 * KiB) if r < 0.8 else \
            rnd.randint(8 * KiB, 200 * KiB) if r < 0.97 else rnd.randint(300 * KiB, 900 * KiB)
        files["s%d/%d.bin" % (i % 7, i)] = blob(size, i)
    os.listdir(m.path())
    fired, total = write_under_faults(m, emu, files, timeout=900)
    assert fired >= 0.12 * total, (fired, total)
    for d in range(7):
        kids = dr.children(dr.lookup("s%d" % d)["id"])
        for name, data in files.items():
            if name.startswith("s%d/" % d):
                got = kids[name.split("/")[1]]
                assert len(got) == 1, name      # no duplicate from a retried create
                assert got[0].get("md5Checksum", md5hex(b"")) == md5hex(data), name
    st = m.status()
    assert st["failed"] == [] and st["pending"]["ops"] == 0


def test_faults_soak_200_files(drive, mounts):
    emu, dr = drive
    _faults_soak(emu, dr, mounts, 200, 200)


@pytest.mark.soak
def test_faults_soak_2000_files(drive, mounts):
    emu, dr = drive
    _faults_soak(emu, dr, mounts, 2000, 2000)


def test_list_20000_entries_pages_of_100(drive, mounts):
    emu, dr = drive
    big = dr.folder("big")
    emu.control("drive/bulk", {"parent": big, "count": 20000, "prefix": "f", "width": 5,
                               "content": "x"})
    emu.faults([{"kind": "page_cap", "max": 100}])
    m = mount_drive(mounts, emu, "drive:")
    before = requests_of(emu.stats(), "drive.files.list")
    listed = os.listdir(m.path("big"))
    assert len(listed) == 20000
    assert sorted(listed) == ["f%05d" % i for i in range(20000)]
    pages = requests_of(emu.stats(), "drive.files.list") - before
    assert pages >= 200, pages
    assert os.stat(m.path("big/f19999")).st_size == 1
    emu.clear_faults()


def test_failing_page_gives_eio(drive, mounts):
    emu, dr = drive
    d = dr.folder("d")
    emu.control("drive/bulk", {"parent": d, "count": 1000, "prefix": "f", "content": "x"})
    m = mount_drive(mounts, emu, "drive:")
    os.listdir(m.path())
    # pages of 100, and every page after the first fails, even retried
    emu.faults([{"kind": "page_cap", "max": 100},
                {"kind": "status", "status": 503, "path": "/drive/v3/files",
                 "query": "pageToken="}])
    with pytest.raises(OSError) as ei:
        os.listdir(m.path("d"))
    assert ei.value.errno == errno.EIO
    # never a short list: once the remote heals, the whole folder
    emu.faults([{"kind": "page_cap", "max": 100}])

    def try_list():
        try:
            return os.listdir(m.path("d"))
        except OSError as e:
            assert e.errno == errno.EIO
            return None
    listed = wait_until(try_list, 30, interval=0.2, what="listing after the fault")
    assert len(listed) == 1000
    m.allow_log(r"WARN  fs: listing \"d\" failed: .*503")
