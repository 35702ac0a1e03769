"""Namespace changes through a mount, before and after their upload --
rename and unlink (a file unlinked before its upload never reaches the
remote: the emulator's counters say no upload happened) -- and a
conflicting remote writer: the remote version is kept, ours is committed
as a conflict copy, fsync says EIO, flush and status name the file."""
import errno
import hashlib
import os

import pytest

from mount_util import (blob, bucket, mounts, remote_md5_hex, remote_objects,  # noqa: F401
                        requests_of)

KiB = 1024
UPLOAD_KINDS = ("gcs.objects.insert.media", "gcs.objects.insert.multipart",
                "gcs.objects.insert.resumable")


def uploads(emu):
    st = emu.stats()
    return sum(requests_of(st, k) for k in UPLOAD_KINDS)


def files_of(gcs):
    return {n: o for n, o in remote_objects(gcs).items() if not n.endswith("/")}


def test_unlink_before_upload_never_reaches_remote(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("gone.bin", blob(300 * KiB, 1))
    m.write("tmp.txt", b"scratch")
    os.unlink(m.path("gone.bin"))
    os.unlink(m.path("tmp.txt"))
    assert "gone.bin" not in os.listdir(m.mnt)
    m.flush()
    assert files_of(gcs) == {}
    assert uploads(emu) == 0, emu.stats()["requests"]
    assert m.status()["pending"]["ops"] == 0


def test_rename_before_upload(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    data = blob(50 * KiB, 2)
    m.write("draft.txt", data)
    os.rename(m.path("draft.txt"), m.path("final.txt"))
    os.mkdir(m.path("dir"))
    m.write("dir/x.bin", b"x")
    os.rename(m.path("dir/x.bin"), m.path("dir/y.bin"))
    assert sorted(os.listdir(m.mnt)) == ["dir", "final.txt"]
    m.flush()
    objs = files_of(gcs)
    assert set(objs) == {"final.txt", "dir/y.bin"}
    assert remote_md5_hex(objs["final.txt"]) == hashlib.md5(data).hexdigest()
    # each object (the two files and the dir/ marker) was uploaded once,
    # under its final name
    assert set(remote_objects(gcs)) == {"final.txt", "dir/", "dir/y.bin"}
    assert uploads(emu) == 3


def test_rename_and_unlink_after_upload(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    data = blob(70 * KiB, 3)
    m.write("a.txt", data, fsync=True)
    m.write("b.txt", b"bee", fsync=True)
    assert set(files_of(gcs)) == {"a.txt", "b.txt"}
    os.rename(m.path("a.txt"), m.path("c.txt"))
    os.unlink(m.path("b.txt"))
    # local view at once, remote after the flush
    assert sorted(os.listdir(m.mnt)) == ["c.txt"]
    m.flush()
    objs = files_of(gcs)
    assert set(objs) == {"c.txt"}
    assert remote_md5_hex(objs["c.txt"]) == hashlib.md5(data).hexdigest()
    assert m.read("c.txt") == data
    # rename over an existing committed file
    m.write("d.txt", b"dee", fsync=True)
    os.rename(m.path("c.txt"), m.path("d.txt"))
    m.flush()
    objs = files_of(gcs)
    assert set(objs) == {"d.txt"}
    assert remote_md5_hex(objs["d.txt"]) == hashlib.md5(data).hexdigest()


def test_conflicting_remote_writer(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h", "dir_cache_ttl=1h"])
    m.write("shared.txt", b"version 1 from the mount\n", fsync=True)
    # someone else replaces it remotely
    theirs = b"version 2 from another writer\n"
    gcs.put("bkt", "shared.txt", theirs)
    gen_theirs = gcs.meta("bkt", "shared.txt").json()["generation"]
    ours = b"version 3 from the mount, written without knowing of version 2\n"
    fd = os.open(m.path("shared.txt"), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, ours)
        with pytest.raises(OSError) as ei:
            os.fsync(fd)
        assert ei.value.errno == errno.EIO
    finally:
        os.close(fd)
    # the remote is untouched; ours is committed beside it
    r = gcs.media("bkt", "shared.txt")
    assert r.body == theirs
    assert gcs.meta("bkt", "shared.txt").json()["generation"] == gen_theirs
    copies = [n for n in files_of(gcs) if n.startswith("shared.txt.conflict-")]
    assert len(copies) == 1, files_of(gcs)
    assert gcs.media("bkt", copies[0]).body == ours
    # reported: status, state xattr, flush exit code with the file named
    st = m.status()
    assert [c["path"] for c in st["conflicts"]] == ["shared.txt"]
    assert st["conflicts"][0]["copy"] == copies[0]
    res = m.flush(check=False)
    assert res.returncode == 1
    assert "shared.txt: conflict" in res.stderr and copies[0] in res.stderr, res.stderr
    # the conflict copy shows in the mount, the path shows the remote version
    assert copies[0] in os.listdir(m.mnt)
    assert m.read("shared.txt") == theirs
    # acknowledged, the next flush succeeds
    res = m.cli("status", m.mnt, "--ack-conflicts")
    assert res.returncode == 0 and "1 conflict acknowledged" in res.stdout
    m.flush()
    assert m.status()["conflicts"] == []
    m.allow_log(r"WARN  sched: conflict: \"shared.txt\" changed remotely")
