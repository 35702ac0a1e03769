"""The Linux conventions: the mount(8) helper contrib/mount.durafs, called
directly with mount(8)'s helper arguments, through a real `mount -t durafs`
and through an fstab line (`mount -T FSTAB`) when running as root (with
/sbin/mount.durafs linked for the test and always removed after; the same
for the type fuse.durafs and /sbin/mount.fuse.durafs), and the
systemd template unit contrib/systemd/durafs@.service, whose commands are
run as systemd would run them (same environment file, variable and
specifier expansion): the mount stays in the foreground logging to stderr,
ExecStop flushes, a crashed daemon's dead mount is cleared for the
restart."""
import os
import re
import shlex
import shutil
import signal
import subprocess

import pytest

import conftest
from help_util import ROOT
from mount_util import (TIMEOUT_SCALE, blob, bucket, is_mounted, mounts,  # noqa: F401
                        remote_objects)

HELPER = os.path.join(ROOT, "contrib", "mount.durafs")
UNIT = os.path.join(ROOT, "contrib", "systemd", "durafs@.service")
SBIN_LINK = "/sbin/mount.durafs"
SBIN_FUSE_LINK = "/sbin/mount.fuse.durafs"
FSTAB_OPTS = "rw,_netdev,noauto,x-systemd.automount,nofail,comment=test,defaults,nodev,nosuid"


def helper_env(emu=None, **extra):
    env = dict(os.environ)
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    env.pop("DURAFS_ACCESS_TOKEN", None)
    env["DURAFS_NO_METADATA"] = "1"
    env["DURAFS_BIN"] = conftest.DURAFS
    if emu is not None:
        env["STORAGE_EMULATOR_HOST"] = emu.url
    env.update(extra)
    return env


def run_helper(args, env=None, timeout=120):
    return subprocess.run(["/bin/sh", HELPER] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env or helper_env(),
                          timeout=timeout * TIMEOUT_SCALE)


def fake_command(args):
    """The durafs command line the helper would run (-fv), as a list."""
    res = run_helper(list(args) + ["-fv"])
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("mount.durafs:")][0]
    words = line.split()
    return words[words.index(conftest.DURAFS) + 1:]


# --- the option translation --------------------------------------------------------

@pytest.mark.parametrize("args,want", [
    # an fstab line's options: only durafs' own are kept
    (["gs://b/data", "/mnt/d", "-o", FSTAB_OPTS + ",cache_size=1G,writeback_delay=0"],
     ["mount", "gs://b/data", "/mnt/d", "-o", "cache_size=1G,writeback_delay=0"]),
    # nothing left: no -o at all
    (["gs://b", "/mnt/d", "-o", FSTAB_OPTS],
     ["mount", "gs://b", "/mnt/d"]),
    # cache_dir= becomes --cache-dir; -o repeated and glued; -r adds ro
    (["gs://b", "/mnt/d", "-o", "cache_dir=/var/c/x", "-oro,noatime,relatime", "-o",
      "x-systemd.requires=network-online.target,uid=5"],
     ["mount", "gs://b", "/mnt/d", "--cache-dir", "/var/c/x", "-o", "ro,uid=5"]),
    (["-s", "-n", "gs://b", "/mnt/d", "-r", "-t", "durafs"],
     ["mount", "gs://b", "/mnt/d", "-o", "ro"]),
    # flags clustered as mount(8) may pass them, and -t type.subtype
    (["gs://b", "/mnt/d", "-sn", "-o", "debug", "-tdurafs.x"],
     ["mount", "gs://b", "/mnt/d", "-o", "debug"]),
    # unknown options are not ours to judge: durafs rejects them itself
    (["drive:", "/mnt/d", "-o", "bogus=1,user=alice,users,owner,exec,noexec,suid"],
     ["mount", "drive:", "/mnt/d", "-o", "bogus=1"]),
], ids=["fstab", "nothing-left", "cache-dir", "flags", "clustered", "unknown"])
def test_helper_translates_options(args, want):
    got = fake_command(args)
    # as root without cache_dir=, the helper pins the cache under /var/cache
    assert got == want


