"""The FUSE write path through a real mount (fs/fs.c op_write_buf): large
writes arrive in a pipe and are spliced into the cache file, small ones come
in memory; either way the bytes on the mount and on the remote are the ones
written: one write larger than the pipe (split by the kernel), writes at
unaligned offsets and far into a sparse file, writes racing truncates, and a
full cache disk that eviction makes room on. The daemon's debug line at
unmount (`writes: N spliced from a pipe, M from memory`) shows which path
the writes took.
"""
import errno
import os
import re
import subprocess
import threading

import pytest

from gcs_util import Gcs
from mount_util import blob, bucket, is_mounted, mounts  # noqa: F401

KiB = 1024
MiB = 1024 * 1024
OPTS = ["debug", "dir_cache_ttl=1s", "writeback_delay=100ms", "splice_writes"]


def remote(gcs, name):
    r = gcs.media("bkt", name)
    assert r.status == 200, (name, r)
    return r.body


def pwrite_all(fd, data, off):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, off)
        view = view[n:]
        off += n


def write_counts(m):
    """(spliced, from memory) of the daemon's unmount line (the mount is
    unmounted first)."""
    if m.pid:
        m.unmount(flush=False)
    found = re.findall(r"writes: (\d+) spliced from a pipe, (\d+) from memory", m.log())
    assert found, "no write counts in the daemon's log"
    return int(found[-1][0]), int(found[-1][1])


