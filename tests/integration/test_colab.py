"""The Colab helper contrib/colab/durafs_colab.py, without google.colab,
against the emulator: mount (gs://; drive: once the Drive backend is built),
write from Python, flush with progress, the remote checked, status,
flush_and_unmount, remount and read back; a flush that cannot commit raises
DurafsError (a ValueError) naming every file; google.colab.drive.mount's
refusals; install() into a prefix. And the example notebook
contrib/colab/durafs_on_colab.ipynb: valid nbformat 4, its code cells run
against the emulator (cells holding the marker comment
`# durafs-notebook-test: skip` are skipped; the cell tagged `parameters`
is followed by the test's own values, as papermill does)."""
import hashlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

import pytest

import conftest
from gcs_util import Gcs
from help_util import ROOT
from mount_util import LOG_BAD_LEVEL, blob, is_mounted, pid_alive, remote_objects, wait_until

COLAB_DIR = os.path.join(ROOT, "contrib", "colab")
NOTEBOOK = os.path.join(COLAB_DIR, "durafs_on_colab.ipynb")
SKIP_MARKER = "# durafs-notebook-test: skip"

if COLAB_DIR not in sys.path:
    sys.path.insert(0, COLAB_DIR)
import durafs_colab  # noqa: E402


class Colab:
    """The helper's environment for one test: the emulator's endpoint, the
    build's binary, a private XDG cache (the helper's default cache dirs),
    and the mountpoints to clean up whatever happens."""

    def __init__(self, emu, workdir, monkeypatch):
        self.emu = emu
        self.workdir = workdir
        self.xdg = os.path.join(workdir, "xdg-cache")
        self.allowed = []
        self.mountpoints = []
        monkeypatch.setenv("DURAFS_BIN", conftest.DURAFS)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", emu.url)
        monkeypatch.setenv("DURAFS_DRIVE_ENDPOINT", emu.url)
        monkeypatch.setenv("XDG_CACHE_HOME", self.xdg)
        monkeypatch.setenv("DURAFS_NO_METADATA", "1")
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.delenv("DURAFS_ACCESS_TOKEN", raising=False)

    def mp(self, name="drive"):
        path = os.path.join(self.workdir, name)
        self.mountpoints.append(path)
        return path

    def pid(self, mountpoint):
        return durafs_colab.status(mountpoint)["mount"]["pid"]

    def logs(self):
        out = {}
        if os.path.isdir(os.path.join(self.xdg, "durafs")):
            for d in os.listdir(os.path.join(self.xdg, "durafs")):
                p = os.path.join(self.xdg, "durafs", d, "durafs.log")
                if os.path.exists(p):
                    with open(p, errors="replace") as f:
                        out[p] = f.read()
        return out

    def cleanup(self):
        for mp in self.mountpoints:
            if is_mounted(mp):
                subprocess.run([conftest.DURAFS, "unmount", "--no-flush", "--timeout", "30", mp],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=90)
            if is_mounted(mp):
                subprocess.run(["umount", "-l", mp], stderr=subprocess.DEVNULL)
            if is_mounted(mp):
                subprocess.run(["fusermount3", "-u", "-z", mp], stderr=subprocess.DEVNULL)


@pytest.fixture
def colab(emulator_noauth, workdir, monkeypatch):
    assert importlib.util.find_spec("google") is None or \
        importlib.util.find_spec("google.colab") is None, "google.colab must not be needed"
    Gcs(emulator_noauth).mkbucket("bkt")
    c = Colab(emulator_noauth, workdir, monkeypatch)
    try:
        yield c
    finally:
        c.cleanup()
    bad = []
    for path, text in c.logs().items():
        for line in text.splitlines():
            if (LOG_BAD_LEVEL.search(line) or conftest.SUSPICIOUS.search(line)) and \
                    not any(re.search(a, line) for a in c.allowed):
                bad.append("%s: %s" % (os.path.basename(os.path.dirname(path)), line))
    assert not bad, "unexpected lines in daemon logs:\n" + "\n".join(bad[:30])


def gcs_body(emu, name):
    r = Gcs(emu).media("bkt", name)
    assert r.status == 200, "%s not on the remote: %r" % (name, r)
    return r.body


