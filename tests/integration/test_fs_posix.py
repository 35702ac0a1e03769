"""What a user sees through a real durafs mount of an emulated bucket: POSIX
behaviour of the filesystem core (fs/fs*.c), checked from the mount and on
the remote. Every test mounts with `durafs mount` (mount_util) against a
fresh emulator; the daemon's log is checked for unexpected warnings and
errors at teardown."""
import ctypes
import errno
import hashlib
import os
import stat
import subprocess
import time

import pytest

from gcs_util import Gcs, pattern
from mount_util import is_mounted as mount_util_is_mounted
from mount_util import mounts  # noqa: F401  (fixture)

BUCKET = "bkt"
MiB = 1024 * 1024


@pytest.fixture
def gcs(emulator_noauth):
    g = Gcs(emulator_noauth)
    g.mkbucket(BUCKET)
    return g


DEFAULT_OPTS = ("dir_cache_ttl=1s", "writeback_delay=100ms")


@pytest.fixture
def mount_factory(mounts, emulator_noauth, gcs):
    """mount_factory(options, name) -> a mounted mount_util.Mount of the
    bucket (unmounted and its log checked at teardown by `mounts`)."""
    def factory(opts=DEFAULT_OPTS, name=None):
        kw = {"name": name} if name else {}
        return mounts(emulator_noauth, "gs://" + BUCKET, options=list(opts), **kw)
    return factory


@pytest.fixture
def mnt(mount_factory):
    return mount_factory()


def wait_until(fn, timeout=20.0, what="condition"):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def remote(gcs, name):
    """Bytes of object name, or None when absent."""
    r = gcs.media(BUCKET, name)
    if r.status == 404:
        return None
    assert r.status == 200, r
    return r.body


def remote_names(gcs, prefix=""):
    items, _, _ = gcs.list_all(BUCKET, prefix=prefix)
    return sorted(i["name"] for i in items)


