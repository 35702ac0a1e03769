"""Mounting durafs for real in tests: a ``Mount`` helper (mount a source at a
temporary mountpoint against the emulator with options, run the CLI against
it, read its status, kill -9 its daemon, unmount) and the ``mounts``
fixture, which unmounts every mount it made at teardown -- even when the
test failed -- and then fails the test if a daemon log holds an unexpected
error line (sshfs-style; allow expected lines per mount with
``Mount.allow_log(regex)``).

Typical use::

    from mount_util import mounts, bucket  # noqa: F401  (fixtures)

    def test_x(mounts, emulator_noauth):
        m = mounts(emulator_noauth, "gs://bkt", options=["writeback_delay=0"])
        with open(m.path("a.txt"), "wb") as f: ...
        m.flush()
"""
import concurrent.futures
import hashlib
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.parse

import pytest

import conftest
from gcs_util import Gcs, q

# Daemon log lines that fail a test unless allowed: ERROR/WARN levels, and
# anything a sanitizer or a crash prints (conftest.SUSPICIOUS).
LOG_BAD_LEVEL = re.compile(r"^\S+Z (ERROR|WARN) ")
TIMEOUT_SCALE = 3 if os.environ.get("DURAFS_SAN") or "asan" in conftest.BUILD else 1


def run_durafs(args, env=None, timeout=120, check=False, input=None):
    """Run `durafs ARGS`; returns the CompletedProcess (text mode)."""
    res = subprocess.run([conftest.DURAFS] + list(args), env=env, input=input,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         timeout=timeout * TIMEOUT_SCALE)
    # a sanitizer report or a crash of the CLI fails the test whatever it returned
    assert not conftest.SUSPICIOUS.search(res.stderr), \
        "durafs %s printed:\n%s" % (" ".join(args), res.stderr[-4000:])
    if check and res.returncode != 0:
        raise AssertionError("durafs %s -> %d\nstdout: %s\nstderr: %s" % (
            " ".join(args), res.returncode, res.stdout[-2000:], res.stderr[-2000:]))
    return res


def wait_until(cond, timeout=30, interval=0.02, what="condition"):
    """Poll cond() until it returns a true value (returned); fail after timeout s."""
    deadline = time.time() + timeout * TIMEOUT_SCALE
    while True:
        v = cond()
        if v:
            return v
        if time.time() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


def blob(size, seed=0):
    """size deterministic pseudo-random bytes, fast for large sizes: a 1 MiB
    random block, each MiB stamped with its index (never periodic)."""
    import random
    import struct
    block = random.Random(seed).randbytes(min(size, 1 << 20))
    if size <= len(block):
        return block[:size]
    parts = [struct.pack(">Q", i) + block[8:] for i in range((size + (1 << 20) - 1) >> 20)]
    return b"".join(parts)[:size]


def md5_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split()[4] == path:
                return True
    return False


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