def test_mount_write_flush_unmount_remount(colab, capsys):
    emu, mp = colab.emu, colab.mp()
    files = {"a.txt": b"alpha\n", "run/metrics.json": b'{"loss": 0.5}\n',
             "run/ckpt.bin": blob(3 << 20, 11)}
    # a long writeback delay: only flush() can explain the uploads
    durafs_colab.mount(mp, source="gs://bkt", writeback_delay="1h")
    assert capsys.readouterr().out.strip() == "Mounted at %s" % mp
    assert is_mounted(mp)
    for name, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(mp, name)), exist_ok=True)
        with open(os.path.join(mp, name), "wb") as f:
            f.write(data)
    assert not set(files) & set(remote_objects(Gcs(emu)))
    st = durafs_colab.status(mp)
    assert st["pending"]["ops"] >= len(files) and st["mount"]["source"] == "gs://bkt"

    durafs_colab.flush(mp)
    out = capsys.readouterr().out
    # not a terminal, no IPython: plain progress lines, the last one complete
    lines = [ln for ln in out.splitlines() if ln.startswith("flush:")]
    assert lines and lines[-1].startswith("flush: 3/3 files"), out
    assert "ETA" in lines[-1] and "/s" in lines[-1]
    for name, data in files.items():
        assert gcs_body(emu, name) == data
    assert durafs_colab.status(mp)["pending"]["ops"] == 0
    assert is_mounted(mp)  # flush keeps the mount

    pid = colab.pid(mp)
    durafs_colab.flush_and_unmount(mp)
    assert not is_mounted(mp)
    wait_until(lambda: not pid_alive(pid), 30, what="daemon exit")

    durafs_colab.mount(mp, source="gs://bkt")
    for name, data in files.items():
        with open(os.path.join(mp, name), "rb") as f:
            assert f.read() == data
    durafs_colab.unmount(mp)
    assert not is_mounted(mp)


def test_mount_twice_and_force_remount(colab, capsys):
    emu, mp = colab.emu, colab.mp()
    durafs_colab.mount(mp, source="gs://bkt", writeback_delay="1h")
    pid = colab.pid(mp)
    capsys.readouterr()
    durafs_colab.mount(mp, source="gs://bkt")
    out = capsys.readouterr().out
    assert "already mounted at %s" % mp in out and "force_remount=True" in out
    assert colab.pid(mp) == pid
    with open(os.path.join(mp, "pending.txt"), "wb") as f:
        f.write(b"not yet uploaded\n")
    # force_remount flushes the old mount before replacing it
    durafs_colab.mount(mp, source="gs://bkt", force_remount=True)
    assert "Mounted at %s" % mp in capsys.readouterr().out
    assert colab.pid(mp) != pid
    assert gcs_body(emu, "pending.txt") == b"not yet uploaded\n"
    durafs_colab.flush_and_unmount(mp)


def test_mount_over_a_dead_mount_recovers_its_queue(colab):
    """The daemon killed (a runtime's processes die, the mount stays dead):
    mount() clears the dead mount and mounts again; the new daemon uploads
    what the dead one had queued (same source and mountpoint: same cache)."""
    emu, mp = colab.emu, colab.mp()
    durafs_colab.mount(mp, source="gs://bkt", writeback_delay="1h")
    with open(os.path.join(mp, "queued.txt"), "wb") as f:
        f.write(b"written before the crash\n")
    pid = colab.pid(mp)
    os.kill(pid, 9)
    wait_until(lambda: not pid_alive(pid), 30, what="daemon death")
    assert is_mounted(mp)
    durafs_colab.mount(mp, source="gs://bkt")
    assert colab.pid(mp) != pid
    durafs_colab.flush(mp)
    assert gcs_body(emu, "queued.txt") == b"written before the crash\n"
    durafs_colab.unmount(mp)


def test_refuses_another_filesystem(colab):
    if os.geteuid() != 0:
        pytest.skip("not root: cannot mount a tmpfs to stand in for Colab's Drive")
    mp = colab.mp("other-fs")
    os.makedirs(mp)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mp],
                         stderr=subprocess.PIPE, text=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % res.stderr.strip())
    try:
        with pytest.raises(ValueError, match=r"already a mount point \(tmpfs\)"):
            durafs_colab.mount(mp, source="gs://bkt")
        with pytest.raises(ValueError, match=r"already a mount point"):
            durafs_colab.mount(mp, source="gs://bkt", force_remount=True)
    finally:
        subprocess.run(["umount", mp])