def test_large_writes_spliced_small_in_memory(mounts, bucket, emulator_noauth):
    """One 5 MiB write (more than a pipe holds: the kernel sends it in
    max_write pieces), an unaligned 300 KiB write over it, a 100-byte write
    and a write 64 MiB into a new sparse file: all read back and reach the
    remote exactly; the large ones were spliced, the small one came in
    memory."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTS)
    big = blob(5 * MiB, seed=1)
    over = blob(300 * KiB, seed=2)
    expect = bytearray(big)
    fd = os.open(m.path("big"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, big) == len(big)
        pwrite_all(fd, over, 12345)
        expect[12345:12345 + len(over)] = over
        pwrite_all(fd, b"s" * 100, 3 * MiB + 7)
        expect[3 * MiB + 7:3 * MiB + 107] = b"s" * 100
        os.fsync(fd)
    finally:
        os.close(fd)
    tail = blob(2 * MiB + 5, seed=3)
    fd = os.open(m.path("sparse"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        pwrite_all(fd, tail, 64 * MiB)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(m.path("big"), "rb") as f:
        assert f.read() == bytes(expect)
    assert remote(gcs, "big") == bytes(expect)
    with open(m.path("sparse"), "rb") as f:
        assert f.read(64 * MiB) == bytes(64 * MiB)
        assert f.read() == tail
    got = remote(gcs, "sparse")
    assert len(got) == 64 * MiB + len(tail)
    assert got[:64 * MiB] == bytes(64 * MiB) and got[64 * MiB:] == tail
    spliced, copied = write_counts(m)
    # 5 MiB + 300 KiB + the sparse 2 MiB: at least 8 large requests
    assert spliced >= 8, (spliced, copied)
    assert copied >= 1, (spliced, copied)


def test_writes_racing_truncates(mounts, bucket, emulator_noauth):
    """One thread writes 256 KiB-1 MiB pieces at offsets all over 8 MiB
    while another truncates the file to random sizes: no error, and after
    both stop every byte read is either the byte written at that offset or
    zero (a hole a truncate left), the same on the remote after fsync."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTS)
    period = bytes((i % 251) + 1 for i in range(251))
    unit = period * (9 * MiB // 251 + 2)

    def piece(off, n):
        s = off % 251
        return unit[s:s + n]

    path = m.path("race")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    errors = []
    stop = threading.Event()

    def writer():
        import random
        r = random.Random(5)
        try:
            for _ in range(120):
                n = r.choice((256 * KiB, 512 * KiB + 13, MiB))
                off = r.randrange(0, 8 * MiB - n)
                pwrite_all(fd, piece(off, n), off)
        except OSError as e:
            errors.append(e)
        finally:
            stop.set()

    def truncater():
        import random
        r = random.Random(6)
        try:
            while not stop.is_set():
                os.truncate(path, r.randrange(0, 8 * MiB))
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=writer), threading.Thread(target=truncater)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads)
        assert not errors, errors
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        data = f.read()
    assert len(data) == os.stat(path).st_size
    expect = piece(0, len(data))
    bad = [i for i in range(0, len(data), 4096)
           if data[i:i + 4096] != expect[i:i + 4096] and
           any(a != b and a != 0 for a, b in zip(data[i:i + 4096], expect[i:i + 4096]))]
    assert not bad, "bytes neither written nor zero in pages %s" % bad[:5]
    assert remote(gcs, "race") == data
    spliced, _ = write_counts(m)
    assert spliced >= 100


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_full_cache_disk_evicts_clean_data_for_a_write(mounts, bucket, emulator_noauth,
                                                       workdir):
    """The cache file system (a 24 MiB tmpfs) is nearly full of clean cached
    files; an 8 MiB file written in 1 MiB pieces finds no room, clean data is
    evicted and the write goes on (a spliced write resumes where the full
    disk stopped it): the file reads back and reaches the remote whole."""
    emu, gcs = bucket
    cache = os.path.join(workdir, "t-cache")
    os.makedirs(cache)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", cache],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    try:
        clean = {"c%d" % i: blob(4 * MiB, seed=20 + i) for i in range(5)}
        for name, data in clean.items():
            gcs.put("bkt", name, data)
        m = mounts(emu, "gs://bkt", name="t", cache_dir=cache,
                   options=OPTS + ["cache_size=1G", "min_free_space=1M"])
        m.allow_log(r"No space left|full")
        for name, data in clean.items():
            with open(m.path(name), "rb") as f:
                assert f.read() == data
        new = blob(8 * MiB, seed=30)
        m.write("new", new, fsync=True)
        with open(m.path("new"), "rb") as f:
            assert f.read() == new
        assert remote(gcs, "new") == new
        assert m.status()["cache"]["evicted_bytes"] > 0
        spliced, _ = write_counts(m)
        assert spliced >= 8
    finally:
        if is_mounted(os.path.join(workdir, "t-mnt")):
            subprocess.run(["fusermount3", "-u", "-z", os.path.join(workdir, "t-mnt")])
        subprocess.run(["umount", "-l", cache])


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_failed_write_leaves_no_bytes_behind(mounts, bucket, emulator_noauth, workdir):
    """A write that fails half-way (ENOSPC on a 12 MiB tmpfs holding nothing
    to evict: the pipe still holds part of the request) leaves no stray
    bytes for the next requests: after truncating the file, a new one written
    in large pieces reads back and reaches the remote exactly."""
    emu, gcs = bucket
    cache = os.path.join(workdir, "f-cache")
    os.makedirs(cache)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "tmpfs", cache],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    try:
        m = mounts(emu, "gs://bkt", name="f", cache_dir=cache,
                   options=OPTS + ["min_free_space=1M"])
        m.allow_log(r"No space left|full")
        with pytest.raises(OSError) as ei:
            m.write("huge", blob(32 * MiB, seed=6))
        assert ei.value.errno == errno.ENOSPC
        os.truncate(m.path("huge"), 0)  # its room back at once
        data = blob(3 * MiB + 77, seed=7)
        m.write("after", data, fsync=True)
        with open(m.path("after"), "rb") as f:
            assert f.read() == data
        assert remote(gcs, "after") == data
        spliced, _ = write_counts(m)
        assert spliced >= 4
    finally:
        if is_mounted(os.path.join(workdir, "f-mnt")):
            subprocess.run(["fusermount3", "-u", "-z", os.path.join(workdir, "f-mnt")])
        subprocess.run(["umount", "-l", cache])


def test_not_spliced_without_the_option(mounts, bucket, emulator_noauth):
    """Without -o splice_writes every write comes in memory (libfuse reads
    each request whole) and the bytes are the same."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=[o for o in OPTS if o != "splice_writes"])
    big = blob(3 * MiB + 17, seed=9)
    fd = os.open(m.path("plain"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, big) == len(big)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert remote(gcs, "plain") == big
    spliced, copied = write_counts(m)
    assert spliced == 0 and copied >= 3, (spliced, copied)
