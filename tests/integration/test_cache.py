"""The read cache against the emulator, mounted for real (issue 10): `durafs
cache warm|status|drop`, reads of cached files without the network, the
cache surviving a remount, the kernel page cache kept across opens, and the
distinct errno of a download quota error."""
import base64
import ctypes
import ctypes.util
import json
import mmap
import os
import signal
import subprocess
import time

import pytest

import conftest
from mount_util import (mounts, bucket, blob, counter, make_objects, run_durafs,  # noqa: F401
                        wait_until, TIMEOUT_SCALE)
from gcs_util import q

OPTS = ["dir_cache_ttl=600s", "writeback_delay=0"]


def put(emu, name, data):
    status, _, body = emu.request("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&name=%s"
                                  % q(name), body=data,
                                  headers={"Content-Type": "application/octet-stream"})
    assert status == 200, (status, body[:200])


def media_requests(emu):
    return counter(emu.stats(), "gcs.media_requests")


def cache_json(m, *args, check=True, timeout=300):
    res = run_durafs(["cache"] + list(args) + ["--json"], env=m.env, timeout=timeout)
    if check:
        assert res.returncode == 0, (res.returncode, res.stdout[-2000:], res.stderr[-2000:])
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    final = [x for x in lines if "result" in x]
    return res, lines, (final[-1] if final else None)


def tree_files(n, size_of, prefix="t"):
    return {"%s/d%02d/f%04d.bin" % (prefix, k % 10, k): blob(size_of(k), seed=k)
            for k in range(n)}


def read_all(m, files):
    bad = []
    for name, data in files.items():
        with open(m.path(name), "rb") as f:
            got = f.read()
        if got != data:
            bad.append(name)
    return bad


# ---- warm, status, drop ---------------------------------------------------------------

def test_cache_warm_status_drop(mounts, bucket):
    emu, _ = bucket
    files = tree_files(60, lambda k: 1000 + 997 * k)
    files["t/big.bin"] = blob(3 << 20, seed=99)
    files["other/x.bin"] = b"x" * 10
    make_objects(emu, "bkt", files)
    # a long writeback delay keeps a written file dirty while drop runs
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=600s", "writeback_delay=60s"])

    _, _, st = cache_json(m, "status", m.path("t"))
    tree = st["tree"]
    assert tree["files"] == 61 and tree["none"] == 61 and tree["full"] == 0
    assert tree["bytes"] == sum(len(v) for k, v in files.items() if k.startswith("t/"))
    assert tree["bytes_local"] == 0
    assert st["cache"]["limit"] > 0

    # --max-size skips (and counts) the big file
    res, lines, r = cache_json(m, "warm", m.path("t"), "--max-size", "1M")
    w = r["warm"]
    assert w["files"] == 61 and w["fetched_files"] == 60 and w["skipped_large"] == 1
    assert w["skipped_large_bytes"] == 3 << 20 and w["failed"] == 0
    assert any("progress" in x for x in lines)

    _, _, st = cache_json(m, "status", m.path("t"))
    assert st["tree"]["full"] == 60 and st["tree"]["none"] == 1, st

    # the rest: only the big file is fetched
    before = media_requests(emu)
    _, _, r = cache_json(m, "warm", m.path("t"))
    assert r["warm"]["fetched_files"] == 1 and r["warm"]["cached_files"] == 60
    assert media_requests(emu) - before == 1
    _, _, st = cache_json(m, "status", m.path("t"))
    assert st["tree"]["full"] == 61 and st["tree"]["bytes_local"] == st["tree"]["bytes"]
    assert st["cache"]["clean_bytes"] >= st["tree"]["bytes"]

    # reading the warmed tree needs no media request
    before = media_requests(emu)
    assert read_all(m, {k: v for k, v in files.items() if k.startswith("t/")}) == []
    assert media_requests(emu) == before

    # a dirty file is kept by drop
    with open(m.path("t/d00/f0000.bin"), "r+b") as f:
        f.write(b"LOCAL")
    _, _, r = cache_json(m, "drop", m.path("t"))
    d = r["drop"]
    assert d["kept_dirty"] == 1 and d["dropped_files"] == 60, d
    assert {"path": "t/d00/f0000.bin", "why": "dirty"} in d["kept"]
    _, _, st = cache_json(m, "status", m.path("t"))
    assert st["tree"]["local"] == 1 and st["tree"]["none"] == 60, st
    with open(m.path("t/d00/f0000.bin"), "rb") as f:
        assert f.read(5) == b"LOCAL"
    # dropped data is fetched again on read, and is right
    before = media_requests(emu)
    with open(m.path("t/d01/f0001.bin"), "rb") as f:
        assert f.read() == files["t/d01/f0001.bin"]
    assert media_requests(emu) > before

    # the human output
    res = run_durafs(["cache", "status", m.path("t")], env=m.env, check=True)
    assert "61 files" in res.stdout and "cache:" in res.stdout
    res = run_durafs(["cache", "status", m.mnt], env=m.env, check=True)
    assert "62 files" in res.stdout


