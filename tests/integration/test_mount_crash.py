"""Crash safety of a real mount: kill -9 of the daemon mid-upload resumes
the resumable session (the emulator's counters prove it was not restarted),
kill -9 after close but before the upload loses nothing, `sync --flush
--cache-dir` commits a dead mount's journal with no daemon, and (soak) the
same kill loop many times."""
import hashlib
import os
import random
import subprocess
import time

import pytest

import conftest
from mount_util import (blob, bucket, counter, is_mounted, mounts, pid_alive,  # noqa: F401
                        remote_md5_hex, remote_objects, run_durafs, wait_until)

KiB = 1024
MiB = 1024 * 1024


def test_kill9_mid_upload_resumes(bucket, mounts):
    emu, gcs = bucket
    size = 24 * MiB
    data = blob(size, 11)
    # 1 MiB chunks, each held 150 ms by the emulator: "mid-upload" lasts ~4 s
    m = mounts(emu, "gs://bkt", options=["writeback_delay=0", "chunk_size=1M",
                                        "small_file_max=1M"])
    emu.faults([{"kind": "latency", "method": "PUT", "path": "/upload/*", "ms": 150}])
    m.write("big.bin", data)
    wait_until(lambda: counter(emu.stats(), "gcs.upload_bytes_persisted") >= 6 * MiB, 60,
               what="a quarter of the upload")
    m.kill9()
    st = emu.stats()
    persisted_at_kill = counter(st, "gcs.upload_bytes_persisted")
    assert persisted_at_kill < size, "the upload finished before the kill"
    assert counter(st, "gcs.upload_sessions_started") == 1
    assert "big.bin" not in remote_objects(gcs)
    emu.clear_faults()
    m.mount()
    m.flush(timeout=120)
    objs = remote_objects(gcs)
    assert remote_md5_hex(objs["big.bin"]) == hashlib.md5(data).hexdigest()
    st = emu.stats()
    # the same session went on: no second session, the server was asked
    # where it stood, and far less than the whole file was sent again
    assert counter(st, "gcs.upload_sessions_started") == 1, st["counters"]
    assert counter(st, "gcs.upload_sessions_resumed") >= 1, st["counters"]
    assert counter(st, "gcs.upload_bytes_received") < size + persisted_at_kill // 2 + 2 * MiB, \
        st["counters"]
    assert m.status()["events"]["sessions_resumed"] >= 1


