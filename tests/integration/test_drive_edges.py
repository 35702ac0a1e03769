"""Drive edge cases seen through real mounts of the emulator: an item
deleted for good (changes.list names only its id) vanishes within one poll
even from a folder the mount knows only from its stored listing (a
remount), and so does one moved out of such a folder; a duplicate shown with its id suffix and an item literally named
like a suffix are never confused, whether a path is resolved through a
listing or through the change feed; and `-o layout=colab` remounts while
the remote is unreachable, answering MyDrive/ and Shareddrives/NAME/ from
the stored listings."""
import hashlib
import json
import os
import signal
import subprocess

import pytest

from drive_util import FOLDER, Drive, mount_drive, requests_of
from mount_util import TIMEOUT_SCALE, journal_meta, mounts, wait_until  # noqa: F401  (fixture)

POLL = "poll_interval=1s"
LONG_TTL = "dir_cache_ttl=1h"     # only the poller can bring changes in


@pytest.fixture
def team(emulator_noauth):
    dr = Drive(emulator_noauth)
    return emulator_noauth, dr, dr.folder("team")


def listdir_or_none(path):
    try:
        return sorted(os.listdir(path))
    except OSError:
        return None


def delete_for_good(emu, fid):
    st, _, body = emu.request("DELETE", "/drive/v3/files/%s?supportsAllDrives=true" % fid)
    assert st == 204, body[:300]


def remounted_reader(mounts, emu, names):
    """A mount "b" of team that listed each folder of names, was unmounted
    and mounted again: it knows them only from its stored listings."""
    b = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", POLL, LONG_TTL],
                    name="b")
    for rel, want in names.items():
        assert sorted(os.listdir(b.path(rel))) == want, rel
    wait_until(lambda: requests_of(emu.stats(), "drive.changes.getStartPageToken") >= 1,
               10, what="the start token")
    b.unmount()
    b.mount()
    return b


def test_permanent_delete_in_folder_known_only_from_stored_listing(team, mounts):
    emu, dr, fid = team
    sub = dr.folder("sub", parent=fid)
    doomed = dr.file("doomed.txt", b"bye\n", parent=sub)["id"]
    dr.file("keep.txt", b"keep\n", parent=sub)
    gone_dir = dr.folder("gone-dir", parent=sub)
    dr.file("inner.txt", b"inner\n", parent=gone_dir)
    by_a = dr.file("by-a.txt", b"a\n", parent=sub)["id"]
    b = remounted_reader(mounts, emu, {"sub": ["by-a.txt", "doomed.txt", "gone-dir",
                                               "keep.txt"],
                                       "sub/gone-dir": ["inner.txt"]})
    lists_before = requests_of(emu.stats(), "drive.files.list")
    # the remount answers from the stored listings (nothing listed again)
    assert listdir_or_none(b.path("sub")) == ["by-a.txt", "doomed.txt", "gone-dir",
                                              "keep.txt"]
    assert requests_of(emu.stats(), "drive.files.list") == lists_before
    # a third client deletes a file and a folder for good
    delete_for_good(emu, doomed)
    delete_for_good(emu, gone_dir)
    wait_until(lambda: listdir_or_none(b.path("sub")) == ["by-a.txt", "keep.txt"], 15,
               what="the permanent deletes in the remounted mount")
    assert not os.path.exists(b.path("sub/doomed.txt"))
    assert not os.path.exists(b.path("sub/gone-dir/inner.txt"))
    assert b.read("sub/keep.txt") == b"keep\n"
    # another mount deleting for good (-o delete=permanent) shows the same way
    a = mount_drive(mounts, emu, "drive:team", ["writeback_delay=0", "delete=permanent"],
                    name="a")
    os.unlink(a.path("sub/by-a.txt"))
    a.flush()
    assert emu.request("GET", "/drive/v3/files/%s" % by_a)[0] == 404
    wait_until(lambda: listdir_or_none(b.path("sub")) == ["keep.txt"], 15,
               what="a's permanent delete in b")


def move(emu, fid, old_parent, new_parent):
    st, _, body = emu.request("PATCH", "/drive/v3/files/%s?addParents=%s&removeParents=%s&"
                              "supportsAllDrives=true" % (fid, new_parent, old_parent),
                              b"{}", {"Content-Type": "application/json"})
    assert st == 200, body[:300]


def test_moves_out_of_folder_known_only_from_stored_listing(team, mounts):
    """After a remount, items moved by another client out of a folder the
    mount knows only from its stored listing -- within the mount or out of
    it -- leave that listing within one poll."""
    emu, dr, fid = team
    sub = dr.folder("sub", parent=fid)
    mover = dr.file("mover.txt", b"m\n", parent=sub)["id"]
    leaver = dr.file("leaver.txt", b"l\n", parent=sub)["id"]
    movedir = dr.folder("movedir", parent=sub)
    dr.file("inner.txt", b"inner\n", parent=movedir)
    dr.file("stay.txt", b"s\n", parent=sub)
    b = remounted_reader(mounts, emu, {"": ["sub"],
                                       "sub": ["leaver.txt", "movedir", "mover.txt",
                                               "stay.txt"],
                                       "sub/movedir": ["inner.txt"]})
    move(emu, mover, sub, fid)
    move(emu, movedir, sub, fid)
    move(emu, leaver, sub, dr.root())       # out of the mount (team's parent)
    wait_until(lambda: listdir_or_none(b.path("sub")) == ["stay.txt"] and
               listdir_or_none(b.mnt) == ["movedir", "mover.txt", "sub"], 15,
               what="the moves in the remounted mount")
    assert b.read("mover.txt") == b"m\n"
    assert b.read("movedir/inner.txt") == b"inner\n"
    assert not os.path.exists(b.path("sub/movedir/inner.txt"))
    assert not os.path.exists(b.path("sub/leaver.txt"))