def test_cache_cli_errors(mounts, bucket, workdir):
    emu, _ = bucket
    put(emu, "a.bin", b"abc")
    m = mounts(emu, "gs://bkt", options=OPTS)
    res = run_durafs(["cache", "warm"], env=m.env)
    assert res.returncode == 2 and "PATH" in res.stderr
    res = run_durafs(["cache", "frob", m.mnt], env=m.env)
    assert res.returncode == 2
    res = run_durafs(["cache", "status", m.mnt, "--max-size", "1M"], env=m.env)
    assert res.returncode == 2
    res = run_durafs(["cache", "warm", m.mnt, "--max-size", "lots"], env=m.env)
    assert res.returncode == 2 and "--max-size" in res.stderr
    res = run_durafs(["cache", "warm", workdir], env=m.env)
    assert res.returncode == 1 and "not inside a durafs mount" in res.stderr
    res = run_durafs(["cache", "warm", m.path("nope")], env=m.env)
    assert res.returncode == 1
    res = run_durafs(["cache", "--help"], env=m.env)
    assert res.returncode == 0 and "warm" in res.stdout
    # a single file, and the mount root
    res = run_durafs(["cache", "warm", m.path("a.bin")], env=m.env, check=True)
    assert "fetched 1 file (" in res.stdout, res.stdout
    res = run_durafs(["cache", "status", m.path("a.bin")], env=m.env, check=True)
    assert ": 1 file, " in res.stdout and " files" not in res.stdout.split("cache:")[0], \
        res.stdout
    res = run_durafs(["cache", "warm", m.mnt], env=m.env, check=True)
    assert "1 already cached" in res.stdout
    # status without PATH: the mount holding the current directory
    res = subprocess.run([conftest.DURAFS, "cache", "status", "--json"], cwd=m.mnt, env=m.env,
                         capture_output=True, text=True, timeout=60 * TIMEOUT_SCALE)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["tree"]["files"] == 1 and st["tree"]["full"] == 1
    # several paths of one mount add up
    os.mkdir(m.path("sub"))
    with open(m.path("sub/b.bin"), "wb") as f:
        f.write(b"b" * 100)
    _, _, st = cache_json(m, "status", m.path("a.bin"), m.path("sub"))
    # (b.bin is local until its upload commits, then cached: either way, all local)
    assert st["tree"]["files"] == 2 and st["tree"]["local"] + st["tree"]["full"] == 2
    assert st["tree"]["bytes"] == 103 and st["tree"]["bytes_local"] == 103


# ---- local reads never touch the network; the cache survives a remount ---------------

def test_cache_warm_then_offline_and_remount(mounts, bucket):
    emu, _ = bucket
    files = {"ds/c%02d/img%04d.bin" % (k % 20, k): blob(512 + (k * 37) % 3000, seed=k)
             for k in range(2000)}
    make_objects(emu, "bkt", files)
    m = mounts(emu, "gs://bkt", options=OPTS)
    _, _, r = cache_json(m, "warm", m.path("ds"))
    assert r["warm"]["fetched_files"] == 2000 and r["warm"]["failed"] == 0, r

    # every media request now fails: reads must not need one
    emu.faults([{"kind": "status", "status": 503, "path": "*", "query": "alt=media"}])
    before = media_requests(emu)
    assert read_all(m, files) == []
    assert media_requests(emu) == before
    emu.clear_faults()

    # and with the emulator gone altogether
    emu.stop()
    try:
        assert read_all(m, files) == []
    finally:
        emu.start()


def test_cache_survives_remount(mounts, bucket):
    emu, _ = bucket
    files = {"ds/c%02d/img%04d.bin" % (k % 20, k): blob(700 + (k * 53) % 5000, seed=k)
             for k in range(2000)}
    make_objects(emu, "bkt", files)
    m = mounts(emu, "gs://bkt", options=OPTS)
    _, _, r = cache_json(m, "warm", m.path("ds"))
    assert r["warm"]["fetched_files"] == 2000, r
    m.unmount()
    m.mount()
    before = media_requests(emu)
    assert read_all(m, files) == []
    assert media_requests(emu) == before, "a remount fetched cached data again"
    _, _, st = cache_json(m, "status", m.path("ds"))
    assert st["tree"]["full"] == 2000, st
    # a changed object is not served from the stale cache
    name = "ds/c00/img0000.bin"
    put(emu, name, b"new content")
    m.unmount()
    # (a remount answers from the stored listing, revalidated after the TTL)
    m.mount(extra_options=["dir_cache_ttl=1s"])

    def fresh():
        with open(m.path(name), "rb") as f:
            return f.read() == b"new content"
    wait_until(fresh, timeout=30, interval=0.3, what="the new generation to be read")
    _, _, r = cache_json(m, "warm", m.path("ds"))
    assert r["warm"]["cached_files"] == 2000 and r["warm"]["fetched_files"] == 0, r


