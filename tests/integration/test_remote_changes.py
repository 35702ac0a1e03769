"""Many workers, one folder: two real mounts of the same emulator folder see
each other's changes without remounting -- on Drive through the change
feed (`-o poll_interval`), on GCS through the listing TTL. Checked as a user
sees it: a file written and fsynced by one appears byte-identical in the
other within the poll interval; a file the other had read is re-read with
its new content; remote deletes and renames show; two writers of one file
produce a conflict copy and lose no version; a remount brings in what
changed while unmounted (the feed position is kept in the journal). And
`-o layout=colab`: MyDrive/ and Shareddrives/NAME/ at the root, writes
landing in the right drive, the fixed directories refusing changes."""
import errno
import os
import sqlite3
import time

import pytest

from drive_util import Drive, md5hex, mount_drive, requests_of
from mount_util import blob, mounts, wait_until  # noqa: F401  (fixture)

POLL = "poll_interval=1s"
# Listings and kernel entries trusted for a long time: only the poller can
# make the other mount's changes visible.
LONG_TTL = "dir_cache_ttl=1h"


@pytest.fixture
def team(emulator_noauth):
    """(emu, Drive, folder id) of a folder "team" in My Drive."""
    dr = Drive(emulator_noauth)
    fid = dr.folder("team")
    return emulator_noauth, dr, fid


def two_mounts(mounts, emu, extra=()):
    opts = ["writeback_delay=0", POLL, LONG_TTL] + list(extra)
    a = mount_drive(mounts, emu, "drive:team", opts, name="a")
    b = mount_drive(mounts, emu, "drive:team", opts, name="b")
    return a, b


def read_or_none(m, rel):
    try:
        return m.read(rel)
    except OSError:
        return None


def test_written_file_appears_in_other_mount(team, mounts):
    emu, dr, _ = team
    a, b = two_mounts(mounts, emu)
    os.mkdir(a.path("results"))
    a.flush()
    # b lists (and the kernel remembers that run1.bin does not exist)
    wait_until(lambda: os.path.isdir(b.path("results")), 10, what="results/ in b")
    assert os.listdir(b.path("results")) == []
    assert not os.path.exists(b.path("results/run1.bin"))
    data = blob(200 * 1024, 7)
    t0 = time.time()
    a.write("results/run1.bin", data, fsync=True)
    got = wait_until(lambda: read_or_none(b, "results/run1.bin"), 15,
                     what="run1.bin in the other mount")
    elapsed = time.time() - t0
    assert got == data
    assert os.listdir(b.path("results")) == ["run1.bin"]
    assert os.stat(b.path("results/run1.bin")).st_size == len(data)
    # within the poll interval (1 s) plus a listing and a read
    assert elapsed < 6, elapsed
    assert requests_of(emu.stats(), "drive.changes.list") >= 1


def test_remote_modify_delete_rename(team, mounts):
    emu, dr, fid = team
    dr.file("model.txt", b"version 1\n", parent=fid)
    dr.file("old-name.txt", b"renamed content\n", parent=fid)
    dr.file("doomed.txt", b"bye\n", parent=fid)
    a, b = two_mounts(mounts, emu)
    # b reads everything (content in its cache and the kernel's page cache)
    assert b.read("model.txt") == b"version 1\n"
    assert b.read("old-name.txt") == b"renamed content\n"
    assert b.read("doomed.txt") == b"bye\n"
    assert sorted(os.listdir(b.mnt)) == ["doomed.txt", "model.txt", "old-name.txt"]
    # a changes all three
    a.write("model.txt", b"version 2, longer than the first\n", fsync=True)
    os.rename(a.path("old-name.txt"), a.path("new-name.txt"))
    os.unlink(a.path("doomed.txt"))
    a.flush()
    wait_until(lambda: read_or_none(b, "model.txt") == b"version 2, longer than the first\n",
               15, what="new content of model.txt in b")
    wait_until(lambda: sorted(os.listdir(b.mnt)) == ["model.txt", "new-name.txt"], 15,
               what="rename and delete in b")
    assert b.read("new-name.txt") == b"renamed content\n"
    assert not os.path.exists(b.path("doomed.txt"))
    assert not os.path.exists(b.path("old-name.txt"))
    with pytest.raises(FileNotFoundError):
        b.read("old-name.txt")
    # a change made directly through the API (a third client) shows too
    f = dr.lookup("team/model.txt")
    st, _, body = emu.request("PATCH", "/upload/drive/v3/files/%s?uploadType=media&"
                              "supportsAllDrives=true" % f["id"], b"version 3\n",
                              {"Content-Type": "text/plain"})
    assert st == 200, body
    wait_until(lambda: read_or_none(b, "model.txt") == b"version 3\n", 15,
               what="third-party change in b")
    wait_until(lambda: read_or_none(a, "model.txt") == b"version 3\n", 15,
               what="third-party change in a")


