"""Metadata that survives a remount (issue 10): a remount answers `ls` of a
20,000-entry directory from the listing the previous mount stored, even
while the remote cannot be reached, and revalidates it in the background
once the remote is back (a change made remotely meanwhile shows up after
the TTL), also with the emulator frozen (SIGSTOP); a directory never listed
before still gives EIO while the remote is down; mounting never lists the
root, so a root of 50,000 items mounts at once. GCS and Drive.

Timings are printed (run with -s to see them) and bounded only generously:
the real figures go to the bench and the report."""
import errno
import os
import signal
import subprocess
import time

import pytest

from drive_util import Drive, mount_drive
from mount_util import TIMEOUT_SCALE, bucket, make_objects, mounts, requests_of, \
    wait_until  # noqa: F401  (fixtures)

N = 20000
TTL = "2s"
# Log lines the remote's outage causes (a never-listed directory's failed
# listing is a warning; stale listings that cannot be refreshed are info).
FAILED = r"WARN  fs: listing \"never\" failed"


def listdir_or_errno(path):
    try:
        return os.listdir(path)
    except OSError as e:
        return e.errno


def timed_listdir(path):
    t0 = time.monotonic()
    names = os.listdir(path)
    return names, time.monotonic() - t0


def check_remount_offline(emu, m, outage, heal, change_remote, names_big, what):
    """The common scenario once the first mount has listed `big`, `small`
    and the root and was unmounted: remount, make the remote unreachable
    (outage()), list from the stored listings, get EIO for `never`, change
    the remote (change_remote()), heal(), and wait for the change."""
    m.mount()
    outage()
    names, dt = timed_listdir(m.path("big"))
    print("\n%s: remount, remote down: ls of %d entries in %.3f s" % (what, len(names), dt))
    assert sorted(names) == names_big
    assert os.stat(m.path("big/" + names_big[7])).st_size == 1
    assert sorted(os.listdir(m.path("small"))) == ["a"]
    assert "big" in os.listdir(m.path())
    # never listed before: no stored listing to serve, so EIO
    assert listdir_or_errno(m.path("never")) == errno.EIO
    # the remote changes while we cannot see it
    change_remote()
    # past the TTL, a failed refresh still leaves the stored listing whole
    time.sleep(2.5)
    for _ in range(3):
        names = os.listdir(m.path("big"))
        assert sorted(names) == names_big
        time.sleep(0.5)
    heal()
    # revalidated in the background once the remote answers again

    def changed():
        got = listdir_or_errno(m.path("big"))
        assert not isinstance(got, int), "listing gave errno %d" % got
        return got if "zz-new" in got and names_big[0] not in got else None
    got = wait_until(changed, 60, interval=0.3, what="the remote change to show")
    assert sorted(got) == sorted(names_big[1:] + ["zz-new"])
    assert sorted(os.listdir(m.path("never"))) == ["x"]
    m.allow_log(FAILED)


# --- GCS -------------------------------------------------------------------

def test_gcs_remount_lists_stored_while_remote_down(bucket, mounts):
    emu, gcs = bucket
    names_big = ["f%05d" % i for i in range(N)]
    t0 = time.monotonic()
    make_objects(emu, "bkt", ["big/" + n for n in names_big] + ["small/a", "never/x"])
    print("\ncreated %d objects in %.1f s" % (N + 2, time.monotonic() - t0))
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=" + TTL])
    names, dt = timed_listdir(m.path("big"))
    print("gcs: first mount, cold ls of %d entries in %.3f s" % (len(names), dt))
    assert sorted(names) == names_big
    assert os.listdir(m.path("small")) == ["a"]
    m.unmount()

    def outage():
        # every read of the remote fails (listings, stats, media), even
        # retried; writes from the test's own client still go through
        emu.faults([{"kind": "status", "status": 503, "method": "GET"}])

    def change():
        st, _, body = emu.request("POST", "/upload/storage/v1/b/bkt/o?uploadType=media&"
                                  "name=big%2Fzz-new", body=b"n",
                                  headers={"Content-Type": "application/octet-stream"})
        assert st == 200, body[:300]
        st, _, body = emu.request("DELETE", "/storage/v1/b/bkt/o/big%2F" + names_big[0])
        assert st == 204, body[:300]

    check_remount_offline(emu, m, outage, emu.clear_faults, change, names_big, "gcs")