class Mount:
    """One `durafs mount` of a source at a temporary mountpoint."""

    def __init__(self, emu, source, workdir, options=(), cache_dir=None, env=None,
                 name="m", endpoint_env=True):
        self.emu = emu
        self.source = source
        self.workdir = workdir
        self.options = list(options)
        self.mnt = os.path.join(workdir, name + "-mnt")
        self.cache_dir = cache_dir or os.path.join(workdir, name + "-cache")
        self.log_path = os.path.join(workdir, name + ".log")
        self.allowed = []
        self.pid = None
        self.env = dict(os.environ)
        # never a real Google host, never the user's credentials
        self.env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        self.env.pop("DURAFS_ACCESS_TOKEN", None)
        self.env["DURAFS_NO_METADATA"] = "1"
        if endpoint_env and emu is not None:
            self.env["STORAGE_EMULATOR_HOST"] = emu.url
        self.env.update(env or {})
        os.makedirs(self.mnt, exist_ok=True)

    # --- life cycle -----------------------------------------------------------
    def mount_args(self, extra_options=()):
        opts = ["log_file=" + self.log_path] + self.options + list(extra_options)
        return ["mount", self.source, self.mnt, "--cache-dir", self.cache_dir,
                "-o", ",".join(opts)]

    def mount(self, extra_options=(), check=True, timeout=60):
        """Run `durafs mount`; on success learn the daemon's pid."""
        res = run_durafs(self.mount_args(extra_options), env=self.env, timeout=timeout)
        if check:
            assert res.returncode == 0, "mount failed (%d): %s\n%s" % (
                res.returncode, res.stderr, self.log()[-3000:])
            assert is_mounted(self.mnt), "mount returned 0 but nothing is mounted"
            self.pid = self.status()["mount"]["pid"]
        return res

    def unmount(self, flush=True, check=True, timeout=120, extra=()):
        args = ["unmount", self.mnt] + ([] if flush else ["--no-flush"]) + list(extra)
        res = run_durafs(args, env=self.env, timeout=timeout)
        if check:
            assert res.returncode == 0, "unmount failed (%d): %s %s" % (
                res.returncode, res.stdout[-2000:], res.stderr[-2000:])
            assert not is_mounted(self.mnt)
            if self.pid:
                assert not pid_alive(self.pid), "daemon still running after unmount"
            self.pid = None
        return res

    def kill9(self, cleanup=True):
        """SIGKILL the daemon, wait for it to die, and (cleanup) remove the
        dead mount it leaves."""
        assert self.pid, "no daemon pid known"
        os.kill(self.pid, signal.SIGKILL)
        wait_until(lambda: not pid_alive(self.pid), 20, what="daemon death")
        self.pid = None
        if cleanup:
            self.cleanup_mount()

    def cleanup_mount(self):
        """Remove whatever is mounted at the mountpoint (dead or alive)."""
        if not is_mounted(self.mnt):
            return
        subprocess.run(["umount", "-l", self.mnt], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def teardown(self):
        """Unmount without flushing; kill the daemon if it does not go."""
        pid = self.pid
        if is_mounted(self.mnt):
            try:
                run_durafs(["unmount", "--no-flush", "--timeout", "30", self.mnt],
                           env=self.env, timeout=60)
            except subprocess.TimeoutExpired:
                pass
        if pid and pid_alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.cleanup_mount()
        self.pid = None

    # --- CLI --------------------------------------------------------------------
    def cli(self, *args, timeout=120, check=False):
        return run_durafs(list(args), env=self.env, timeout=timeout, check=check)

    def flush(self, timeout=None, check=True, json_out=False):
        args = ["sync", "--flush", self.mnt]
        if timeout is not None:
            args += ["--timeout", str(timeout)]
        if json_out:
            args.append("--json")
        res = self.cli(*args, timeout=(timeout or 300) + 60)
        if check:
            assert res.returncode == 0, "flush failed (%d): %s %s\n%s" % (
                res.returncode, res.stdout[-2000:], res.stderr[-2000:], self.log()[-3000:])
        return res

    def status(self):
        res = self.cli("status", self.mnt, "--json", timeout=60)
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)

    # --- files ------------------------------------------------------------------
    def path(self, rel=""):
        return os.path.join(self.mnt, rel)

    def write(self, rel, data, fsync=False):
        d = os.path.dirname(self.path(rel))
        if d and not os.path.isdir(d):
            os.makedirs(d)
        fd = os.open(self.path(rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view[:1 << 20])
                view = view[n:]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, rel):
        with open(self.path(rel), "rb") as f:
            return f.read()

    def xattr(self, rel, name):
        return os.getxattr(self.path(rel), name).decode()

    # --- log --------------------------------------------------------------------
    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def allow_log(self, regex):
        self.allowed.append(re.compile(regex))

    def bad_log_lines(self):
        bad = []
        for line in self.log().splitlines():
            if (LOG_BAD_LEVEL.search(line) or conftest.SUSPICIOUS.search(line)) and \
                    not any(a.search(line) for a in self.allowed):
                bad.append(line)
        return bad