def test_kill9_after_close_before_upload(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    files = {"k/%d.bin" % i: blob(i * 37 * KiB + i, 20 + i) for i in range(8)}
    files["k/big.bin"] = blob(10 * MiB + 5, 30)
    for name, data in files.items():
        m.write(name, data)
    m.kill9()
    assert not [n for n in remote_objects(gcs) if not n.endswith("/")]
    m.mount(extra_options=["writeback_delay=0"])
    # what the journal kept is visible at once, before any upload
    for name, data in files.items():
        assert m.read(name) == data
    m.flush(timeout=120)
    objs = remote_objects(gcs)
    for name, data in files.items():
        assert remote_md5_hex(objs[name]) == hashlib.md5(data).hexdigest(), name


def test_sync_flush_cache_dir_without_daemon(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt/pre", options=["writeback_delay=1h"])
    m.write("a.txt", b"a" * 1000)
    m.write("d/b.bin", blob(12 * MiB, 40))
    # while the daemon runs, the cache dir form refuses and says why
    res = run_durafs(["sync", "--flush", "--cache-dir", m.cache_dir], env=m.env)
    assert res.returncode == 1
    assert "in use by a running mount" in res.stderr and "MOUNTPOINT" in res.stderr
    m.kill9()
    assert not [n for n in remote_objects(gcs) if not n.endswith("/")]
    res = run_durafs(["sync", "--flush", "--cache-dir", m.cache_dir], env=m.env, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    objs = remote_objects(gcs)
    assert remote_md5_hex(objs["pre/a.txt"]) == hashlib.md5(b"a" * 1000).hexdigest()
    assert remote_md5_hex(objs["pre/d/b.bin"]) == \
        hashlib.md5(blob(12 * MiB, 40)).hexdigest()
    res = run_durafs(["status", "--cache-dir", m.cache_dir, "--json"], env=m.env)
    assert res.returncode == 0 and '"ops": 0' in res.stdout
    # a remount finds nothing left to do
    m.mount()
    assert m.status()["pending"]["ops"] == 0
    assert m.read("d/b.bin") == blob(12 * MiB, 40)
    # no journal at all
    res = run_durafs(["sync", "--flush", "--cache-dir", m.cache_dir + "-none"], env=m.env)
    assert res.returncode == 1 and "no durafs journal" in res.stderr


def test_dead_mount_is_reported_and_removed(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("orphan.txt", b"left in the journal")
    m.kill9(cleanup=False)
    assert is_mounted(m.mnt)
    for args in (["status", m.mnt], ["sync", "--flush", m.mnt]):
        res = m.cli(*args)
        assert res.returncode == 1
        assert "daemon of this mount is gone" in res.stderr, res.stderr
        assert "--cache-dir" in res.stderr
    res = m.mount(check=False)
    assert res.returncode == 2 and "durafs unmount" in res.stderr, res.stderr
    res = m.cli("unmount", m.mnt)
    assert res.returncode == 0, res.stderr
    assert "is gone" in res.stderr
    assert not is_mounted(m.mnt)
    m.mount()
    m.flush()
    assert "orphan.txt" in remote_objects(gcs)


def test_dead_mount_hint_names_its_cache_dir(bucket, mounts, workdir):
    """A mount made without --cache-dir (as a user does), its daemon killed:
    status, sync and unmount name the default cache dir holding its journal
    (from the source /proc/self/mountinfo records), so the user can run the
    command they suggest as is, also given the mountpoint as ./DIR/."""
    emu, gcs = bucket
    xdg = os.path.join(workdir, "xdg")
    m = mounts(emu, "gs://bkt", mount=False, env={"XDG_CACHE_HOME": xdg})
    res = run_durafs(["mount", "gs://bkt", m.mnt, "-o", "writeback_delay=1h"], env=m.env)
    assert res.returncode == 0, res.stderr
    (cache,) = [os.path.join(xdg, "durafs", d) for d in os.listdir(os.path.join(xdg, "durafs"))]
    m.log_path = os.path.join(cache, "durafs.log")  # the default, which status names
    st = m.status()
    m.pid = st["mount"]["pid"]
    assert st["mount"]["cache_dir"] == cache and st["mount"]["log"] == m.log_path
    assert "  log          %s\n" % m.log_path in m.cli("status", m.mnt).stdout
    m.write("orphan.txt", b"left in the journal")
    m.kill9(cleanup=False)
    rel = "./" + os.path.basename(m.mnt) + "/"
    res = subprocess.run([conftest.DURAFS, "status", rel], env=m.env, cwd=os.path.dirname(m.mnt),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 1 and not conftest.SUSPICIOUS.search(res.stderr), res.stderr
    assert "(its journal: `durafs status --cache-dir %s`)" % cache in res.stderr, res.stderr
    res = m.cli("sync", "--flush", m.mnt)
    assert res.returncode == 1
    assert "run `durafs sync --flush --cache-dir %s`" % cache in res.stderr, res.stderr
    res = m.cli("unmount", m.mnt)
    assert res.returncode == 0, res.stderr
    assert "`durafs sync --flush --cache-dir %s` uploads them" % cache in res.stderr, res.stderr
    res = run_durafs(["sync", "--flush", "--cache-dir", cache], env=m.env)
    assert res.returncode == 0, res.stderr
    assert gcs.media("bkt", "orphan.txt").body == b"left in the journal"


@pytest.mark.soak
def test_kill9_loop(bucket, mounts):
    """kill -9 at random moments of writing and uploading, many times; every
    closed file ends up committed, byte-identical."""
    emu, gcs = bucket
    rnd = random.Random(int(os.environ.get("DURAFS_SOAK_SEED", "7")))
    rounds = int(os.environ.get("DURAFS_SOAK_ROUNDS", "40"))
    m = mounts(emu, "gs://bkt", options=["writeback_delay=0", "chunk_size=256K",
                                        "small_file_max=512K"], mount=False)
    expected = {}
    for r in range(rounds):
        m.mount()
        emu.faults([{"kind": "latency", "method": "PUT", "path": "/upload/*",
                     "ms": rnd.randint(0, 40)}])
        for i in range(rnd.randint(1, 6)):
            name = "r%d/f%d.bin" % (rnd.randint(0, 4), rnd.randint(0, 9))
            data = blob(rnd.choice([0, 1, 4 * KiB, 300 * KiB, 2 * MiB, 5 * MiB + 7]),
                           rnd.randint(0, 1 << 30))
            m.write(name, data)
            expected[name] = data
        # the upload runs for a random while, then the daemon dies
        time.sleep(rnd.uniform(0, 0.8))
        m.kill9()
        emu.clear_faults()
    m.mount()
    m.flush(timeout=600)
    objs = remote_objects(gcs)
    for name, data in expected.items():
        assert remote_md5_hex(objs[name]) == hashlib.md5(data).hexdigest(), name
    assert pid_alive(m.pid) and is_mounted(m.mnt)