def test_helper_fake_mounts_nothing_and_root_cache_location(workdir):
    d = os.path.join(workdir, "mnt")
    os.makedirs(d)
    res = run_helper(["gs://no-such-bucket", d, "-fv", "-o", "_netdev"])
    assert res.returncode == 0
    assert not is_mounted(d)
    if os.geteuid() == 0:
        assert "XDG_CACHE_HOME=/var/cache" in res.stderr
    res = run_helper(["gs://b", d, "-fv", "-o", "cache_dir=" + workdir])
    assert "XDG_CACHE_HOME" not in res.stderr


@pytest.mark.parametrize("args,msg", [
    ([], "usage"),
    (["gs://b"], "usage"),
    (["gs://b", "/d", "/extra"], "usage"),
    (["gs://b", "/d", "-q"], "unknown flag -q"),
    (["gs://b", "/d", "-o", "remount"], "remount"),
    (["gs://b", "/d", "-N", "ns"], "-N"),
    (["gs://b", "/d", "-o", "cache_dir="], "cache_dir"),
    (["gs://b", "/d", "-o"], "usage"),
])
def test_helper_bad_invocation_exit_1(args, msg):
    res = run_helper(args)
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert msg in res.stderr


def test_helper_missing_binary_exit_32(workdir):
    res = run_helper(["gs://b", workdir], env=helper_env(DURAFS_BIN=os.path.join(workdir, "nope")))
    assert res.returncode == 32 and "cannot find the durafs binary" in res.stderr
    # no DURAFS_BIN: the installed path (@BINDIR@ here, unsubstituted), then PATH
    env = helper_env(PATH="/usr/bin:/bin")
    del env["DURAFS_BIN"]
    if shutil.which("durafs", path=env["PATH"]):
        pytest.skip("a durafs is installed in /usr/bin or /bin")
    res = run_helper(["gs://b", workdir], env=env)
    assert res.returncode == 32 and "cannot find the durafs binary" in res.stderr


# --- mounting for real -------------------------------------------------------------

def helper_mount(m, emu, call, extra_opts=""):
    """Mount m (a mount_util.Mount made with mount=False) through call(opts)
    and learn its daemon's pid; returns call's CompletedProcess."""
    opts = "%s,cache_dir=%s,log_file=%s,writeback_delay=1h" % (FSTAB_OPTS, m.cache_dir,
                                                              m.log_path)
    if extra_opts:
        opts += "," + extra_opts
    res = call(opts)
    assert res.returncode == 0, "%s\n%s\n%s" % (res.stdout, res.stderr, m.log()[-2000:])
    assert is_mounted(m.mnt)
    m.pid = m.status()["mount"]["pid"]
    return res


def write_flush_check(m, gcs, name, data, remote_name=None):
    m.write(name, data)
    m.flush()
    objs = remote_objects(gcs)
    assert remote_name or name in objs
    r = gcs.media("bkt", remote_name or name)
    assert r.status == 200 and r.body == data