def test_mount_options_and_readonly(colab, workdir):
    mp = colab.mp()
    cache = os.path.join(workdir, "my-cache")
    durafs_colab.mount(mp, source="gs://bkt", readonly=True, cache_dir=cache,
                       upload_workers=2, sync_on_close=False, debug=None)
    st = durafs_colab.status(mp)
    assert st["mount"]["read_only"] is True
    assert st["mount"]["cache_dir"] == cache
    with pytest.raises(OSError):
        with open(os.path.join(mp, "x"), "wb") as f:
            f.write(b"x")
    durafs_colab.unmount(mp)
    # durafs' own reason when it refuses an option
    with pytest.raises(durafs_colab.DurafsError, match="no_such_option"):
        durafs_colab.mount(mp, source="gs://bkt", no_such_option=1)
    assert not is_mounted(mp)
    with pytest.raises(ValueError, match="comma"):
        durafs_colab.mount(mp, source="gs://bkt", log_file="a,b")
    # a bucket that is not there
    colab.allowed.append(r'ERROR mount: bucket "nope" does not exist')
    with pytest.raises(ValueError, match="nope"):
        durafs_colab.mount(mp, source="gs://nope")


def test_refusals_like_google_colab_drive(colab, workdir):
    with pytest.raises(ValueError, match="must not contain a space"):
        durafs_colab.mount(os.path.join(workdir, "my drive"), source="gs://bkt")
    target = os.path.join(workdir, "target")
    os.makedirs(target)
    link = os.path.join(workdir, "link")
    os.symlink(target, link)
    with pytest.raises(ValueError, match="must not be a symlink"):
        durafs_colab.mount(link, source="gs://bkt")
    full = os.path.join(workdir, "full")
    os.makedirs(full)
    with open(os.path.join(full, "f"), "w") as f:
        f.write("x")
    with pytest.raises(ValueError, match="must not already contain files"):
        durafs_colab.mount(full, source="gs://bkt")
    plain = os.path.join(workdir, "plain-file")
    with open(plain, "w") as f:
        f.write("x")
    with pytest.raises(ValueError, match="either be a directory or not exist"):
        durafs_colab.mount(plain, source="gs://bkt")
    with pytest.raises(ValueError, match="in a directory that exists"):
        durafs_colab.mount(os.path.join(workdir, "no", "such", "dir"), source="gs://bkt")
    for p in (link, full, plain):
        assert not is_mounted(p)
    # a mountpoint that does not exist yet is created, as drive.mount does
    fresh = colab.mp("fresh")
    durafs_colab.mount(fresh, source="gs://bkt")
    assert is_mounted(fresh)
    durafs_colab.unmount(fresh)


def test_failing_flush_names_every_file(colab):
    emu, mp = colab.emu, colab.mp()
    colab.allowed += [r"403", r"forbidden", r"failed", r"permanent"]
    durafs_colab.mount(mp, source="gs://bkt", writeback_delay="0")
    emu.faults([{"kind": "status", "status": 403, "reason": "forbidden", "path": "/upload/*"}])
    names = ["a.txt", "b.bin", "c d.txt"]
    for n in names:
        with open(os.path.join(mp, n), "w") as f:
            f.write(n)
    with pytest.raises(durafs_colab.DurafsError) as ei:
        durafs_colab.flush(mp)
    e = ei.value
    assert isinstance(e, ValueError)
    assert sorted(e.files) == sorted(names)
    for n in names:
        assert "\n  %s: write failed: forbidden" % n in str(e)
    assert "3 changes not committed" in str(e)
    # flush_and_unmount raises ValueError like Colab's, and keeps the mount
    with pytest.raises(ValueError) as ei:
        durafs_colab.flush_and_unmount(mp, timeout_ms=60000)
    assert sorted(ei.value.files) == sorted(names)
    assert is_mounted(mp)

    # a folder whose creation fails: named, and the file queued behind it
    # is counted
    os.makedirs(os.path.join(mp, "sub"))
    with open(os.path.join(mp, "sub", "in-sub.txt"), "w") as f:
        f.write("x")
    with pytest.raises(durafs_colab.DurafsError) as ei:
        durafs_colab.flush(mp)
    msg = str(ei.value)
    assert "sub" in ei.value.files
    assert "1 more change queued behind them" in msg, msg

    # the cause fixed, the failed changes go back to the queue and up
    emu.clear_faults()
    durafs_colab.flush(mp, retry_failed=True)
    for n in names:
        assert gcs_body(emu, n) == n.encode()
    assert gcs_body(emu, "sub/in-sub.txt") == b"x"
    durafs_colab.flush_and_unmount(mp)