def test_remote_directory_rename_and_new_tree(team, mounts):
    emu, dr, fid = team
    d = dr.folder("exp1", parent=fid)
    dr.file("log.txt", b"epoch 1\n", parent=d)
    a, b = two_mounts(mounts, emu)
    assert b.read("exp1/log.txt") == b"epoch 1\n"
    assert os.listdir(b.mnt) == ["exp1"]
    os.rename(a.path("exp1"), a.path("exp1-done"))
    os.makedirs(a.path("exp2/ckpt"))
    a.write("exp2/ckpt/model.pt", b"weights", fsync=True)
    a.flush()
    wait_until(lambda: sorted(os.listdir(b.mnt)) == ["exp1-done", "exp2"], 15,
               what="the renamed and the new directory in b")
    assert b.read("exp1-done/log.txt") == b"epoch 1\n"
    assert not os.path.exists(b.path("exp1/log.txt"))
    assert b.read("exp2/ckpt/model.pt") == b"weights"


def test_both_write_same_file_conflict_copy(team, mounts):
    emu, dr, fid = team
    dr.file("shared.csv", b"base\n", parent=fid)
    a, b = two_mounts(mounts, emu, ["writeback_delay=1h"])
    assert a.read("shared.csv") == b"base\n"
    assert b.read("shared.csv") == b"base\n"
    ours_a = b"written by a\n"
    ours_b = b"written by b, without knowing of a\n"
    a.write("shared.csv", ours_a, fsync=True)
    # b's copy is dirty: the poller never replaces it
    fd = os.open(b.path("shared.csv"), os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, ours_b)
        time.sleep(2.5)   # two polls see a's change meanwhile
        assert b.read("shared.csv") == ours_b
        with pytest.raises(OSError) as ei:
            os.fsync(fd)
        assert ei.value.errno == errno.EIO
    finally:
        os.close(fd)
    kids = dr.children(fid)
    copies = [n for n in kids if n.startswith("shared.csv.conflict-")]
    assert len(copies) == 1, sorted(kids)
    assert dr.content(kids["shared.csv"][0]["id"]) == ours_a
    assert dr.content(kids[copies[0]][0]["id"]) == ours_b
    # both versions are visible in both mounts
    wait_until(lambda: copies[0] in os.listdir(a.mnt), 15, what="conflict copy in a")
    assert a.read(copies[0]) == ours_b
    assert b.read("shared.csv") == ours_a
    b.allow_log(r"WARN  sched: conflict: \"shared.csv\" changed remotely")


def test_remount_sees_changes_made_while_unmounted(team, mounts):
    emu, dr, fid = team
    dr.file("stay.txt", b"v1\n", parent=fid)
    b = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", POLL, LONG_TTL],
                    name="b")
    assert b.read("stay.txt") == b"v1\n"
    assert os.listdir(b.mnt) == ["stay.txt"]
    wait_until(lambda: requests_of(emu.stats(), "drive.changes.getStartPageToken") >= 1,
               10, what="the start token")
    b.unmount()
    # while b is away, another client changes the folder
    a = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", POLL], name="a")
    a.write("stay.txt", b"v2 while b was unmounted\n", fsync=True)
    a.write("new.txt", b"new\n", fsync=True)
    a.unmount()
    b.mount()
    # the stored listing would answer with the old state; the stored feed
    # position brings the changes in at once
    wait_until(lambda: sorted(os.listdir(b.mnt)) == ["new.txt", "stay.txt"], 10,
               what="new.txt after remount")
    assert b.read("stay.txt") == b"v2 while b was unmounted\n"
    assert b.read("new.txt") == b"new\n"


