"""Metadata that survives a remount (issue 10): a remount answers `ls` of a
20,000-entry directory from the listing the previous mount stored, even
while the remote cannot be reached, and revalidates it in the background
once the remote is back (a change made remotely meanwhile shows up after
the TTL), also with the emulator frozen (SIGSTOP); a directory never listed
before still gives EIO while the remote is down; mounting never lists the
root, so a root of 50,000 items mounts at once. GCS and Drive.

A remount while the remote is unreachable (503 to everything, or the
emulator frozen) goes on from the stored state with a warning: stored
listings answer, cached files read byte-identical, writes are journaled and
committed once the remote is back. A first mount with the remote down, or
a refusal of the credentials, still refuses to mount.

Timings are printed (run with -s to see them) and bounded only generously:
the real figures go to the bench and the report."""
import errno
import os
import re
import signal
import subprocess
import time

import pytest

from drive_util import Drive, mount_drive
from gcs_util import Gcs
from mount_util import TIMEOUT_SCALE, blob, bucket, is_mounted, journal_meta, make_objects, \
    mounts, requests_of, wait_until  # noqa: F401  (fixtures)

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


# --- remount while the remote is unreachable ---------------------------------

OFFLINE_WARN = r"WARN  mount: remote unreachable: mounting from the stored state"
# what a mount with the remote down may log: the warning, failed refreshes
# and retried uploads, the change feed (Drive)
OFFLINE_ALLOWED = [OFFLINE_WARN, r"WARN .*(changes|poll)", r"WARN .*(retry|retrying|503)"]
# files read on the first mount (so cached), read again offline
CACHED = {"data/small.bin": 7000, "data/mid.bin": 300 * 1024, "data/big.bin": (3 << 20) + 17}


def gcs_outage_rules():
    """Every request durafs makes fails with 503, even retried; the test's
    own media uploads (uploadType=media: another client) still go through."""
    return [{"kind": "status", "status": 503, "path": "/storage/*"},
            {"kind": "status", "status": 503, "path": "/batch/*"},
            {"kind": "status", "status": 503, "path": "/upload/*",
             "query": "uploadType=multipart"},
            {"kind": "status", "status": 503, "path": "/upload/*",
             "query": "uploadType=resumable"},
            {"kind": "status", "status": 503, "path": "/upload/*", "query": "upload_id="}]


def drive_outage_rules():
    """Every Drive API call fails with 503 (the control API, used for the
    remote change, is never faulted)."""
    return [{"kind": "status", "status": 503, "path": "/drive/*"},
            {"kind": "status", "status": 503, "path": "/upload/*"},
            {"kind": "status", "status": 503, "path": "/batch/*"}]


