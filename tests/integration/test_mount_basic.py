"""`durafs mount` against the emulator, as a user sees it: fsync means the
bytes are on the remote at once (no unmount), close + `sync --flush`
commits everything, `status --json` tells what is pending, the state xattr
moves from dirty to committed, `unmount` flushes (and --no-flush does not),
and bad options, a missing bucket or missing credentials give one clear
line and a non-zero exit with nothing mounted."""
import base64
import hashlib
import json
import os
import subprocess
import time

import pytest

from gcs_util import Gcs
from mount_util import (blob, bucket, is_mounted, mounts, pid_alive,  # noqa: F401
                        remote_md5_hex, remote_objects, run_durafs, wait_until)

KiB = 1024
MiB = 1024 * 1024


def remote_meta(gcs, name):
    r = gcs.meta("bkt", name)
    assert r.status == 200, "%s not on the remote: %r" % (name, r)
    return r.json()


@pytest.mark.parametrize("size", [0, 1, 256 * KiB - 1, 256 * KiB, 16 * MiB + 1, 100 * MiB],
                         ids=["0B", "1B", "256KiB-1", "256KiB", "16MiB+1", "100MiB"])
def test_fsync_commits_at_once(bucket, mounts, size):
    emu, gcs = bucket
    # a long writeback delay: only fsync can explain the upload
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    data = blob(size, seed=size)
    fd = os.open(m.path("f.bin"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view[:MiB]):]
        os.fsync(fd)
        # checked right after fsync returns, with the file still open
        meta = remote_meta(gcs, "f.bin")
        assert int(meta["size"]) == size
        assert base64.b64decode(meta["md5Hash"]) == hashlib.md5(data).digest()
        if size <= 256 * KiB:
            r = gcs.media("bkt", "f.bin")
            assert r.status == 200 and r.body == data
    finally:
        os.close(fd)
    assert m.xattr("f.bin", "user.durafs.state") in ("committed", "clean")
    assert m.xattr("f.bin", "user.durafs.md5") == hashlib.md5(data).hexdigest() or \
        m.xattr("f.bin", "user.durafs.md5") == meta["md5Hash"]
    assert is_mounted(m.mnt)