def test_cache_warm_resumes_after_interrupt(mounts, bucket):
    emu, _ = bucket
    files = tree_files(120, lambda k: 2000 + k)
    make_objects(emu, "bkt", files)
    m = mounts(emu, "gs://bkt", options=OPTS + ["prefetch_workers=2"])
    # slow media: the warm is interrupted part way
    # (1 s per file and 2 workers: the 120 files would take a minute, so the
    # interruption below always lands part way, however loaded the machine)
    emu.faults([{"kind": "latency", "ms": 1000, "path": "*", "query": "alt=media"}])
    base = media_requests(emu)
    # SIGINT as a terminal's Ctrl-C delivers it: with its default action (a
    # test run started in the background inherits SIGINT ignored)
    p = subprocess.Popen([conftest.DURAFS, "cache", "warm", m.path("t"), "--json"], env=m.env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        # 12 downloads asked for: at least 10 are complete (2 workers)
        wait_until(lambda: media_requests(emu) - base >= 12, timeout=60, interval=0.1,
                   what="some files warmed")
        p.send_signal(signal.SIGINT)
        p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode != 0
    time.sleep(0.5 * TIMEOUT_SCALE)  # the daemon notices and its workers finish their file
    _, _, st = cache_json(m, "status", m.path("t"))
    done = st["tree"]["full"]
    assert 10 <= done < 120, st
    emu.clear_faults()
    # the daemon killed in the middle: the cache map is durable
    m.kill9()
    # the killed daemon's last requests may still be in the emulator's 1 s
    # latency; they are counted when answered: let them land before counting
    settled = [media_requests(emu), time.monotonic()]

    def quiet():
        n = media_requests(emu)
        if n != settled[0]:
            settled[:] = [n, time.monotonic()]
        return time.monotonic() - settled[1] >= 2.5
    wait_until(quiet, timeout=60, interval=0.2, what="the killed daemon's requests answered")
    m.mount()
    _, _, st = cache_json(m, "status", m.path("t"))
    assert st["tree"]["full"] >= done, st
    before = media_requests(emu)
    _, _, r = cache_json(m, "warm", m.path("t"))
    w = r["warm"]
    assert w["cached_files"] >= done and w["cached_files"] + w["fetched_files"] == 120, w
    assert media_requests(emu) - before == w["fetched_files"]
    assert read_all(m, files) == []


# ---- the kernel page cache is kept across opens ------------------------------------

def _resident_pages(path):
    """Pages of path in the kernel page cache (mincore over a shared map)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = os.path.getsize(path)
    npages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
    vec = (ctypes.c_ubyte * npages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
        try:
            rc = libc.mincore(addr, size, vec)
            assert rc == 0, os.strerror(ctypes.get_errno())
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(1 for v in vec if v & 1)


def test_keep_cache_across_opens(mounts, bucket):
    emu, _ = bucket
    data = blob(1 << 20, seed=5)
    put(emu, "k.bin", data)
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=1s", "writeback_delay=0"])
    with open(m.path("k.bin"), "rb") as f:
        assert f.read() == data
    # a new open keeps what the kernel cached (same generation)
    assert _resident_pages(m.path("k.bin")) == 256
    with open(m.path("k.bin"), "rb") as f:
        assert f.read() == data
    assert _resident_pages(m.path("k.bin")) == 256
    # a new generation: the kernel's pages are dropped and the new data read
    new = blob(1 << 20, seed=6)
    put(emu, "k.bin", new)

    def fresh():
        with open(m.path("k.bin"), "rb") as f:
            return f.read() == new
    wait_until(fresh, timeout=30, interval=0.3, what="the new generation to be read")
    with open(m.path("k.bin"), "rb") as f:
        assert f.read() == new


# ---- quota on read ------------------------------------------------------------------

def test_read_quota_gives_edquot(mounts, bucket):
    emu, _ = bucket
    put(emu, "q.bin", blob(300000, seed=3))
    m = mounts(emu, "gs://bkt", options=OPTS)
    m.allow_log(r"download quota is exhausted \(Google's reason: downloadQuotaExceeded\)")
    m.allow_log(r"cache warm: \"q.bin\"")
    emu.faults([{"kind": "status", "status": 403, "reason": "downloadQuotaExceeded",
                 "message": "The download quota for this file has been exceeded.",
                 "path": "*", "query": "alt=media"}])
    with pytest.raises(OSError) as ei:
        with open(m.path("q.bin"), "rb") as f:
            f.read()
    assert ei.value.errno == 122  # EDQUOT
    log = m.log()
    assert "q.bin" in log and "downloadQuotaExceeded" in log and "what to do" in log
    res, _, r = cache_json(m, "warm", m.path("q.bin"), check=False)
    assert res.returncode == 1 and r["warm"]["failed"] == 1 and r["warm"]["quota"] is True
    emu.clear_faults()
    with open(m.path("q.bin"), "rb") as f:
        assert f.read() == blob(300000, seed=3)


# ---- Drive: the same cache keyed by md5/version -------------------------------------

def test_drive_warm_remount_and_quota(mounts, emulator_noauth):
    from drive_util import Drive, mount_drive
    emu = emulator_noauth
    d = Drive(emu)
    top = d.folder("train")
    files = {}
    subs = [d.folder("s%d" % k, parent=top) for k in range(3)]
    specs = []
    for k in range(60):
        data = blob(1000 + 131 * k, seed=1000 + k)
        files["train/s%d/f%03d.bin" % (k % 3, k)] = data
        specs.append({"name": "f%03d.bin" % k, "parent": subs[k % 3],
                      "content_b64": base64.b64encode(data).decode()})
    d.make(specs)
    m = mount_drive(mounts, emu, "drive:", ["dir_cache_ttl=600s", "writeback_delay=0"])
    _, _, r = cache_json(m, "warm", m.path("train"))
    assert r["warm"]["fetched_files"] == 60 and r["warm"]["failed"] == 0, r
    m.unmount()
    m.mount()
    before = counter(emu.stats(), "drive.media_requests")
    assert read_all(m, files) == []
    assert counter(emu.stats(), "drive.media_requests") == before
    _, _, st = cache_json(m, "status", m.path("train"))
    assert st["tree"]["full"] == 60, st

    # Drive's download quota: EDQUOT and its own log line
    big = d.file("big.bin", blob(200000, seed=7))
    assert big["id"]
    m.allow_log(r"download quota is exhausted \(Google's reason: downloadQuotaExceeded\)")
    emu.faults([{"kind": "status", "status": 403, "reason": "downloadQuotaExceeded",
                 "message": "The download quota for this file has been exceeded.",
                 "path": "/drive/v3/files/*", "query": "alt=media"}])
    m.unmount()
    m.mount()
    with pytest.raises(OSError) as ei:
        with open(m.path("big.bin"), "rb") as f:
            f.read()
    assert ei.value.errno == 122  # EDQUOT
    assert "big.bin" in m.log() and "what to do" in m.log()
    emu.clear_faults()


def test_warm_larger_than_cache_warns(mounts, bucket):
    emu, _ = bucket
    files = tree_files(40, lambda k: 100 * 1024)
    make_objects(emu, "bkt", files)
    m = mounts(emu, "gs://bkt", options=OPTS + ["cache_size=1M"])
    res, _, r = cache_json(m, "warm", m.path("t"))
    assert r["warm"]["fetched_files"] == 40 and r["warm"]["cache_limit"] == 1 << 20
    res = run_durafs(["cache", "warm", m.path("t")], env=m.env)
    assert "larger than the cache" in res.stderr
    # eviction keeps the clean cache near its limit, and what is read stays right
    wait_until(lambda: cache_json(m, "status", m.mnt)[2]["cache"]["clean_bytes"] <= 2 << 20,
               timeout=30, interval=0.3, what="eviction down to the limit")
    assert read_all(m, files) == []


def test_warm_reports_failed_files(mounts, bucket):
    emu, gcs = bucket
    files = tree_files(12, lambda k: 3000 + k)
    make_objects(emu, "bkt", files)
    m = mounts(emu, "gs://bkt", options=OPTS)
    # the listing is loaded, then one object vanishes behind the mount's back
    _, _, st = cache_json(m, "status", m.path("t"))
    assert st["tree"]["files"] == 12
    gone = "t/d03/f0003.bin"
    status, _, body = emu.request("DELETE", "/storage/v1/b/bkt/o/%s" % q(gone))
    assert status == 204, (status, body[:200])
    m.allow_log(r"f0003\.bin")
    res, _, r = cache_json(m, "warm", m.path("t"), check=False)
    assert res.returncode == 1
    w = r["warm"]
    assert w["failed"] == 1 and w["fetched_files"] == 11, w
    assert w["errors"][0]["path"] == gone
    res = run_durafs(["cache", "warm", m.path("t")], env=m.env)
    assert res.returncode == 1 and gone in res.stderr and "FAILED" in res.stdout