def offline_scenario(m, names_big, outage, heal, change_remote, remote_content, what):
    """m was mounted, listed `big`, read CACHED and was unmounted. Cut the
    remote, remount (warning), list and read from the stored state, write
    a new file (journaled; a flush fails clearly), change the remote, heal,
    flush (committed), and see the remote change after the TTL."""
    for r in OFFLINE_ALLOWED:
        m.allow_log(r)
    outage()
    t0 = time.monotonic()
    res = m.mount()
    dt_mount = time.monotonic() - t0
    assert "warning: remote unreachable" in res.stderr, res.stderr
    assert "stored state" in res.stderr, res.stderr
    assert re.search(OFFLINE_WARN, m.log()), m.log()[-2000:]
    assert m.status()["mount"]["started_offline"] is True
    human = m.cli("status", m.mnt, timeout=60).stdout
    assert "unreachable at mount: serving the stored state" in human, human
    names, dt_ls = timed_listdir(m.path("big"))
    print("\n%s: remount with the remote down in %.2f s; ls of %d entries in %.3f s"
          % (what, dt_mount, len(names), dt_ls))
    assert sorted(names) == names_big
    for rel, size in CACHED.items():
        assert m.read(rel) == blob(size, seed=size), rel
    # a new file is journaled and kept while the remote is down
    new = blob(50000, seed=3)
    m.write("data/new.bin", new)
    assert m.read("data/new.bin") == new
    res = m.flush(timeout=3, check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    print("%s: flush while down -> %d: %s" % (what, res.returncode, out.strip()[-300:]))
    # the message says what waits
    assert "queued" in out and "waiting: data/new.bin" in out, out
    assert m.status()["pending"]["ops"] >= 1
    # status shows the upload retrying and why; so does the next flush
    retrying = wait_until(lambda: m.status()["retrying"], 30, interval=0.3,
                          what="the upload to show as retrying")
    assert retrying[0]["path"] == "data/new.bin" and "503" in retrying[0]["reason"], retrying
    res = m.flush(timeout=1, check=False)
    assert res.returncode != 0 and "waiting: data/new.bin (last error: " in res.stderr, \
        res.stderr
    assert "503" in res.stderr.split("last error:")[1], res.stderr
    change_remote()
    heal()
    t0 = time.monotonic()
    m.flush(timeout=120)
    print("%s: flush once the remote is back: %.2f s" % (what, time.monotonic() - t0))
    assert remote_content("data/new.bin") == new
    assert m.status()["pending"]["ops"] == 0

    def changed():
        got = listdir_or_errno(m.path("big"))
        return not isinstance(got, int) and "zz-new" in got
    wait_until(changed, 60, interval=0.3, what="the remote change to show")
    assert m.read("big/zz-new") == b"n"
    assert sorted(os.listdir(m.path("big"))) == sorted(names_big + ["zz-new"])


def test_gcs_remount_offline(bucket, mounts):
    emu, gcs = bucket
    names_big = ["f%05d" % i for i in range(N)]
    make_objects(emu, "bkt", ["big/" + n for n in names_big])
    for rel, size in CACHED.items():
        gcs.put("bkt", rel, blob(size, seed=size))
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=" + TTL, "writeback_delay=0"])
    assert sorted(os.listdir(m.path("big"))) == names_big
    for rel, size in CACHED.items():
        assert m.read(rel) == blob(size, seed=size)
    m.unmount()

    def remote_content(name):
        r = gcs.media("bkt", name)
        return r.body if r.status == 200 else None

    offline_scenario(m, names_big, lambda: emu.faults(gcs_outage_rules()), emu.clear_faults,
                     lambda: gcs.put("bkt", "big/zz-new", b"n"), remote_content, "gcs")


def test_drive_remount_offline(drive, mounts):
    emu, dr = drive
    names_big = ["f%05d" % i for i in range(N)]
    big = dr.folder("big")
    emu.control("drive/bulk", {"parent": big, "count": N, "prefix": "f", "width": 5,
                               "content": "x"})
    data = dr.folder("data")
    for rel, size in CACHED.items():
        dr.file(rel.split("/")[1], blob(size, seed=size), parent=data)
    m = mount_drive(mounts, emu, "drive:", ["dir_cache_ttl=" + TTL, "writeback_delay=0"])
    assert sorted(os.listdir(m.path("big"))) == names_big
    for rel, size in CACHED.items():
        assert m.read(rel) == blob(size, seed=size)
    m.unmount()
    # the resolved root is stored for a remount that cannot resolve it
    assert journal_meta(m, "mount.drive_root") == dr.root()

    def remote_content(rel):
        f = dr.lookup(rel)
        return dr.content(f["id"]) if f else None

    offline_scenario(m, names_big, lambda: emu.faults(drive_outage_rules()), emu.clear_faults,
                     lambda: dr.file("zz-new", b"n", parent=big), remote_content, "drive")


def test_gcs_remount_with_emulator_stopped(bucket, mounts):
    """The emulator frozen (SIGSTOP: connections are accepted, nothing
    answers): the remount gives the check a deadline, then goes on from
    the stored state; listings and cached reads answer; the emulator
    resumed, the new file is committed."""
    emu, gcs = bucket
    names = ["f%04d" % i for i in range(2000)]
    make_objects(emu, "bkt", ["big/" + n for n in names])
    gcs.put("bkt", "data/a.bin", blob(100000, seed=5))
    m = mounts(emu, "gs://bkt", options=["dir_cache_ttl=1s", "writeback_delay=0"])
    assert sorted(os.listdir(m.path("big"))) == names
    assert m.read("data/a.bin") == blob(100000, seed=5)
    m.unmount()
    for r in OFFLINE_ALLOWED:
        m.allow_log(r)
    os.kill(emu.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        res = m.mount(timeout=40)
        dt = time.monotonic() - t0
        print("\ngcs: remount with the emulator stopped: %.2f s" % dt)
        assert "warning: remote unreachable" in res.stderr, res.stderr
        assert "no answer within" in res.stderr, res.stderr
        assert dt < 20 * TIMEOUT_SCALE
        # in children, so that a hang fails the test instead of stalling it
        t0 = time.monotonic()
        ls = subprocess.run(["ls", "-f", m.path("big")], stdout=subprocess.PIPE,
                            timeout=30 * TIMEOUT_SCALE)
        print("gcs: ls -f of %d entries, emulator stopped: %.3f s"
              % (len(names), time.monotonic() - t0))
        assert ls.returncode == 0
        got = [n for n in ls.stdout.decode().split("\n") if n not in ("", ".", "..")]
        assert sorted(got) == names
        cat = subprocess.run(["cat", m.path("data/a.bin")], stdout=subprocess.PIPE,
                             timeout=30 * TIMEOUT_SCALE)
        assert cat.returncode == 0 and cat.stdout == blob(100000, seed=5)
        m.write("data/new.txt", b"written while stopped")
        assert m.status()["pending"]["ops"] >= 1
    finally:
        os.kill(emu.proc.pid, signal.SIGCONT)
    m.flush(timeout=120)
    assert gcs.media("bkt", "data/new.txt").body == b"written while stopped"


def test_gcs_first_mount_remote_down_fails(bucket, mounts):
    """Nothing stored for the source: a mount with the remote down still
    fails with the check's message, creates no state, and a second try
    fails the same way; once the remote is back it mounts."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    emu.faults(gcs_outage_rules())
    for _ in range(2):
        res = m.mount(check=False)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.splitlines()
        assert len(lines) == 1, res.stderr
        assert "503" in lines[0] and "first mount needs the remote" in lines[0], lines[0]
        assert not is_mounted(m.mnt)
        assert not os.path.exists(os.path.join(m.cache_dir, "journal.db"))
    m.allow_log(r"ERROR mount: .*first mount needs the remote")
    emu.clear_faults()
    m.mount()
    assert m.status()["mount"]["started_offline"] is False


def test_drive_first_mount_remote_down_fails(drive, mounts):
    emu, dr = drive
    m = mount_drive(mounts, emu, "drive:", mount=False)
    emu.faults(drive_outage_rules())
    res = m.mount(check=False)
    assert res.returncode == 1, res.stderr
    assert "first mount needs the remote" in res.stderr, res.stderr
    assert not is_mounted(m.mnt)
    m.allow_log(r"ERROR mount: .*first mount needs the remote")


def test_gcs_auth_refusal_refuses_remount(emulator, mounts, workdir):
    """Credentials refused is not an outage: even with a journal of the
    source, the remount is refused."""
    gcs = Gcs(emulator, token=emulator.control("oauth/issue",
                                               {"lifetime": 3600})["access_token"])
    gcs.mkbucket("bkt")
    gcs.put("bkt", "d/a", b"a")
    tok = os.path.join(workdir, "token")

    def token(value):
        with open(tok, "w") as f:
            f.write(value + "\n")
        os.chmod(tok, 0o600)
    token(emulator.control("oauth/issue", {"lifetime": 3600})["access_token"])
    m = mounts(emulator, "gs://bkt", options=["token_file=" + tok])
    assert os.listdir(m.path("d")) == ["a"]
    m.unmount()
    token("ya29.not-a-valid-token")
    res = m.mount(check=False)
    assert res.returncode == 1, res.stderr
    assert "credentials refused" in res.stderr, res.stderr
    assert "remote unreachable" not in res.stderr and "ya29" not in res.stderr
    assert not is_mounted(m.mnt)
    m.allow_log(r"ERROR mount: credentials refused")