def test_helper_direct_call_mounts(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    helper_mount(m, emu, lambda opts: run_helper(["gs://bkt", m.mnt, "-n", "-o", opts],
                                                 env=helper_env(emu)))
    st = m.status()
    assert st["mount"]["source"] == "gs://bkt"
    assert st["mount"]["cache_dir"] == m.cache_dir
    write_flush_check(m, gcs, "hello.txt", b"hello from mount.durafs\n")
    m.unmount()


def test_helper_mount_failure_exit_32(bucket, workdir):
    emu, _ = bucket
    d = os.path.join(workdir, "mnt")
    os.makedirs(d)
    res = run_helper(["gs://no-such-bucket", d, "-o", "cache_dir=%s/c,_netdev" % workdir],
                     env=helper_env(emu))
    assert res.returncode == 32, res.stderr
    assert "no-such-bucket" in res.stderr
    assert not is_mounted(d)
    # a bad durafs option: mount(8)'s "incorrect invocation"
    res = run_helper(["gs://bkt", d, "-o", "cache_dir=%s/c,bogus_option=1" % workdir],
                     env=helper_env(emu))
    assert res.returncode == 1 and "bogus_option" in res.stderr


def linked_helper(link):
    """link -> contrib/mount.durafs for the test, removed after whatever
    happens. Skips unless root and the name is free."""
    if os.geteuid() != 0:
        pytest.skip("not root: mount -t durafs needs %s and root" % link)
    if os.path.lexists(link):
        pytest.skip("%s already exists (an installed durafs?): not touching it" % link)
    try:
        os.symlink(HELPER, link)
    except OSError as e:
        pytest.skip("cannot create %s: %s" % (link, e))
    try:
        yield link
    finally:
        try:
            if os.path.islink(link) and os.readlink(link) == HELPER:
                os.unlink(link)
        except OSError:
            pass
    assert not os.path.lexists(link)


@pytest.fixture
def sbin_helper():
    """/sbin/mount.durafs, as make install puts it."""
    yield from linked_helper(SBIN_LINK)


@pytest.fixture
def sbin_fuse_helper():
    """/sbin/mount.fuse.durafs, the alias make install adds: what mount(8)
    runs for the type /proc/mounts shows, fuse.durafs."""
    yield from linked_helper(SBIN_FUSE_LINK)


def run_mount8(args, emu):
    return subprocess.run(["mount"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=helper_env(emu), timeout=120 * TIMEOUT_SCALE)


def test_mount_t_durafs(bucket, mounts, sbin_helper):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    helper_mount(m, emu, lambda opts: run_mount8(["-t", "durafs", "gs://bkt", m.mnt,
                                                  "-o", opts], emu))
    with open("/proc/self/mountinfo") as f:
        line = [ln for ln in f if ln.split()[4] == os.path.realpath(m.mnt)][-1]
    assert " - fuse.durafs durafs:gs://bkt " in line
    write_flush_check(m, gcs, "via-mount8.bin", blob(300 * 1024, 3))
    m.unmount()


def test_mount_t_fuse_durafs_fstab_line(bucket, mounts, sbin_fuse_helper, workdir):
    """A user copying the type from /proc/mounts (fuse.durafs) into fstab or
    `mount -t`: mount(8) runs mount.fuse.durafs (without it, fuse3's
    mount.fuse ran `durafs SOURCE DIR`: "unknown command")."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt/fz", mount=False)
    fstab = os.path.join(workdir, "fstab")

    def call(opts):
        with open(fstab, "w") as f:
            f.write("gs://bkt/fz  %s  fuse.durafs  %s  0 0\n" % (m.mnt, opts))
        return run_mount8(["-T", fstab, m.mnt], emu)
    helper_mount(m, emu, call)
    write_flush_check(m, gcs, "f.txt", b"via fuse.durafs\n", remote_name="fz/f.txt")
    m.unmount()
    assert not is_mounted(m.mnt)
    helper_mount(m, emu, lambda opts: run_mount8(["-t", "fuse.durafs", "gs://bkt/fz", m.mnt,
                                                  "-o", opts], emu))
    assert m.read("f.txt") == b"via fuse.durafs\n"
    m.unmount()


def test_fstab_line(bucket, mounts, sbin_helper, workdir):
    """The issue's fstab line, mounted by mountpoint as `mount /mnt/data`
    does (from a test fstab, `mount -T`)."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt/data", mount=False)
    fstab = os.path.join(workdir, "fstab")

    def call(opts):
        with open(fstab, "w") as f:
            f.write("# test fstab\ngs://bkt/data  %s  durafs  %s  0 0\n" % (m.mnt, opts))
        return run_mount8(["-T", fstab, m.mnt], emu)
    helper_mount(m, emu, call)
    write_flush_check(m, gcs, "result.csv", b"a,b\n1,2\n", remote_name="data/result.csv")
    m.unmount()
    assert not is_mounted(m.mnt)


# --- the systemd unit -------------------------------------------------------------

def parse_unit(path):
    """{section: [(key, value)]} keeping repeated keys, as systemd reads it."""
    out, sec = {}, None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("[") and line.endswith("]"):
                sec = line[1:-1]
                out.setdefault(sec, [])
                continue
            k, _, v = line.partition("=")
            out[sec].append((k.strip(), v.strip()))
    return out


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


def timespan_s(v):
    total = 0
    for num, unit in re.findall(r"(\d+)\s*(h|min|m|s|ms)?", v):
        total += int(num) * {"h": 3600, "min": 60, "m": 60, "s": 1, "ms": 0.001, "": 1}[unit]
    return total


def test_unit_declares_what_the_issue_asks():
    unit = parse_unit(UNIT)
    svc = "Service"
    assert values(unit, svc, "EnvironmentFile") == ["/etc/durafs/%i.conf"]
    start = values(unit, svc, "ExecStart")
    assert len(start) == 1 and " mount --foreground ${SOURCE} ${MOUNTPOINT}" in start[0]
    assert start[0].startswith("@BINDIR@/durafs ")
    stop = values(unit, svc, "ExecStop")
    assert len(stop) == 1 and stop[0] == "@BINDIR@/durafs unmount ${MOUNTPOINT}", stop
    assert "--no-flush" not in stop[0]  # stopping flushes
    assert timespan_s(values(unit, svc, "TimeoutStopSec")[0]) >= 3600
    assert values(unit, svc, "Restart") == ["on-failure"]
    assert values(unit, "Install", "WantedBy") == ["multi-user.target"]
    assert "network-online.target" in values(unit, "Unit", "After")[0]


class Systemd:
    """Runs a unit's commands as systemd does for one instance: the unit's
    Environment= defaults overridden by the EnvironmentFile, %i/%I
    specifiers, ${VAR} (one word), $VAR (split at whitespace), $$ -> $, a
    leading '-' (failure ignored), MAINPID for ExecStartPost."""

    def __init__(self, unit_path, instance, conf_path, bindir, extra_env):
        self.unit = parse_unit(unit_path)
        self.instance = instance
        env = dict(extra_env)
        for v in values(self.unit, "Service", "Environment"):
            k, _, val = self.spec(v).partition("=")
            env[k] = val
        with open(conf_path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#"):
                    k, _, val = line.partition("=")
                    env[k.strip()] = val.strip().strip('"')
        self.env = env
        self.bindir = bindir
        self.main = None

    def spec(self, s):
        return re.sub(r"%([iI%])", lambda m: "%" if m.group(1) == "%" else self.instance, s)

    def argv(self, key):
        """[(ignore_failure, argv)] of the unit's KEY= commands."""
        out = []
        for line in values(self.unit, "Service", key):
            line = self.spec(line).replace("@BINDIR@", self.bindir)
            ignore = line.startswith("-")
            words = []
            for w in shlex.split(line.lstrip("-")):
                m = re.fullmatch(r"\$(\w+)", w)
                if m:
                    words += self.env.get(m.group(1), "").split()
                    continue
                words.append(re.sub(r"\$\$|\$\{(\w+)\}", lambda mm: "$" if mm.group(0) == "$$"
                                    else self.env.get(mm.group(1), ""), w))
            out.append((ignore, words))
        return out

    def run(self, key, timeout=120):
        env = dict(self.env)
        if self.main is not None:
            env["MAINPID"] = str(self.main.pid)
        for ignore, argv in self.argv(key):
            res = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=env, timeout=timeout * TIMEOUT_SCALE)
            if res.returncode != 0 and not ignore:
                return res
        return None

    def start(self, stderr_path):
        assert self.run("ExecStartPre") is None
        (_, argv), = self.argv("ExecStart")
        if getattr(self, "stderr", None):
            self.stderr.close()
        self.stderr = open(stderr_path, "ab")
        self.main = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     env=self.env)
        return self.run("ExecStartPost")  # None: started

    def stop(self):
        res = self.run("ExecStop", timeout=3600)
        if self.main is not None:
            try:
                self.main.wait(60 * TIMEOUT_SCALE)
            except subprocess.TimeoutExpired:
                self.main.send_signal(signal.SIGTERM)  # what systemd does next
                self.main.wait(60)
        self.run("ExecStopPost")
        self.stderr.close()
        return res