def suffixed(name, fid, digits):
    return "%s (%s)" % (name, hashlib.md5(fid.encode()).hexdigest()[:digits])


def test_duplicate_folder_changes_land_in_the_shown_folder(team, mounts):
    """Two folders "dup" (the younger shown as "dup (HEX8)" because a real
    folder is named "dup (HEX6)"): files added to each by a third client
    show in the folder the listing shows, in a remounted mount that knows
    them only from its stored listings."""
    emu, dr, fid = team
    old = dr.make([{"name": "dup", "parent": fid, "mimeType": FOLDER,
                    "createdTime": "2020-01-01T00:00:00Z"}])[0]["id"]
    young = dr.make([{"name": "dup", "parent": fid, "mimeType": FOLDER,
                      "createdTime": "2021-01-01T00:00:00Z"}])[0]["id"]
    lit_name = suffixed("dup", young, 6)
    lit = dr.make([{"name": lit_name, "parent": fid, "mimeType": FOLDER,
                    "createdTime": "2022-01-01T00:00:00Z"}])[0]["id"]
    young_name = suffixed("dup", young, 8)
    b = remounted_reader(mounts, emu, {"": sorted(["dup", lit_name, young_name]),
                                       "dup": [], lit_name: [], young_name: []})
    dr.file("in-young.txt", b"y\n", parent=young)
    dr.file("in-lit.txt", b"l\n", parent=lit)
    dr.file("in-old.txt", b"o\n", parent=old)
    wait_until(lambda: listdir_or_none(b.path(young_name)) == ["in-young.txt"] and
               listdir_or_none(b.path(lit_name)) == ["in-lit.txt"] and
               listdir_or_none(b.path("dup")) == ["in-old.txt"], 15,
               what="each new file in the folder the listing shows")
    assert b.read(young_name + "/in-young.txt") == b"y\n"
    assert b.read(lit_name + "/in-lit.txt") == b"l\n"
    # a write through the suffixed path lands in that folder on Drive
    b.write(young_name + "/back.txt", b"back\n", fsync=True)
    assert sorted(dr.children(young)) == ["back.txt", "in-young.txt"]
    assert sorted(dr.children(lit)) == ["in-lit.txt"]


def test_layout_colab_remount_offline(emulator_noauth, mounts):
    """layout=colab records My Drive's root id and the shared drives (ids,
    names); a remount with the emulator stopped goes on from the stored
    state: the stored listings answer for MyDrive/ and Shareddrives/NAME/,
    cached files read, and a write under Shareddrives/NAME/ reaches that
    drive through its stored id even while drives.list keeps failing."""
    emu = emulator_noauth
    dr = Drive(emu)
    sd = emu.control("drive/shared_drives", {"name": "Team Data"})
    sd_id = sd.get("id") or sd.get("drive", {}).get("id")
    dr.file("mine.csv", b"a,b\n", parent=dr.root())
    sub = dr.folder("runs", parent=sd_id)
    dr.file("r1.txt", b"run one\n", parent=sub)
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0", "layout=colab", POLL],
                    name="colab")
    listed = {"": ["MyDrive", "Shareddrives"], "MyDrive": ["mine.csv"],
              "Shareddrives": ["Team Data"], "Shareddrives/Team Data": ["runs"],
              "Shareddrives/Team Data/runs": ["r1.txt"]}
    for rel, want in listed.items():
        assert listdir_or_none(m.path(rel)) == want, rel
    assert m.read("Shareddrives/Team Data/runs/r1.txt") == b"run one\n"
    assert m.read("MyDrive/mine.csv") == b"a,b\n"
    m.unmount()
    state = json.loads(journal_meta(m, "mount.colab_drives"))
    assert state == {"my_root": dr.root(),
                     "shared_drives": [{"id": sd_id, "name": "Team Data"}]}
    m.allow_log(r"WARN  mount: remote unreachable: mounting from the stored state")
    m.allow_log(r"WARN .*(changes|poll|retry|retrying|503|shared drives)")
    emu.faults([{"kind": "status", "status": 503, "path": "/drive/v3/drives*"}])
    os.kill(emu.proc.pid, signal.SIGSTOP)
    try:
        res = m.mount(timeout=60)
        assert "warning: remote unreachable" in res.stderr, res.stderr
        assert m.status()["mount"]["started_offline"] is True
        for rel, want in listed.items():
            ls = subprocess.run(["ls", "-f", m.path(rel)], stdout=subprocess.PIPE,
                                timeout=30 * TIMEOUT_SCALE)
            assert ls.returncode == 0, rel
            got = sorted(n for n in ls.stdout.decode().split("\n") if n not in ("", ".", ".."))
            assert got == want, rel
        cat = subprocess.run(["cat", m.path("Shareddrives/Team Data/runs/r1.txt")],
                             stdout=subprocess.PIPE, timeout=30 * TIMEOUT_SCALE)
        assert cat.returncode == 0 and cat.stdout == b"run one\n"
        m.write("Shareddrives/Team Data/runs/r2.txt", b"run two\n")
        m.write("MyDrive/offline.txt", b"written offline\n")
    finally:
        os.kill(emu.proc.pid, signal.SIGCONT)
    # the remote answers again, but drives.list still fails: the stored
    # ids route the writes
    m.flush(timeout=120)
    assert dr.content(dr.children(sub)["r2.txt"][0]["id"]) == b"run two\n"
    assert dr.content(dr.children()["offline.txt"][0]["id"]) == b"written offline\n"
    emu.faults([])
    m.unmount()