def write_file(path, data, fsync=True, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    fd = os.open(path, flags, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view[:MiB])
            view = view[n:]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


# --- data ----------------------------------------------------------------------

def test_write_read_back_and_fsync_commits(mnt, gcs):
    small = b"hello, durafs\n"
    write_file(mnt.path("hello.txt"), small)
    assert read_file(mnt.path("hello.txt")) == small
    assert remote(gcs, "hello.txt") == small          # committed when fsync returned
    big = pattern(3 * MiB + 17, seed=1)
    write_file(mnt.path("big.bin"), big)
    assert os.stat(mnt.path("big.bin")).st_size == len(big)
    assert read_file(mnt.path("big.bin")) == big
    assert remote(gcs, "big.bin") == big
    empty = mnt.path("empty")
    write_file(empty, b"")
    assert remote(gcs, "empty") == b""
    # A read sees its own writes before any upload.
    with open(mnt.path("own"), "wb") as f:
        f.write(b"abc")
        f.flush()
        with open(mnt.path("own"), "rb") as g:
            assert g.read() == b"abc"


def test_close_without_fsync_reaches_remote(mnt, gcs):
    write_file(mnt.path("later.txt"), b"uploaded after close", fsync=False)
    wait_until(lambda: remote(gcs, "later.txt") == b"uploaded after close", what="upload")


def test_append(mnt, gcs):
    p = mnt.path("log.txt")
    write_file(p, b"one\n", fsync=False)
    for line in (b"two\n", b"three\n"):
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.lseek(fd, 0, os.SEEK_SET)           # O_APPEND ignores the offset
        os.write(fd, line)
        os.close(fd)
    assert read_file(p) == b"one\ntwo\nthree\n"
    fd = os.open(p, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert remote(gcs, "log.txt") == b"one\ntwo\nthree\n"


def test_append_to_remote_file(mnt, gcs):
    gcs.put(BUCKET, "remote.log", b"remote-start\n")
    time.sleep(1.2)                                     # past dir_cache_ttl
    with open(mnt.path("remote.log"), "ab") as f:
        f.write(b"local-tail\n")
        f.flush()
        os.fsync(f.fileno())
    assert remote(gcs, "remote.log") == b"remote-start\nlocal-tail\n"


def test_excl(mnt, gcs):
    p = mnt.path("x")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.close(fd)
    with pytest.raises(FileExistsError):
        os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    gcs.put(BUCKET, "remote-only", b"r")
    time.sleep(1.2)
    with pytest.raises(FileExistsError):
        os.open(mnt.path("remote-only"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)


def test_trunc_and_truncate(mnt, gcs):
    p = mnt.path("t")
    write_file(p, b"0123456789")
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"ab")
    os.close(fd)
    assert read_file(p) == b"ab"
    os.truncate(p, 5)
    assert read_file(p) == b"ab\0\0\0"
    with open(p, "r+b") as f:
        f.truncate(1)
        f.flush()
        os.fsync(f.fileno())
    assert read_file(p) == b"a"
    assert remote(gcs, "t") == b"a"
    # Truncating a remote file by path (no open file) fetches what it keeps.
    gcs.put(BUCKET, "r", pattern(300000, seed=2))
    time.sleep(1.2)
    os.truncate(mnt.path("r"), 1000)
    assert read_file(mnt.path("r")) == pattern(300000, seed=2)[:1000]
    fd = os.open(mnt.path("r"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert remote(gcs, "r") == pattern(300000, seed=2)[:1000]


def test_remote_read_is_identical_and_cached(mnt, gcs, emulator_noauth):
    data = pattern(5 * MiB + 123, seed=3)
    gcs.put(BUCKET, "data/blob", data)
    gcs.put(BUCKET, "data/small", b"tiny")
    time.sleep(1.2)
    assert sorted(os.listdir(mnt.path("data"))) == ["blob", "small"]
    assert os.stat(mnt.path("data/blob")).st_size == len(data)
    assert read_file(mnt.path("data/blob")) == data
    assert read_file(mnt.path("data/small")) == b"tiny"
    with open(mnt.path("data/blob"), "rb") as f:
        f.seek(4 * MiB)
        assert f.read(1000) == data[4 * MiB:4 * MiB + 1000]

    def media_gets():
        reqs = emulator_noauth.stats()["requests"]
        return sum(sum(v.values()) for k, v in reqs.items() if "media" in k and "get" in k)
    before = media_gets()
    assert read_file(mnt.path("data/blob")) == data    # cached: no new download
    assert media_gets() == before


# --- names ----------------------------------------------------------------------

def renameat2(src, dst, flags):
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                   ctypes.c_uint]
    AT_FDCWD = -100
    if fn(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def test_rename(mnt, gcs):
    write_file(mnt.path("a"), b"A")
    write_file(mnt.path("b"), b"B")
    with pytest.raises(OSError) as ei:
        renameat2(mnt.path("a"), mnt.path("b"), RENAME_NOREPLACE)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(OSError) as ei:
        renameat2(mnt.path("a"), mnt.path("b"), RENAME_EXCHANGE)
    assert ei.value.errno == errno.EINVAL
    renameat2(mnt.path("a"), mnt.path("c"), RENAME_NOREPLACE)
    assert not os.path.exists(mnt.path("a"))
    assert read_file(mnt.path("c")) == b"A"
    os.rename(mnt.path("c"), mnt.path("b"))            # replaces b
    assert read_file(mnt.path("b")) == b"A"
    assert sorted(os.listdir(mnt.mnt)) == ["b"]
    fd = os.open(mnt.path("b"), os.O_RDONLY)
    os.fsync(fd)                                        # waits for b's rename too
    os.close(fd)
    wait_until(lambda: remote_names(gcs) == ["b"], what="remote rename")
    assert remote(gcs, "b") == b"A"


def test_rename_directory_with_remote_children(mnt, gcs):
    for i in range(5):
        gcs.put(BUCKET, "old/f%d" % i, b"content %d" % i)
    gcs.put(BUCKET, "old/sub/deep", b"deep")
    time.sleep(1.2)
    assert sorted(os.listdir(mnt.path("old"))) == ["f0", "f1", "f2", "f3", "f4", "sub"]
    os.rename(mnt.path("old"), mnt.path("new"))
    # Visible at once, before the remote has done it.
    assert not os.path.exists(mnt.path("old"))
    assert sorted(os.listdir(mnt.path("new"))) == ["f0", "f1", "f2", "f3", "f4", "sub"]
    assert read_file(mnt.path("new/f3")) == b"content 3"
    assert read_file(mnt.path("new/sub/deep")) == b"deep"
    want = sorted(["new/f%d" % i for i in range(5)] + ["new/sub/deep"])
    wait_until(lambda: remote_names(gcs) == want, what="remote directory rename")
    # once the mount has recorded the rename as committed (the remote can
    # reach its final state a moment before that), every child is there
    mnt.flush()
    assert sorted(os.listdir(mnt.path("new"))) == ["f0", "f1", "f2", "f3", "f4", "sub"]
    assert read_file(mnt.path("new/f0")) == b"content 0"


def test_read_open_file_while_directory_rename_commits(mnt, gcs, emulator_noauth):
    """A file opened under a renamed directory before the remote rename,
    first read after the copies were made and re-based but before the
    rename is recorded as committed (the scheduler's closing stat of the
    destination is held back): the read follows the copy, no EIO."""
    for i in range(3):
        gcs.put(BUCKET, "old/f%d" % i, b"content %d" % i)
    time.sleep(1.2)
    assert sorted(os.listdir(mnt.path("old"))) == ["f0", "f1", "f2"]
    old_gen = str(gcs.meta(BUCKET, "old/f1").json()["generation"]).encode()
    # the stat of "new/" (a one-item listing) that ends the rename waits
    emulator_noauth.faults([{"kind": "latency", "ms": 5000, "method": "GET",
                             "query": "prefix=new%2F&maxResults=1&"}])
    os.rename(mnt.path("old"), mnt.path("new"))
    fd = os.open(mnt.path("new/f1"), os.O_RDONLY)
    try:
        want = sorted(["new/f0", "new/f1", "new/f2"])
        wait_until(lambda: remote_names(gcs) == want, what="remote directory rename")
        new_gen = str(gcs.meta(BUCKET, "new/f1").json()["generation"]).encode()
        wait_until(lambda: os.getxattr(mnt.path("new/f1"), "user.durafs.generation") == new_gen,
                   what="the copy recorded as the file's remote version")
        assert new_gen != old_gen
        assert os.read(fd, 100) == b"content 1"
    finally:
        os.close(fd)
        emulator_noauth.clear_faults()
    mnt.flush()
    assert read_file(mnt.path("new/f2")) == b"content 2"


def test_mkdir_rmdir(mnt, gcs):
    os.mkdir(mnt.path("d"))
    with pytest.raises(FileExistsError):
        os.mkdir(mnt.path("d"))
    write_file(mnt.path("d/f"), b"x")
    with pytest.raises(OSError) as ei:
        os.rmdir(mnt.path("d"))
    assert ei.value.errno == errno.ENOTEMPTY
    with pytest.raises(NotADirectoryError):
        os.rmdir(mnt.path("d/f"))
    with pytest.raises(IsADirectoryError):
        os.unlink(mnt.path("d"))
    os.unlink(mnt.path("d/f"))
    os.rmdir(mnt.path("d"))
    assert os.listdir(mnt.mnt) == []
    # A remote directory with children is not empty either.
    gcs.put(BUCKET, "rd/child", b"c")
    time.sleep(1.2)
    with pytest.raises(OSError) as ei:
        os.rmdir(mnt.path("rd"))
    assert ei.value.errno == errno.ENOTEMPTY
    os.mkdir(mnt.path("nd"))
    wait_until(lambda: "nd/" in remote_names(gcs), what="remote mkdir")


def test_unlink(mnt, gcs, emulator_noauth):
    gcs.put(BUCKET, "victim", b"v")
    time.sleep(1.2)
    os.unlink(mnt.path("victim"))
    assert not os.path.exists(mnt.path("victim"))
    with pytest.raises(FileNotFoundError):
        os.unlink(mnt.path("victim"))
    wait_until(lambda: remote(gcs, "victim") is None, what="remote delete")


def test_created_then_unlinked_never_uploads(mount_factory, gcs, emulator_noauth):
    m = mount_factory(("dir_cache_ttl=1s", "writeback_delay=30s"))
    write_file(m.path("ephemeral"), b"never uploaded", fsync=False)
    os.unlink(m.path("ephemeral"))
    write_file(m.path("kept"), b"kept")                 # fsync: the queue ran
    reqs = emulator_noauth.stats()["requests"]
    inserts = sum(sum(v.values()) for k, v in reqs.items() if "insert" in k and "bucket" not in k)
    assert inserts == 1
    assert remote_names(gcs) == ["kept"]


def test_symlink(mnt, gcs):
    os.symlink("some/target", mnt.path("ln"))
    assert os.readlink(mnt.path("ln")) == "some/target"
    st = os.lstat(mnt.path("ln"))
    assert stat.S_ISLNK(st.st_mode)
    assert st.st_size == len("some/target")
    write_file(mnt.path("real"), b"R")
    os.symlink("real", mnt.path("ln2"))
    assert read_file(mnt.path("ln2")) == b"R"
    wait_until(lambda: "ln" in remote_names(gcs), what="remote symlink")
    meta = gcs.meta(BUCKET, "ln").json()
    assert meta["metadata"]["durafs-symlink-target"] == "some/target"


def test_unsupported_node_types(mnt):
    write_file(mnt.path("f"), b"f")
    with pytest.raises(PermissionError):
        os.link(mnt.path("f"), mnt.path("hard"))
    with pytest.raises(PermissionError):
        os.mkfifo(mnt.path("fifo"))
    assert sorted(os.listdir(mnt.mnt)) == ["f"]


def test_mknod_regular_file(mnt, gcs):
    os.mknod(mnt.path("made"), stat.S_IFREG | 0o644)
    st = os.stat(mnt.path("made"))
    assert stat.S_ISREG(st.st_mode) and st.st_size == 0
    with pytest.raises(FileExistsError):
        os.mknod(mnt.path("made"), stat.S_IFREG | 0o644)
    with pytest.raises(PermissionError):
        os.mknod(mnt.path("pipe"), stat.S_IFIFO | 0o644)
    write_file(mnt.path("then"), b"t")                  # fsync: the queue ran
    mnt.flush()
    assert remote(gcs, "made") == b""
    assert sorted(os.listdir(mnt.mnt)) == ["made", "then"]


def test_names_the_remote_refuses_fail_at_once(mnt, gcs):
    """A name GCS would never take fails the call instead of being journaled
    and failing every upload: not UTF-8 (EILSEQ), CR/LF (EINVAL), an
    object name past 1,024 bytes (ENAMETOOLONG); a symlink target that is
    not UTF-8 (EILSEQ)."""
    root = os.fsencode(mnt.mnt)
    bad = os.path.join(root, b"bad\xff\xfe")
    write_file(mnt.path("ok"), b"ok", fsync=False)
    for fn in (lambda: os.open(bad, os.O_WRONLY | os.O_CREAT, 0o644),
               lambda: os.mkdir(bad),
               lambda: os.symlink(b"t", bad),
               lambda: os.mknod(bad, stat.S_IFREG | 0o644),
               lambda: os.rename(mnt.path("ok"), bad),
               lambda: os.symlink(b"target\xff", mnt.path("ln"))):
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == errno.EILSEQ
    for name in ("line\nfeed", "carriage\rreturn"):
        with pytest.raises(OSError) as ei:
            os.open(mnt.path(name), os.O_WRONLY | os.O_CREAT, 0o644)
        assert ei.value.errno == errno.EINVAL
    # five levels of 200 bytes fit in an object name (1,005 bytes with
    # the slashes), a sixth does not; a file there may have 19 bytes
    deep = mnt.mnt
    for _ in range(5):
        deep = os.path.join(deep, "d" * 200)
        os.mkdir(deep)
    with pytest.raises(OSError) as ei:
        os.mkdir(os.path.join(deep, "d" * 200))
    assert ei.value.errno == errno.ENAMETOOLONG
    write_file(os.path.join(deep, "f" * 19), b"1024 bytes", fsync=False)
    with pytest.raises(OSError) as ei:
        write_file(os.path.join(deep, "f" * 20), b"1025 bytes", fsync=False)
    assert ei.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as ei:
        os.rename(mnt.path("ok"), os.path.join(deep, "f" * 20))
    assert ei.value.errno == errno.ENAMETOOLONG
    assert sorted(os.listdir(mnt.mnt)) == ["d" * 200, "ok"]
    mnt.flush()                                         # everything journaled commits
    assert remote(gcs, "/".join(["d" * 200] * 5 + ["f" * 19])) == b"1024 bytes"
    assert remote(gcs, "ok") == b"ok"


def test_long_names(mnt):
    long = "n" * 256
    with pytest.raises(OSError) as ei:
        os.open(mnt.path(long), os.O_WRONLY | os.O_CREAT, 0o644)
    assert ei.value.errno == errno.ENAMETOOLONG
    with pytest.raises(OSError) as ei:
        os.stat(mnt.path(long))
    assert ei.value.errno == errno.ENAMETOOLONG
    ok = "n" * 255
    write_file(mnt.path(ok), b"255", fsync=False)
    assert read_file(mnt.path(ok)) == b"255"


def test_directory_times_follow_its_entries(mnt):
    """A directory's mtime and ctime move when an entry is added, removed
    or renamed in or out of it, and utimensat sets them (kept by the
    mount: GCS has no directory times)."""
    d = mnt.path("d")
    os.mkdir(d)
    write_file(mnt.path("outside"), b"o", fsync=False)
    steps = (lambda: os.mkdir(os.path.join(d, "sub")),
             lambda: os.rmdir(os.path.join(d, "sub")),
             lambda: write_file(os.path.join(d, "f"), b"f", fsync=False),
             lambda: os.symlink("f", os.path.join(d, "ln")),
             lambda: os.unlink(os.path.join(d, "ln")),
             lambda: os.mknod(os.path.join(d, "n"), stat.S_IFREG | 0o644),
             lambda: os.rename(os.path.join(d, "n"), mnt.path("n")),
             lambda: os.rename(mnt.path("outside"), os.path.join(d, "in")))
    for i, step in enumerate(steps):
        os.utime(d, (1000000000, 1000000000))
        assert os.stat(d).st_mtime == 1000000000
        step()
        st = os.stat(d)
        assert st.st_mtime > 1000000000 and st.st_ctime > 1000000000, i
    os.utime(d, ns=(0, 1500000000123456789))
    assert os.stat(d).st_mtime_ns == 1500000000123456789
    assert os.stat(mnt.mnt).st_mtime > 1000000000   # the root moved too (rename out)


def test_ctime_follows_renames_and_attribute_changes(mnt):
    """A file's ctime moves when it is renamed or its attributes are set
    (chmod, chown, utimensat, truncate), and never lags its mtime: a
    utimensat into the past leaves the ctime at the time of the call."""
    p, q = mnt.path("c"), mnt.path("c2")
    write_file(p, b"c", fsync=False)
    for i, (before, step, after) in enumerate(((p, lambda: os.rename(p, q), q),
                                               (q, lambda: os.rename(q, p), p),
                                               (p, lambda: os.chmod(p, 0o600), p),
                                               (p, lambda: os.chown(p, -1, os.getgid()), p),
                                               (p, lambda: os.truncate(p, 0), p))):
        c0 = os.stat(before).st_ctime_ns
        time.sleep(0.02)
        step()
        assert os.stat(after).st_ctime_ns > c0, i
    c0 = os.stat(p).st_ctime_ns
    os.utime(p, (1000000000, 1000000000))
    st = os.stat(p)
    assert st.st_mtime == 1000000000 and st.st_ctime_ns > c0
    write_file(p, b"later", fsync=False, flags=os.O_WRONLY | os.O_APPEND)
    st = os.stat(p)
    assert st.st_ctime_ns >= st.st_mtime_ns > 1000000000 * 10**9


def test_chmod_chown_accepted_and_ignored(mnt):
    write_file(mnt.path("f"), b"f", fsync=False)
    os.chmod(mnt.path("f"), 0o600)
    assert stat.S_IMODE(os.stat(mnt.path("f")).st_mode) == 0o644
    os.utime(mnt.path("f"), (1000000000, 1000000000))
    assert os.stat(mnt.path("f")).st_mtime == 1000000000


# --- listings ----------------------------------------------------------------------

def test_listing_shows_pending_creations_and_hides_deletions(mount_factory, gcs,
                                                             emulator_noauth):
    gcs.put(BUCKET, "dir/remote-a", b"a")
    gcs.put(BUCKET, "dir/remote-b", b"b")
    m = mount_factory(("dir_cache_ttl=1s", "writeback_delay=30s"))
    m.allow_log(r"will retry|retry")
    assert sorted(os.listdir(m.path("dir"))) == ["remote-a", "remote-b"]
    write_file(m.path("dir/local"), b"pending", fsync=False)
    # Deletes are not delayed: keep this one pending with a failing remote.
    emulator_noauth.faults([{"kind": "status", "status": 503, "method": "DELETE"}])
    os.unlink(m.path("dir/remote-a"))
    time.sleep(1.2)                                     # a fresh listing: same view
    assert sorted(os.listdir(m.path("dir"))) == ["local", "remote-b"]
    assert remote_names(gcs, "dir/") == ["dir/remote-a", "dir/remote-b"]


def test_ls_l_of_10000_remote_objects_in_pages_of_100(mount_factory, gcs, emulator_noauth):
    names = ["big/obj-%05d" % i for i in range(10000)]
    gcs.put_many(BUCKET, names, data=b"z")
    emulator_noauth.faults([{"kind": "page_cap", "max": 100}])
    m = mount_factory()
    assert len(os.listdir(m.path("big"))) == 10000
    out = subprocess.run(["ls", "-l", m.path("big")], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    entries = [line for line in out if not line.startswith("total")]
    assert len(entries) == 10000
    assert all(line.startswith("-rw-r--r--") and " 1 obj-" not in line for line in entries)
    pages = emulator_noauth.stats()["requests"]["gcs.objects.list"]["200"]
    assert pages >= 100


def test_failing_page_gives_eio(mount_factory, gcs, emulator_noauth):
    gcs.put_many(BUCKET, ["pg/f%04d" % i for i in range(1000)], data=b"p")
    m = mount_factory()
    m.allow_log(r"listing \"pg\" failed")
    emulator_noauth.faults([{"kind": "page_cap", "max": 100},
                            {"kind": "status", "status": 400, "method": "GET",
                             "path": "/storage/v1/b/*/o", "query": "pageToken"}])
    with pytest.raises(OSError) as ei:
        os.listdir(m.path("pg"))
    assert ei.value.errno == errno.EIO
    emulator_noauth.faults([{"kind": "page_cap", "max": 100}])
    assert len(os.listdir(m.path("pg"))) == 1000


# --- metadata ----------------------------------------------------------------------

def test_xattrs(mnt, gcs):
    p = mnt.path("x.bin")
    data = b"xattr content"
    write_file(p, data)
    assert os.getxattr(p, "user.durafs.state") == b"committed"
    meta = gcs.meta(BUCKET, "x.bin").json()
    assert os.getxattr(p, "user.durafs.generation") == str(meta["generation"]).encode()
    assert os.getxattr(p, "user.durafs.md5") == hashlib.md5(data).hexdigest().encode()
    assert set(os.listxattr(p)) == {"user.durafs.state", "user.durafs.generation",
                                    "user.durafs.md5"}
    ctl = os.getxattr(mnt.mnt, "user.durafs.ctl").decode()
    assert stat.S_ISSOCK(os.stat(ctl).st_mode)          # the control socket
    with pytest.raises(OSError) as ei:
        os.setxattr(p, "user.durafs.state", b"clean")
    assert ei.value.errno == errno.EPERM
    with pytest.raises(OSError) as ei:
        os.setxattr(p, "user.other", b"v")
    assert ei.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
    with pytest.raises(OSError) as ei:
        os.getxattr(p, "user.nothing")
    assert ei.value.errno == errno.ENODATA
    # other namespaces are not supported at all, so ls -l stops asking
    for name in ("security.selinux", "system.posix_acl_access"):
        with pytest.raises(OSError) as ei:
            os.getxattr(p, name)
        assert ei.value.errno in (errno.ENOTSUP, errno.EOPNOTSUPP)
    gcs.put(BUCKET, "untouched", b"u")
    time.sleep(1.2)
    assert os.getxattr(mnt.path("untouched"), "user.durafs.state") == b"clean"


def test_xattr_state_dirty_while_pending(mount_factory):
    m = mount_factory(("dir_cache_ttl=1s", "writeback_delay=30s"))
    write_file(m.path("p"), b"pending", fsync=False)
    assert os.getxattr(m.path("p"), "user.durafs.state") == b"dirty"


def test_statfs(mnt):
    st = os.statvfs(mnt.mnt)
    assert st.f_namemax == 255
    assert st.f_bavail > 0 and st.f_blocks >= st.f_bavail


def test_read_only_mount(mount_factory, gcs):
    gcs.put(BUCKET, "ro.txt", b"read me")
    m = mount_factory(("dir_cache_ttl=1s", "ro"))
    assert read_file(m.path("ro.txt")) == b"read me"
    for fn in (lambda: os.open(m.path("new"), os.O_WRONLY | os.O_CREAT, 0o644),
               lambda: os.open(m.path("ro.txt"), os.O_WRONLY),
               lambda: os.mkdir(m.path("d")),
               lambda: os.unlink(m.path("ro.txt")),
               lambda: os.rename(m.path("ro.txt"), m.path("x")),
               lambda: os.symlink("t", m.path("l"))):
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == errno.EROFS


def test_conflicting_remote_writer_keeps_both(mnt, gcs):
    write_file(mnt.path("doc"), b"v1 from the mount")
    gcs.put(BUCKET, "doc", b"v2 from someone else")
    mnt.allow_log(r"conflict")
    with pytest.raises(OSError) as ei:
        write_file(mnt.path("doc"), b"v3 from the mount")
    assert ei.value.errno == errno.EIO
    assert remote(gcs, "doc") == b"v2 from someone else"
    copies = [n for n in remote_names(gcs) if n.startswith("doc.conflict-")]
    assert len(copies) == 1
    assert remote(gcs, copies[0]) == b"v3 from the mount"
    wait_until(lambda: copies[0] in os.listdir(mnt.mnt), what="conflict copy listed")
    wait_until(lambda: read_file(mnt.path("doc")) == b"v2 from someone else",
               what="remote version shown")


# --- lifetimes ---------------------------------------------------------------------

def test_remount_answers_from_stored_listing_and_read_cache(mount_factory, gcs,
                                                            emulator_noauth):
    data = pattern(2 * MiB + 5, seed=5)
    gcs.put(BUCKET, "keep/a", data)
    gcs.put(BUCKET, "keep/b", b"bee")
    m = mount_factory(("dir_cache_ttl=1s",), name="r")
    assert sorted(os.listdir(m.path("keep"))) == ["a", "b"]
    assert read_file(m.path("keep/a")) == data
    m.unmount()
    m2 = m
    m2.mount()
    # From now on the remote cannot list nor read objects: what the first
    # mount stored answers (stale listings are revalidated in the
    # background, and that fails quietly).
    emulator_noauth.faults([{"kind": "status", "status": 400, "method": "GET",
                             "path": "/storage/v1/b/*/o*"}])
    time.sleep(1.2)
    assert sorted(os.listdir(m2.path("keep"))) == ["a", "b"]
    assert read_file(m2.path("keep/a")) == data
    with pytest.raises(OSError) as ei:
        read_file(m2.path("keep/b"))                     # never read: not cached
    assert ei.value.errno == errno.EIO
    m2.allow_log(r"reading \"keep/b\"")


def test_sync_on_close(mount_factory, gcs):
    m = mount_factory(("dir_cache_ttl=1s", "writeback_delay=30s", "sync_on_close"))
    with open(m.path("s"), "wb") as f:
        f.write(b"synced on close")
    assert remote(gcs, "s") == b"synced on close"


def test_fsyncdir_waits_for_its_entries(mount_factory, gcs):
    m = mount_factory(("dir_cache_ttl=1s", "writeback_delay=30s"))
    os.mkdir(m.path("d"))
    write_file(m.path("d/f"), b"f", fsync=False)
    fd = os.open(m.path("d"), os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(fd)
    os.close(fd)
    assert remote(gcs, "d/f") == b"f"
    assert "d/" in remote_names(gcs)


FALLOC_KEEP_SIZE, FALLOC_PUNCH_HOLE, FALLOC_COLLAPSE_RANGE, FALLOC_ZERO_RANGE = 1, 2, 8, 16


def fallocate(fd, mode, off, length):
    libc = ctypes.CDLL(None, use_errno=True)
    fn = libc.fallocate
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    if fn(fd, mode, off, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def test_fallocate(mnt, gcs):
    """fallocate: mode 0 extends with zeros, KEEP_SIZE changes nothing,
    PUNCH_HOLE|KEEP_SIZE and ZERO_RANGE read as zeros; all of it is
    uploaded like a write. Other modes: EOPNOTSUPP."""
    p = mnt.path("fa")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"A" * 10000)
        fallocate(fd, 0, 5000, 10000)
        assert os.fstat(fd).st_size == 15000
        fallocate(fd, FALLOC_KEEP_SIZE, 0, 100000)
        assert os.fstat(fd).st_size == 15000
        fallocate(fd, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 100, 4000)
        fallocate(fd, FALLOC_ZERO_RANGE, 14000, 2000)
        for mode in (FALLOC_COLLAPSE_RANGE, FALLOC_PUNCH_HOLE):
            with pytest.raises(OSError) as ei:
                fallocate(fd, mode, 0, 4096)
            assert ei.value.errno in (errno.EOPNOTSUPP, errno.ENOTSUP)
        want = b"A" * 100 + bytes(4000) + b"A" * 5900 + bytes(6000)
        assert os.pread(fd, 20000, 0) == want
        os.fsync(fd)
    finally:
        os.close(fd)
    assert remote(gcs, "fa") == want
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as ei:
            fallocate(fd, 0, 0, 10)
        assert ei.value.errno == errno.EBADF
    finally:
        os.close(fd)
    # a punched hole in a remote file nobody opened before
    gcs.put(BUCKET, "rfa", b"B" * 300000)
    time.sleep(1.2)
    fd = os.open(mnt.path("rfa"), os.O_RDWR)
    try:
        fallocate(fd, FALLOC_PUNCH_HOLE | FALLOC_KEEP_SIZE, 1000, 200000)
        os.fsync(fd)
    finally:
        os.close(fd)
    want = b"B" * 1000 + bytes(200000) + b"B" * 99000
    assert read_file(mnt.path("rfa")) == want
    assert remote(gcs, "rfa") == want


def test_unlinked_file_stays_usable_while_open(mnt, gcs):
    p = mnt.path("tmpfile")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"abc")
    os.unlink(p)
    assert not os.path.exists(p)
    os.write(fd, b"def")
    os.lseek(fd, 0, os.SEEK_SET)
    assert os.read(fd, 100) == b"abcdef"
    assert os.fstat(fd).st_size == 6
    assert os.fstat(fd).st_nlink == 0
    os.fsync(fd)
    os.close(fd)
    write_file(mnt.path("other"), b"o")                # the queue has run
    assert remote_names(gcs) == ["other"]


def test_shared_mmap_write(mnt, gcs):
    import mmap
    p = mnt.path("mm")
    write_file(p, bytes(8192), fsync=False)
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 8192)
        mm[100:105] = b"hello"
        mm.flush()
        mm.close()
        os.fsync(f.fileno())
    want = bytes(100) + b"hello" + bytes(8192 - 105)
    assert read_file(p) == want
    assert remote(gcs, "mm") == want


def test_open_file_survives_rename(mnt, gcs):
    data = pattern(3 * MiB, seed=6)
    gcs.put(BUCKET, "moving", data)
    time.sleep(1.2)
    with open(mnt.path("moving"), "rb") as f:
        head = f.read(1000)
        os.rename(mnt.path("moving"), mnt.path("moved"))
        wait_until(lambda: remote_names(gcs) == ["moved"], what="remote rename")
        rest = f.read()
    assert head + rest == data
    assert read_file(mnt.path("moved")) == data


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_full_cache_disk_gives_enospc(mounts, emulator_noauth, gcs, workdir):
    cache = os.path.join(workdir, "t-cache")
    os.makedirs(cache)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", cache],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: " + r.stderr.strip())
    try:
        m = mounts(emulator_noauth, "gs://" + BUCKET, name="t", cache_dir=cache,
                   options=["dir_cache_ttl=1s", "min_free_space=1M"])
        m.allow_log(r"No space left|full")
        first = pattern(2 * MiB, seed=7)
        write_file(m.path("first"), first)
        with pytest.raises(OSError) as ei:
            write_file(m.path("second"), pattern(32 * MiB, seed=8))
        assert ei.value.errno == errno.ENOSPC
        assert remote(gcs, "first") == first
        assert read_file(m.path("first")) == first
        m.unmount(flush=False)
    finally:
        if mount_util_is_mounted(os.path.join(workdir, "t-mnt")):
            subprocess.run(["fusermount3", "-u", "-z", os.path.join(workdir, "t-mnt")])
        subprocess.run(["umount", "-l", cache])


def test_clean_cache_is_evicted_within_cache_size(mount_factory, gcs):
    blobs = {"c%d" % i: pattern(700 * 1024, seed=10 + i) for i in range(4)}
    for name, data in blobs.items():
        gcs.put(BUCKET, name, data)
    m = mount_factory(("dir_cache_ttl=1s", "cache_size=1M", "min_free_space=1M"))
    for name, data in blobs.items():
        assert read_file(m.path(name)) == data
    cache = wait_until(lambda: (lambda c: c if c["evicted_bytes"] > 0 and
                                c["clean_bytes"] <= 1024 * 1024 else None)(
                                    m.status()["cache"]), what="eviction")
    assert cache["evicted_bytes"] >= 700 * 1024
    # Evicted data comes back from the remote, intact.
    for name, data in blobs.items():
        assert read_file(m.path(name)) == data