def test_unit_runs_foreground_and_flushes_on_stop(bucket, mounts, workdir):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)  # teardown + log check of the mount
    conf = os.path.join(workdir, "data.conf")
    with open(conf, "w") as f:
        f.write("# /etc/durafs/data.conf\nSOURCE=gs://bkt\nMOUNTPOINT=%s\n"
                "OPTIONS=writeback_delay=1h,upload_workers=4\nCACHE_DIR=%s\n"
                % (m.mnt, m.cache_dir))
    sd = Systemd(UNIT, "data", conf, os.path.dirname(conftest.DURAFS), helper_env(emu))
    stderr_path = os.path.join(workdir, "journal.txt")
    m.log_path = stderr_path  # the "journal" is the log to check
    res = sd.start(stderr_path)
    assert res is None, "ExecStartPost failed: %s" % (res.stderr if res else "")
    try:
        assert is_mounted(m.mnt)
        m.pid = sd.main.pid
        assert m.status()["mount"]["pid"] == sd.main.pid  # the foreground process serves
        data = blob(2 << 20, 7)
        m.write("model.ckpt", data)
        assert "model.ckpt" not in remote_objects(gcs)  # writeback_delay=1h: not yet
        res = sd.stop()
        assert res is None, "ExecStop failed: %s %s" % (res.stdout, res.stderr)
        assert sd.main.returncode == 0
        assert not is_mounted(m.mnt)
        m.pid = None
        r = gcs.media("bkt", "model.ckpt")
        assert r.status == 200 and r.body == data  # ExecStop flushed it
        with open(stderr_path, errors="replace") as f:
            journal = f.read()
        assert "mounted gs://bkt on %s" % m.mnt in journal  # the log went to stderr
    finally:
        if sd.main.poll() is None:
            sd.main.kill()
            sd.main.wait()