def test_flush_timeout_raises_and_keeps_uploading(colab):
    emu, mp = colab.emu, colab.mp()
    durafs_colab.mount(mp, source="gs://bkt", writeback_delay="0")
    emu.faults([{"kind": "latency", "path": "/upload/*", "ms": 1500, "count": 1}])
    with open(os.path.join(mp, "slow.bin"), "wb") as f:
        f.write(b"s" * 1000)
    t0 = time.monotonic()
    with pytest.raises(durafs_colab.DurafsError, match="timed out"):
        durafs_colab.flush(mp, timeout_ms=200)
    assert time.monotonic() - t0 < 1.4
    durafs_colab.flush(mp)
    assert gcs_body(emu, "slow.bin") == b"s" * 1000
    durafs_colab.unmount(mp)


def test_errors_on_what_is_not_a_mount(colab, workdir):
    d = os.path.join(workdir, "not-mounted")
    os.makedirs(d)
    with pytest.raises(durafs_colab.DurafsError):
        durafs_colab.flush(d)
    with pytest.raises(durafs_colab.DurafsError):
        durafs_colab.status(d)
    with pytest.raises(durafs_colab.DurafsError):
        durafs_colab.unmount(d)


def test_missing_binary_is_a_clear_error(monkeypatch, workdir):
    monkeypatch.setenv("DURAFS_BIN", os.path.join(workdir, "nope"))
    with pytest.raises(durafs_colab.DurafsError, match="not installed"):
        durafs_colab.status(workdir)


# --- progress display ----------------------------------------------------------

def test_progress_line_format():
    line = durafs_colab.progress_line({"files_done": 3, "files_total": 10, "bytes_done": 3 << 20,
                                       "bytes_total": 10 << 20, "failed": 0, "rate": 1 << 20,
                                       "eta_s": 75, "elapsed_ms": 3000})
    assert line == "flush: 3/10 files, 3.0 MiB/10.0 MiB, 1.0 MiB/s, ETA 1m15s"
    line = durafs_colab.progress_line({"files_done": 0, "files_total": 2, "bytes_done": 0,
                                       "bytes_total": 2, "failed": 2, "rate": 0, "eta_s": -1})
    assert line == "flush: 0/2 files, 0 B/2 B, -- B/s, ETA --, 2 FAILED"
    assert durafs_colab.progress_line({"files_total": 0, "bytes_total": 0}) == \
        "flush: nothing pending"


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_is_one_updating_line():
    out = Tty()
    p = durafs_colab._Progress(out=out)
    assert p.mode == "tty"
    for i in range(3):
        p.update("flush: %d/2 files" % i)
    p.update("flush: 2/2 files")  # unchanged: not redrawn
    p.finish()
    assert out.getvalue() == ("\rflush: 0/2 files\033[K\rflush: 1/2 files\033[K"
                              "\rflush: 2/2 files\033[K\n")


def test_progress_plain_lines_are_throttled():
    out = io.StringIO()
    p = durafs_colab._Progress(out=out, plain_every=3600)
    for i in range(50):
        p.update("flush: %d/50 files" % i)
    p.finish()
    assert out.getvalue() == "flush: 0/50 files\nflush: 49/50 files\n"