def test_gcs_remount_with_emulator_paused(bucket, mounts):
    """The emulator frozen (SIGSTOP: connections hang, nothing answers):
    a remount still lists what was stored at once; the refresh waits in
    the background and lands once the emulator runs again."""
    emu, gcs = bucket
    names = ["f%04d" % i for i in range(2000)]
    make_objects(emu, "bkt", ["big/" + n for n in names])
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=1s"])
    assert sorted(os.listdir(m.path("big"))) == names
    m.unmount()
    m.mount()
    time.sleep(1.2)
    os.kill(emu.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        # in a child, so that a hang fails the test instead of stalling it
        res = subprocess.run(["ls", "-f", m.path("big")], stdout=subprocess.PIPE,
                             timeout=30 * TIMEOUT_SCALE)
        dt = time.monotonic() - t0
        assert res.returncode == 0
        got = [n for n in res.stdout.decode().split("\n") if n not in ("", ".", "..")]
        assert sorted(got) == names
        print("\ngcs: remount, emulator paused: ls -f of %d entries in %.3f s" % (len(got), dt))
    finally:
        os.kill(emu.proc.pid, signal.SIGCONT)
    gcs.put("bkt", "big/zz-new", b"n")
    wait_until(lambda: "zz-new" in os.listdir(m.path("big")), 60, interval=0.3,
               what="the refresh after the pause")


def test_gcs_listing_of_this_mount_survives_outage(bucket, mounts):
    """A small listing fetched by this mount and stale after the TTL is
    refetched on access; when that fails it is still served whole (not
    EIO), and revalidated once the remote is back."""
    emu, gcs = bucket
    make_objects(emu, "bkt", ["d/a", "d/b", "e/c", "f/g"])
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=1s"])
    assert sorted(os.listdir(m.path("d"))) == ["a", "b"]
    assert os.listdir(m.path("f")) == ["g"]
    emu.faults([{"kind": "status", "status": 503, "method": "GET"}])
    time.sleep(1.5)
    t0 = time.monotonic()
    assert sorted(os.listdir(m.path("d"))) == ["a", "b"]
    t1 = time.monotonic()
    # once a listing failed, other stale listings answer without waiting
    assert os.listdir(m.path("f")) == ["g"]
    print("\ngcs: stale listing served after a failed refetch in %.2f s, "
          "the next one in %.2f s" % (t1 - t0, time.monotonic() - t1))
    # e was never listed: EIO
    assert listdir_or_errno(m.path("e")) == errno.EIO
    gcs.put("bkt", "d/new", b"n")
    for _ in range(3):
        assert sorted(os.listdir(m.path("d"))) == ["a", "b"]
        time.sleep(0.4)
    emu.clear_faults()
    wait_until(lambda: "new" in os.listdir(m.path("d")), 30, interval=0.3,
               what="the revalidated listing")
    assert sorted(os.listdir(m.path("d"))) == ["a", "b", "new"]
    m.allow_log(r"WARN  fs: listing \"e\" failed")


def test_gcs_kernel_readdir_cache_follows_changes(bucket, mounts):
    """The kernel keeps a directory's entries (FOPEN_CACHE_DIR) only while
    the listing it was filled from is unchanged: local creations, unlinks
    and renames, and remote changes found by a refresh, show in the next
    listing; a file's new size shows in the next `ls -l`."""
    emu, gcs = bucket
    make_objects(emu, "bkt", ["d/f%03d" % i for i in range(300)])
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=2s", "writeback_delay=0"])
    want = {"f%03d" % i for i in range(300)}
    for _ in range(3):      # the second and third come from the kernel's cache
        assert set(os.listdir(m.path("d"))) == want
    m.write("d/new", b"abc")
    want.add("new")
    assert set(os.listdir(m.path("d"))) == want
    os.unlink(m.path("d/f000"))
    want.discard("f000")
    assert set(os.listdir(m.path("d"))) == want
    os.rename(m.path("d/f001"), m.path("d/g001"))
    want.discard("f001")
    want.add("g001")
    assert set(os.listdir(m.path("d"))) == want
    m.write("d/new", b"abcdef")
    assert os.stat(m.path("d/new")).st_size == 6
    m.flush()
    # a remote creation and deletion, found once the TTL is over
    gcs.put("bkt", "d/remote", b"r")
    st, _, body = emu.request("DELETE", "/storage/v1/b/bkt/o/d%2Ff002")
    assert st == 204, body[:300]
    want.add("remote")
    want.discard("f002")
    wait_until(lambda: set(os.listdir(m.path("d"))) == want, 30, interval=0.3,
               what="the remote changes in the listing")
    assert os.stat(m.path("d/remote")).st_size == 1


def test_gcs_mount_never_lists_root(bucket, mounts):
    """Mounting (and `status`) sends no listing: a root of any size mounts
    at once; the first `ls` lists it whole."""
    emu, gcs = bucket
    n = 3000
    make_objects(emu, "bkt", ["r%05d" % i for i in range(n)])
    before = requests_of(emu.stats(), "gcs.objects.list")
    t0 = time.monotonic()
    m = mounts(emu, "gs://bkt")
    dt = time.monotonic() - t0
    m.status()
    os.stat(m.path())
    print("\ngcs: mount of a %d-entry root: %.3f s" % (n, dt))
    assert requests_of(emu.stats(), "gcs.objects.list") == before
    assert len(os.listdir(m.path())) == n
    assert requests_of(emu.stats(), "gcs.objects.list") > before


@pytest.mark.soak
def test_gcs_mount_50000_root_fast(bucket, mounts):
    """A root of 50,000 objects (slow to create over the GCS API: soak)."""
    emu, gcs = bucket
    n = 50000
    make_objects(emu, "bkt", ["r%05d" % i for i in range(n)], threads=16)
    t0 = time.monotonic()
    m = mounts(emu, "gs://bkt")
    dt = time.monotonic() - t0
    print("\ngcs: mount of a %d-entry root: %.3f s" % (n, dt))
    assert dt < 10 * TIMEOUT_SCALE
    names, dt = timed_listdir(m.path())
    print("gcs: cold ls of the root: %.3f s" % dt)
    assert len(names) == n
    m.unmount()
    m.mount()
    names, dt = timed_listdir(m.path())
    print("gcs: ls of the root after a remount: %.3f s" % dt)
    assert len(names) == n


# --- Drive -----------------------------------------------------------------

@pytest.fixture
def drive(emulator_noauth):
    return emulator_noauth, Drive(emulator_noauth)


def test_drive_remount_lists_stored_while_remote_down(drive, mounts):
    emu, dr = drive
    names_big = ["f%05d" % i for i in range(N)]
    big = dr.folder("big")
    emu.control("drive/bulk", {"parent": big, "count": N, "prefix": "f", "width": 5,
                               "content": "x"})
    small = dr.folder("small")
    dr.file("a", b"a", parent=small)
    never = dr.folder("never")
    dr.file("x", b"x", parent=never)
    m = mount_drive(mounts, emu, "drive:", ["dir_cache_ttl=" + TTL])
    names, dt = timed_listdir(m.path("big"))
    print("\ndrive: first mount, cold ls of %d entries in %.3f s" % (len(names), dt))
    assert sorted(names) == names_big
    assert os.listdir(m.path("small")) == ["a"]
    m.unmount()
    victim = dr.lookup("big/" + names_big[0])["id"]

    def outage():
        emu.faults([{"kind": "status", "status": 503, "method": "GET",
                     "path": "/drive/v3/*"}])

    def change():
        # the control API is never faulted: another client's changes
        dr.file("zz-new", b"n", parent=big)
        st, _, body = emu.request("DELETE", "/drive/v3/files/%s" % victim)
        assert st == 204, body[:300]

    # the changes poller (if any) may complain while the remote is down
    m.allow_log(r"WARN .*(changes|poll)")
    check_remount_offline(emu, m, outage, emu.clear_faults, change, names_big, "drive")


def test_drive_mount_50000_root_fast(drive, mounts):
    emu, dr = drive
    n = 50000
    emu.control("drive/bulk", {"parent": dr.root(), "count": n, "prefix": "r", "width": 5,
                               "content": "x"})
    before = requests_of(emu.stats(), "drive.files.list")
    t0 = time.monotonic()
    m = mount_drive(mounts, emu, "drive:")
    dt = time.monotonic() - t0
    print("\ndrive: mount of a %d-entry root: %.3f s" % (n, dt))
    assert requests_of(emu.stats(), "drive.files.list") == before
    assert dt < 10 * TIMEOUT_SCALE
    names, dt = timed_listdir(m.path())
    print("drive: cold ls of the root: %.3f s" % dt)
    assert sorted(names) == ["r%05d" % i for i in range(n)]
    m.unmount()
    t0 = time.monotonic()
    m.mount()
    dt = time.monotonic() - t0
    names, dt2 = timed_listdir(m.path())
    print("drive: remount %.3f s, then ls of the root from the stored listing %.3f s"
          % (dt, dt2))
    assert len(names) == n