def test_refused_feed_position_starts_over(team, mounts):
    """A stored position the service refuses (expired, another server): the
    stored listings are dropped, the feed starts over, nothing stale stays."""
    emu, dr, fid = team
    b = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", POLL, LONG_TTL],
                    name="b")
    assert os.listdir(b.mnt) == []
    wait_until(lambda: requests_of(emu.stats(), "drive.changes.getStartPageToken") >= 1,
               10, what="the start token")
    b.unmount()
    db = sqlite3.connect(os.path.join(b.cache_dir, "journal.db"))
    with db:
        db.execute("UPDATE meta SET value = 'not-a-token' WHERE key = 'changes_token'")
    db.close()
    dr.file("while-away.txt", b"w", parent=fid)
    b.mount()
    wait_until(lambda: "feed starts over" in b.log(), 15, what="the restart")
    wait_until(lambda: os.listdir(b.mnt) == ["while-away.txt"], 15, what="a fresh listing")
    # polling works again from a fresh position
    dr.file("after.txt", b"a", parent=fid)
    wait_until(lambda: sorted(os.listdir(b.mnt)) == ["after.txt", "while-away.txt"], 15,
               what="a change after the restart")


def test_poll_off_and_failing_feed(team, mounts):
    emu, dr, fid = team
    # poll_interval=0: no change feed request at all
    m = mount_drive(mounts, emu, "drive:team", ["poll_interval=0"], name="off")
    os.listdir(m.mnt)
    assert "remote_changes" not in m.status()
    m.unmount()
    assert requests_of(emu.stats(), "drive.changes.list") == 0
    assert requests_of(emu.stats(), "drive.changes.getStartPageToken") == 0
    # a failing feed is retried every interval; nothing is skipped
    b = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", POLL, LONG_TTL],
                    name="b")
    assert os.listdir(b.mnt) == []
    wait_until(lambda: requests_of(emu.stats(), "drive.changes.getStartPageToken") >= 1,
               10, what="the start token")
    emu.faults([{"kind": "status", "status": 503, "path": "/drive/v3/changes"}])
    dr.file("during-outage.txt", b"x", parent=fid)
    wait_until(lambda: "polling remote changes failed" in b.log(), 20, what="a failing poll")
    time.sleep(1.5)   # more failing polls
    assert os.listdir(b.mnt) == []
    emu.faults([])
    wait_until(lambda: os.listdir(b.mnt) == ["during-outage.txt"], 15,
               what="the change after the outage")
    wait_until(lambda: "polling remote changes works again" in b.log(), 10,
               what="recovery logged")
    # `durafs status` counts them
    rc = b.status()["remote_changes"]
    assert rc["interval_ms"] == 1000
    assert rc["failures"] >= 1 and rc["polls"] >= 1 and rc["changes"] >= 1
    assert rc["last_ok_ms"] > 0
    human = b.cli("status", b.mnt, timeout=60).stdout
    assert "remote       polled every 1s" in human, human


def test_gcs_two_mounts_via_ttl(bucket, mounts):
    emu, gcs = bucket
    opts = ["writeback_delay=0", "dir_cache_ttl=1s"]
    a = mounts(emu, "gs://bkt", options=opts, name="a")
    b = mounts(emu, "gs://bkt", options=opts, name="b")
    a.write("data.txt", b"generation one\n", fsync=True)
    wait_until(lambda: read_or_none(b, "data.txt") == b"generation one\n", 10,
               what="data.txt in b")
    assert b.read("data.txt") == b"generation one\n"   # cached now
    a.write("data.txt", b"generation two, longer\n", fsync=True)
    a.write("more.txt", b"more\n", fsync=True)
    wait_until(lambda: read_or_none(b, "data.txt") == b"generation two, longer\n", 10,
               what="new generation in b")
    wait_until(lambda: "more.txt" in os.listdir(b.mnt), 10, what="more.txt in b")
    os.unlink(a.path("more.txt"))
    a.flush()
    wait_until(lambda: "more.txt" not in os.listdir(b.mnt), 10, what="delete in b")
    assert md5hex(b.read("data.txt")) == md5hex(b"generation two, longer\n")


# bucket fixture from mount_util
from mount_util import bucket  # noqa: E402,F401