@pytest.fixture
def mounts(workdir, request):
    """Factory: mounts(emu, source, options=[...], ...) -> Mount, mounted
    (mount=False to get it unmounted). Every mount is torn down at the end,
    then its log is checked. With $DURAFS_TEST_LOGS=DIR the daemon logs are
    also copied there (TEST-NAME.log) for a look after the run."""
    made = []

    def factory(emu, source, options=(), mount=True, **kw):
        kw.setdefault("name", "m%d" % len(made))
        m = Mount(emu, source, workdir, options=options, **kw)
        made.append(m)
        if mount:
            m.mount()
        return m
    yield factory
    for m in made:
        m.teardown()
    keep = os.environ.get("DURAFS_TEST_LOGS")
    if keep:
        os.makedirs(keep, exist_ok=True)
        for m in made:
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
            with open(os.path.join(keep, "%s-%s" % (name, os.path.basename(m.log_path))),
                      "w") as f:
                f.write(m.log())
    bad = []
    for m in made:
        bad += ["%s: %s" % (os.path.basename(m.log_path), line) for line in m.bad_log_lines()]
    assert not bad, "unexpected lines in daemon logs:\n" + "\n".join(bad[:30])


@pytest.fixture
def bucket(emulator_noauth):
    """A bucket "bkt" on a fresh --no-auth emulator; returns (emu, Gcs)."""
    gcs = Gcs(emulator_noauth)
    gcs.mkbucket("bkt")
    return emulator_noauth, gcs


def remote_objects(gcs, bucket_name="bkt", prefix=""):
    """{name: item} of every object (all pages)."""
    items, _, _ = gcs.list_all(bucket_name, prefix=prefix) if prefix else gcs.list_all(bucket_name)
    return {it["name"]: it for it in items}


def remote_md5_hex(item):
    import base64
    return base64.b64decode(item["md5Hash"]).hex()


def journal_meta(m, key):
    """A value of the (closed) journal's meta table, or None."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(m.cache_dir, "journal.db"),
                         uri=True)
    try:
        row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
    finally:
        db.close()


def counter(stats, name):
    return stats.get("counters", {}).get(name, 0)


def requests_of(stats, kind):
    """Total requests of one kind, whatever their status."""
    return sum(stats.get("requests", {}).get(kind, {}).values())


# About one request in five fails: 503, 429, 500, or a connection cut in
# the middle of an upload body.
FAULTS_ONE_IN_FIVE = [
    {"kind": "status", "fraction": 0.10, "status": 503},
    {"kind": "status", "fraction": 0.05, "status": 429},
    {"kind": "status", "fraction": 0.02, "status": 500},
    {"kind": "cut", "fraction": 0.05, "after_bytes": 1000, "path": "/upload/*"},
]


def write_under_faults(m, emu, files, timeout):
    """Write files ({name: bytes}) into mount m and flush it (timeout
    seconds) while FAULTS_ONE_IN_FIVE are active; the faults are cleared
    afterwards. Returns (faults fired, requests total) of the emulator."""
    emu.faults(FAULTS_ONE_IN_FIVE)
    for name, data in files.items():
        m.write(name, data)
    m.flush(timeout=timeout)
    st = emu.stats()
    emu.clear_faults()
    return st["faults_fired"]["status"] + st["faults_fired"]["cut"], st["requests_total"]


def make_objects(emu, bucket_name, names, threads=8):
    """Upload objects fast over a few keep-alive connections: names is a
    list of names (each object the one byte "x") or a dict {name: bytes}."""
    if isinstance(names, dict):
        items = sorted(names.items())
    else:
        items = [(n, b"x") for n in names]
    url = urllib.parse.urlsplit(emu.url)
    chunks = [items[i::threads] for i in range(threads)]

    def worker(part):
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        for n, data in part:
            conn.request("POST", "/upload/storage/v1/b/%s/o?uploadType=media&name=%s"
                         % (bucket_name, q(n)), body=data,
                         headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
        conn.close()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, chunks))