def test_unit_restart_after_crash(bucket, mounts, workdir):
    """Restart=on-failure after a SIGKILL: ExecStopPost clears the dead mount,
    the next start mounts again and uploads what the dead daemon had queued."""
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", mount=False)
    conf = os.path.join(workdir, "x.conf")
    with open(conf, "w") as f:
        f.write("SOURCE=gs://bkt\nMOUNTPOINT=%s\nOPTIONS=writeback_delay=1h\nCACHE_DIR=%s\n"
                % (m.mnt, m.cache_dir))
    sd = Systemd(UNIT, "x", conf, os.path.dirname(conftest.DURAFS), helper_env(emu))
    stderr_path = os.path.join(workdir, "journal.txt")
    m.log_path = stderr_path
    assert sd.start(stderr_path) is None
    try:
        m.write("queued.txt", b"written before the crash\n")
        sd.main.kill()
        sd.main.wait()
        assert is_mounted(m.mnt)  # dead: "Transport endpoint is not connected"
        sd.run("ExecStop")        # systemd runs it even after a crash; it may fail
        sd.run("ExecStopPost")
        assert not is_mounted(m.mnt)
        sd.main = None
        assert sd.start(stderr_path) is None
        m.pid = sd.main.pid
        m.flush()
        r = gcs.media("bkt", "queued.txt")
        assert r.status == 200 and r.body == b"written before the crash\n"
        assert sd.stop() is None
        assert not is_mounted(m.mnt)
        m.pid = None
    finally:
        if sd.main is not None and sd.main.poll() is None:
            sd.main.kill()
            sd.main.wait()