def test_progress_in_ipython_updates_one_display(monkeypatch):
    """In a notebook the line is an IPython display updated in place. IPython
    is not installed here, so a minimal stand-in records the calls the
    helper makes to IPython's public API (display(obj, display_id=True)
    -> handle, handle.update(obj), Pretty(text))."""
    import types
    calls = []

    class Handle:
        def update(self, obj):
            calls.append(("update", obj.data))

    class Pretty:
        def __init__(self, data):
            self.data = data

    def display(obj, display_id=None):
        assert display_id is True
        calls.append(("display", obj.data))
        return Handle()

    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: object()
    ipd = types.ModuleType("IPython.display")
    ipd.display, ipd.Pretty = display, Pretty
    ipython.display = ipd
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipd)
    p = durafs_colab._Progress()
    assert p.mode == "ipython"
    p.update("flush: 0/2 files")
    p.update("flush: 1/2 files")
    p.update("flush: 1/2 files")
    p.update("flush: 2/2 files")
    p.finish()
    assert calls == [("display", "flush: 0/2 files"), ("update", "flush: 1/2 files"),
                     ("update", "flush: 2/2 files")]
    # outside a running IPython (get_ipython() is None): plain output
    ipython.get_ipython = lambda: None
    assert durafs_colab._Progress().mode in ("lines", "tty")


# --- Drive --------------------------------------------------------------------

def drive_files(emu, name):
    """Live files called name anywhere (My Drive and shared drives)."""
    st, _, body = emu.request("GET", "/drive/v3/files?q=" + urllib.parse.quote(
        "name = '%s' and trashed = false" % name) + "&fields=files(id,name,size,driveId)"
        "&supportsAllDrives=true&includeItemsFromAllDrives=true&corpora=allDrives")
    assert st == 200, body
    return json.loads(body)["files"]


def test_drive_source_with_colab_layout(colab):
    """mount() of drive: uses -o layout=colab: the paths of Colab's own
    mount (/content/drive/MyDrive/..., /content/drive/Shareddrives/NAME/...)
    work unchanged, and each write lands in the right drive."""
    emu, mp = colab.emu, colab.mp()
    sd = emu.control("drive/shared_drives", {"name": "Lab"})
    sd_id = sd.get("id") or sd.get("drive", {}).get("id")
    durafs_colab.mount(mp, source="drive:", no_auth=True, writeback_delay="0")
    assert sorted(os.listdir(mp)) == ["MyDrive", "Shareddrives"]
    assert os.listdir(os.path.join(mp, "Shareddrives")) == ["Lab"]
    with open(os.path.join(mp, "MyDrive", "from-colab.txt"), "w") as f:
        f.write("hello drive\n")
    with open(os.path.join(mp, "Shareddrives", "Lab", "shared.txt"), "w") as f:
        f.write("hello lab\n")
    durafs_colab.flush(mp)
    found = drive_files(emu, "from-colab.txt")
    assert len(found) == 1 and int(found[0]["size"]) == len("hello drive\n")
    assert not found[0].get("driveId")
    found = drive_files(emu, "shared.txt")
    assert len(found) == 1 and found[0].get("driveId") == sd_id
    # the root is Colab's fixed layout: nothing can be created there
    with pytest.raises(PermissionError):
        os.mkdir(os.path.join(mp, "elsewhere"))
    durafs_colab.flush_and_unmount(mp)


def test_drive_source_plain_layout_on_request(colab):
    """layout="plain" mounts the Drive root as it is (no MyDrive/)."""
    emu, mp = colab.emu, colab.mp()
    durafs_colab.mount(mp, source="drive:", no_auth=True, writeback_delay="0", layout="plain")
    assert os.listdir(mp) == []
    with open(os.path.join(mp, "top.txt"), "w") as f:
        f.write("top\n")
    durafs_colab.flush_and_unmount(mp)
    assert len(drive_files(emu, "top.txt")) == 1


# --- install() ------------------------------------------------------------------

def test_install_builds_and_installs_into_a_prefix(workdir, monkeypatch):
    """install() runs the real steps on this source tree: the dependency
    check (nothing missing here), make (nothing to rebuild: the test's build
    directory), make install into a private prefix; twice, idempotent."""
    prefix = os.path.join(workdir, "prefix")
    monkeypatch.setenv("SBINDIR", os.path.join(prefix, "sbin"))  # not /sbin
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR", "PREFIX",
                "BINDIR", "MANDIR", "COMPLETIONSDIR", "SYSTEMDUNITDIR", "PYTHONDIR"):
        monkeypatch.delenv(var, raising=False)
    # never rebuild the suite's own binary (it may be an ASan build)
    keep = ["-o", conftest.DURAFS, "-o", os.path.join(conftest.BUILD, "config.mk")]
    for _ in range(2):
        binary = durafs_colab.install(src=ROOT, prefix=prefix, quiet=True,
                                      build_dir=conftest.BUILD, make_args=keep)
        assert binary == os.path.join(prefix, "bin", "durafs")
    res = subprocess.run([binary, "--version"], stdout=subprocess.PIPE, text=True)
    assert res.stdout.startswith("durafs ")
    assert os.path.exists(os.path.join(prefix, "sbin", "mount.durafs"))
    pyver = "%d.%d" % sys.version_info[:2]
    assert os.path.exists(os.path.join(prefix, "lib", "python" + pyver, "dist-packages",
                                       "durafs_colab.py"))


