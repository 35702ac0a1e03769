"""Listings that race with remote changes and stale listings (issue 10,
correctness): a listing fetch that straddles the commit of a directory
rename never stores the pre-rename versions over the forgotten listings;
a stale listing answers after a short bounded wait when the remote is slow
or down (revalidated in the background); a listing the Drive change poller
marked stale still answers when its refetch fails. GCS and Drive, with the
emulator's latency and status faults widening the windows."""
import os
import re
import sqlite3
import subprocess
import time

from drive_util import Drive, mount_drive
from mount_util import TIMEOUT_SCALE, bucket, make_objects, mounts, \
    wait_until  # noqa: F401  (fixtures)

# A listing of sub that fails while the user waits for it is a warning
# (the refetches of a stale listing log at info level).
FAILED_SUB = r"WARN  fs: listing \"sub\" failed"


def read(path):
    with open(path, "rb") as f:
        return f.read()


def fault_hits(emu, index):
    return emu.control("faults", method="GET")["rules"][index]["hits"]


def ls_child(path, timeout=20):
    """The sorted names ls -f prints for path, run in a child (a hang
    fails the test instead of stalling it); a failing ls fails the test."""
    res = subprocess.run(["ls", "-f", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         timeout=timeout * TIMEOUT_SCALE)
    assert res.returncode == 0, res.stderr.decode()
    return sorted(n for n in res.stdout.decode().split("\n") if n not in ("", ".", ".."))


def stored_listing(m, d):
    """{name: remote version text} of the stored listing of d in the
    (closed) journal; None when no listing of d is stored."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(m.cache_dir, "journal.db"),
                         uri=True)
    try:
        if not db.execute("SELECT 1 FROM dirs WHERE path = ?", (d,)).fetchone():
            return None
        return dict(db.execute("SELECT name, remote FROM entries WHERE dir = ?", (d,)))
    finally:
        db.close()


def test_gcs_listing_fetch_straddling_dir_rename_commit(bucket, mounts):
    """The first listing of the renamed directory starts while the rename
    is pending (so it lists the old place, whose objects still have their
    old generations, and the new place), and its second request is held by
    the emulator until after the rename committed and the mount forgot the
    listings below `new`: that result must not be stored as the listing of
    `new` (its versions are gone); the mount fetches it again."""
    emu, gcs = bucket
    names = ["f%d" % i for i in range(4)]
    for n in names:
        gcs.put("bkt", "old/" + n, b"content of " + n.encode())
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=60s", "writeback_delay=0"])
    assert os.path.isdir(m.path("old"))     # lists the root only
    emu.faults([
        # the rename's first move waits, so the rename is still pending
        # when `new` is listed
        {"kind": "latency", "ms": 1500, "method": "POST", "path": "*/rewriteTo/*",
         "count": 1},
        # the listing of the new place (delimiter: not the rename's own
        # walk) answers after the rename committed
        {"kind": "latency", "ms": 4000, "method": "GET", "query": "prefix=new%2F&delimiter",
         "count": 1},
    ])
    os.rename(m.path("old"), m.path("new"))
    assert sorted(os.listdir(m.path("new"))) == names
    assert fault_hits(emu, 0) == 1 and fault_hits(emu, 1) == 1
    m.flush()           # the rename committed
    for n in names:
        assert read(m.path("new/" + n)) == b"content of " + n.encode()
    m.unmount()
    items, _, _ = gcs.list_all("bkt", prefix="new/")
    gens = {it["name"][len("new/"):]: it["generation"] for it in items}
    stored = stored_listing(m, "new")
    if stored is not None:
        assert sorted(stored) == names
        for n in names:
            assert re.match(r"g%s\." % gens[n], stored[n]), \
                "stored %s for new/%s, remote generation %s" % (stored[n], n, gens[n])
    m.mount()
    assert sorted(os.listdir(m.path("new"))) == names
    for n in names:
        assert read(m.path("new/" + n)) == b"content of " + n.encode()


def test_gcs_stale_listing_answers_while_remote_slow(bucket, mounts):
    """Past the TTL, the refetch of a listing this mount stored is held by
    the remote for 8 s (it would show the new object, the emulator lists
    after the wait): `ls` answers from the stored listing after the short
    bounded wait instead, and the refetch lands in the background."""
    emu, gcs = bucket
    make_objects(emu, "bkt", ["d/a", "d/b"])
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=1s"])
    assert sorted(os.listdir(m.path("d"))) == ["a", "b"]
    time.sleep(1.2)
    gcs.put("bkt", "d/new", b"n")
    emu.faults([{"kind": "latency", "ms": 8000, "method": "GET",
                 "query": "prefix=d%2F&delimiter", "count": 1}])
    assert ls_child(m.path("d")) == ["a", "b"]
    assert fault_hits(emu, 0) == 1
    # answers at once while the refetch is held
    assert sorted(os.listdir(m.path("d"))) == ["a", "b"]
    got = wait_until(lambda: "new" in os.listdir(m.path("d")), 40, interval=0.3,
                     what="the background refetch")
    assert got
    assert sorted(os.listdir(m.path("d"))) == ["a", "b", "new"]


def test_drive_poller_invalidated_listing_survives_failed_refetch(emulator_noauth, mounts):
    """The change poller reports a change in `sub` while listings of `sub`
    fail (503): the listing it marked stale still answers (not EIO), and
    shows the change once the remote lists again."""
    emu = emulator_noauth
    dr = Drive(emu)
    team = dr.folder("team")
    sub = dr.folder("sub", parent=team)
    dr.file("a.txt", b"a", parent=sub)
    m = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", "poll_interval=1s",
                                                "dir_cache_ttl=1h"])
    assert os.listdir(m.path("sub")) == ["a.txt"]
    # only the listings of sub fail; the change feed still answers
    emu.faults([{"kind": "status", "status": 503, "method": "GET", "query": sub}])
    dr.file("b.txt", b"b", parent=sub)
    # the poller saw it and tried to refetch sub
    wait_until(lambda: fault_hits(emu, 0) >= 1, 30, interval=0.2, what="the poller's refetch")
    assert ls_child(m.path("sub")) == ["a.txt"]
    assert os.listdir(m.path("sub")) == ["a.txt"]
    assert read(m.path("sub/a.txt")) == b"a"
    emu.clear_faults()
    wait_until(lambda: "b.txt" in os.listdir(m.path("sub")), 40, interval=0.3,
               what="the change after the remote recovered")
    assert sorted(os.listdir(m.path("sub"))) == ["a.txt", "b.txt"]
    assert read(m.path("sub/b.txt")) == b"b"
    m.allow_log(FAILED_SUB)
