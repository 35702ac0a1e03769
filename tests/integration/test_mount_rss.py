"""Bounded memory (soak, `make soak`): the daemon's peak RSS (VmHWM) stays
under 100 MiB while writing and committing a 1 GiB file, and while listing
a directory of 100,000 remote objects (`ls -l`-style: names and stats).
The figures are printed (-s) for the report."""
import os

import pytest

from mount_util import bucket, make_objects, mounts  # noqa: F401

MiB = 1024 * 1024
LIMIT = 100 * MiB


def vm_hwm(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM for %d" % pid)


@pytest.mark.soak
def test_rss_writing_1gib(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=0"])
    base = vm_hwm(m.pid)
    block = os.urandom(MiB)
    fd = os.open(m.path("one-gib.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for i in range(1024):
            os.write(fd, block)
        os.fsync(fd)
    finally:
        os.close(fd)
    peak = vm_hwm(m.pid)
    print("\nRSS writing+fsync of 1 GiB: VmHWM %.1f MiB (at mount %.1f MiB)"
          % (peak / MiB, base / MiB))
    assert int(gcs.meta("bkt", "one-gib.bin").json()["size"]) == 1024 * MiB
    assert peak < LIMIT


@pytest.mark.soak
def test_rss_listing_100k(bucket, mounts):
    emu, gcs = bucket
    make_objects(emu, "bkt", ["h/f%06d" % i for i in range(100000)], threads=16)
    m = mounts(emu, "gs://bkt")
    base = vm_hwm(m.pid)
    n = 0
    with os.scandir(m.path("h")) as it:
        for e in it:
            e.stat()
            n += 1
    peak = vm_hwm(m.pid)
    print("\nRSS listing 100,000 entries (+stat each): VmHWM %.1f MiB (at mount %.1f MiB)"
          % (peak / MiB, base / MiB))
    assert n == 100000
    assert peak < LIMIT