def test_install_names_the_failed_step(workdir):
    with pytest.raises(durafs_colab.DurafsError, match="no durafs source tree"):
        durafs_colab.install(src=os.path.join(workdir, "nothing-here"))
    # a tree whose dependency script is missing: the first step fails
    tree = os.path.join(workdir, "tree")
    os.makedirs(tree)
    with open(os.path.join(tree, "Makefile"), "w") as f:
        f.write("all:\n")
    with pytest.raises(durafs_colab.DurafsError, match=r"step 'dependencies \(apt-get\)' failed"):
        durafs_colab.install(src=tree)


# --- the notebook ---------------------------------------------------------------

def check_nbformat4(nb):
    """The structure nbformat 4.5's JSON schema requires (nbformat itself is
    not installed: stdlib only)."""
    assert nb["nbformat"] == 4 and isinstance(nb["nbformat_minor"], int)
    assert isinstance(nb["metadata"], dict) and isinstance(nb["cells"], list)
    ids = set()
    for c in nb["cells"]:
        assert c["cell_type"] in ("code", "markdown", "raw")
        if nb["nbformat_minor"] >= 5:
            assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", c["id"]) and c["id"] not in ids
            ids.add(c["id"])
        assert isinstance(c["metadata"], dict)
        assert isinstance(c["source"], (str, list))
        if isinstance(c["source"], list):
            assert all(isinstance(s, str) for s in c["source"])
        allowed = {"cell_type", "id", "metadata", "source", "attachments"}
        if c["cell_type"] == "code":
            assert c["execution_count"] is None or isinstance(c["execution_count"], int)
            assert isinstance(c["outputs"], list)
            allowed |= {"execution_count", "outputs"}
        assert set(c) <= allowed, set(c) - allowed


def test_notebook_runs_against_the_emulator(colab, capsys):
    with open(NOTEBOOK) as f:
        nb = json.load(f)
    check_nbformat4(nb)
    emu, mp = colab.emu, colab.mp()
    ns = {"__name__": "__notebook__"}
    ran = skipped = 0
    params = False
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        src = "".join(cell["source"])
        if SKIP_MARKER in src:
            skipped += 1
            continue
        exec(compile(src, "%s[cell %d]" % (os.path.basename(NOTEBOOK), i), "exec"), ns)
        ran += 1
        if "parameters" in cell["metadata"].get("tags", []):
            params = True
            ns.update(MOUNTPOINT=mp, SOURCE="gs://bkt")
    assert params, "no cell tagged 'parameters'"
    assert skipped == 2 and ran >= 4
    out = capsys.readouterr().out
    assert "Mounted at %s" % mp in out
    assert "flush: " in out
    assert not is_mounted(mp)  # the last cell flushed and unmounted

    run_rel = os.path.relpath(ns["run_dir"], mp)
    objs = remote_objects(Gcs(emu))
    want = {"%s/metrics-%d.json" % (run_rel, e) for e in range(3)} | {run_rel + "/checkpoint.bin"}
    assert want <= set(objs), sorted(objs)
    assert json.loads(gcs_body(emu, run_rel + "/metrics-2.json")) == {"epoch": 2, "loss": 0.3333}
    ckpt = gcs_body(emu, run_rel + "/checkpoint.bin")
    assert ckpt == bytes(range(256)) * (24 << 10)

    # remount: the notebook's files read back
    durafs_colab.mount(mp, source="gs://bkt")
    with open(os.path.join(mp, run_rel, "checkpoint.bin"), "rb") as f:
        assert hashlib.md5(f.read()).digest() == hashlib.md5(ckpt).digest()
    durafs_colab.unmount(mp)