# --- layout=colab ----------------------------------------------------------------

def test_layout_colab(emulator_noauth, mounts):
    emu = emulator_noauth
    dr = Drive(emu)
    sd = emu.control("drive/shared_drives", {"name": "Team Data"})
    sd_id = sd.get("id") or sd.get("drive", {}).get("id")
    dr.file("existing.csv", b"a,b\n1,2\n")
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0", "layout=colab", POLL],
                    name="colab")
    assert sorted(os.listdir(m.mnt)) == ["MyDrive", "Shareddrives"]
    assert os.listdir(m.path("MyDrive")) == ["existing.csv"]
    assert os.listdir(m.path("Shareddrives")) == ["Team Data"]
    # the paths notebooks use on Colab
    assert m.read("MyDrive/existing.csv") == b"a,b\n1,2\n"
    m.write("MyDrive/results.csv", b"x\n", fsync=True)
    os.mkdir(m.path("Shareddrives/Team Data/runs"))
    m.write("Shareddrives/Team Data/runs/r1.txt", b"run one\n", fsync=True)
    got = dr.children()
    assert dr.content(got["results.csv"][0]["id"]) == b"x\n"
    runs = dr.children(sd_id)["runs"][0]
    r1 = dr.children(runs["id"])["r1.txt"][0]
    assert dr.content(r1["id"]) == b"run one\n"
    # the root and Shareddrives/ are fixed
    for bad in ("new-dir", "Shareddrives/new-drive"):
        with pytest.raises(OSError) as ei:
            os.mkdir(m.path(bad))
        assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        open(m.path("top.txt"), "w")
    assert ei.value.errno == errno.EPERM
    for victim in ("MyDrive", "Shareddrives/Team Data"):
        with pytest.raises(OSError) as ei:
            os.rmdir(m.path(victim))
        assert ei.value.errno in (errno.EPERM, errno.ENOTEMPTY)
        with pytest.raises(OSError) as ei:
            os.rename(m.path(victim), m.path("elsewhere"))
        assert ei.value.errno == errno.EPERM
    # between drives: EXDEV (mv copies instead); inside one drive: a rename
    with pytest.raises(OSError) as ei:
        os.rename(m.path("MyDrive/results.csv"), m.path("Shareddrives/Team Data/results.csv"))
    assert ei.value.errno == errno.EXDEV
    os.rename(m.path("MyDrive/results.csv"), m.path("MyDrive/final.csv"))
    m.flush()
    assert "final.csv" in dr.children() and "results.csv" not in dr.children()
    # remote changes show in each drive, and a new shared drive appears
    dr.file("from-elsewhere.txt", b"remote\n", parent=sd_id)
    emu.control("drive/shared_drives", {"name": "Second"})
    wait_until(lambda: "from-elsewhere.txt" in os.listdir(m.path("Shareddrives/Team Data")),
               15, what="a remote change in a shared drive")
    assert m.read("Shareddrives/Team Data/from-elsewhere.txt") == b"remote\n"
    wait_until(lambda: sorted(os.listdir(m.path("Shareddrives"))) == ["Second", "Team Data"],
               15, what="the new shared drive")
    m.unmount()
    # a journal replay without the daemon uses the same layout
    m.mount()
    m.write("MyDrive/after-remount.txt", b"again\n", fsync=True)
    assert dr.content(dr.children()["after-remount.txt"][0]["id"]) == b"again\n"


def test_layout_colab_refuses_other_sources(bucket, mounts):
    emu, _ = bucket
    m = mounts(emu, "gs://bkt", options=["layout=colab"], mount=False)
    m.allow_log(r"ERROR mount: -o layout=colab is for Google Drive")
    res = m.mount(check=False)
    assert res.returncode != 0
    assert "layout=colab" in res.stderr and "drive:" in res.stderr, res.stderr
    assert not os.path.ismount(m.mnt)
    # and with a Drive source other than the whole Drive
    d = mount_drive(mounts, emu, "drive:sub", ["layout=colab"], name="sub", mount=False)
    d.allow_log(r"ERROR mount: layout=colab needs the source")
    res = d.mount(check=False)
    assert res.returncode != 0
    assert 'layout=colab needs the source "drive:"' in res.stderr, res.stderr
    assert not os.path.ismount(d.mnt)