def test_close_then_sync_flush(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    files = {"a.txt": b"alpha\n", "dir/b.bin": blob(300 * KiB, 1),
             "dir/sub/c.bin": blob(9 * MiB, 2), "empty": b""}
    for name, data in files.items():
        m.write(name, data)
    time.sleep(0.3)
    # directories are created at once; no file before the writeback delay
    assert not [n for n in remote_objects(gcs) if not n.endswith("/")], \
        "uploaded before the writeback delay"
    st = m.status()
    assert st["pending"]["ops"] >= len(files)
    res = m.flush()
    assert "nothing pending" not in res.stdout
    objs = remote_objects(gcs)
    for name, data in files.items():
        assert name in objs, name
        assert remote_md5_hex(objs[name]) == hashlib.md5(data).hexdigest()
    assert m.status()["pending"]["ops"] == 0
    # the mount stays, and a second flush has nothing to do
    assert is_mounted(m.mnt)
    res = m.flush()
    assert "nothing pending" in res.stdout


def test_flush_json_output(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("x.bin", blob(2 * MiB, 3))
    res = m.flush(json_out=True)
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[-1] == {"result": "ok"}
    progress = [x["progress"] for x in lines if "progress" in x]
    assert progress and progress[0]["files_total"] == 1
    assert progress[-1]["bytes_done"] == progress[-1]["bytes_total"] == 2 * MiB


def test_status_json(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    st = m.status()
    for key in ("version", "mount", "pending", "uploads", "inflight", "committed", "retries",
                "events", "failed", "conflicts", "retrying", "cache", "journal", "http"):
        assert key in st, key
    assert st["mount"]["source"] == "gs://bkt"
    assert st["mount"]["mountpoint"] == m.mnt
    assert st["mount"]["cache_dir"] == m.cache_dir
    assert st["mount"]["log"] == m.log_path
    assert st["mount"]["backend"] == "gcs"
    assert st["mount"]["pid"] == m.pid and pid_alive(m.pid)
    assert st["mount"]["auth"] == "none"
    assert st["pending"]["ops"] == 0 and st["pending"]["bytes"] == 0
    m.write("p/one.bin", blob(100 * KiB, 4))
    m.write("p/two.bin", blob(50 * KiB, 5))
    st = m.status()
    assert st["pending"]["dirty_files"] == 2
    assert st["pending"]["bytes"] == 150 * KiB
    assert st["pending"]["ops"] >= 2           # the two writes (+ mkdir p)
    assert st["cache"]["dirty_files"] == 2
    assert st["cache"]["dirty_bytes"] == 150 * KiB
    assert st["failed"] == [] and st["conflicts"] == []
    m.flush()
    st = m.status()
    assert st["pending"] == {"ops": 0, "bytes": 0, "waiting_ops": 0, "retrying_ops": 0,
                             "dirty_files": 0}
    assert st["committed"]["bytes"] == 150 * KiB
    assert st["committed"]["ops"] >= 2
    assert st["journal"]["last_seq"] >= 2
    assert st["http"]["requests"] > 0
    # human form
    res = m.cli("status", m.mnt)
    assert res.returncode == 0
    assert "gs://bkt on " + m.mnt in res.stdout
    assert "pending      0 operations" in res.stdout
    assert "  log          %s\n" % m.log_path in res.stdout


def test_state_xattr_dirty_to_committed(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("s.txt", b"state machine\n")
    assert m.xattr("s.txt", "user.durafs.state") == "dirty"
    assert "user.durafs.state" in os.listxattr(m.path("s.txt"))
    m.flush()
    assert m.xattr("s.txt", "user.durafs.state") == "committed"
    gen = m.xattr("s.txt", "user.durafs.generation")
    assert gen == remote_meta(gcs, "s.txt")["generation"]
    # the root names the control socket
    assert os.getxattr(m.mnt, "user.durafs.ctl").decode() == \
        os.path.join(m.cache_dir, "ctl.sock")


def test_unmount_flushes(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("u1.bin", blob(3 * MiB, 6))
    m.write("u2.txt", b"two")
    pid = m.pid
    res = m.unmount()
    assert res.returncode == 0
    assert not pid_alive(pid)
    objs = remote_objects(gcs)
    assert set(objs) == {"u1.bin", "u2.txt"}
    assert remote_md5_hex(objs["u1.bin"]) == hashlib.md5(blob(3 * MiB, 6)).hexdigest()
    # remount the same cache dir: nothing pending, files readable
    m.mount()
    assert m.status()["pending"]["ops"] == 0
    assert m.read("u2.txt") == b"two"


def test_unmount_no_flush_keeps_pending(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("later.txt", b"later")
    m.unmount(flush=False)
    assert "later.txt" not in remote_objects(gcs)
    res = run_durafs(["status", "--cache-dir", m.cache_dir, "--json"], env=m.env)
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert st["pending"]["ops"] >= 1 and st["mount"]["daemon"] is False
    # the next mount uploads it
    m.mount()
    m.flush()
    assert "later.txt" in remote_objects(gcs)


def test_sigterm_is_a_clean_unmount(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("kept.txt", b"kept across SIGTERM")
    pid = m.pid
    os.kill(pid, 15)
    wait_until(lambda: not pid_alive(pid), 30, what="daemon exit after SIGTERM")
    wait_until(lambda: not is_mounted(m.mnt), 10, what="unmount after SIGTERM")
    m.pid = None
    assert "stopped cleanly" in m.log()
    m.mount(extra_options=["writeback_delay=0"])
    m.flush()
    assert "kept.txt" in remote_objects(gcs)


def test_control_socket_protocol(bucket, mounts):
    """The socket the CLI uses, spoken directly: line-delimited JSON."""
    import socket
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=["writeback_delay=1h"])
    m.write("c.txt", b"via the socket")
    path = os.getxattr(m.mnt, "user.durafs.ctl").decode()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    f = s.makefile("rwb")

    def ask(obj):
        f.write(json.dumps(obj).encode() + b"\n")
        f.flush()
        lines = []
        while True:
            line = json.loads(f.readline())
            lines.append(line)
            if "result" in line:
                return lines
    assert ask({"cmd": "ping"})[-1]["pid"] == m.pid
    lines = ask({"cmd": "flush", "timeout_ms": 60000})
    assert lines[-1] == {"result": "ok"}
    assert lines[0]["progress"]["ops_left"] >= 1
    assert lines[-2]["progress"]["ops_left"] == 0
    assert "c.txt" in remote_objects(gcs)
    st = ask({"cmd": "status"})[-1]
    assert st["result"] == "ok" and st["status"]["pending"]["ops"] == 0
    assert ask({"cmd": "bogus"})[-1]["result"] == "error"
    f.write(b"not json\n")
    f.flush()
    assert json.loads(f.readline())["result"] == "error"
    # "unmount" ends the daemon as SIGTERM does
    pid = m.pid
    assert ask({"cmd": "unmount"})[-1] == {"result": "ok"}
    s.close()
    wait_until(lambda: not pid_alive(pid), 30, what="daemon exit after unmount command")
    assert not is_mounted(m.mnt)
    m.pid = None


# --- refusals ---------------------------------------------------------------------

BAD_OPTIONS = [
    ("bogus_option", "unknown mount option 'bogus_option'"),
    ("chunk_size=100K", "multiple of 256K"),
    ("upload_workers=0", "upload_workers=0"),
    ("writeback_delay=soon", "not a duration"),
    ("conflict=overwrite", "keep-both or fail"),
    ("file_mode=9", "octal"),
    ("sync_on_close=yes", "takes no value"),
    ("cache_size=", "needs a value"),
]


@pytest.mark.parametrize("opt,msg", BAD_OPTIONS, ids=[o for o, _ in BAD_OPTIONS])
def test_bad_option(bucket, mounts, opt, msg):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    res = run_durafs(["mount", "gs://bkt", m.mnt, "--cache-dir", m.cache_dir, "-o", opt],
                     env=m.env, timeout=30)
    assert res.returncode == 2
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("durafs mount: ") and msg in lines[0], lines[0]
    assert not is_mounted(m.mnt)
    assert not os.path.exists(m.cache_dir), "a refused mount must not create its cache dir"


def test_bad_command_lines(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    cases = [
        (["mount"], "missing SOURCE"),
        (["mount", "gs://bkt"], "missing MOUNTPOINT"),
        (["mount", "gs://Bad_Bucket", m.mnt], "bad source"),
        (["mount", "ftp://x", m.mnt], "expected gs://"),
        (["mount", "gs://bkt", m.mnt + "-nonexistent"], "does not exist (create the directory "
         "first: mkdir -p"),
        (["mount", "gs://bkt", m.mnt, "--what"], "unknown option '--what'"),
    ]
    for args, msg in cases:
        res = run_durafs(args, env=m.env, timeout=30)
        assert res.returncode == 2, (args, res.stderr)
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and msg in lines[0], (args, res.stderr)
    assert not is_mounted(m.mnt)
    res = run_durafs(["mount", "--help"], env=m.env, timeout=30)
    assert res.returncode == 0 and "writeback_delay" in res.stdout


def test_missing_bucket(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://no-such-bucket", mount=False)
    t0 = time.time()
    res = m.mount(check=False)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert "no-such-bucket" in lines[0] and "does not exist" in lines[0], lines[0]
    assert time.time() - t0 < 30
    assert not is_mounted(m.mnt)
    m.allow_log(r"ERROR mount: .*no-such-bucket")


def test_no_credentials(emulator, mounts, workdir):
    """An emulator that enforces auth, reached by -o endpoint (so the
    STORAGE_EMULATOR_HOST convention does not apply), and no credentials."""
    Gcs(emulator, token=_issue(emulator)).mkbucket("bkt")
    home = os.path.join(workdir, "home")
    os.makedirs(home)
    m = mounts(emulator, "gs://bkt", options=["endpoint=" + emulator.url], mount=False,
               endpoint_env=False, env={"HOME": home, "XDG_CONFIG_HOME": home + "/.config"})
    m.env.pop("STORAGE_EMULATOR_HOST", None)
    m.env.pop("CLOUDSDK_CONFIG", None)
    res = m.mount(check=False)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "no Google credentials" in lines[0], res.stderr
    assert not is_mounted(m.mnt)
    # a token the emulator refuses
    tok = os.path.join(workdir, "token")
    with open(tok, "w") as f:
        f.write("ya29.not-a-valid-token\n")
    os.chmod(tok, 0o600)
    res = m.mount(extra_options=["token_file=" + tok], check=False)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "credentials refused" in lines[0], res.stderr
    assert "ya29" not in res.stderr and "ya29" not in m.log()
    # a valid one mounts
    with open(tok, "w") as f:
        f.write(_issue(emulator) + "\n")
    m.mount(extra_options=["token_file=" + tok])
    m.write("authed.txt", b"x", fsync=True)
    assert m.status()["mount"]["auth"] == "static"
    m.allow_log(r"ERROR mount: (no Google credentials|credentials refused)")


def test_emulator_endpoint_wanting_credentials(emulator, mounts):
    """$STORAGE_EMULATOR_HOST pointing at a server that enforces auth (an
    emulator started without --no-auth): the 401 is explained by the
    credentials durafs does not send, not as credentials refused."""
    Gcs(emulator, token=_issue(emulator)).mkbucket("bkt")
    m = mounts(emulator, "gs://bkt", mount=False)
    res = m.mount(check=False)
    assert res.returncode == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert ("the server wants credentials and none are sent ($STORAGE_EMULATOR_HOST is set; "
            "give -o token_file=PATH or -o credentials=PATH)") in lines[0], lines[0]
    assert not is_mounted(m.mnt)
    m.allow_log(r"ERROR mount: the server wants credentials")


def _issue(emu):
    return emu.control("oauth/issue", {"lifetime": 3600})["access_token"]


def test_cache_dir_in_use_and_other_source(bucket, mounts):
    emu, gcs = bucket
    gcs.mkbucket("other")
    m = mounts(emu, "gs://bkt")
    m2 = mounts(emu, "gs://bkt", mount=False, cache_dir=m.cache_dir)
    res = m2.mount(check=False)
    assert res.returncode == 1
    assert "in use by another mount" in res.stderr and len(res.stderr.splitlines()) == 1
    assert not is_mounted(m2.mnt)
    m.unmount()
    m3 = mounts(emu, "gs://other", mount=False, cache_dir=m.cache_dir)
    res = m3.mount(check=False)
    assert res.returncode == 1
    assert "belongs to gs://bkt" in res.stderr, res.stderr
    for x in (m2, m3):
        x.allow_log(r"ERROR mount: cache dir")


def test_hints_for_likely_mistakes(bucket, mounts):
    """What a new user gets wrong: mounting over a directory that holds files
    (mounted, with a warning that they are hidden), and giving a path inside
    the mount instead of its mount point to status, sync and unmount (refused,
    naming the mount point), unmounting from a shell whose current directory
    is inside (busy, saying what counts and how to find it)."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    for n in ("a.txt", "b.txt"):
        with open(m.path(n), "w") as f:
            f.write("mine\n")
    res = m.mount()
    assert res.stderr.splitlines() == [
        "durafs mount: warning: %s is not empty: its 2 entries are hidden while durafs is "
        "mounted there" % os.path.realpath(m.mnt)], res.stderr
    os.mkdir(m.path("sub"))
    inside = m.path("sub")
    for args in (["status", inside], ["sync", "--flush", inside], ["unmount", inside]):
        res = run_durafs(args, env=m.env, timeout=30)
        assert res.returncode == 1, (args, res.stderr)
        assert ("%s is not a durafs mount but a path inside the durafs mount %s: give its "
                "mount point" % (inside, os.path.realpath(m.mnt))) in res.stderr, res.stderr
    assert is_mounted(m.mnt)
    if os.geteuid() == 0:
        # a process sitting in the mount (a shell cd'ed into it): busy, and why
        sleeper = subprocess.Popen(["sleep", "60"], cwd=inside)
        try:
            res = run_durafs(["unmount", m.mnt], env=m.env, timeout=60)
        finally:
            sleeper.kill()
            sleeper.wait()
        assert res.returncode == 1, res.stderr
        assert "is busy: a process has a file open there or its current directory inside" \
            in res.stderr and "fuser -vm" in res.stderr, res.stderr
        assert is_mounted(m.mnt)
    m.unmount()
    # the files were hidden, not touched
    assert sorted(os.listdir(m.mnt)) == ["a.txt", "b.txt"]
    # an empty mountpoint: no warning
    for n in ("a.txt", "b.txt"):
        os.unlink(m.path(n))
    res = m.mount()
    assert res.stderr == "", res.stderr
    m.unmount()


def test_cli_refusals(bucket, mounts, workdir):
    emu, gcs = bucket
    plain = os.path.join(workdir, "plain")
    os.makedirs(plain)
    env = dict(os.environ, STORAGE_EMULATOR_HOST=emu.url)
    for args in (["sync", "--flush", plain], ["status", plain], ["unmount", plain]):
        res = run_durafs(args, env=env, timeout=30)
        assert res.returncode == 1
        assert "not a durafs mount" in res.stderr, res.stderr
    res = run_durafs(["sync", plain], env=env, timeout=30)
    assert res.returncode == 2 and "--flush is required" in res.stderr
    res = run_durafs(["sync", "--flush"], env=env, timeout=30)
    assert res.returncode == 2
    for cmd in ("sync", "status", "unmount", "mount"):
        res = run_durafs([cmd, "--help"], env=env, timeout=30)
        assert res.returncode == 0 and "usage: durafs " + cmd in res.stdout
