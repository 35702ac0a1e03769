"""durafs_colab: ``google.colab.drive`` with writes that are never lost.

A drop-in for the functions of ``google.colab.drive`` (change one import),
backed by durafs, plus the flush that Colab lacks: ``flush()`` returns only
once every file written before it is committed to Drive / Cloud Storage, and
keeps the mount. Python standard library only; ``google.colab`` and IPython
are used when present, never required.

    import durafs_colab as drive
    drive.mount('/content/drive')          # MyDrive/ and Shareddrives/ as on Colab
    ...                                    # write files as usual
    drive.flush('/content/drive')          # raises, naming the files, if any failed
    drive.flush_and_unmount()              # at the end of the run

Credentials: the ones ``google.colab.auth.authenticate_user()`` left
(Application Default Credentials: ``$GOOGLE_APPLICATION_CREDENTIALS`` or the
metadata server); durafs finds them itself, nothing is passed. The durafs
binary is ``$DURAFS_BIN`` if set, else ``durafs`` on ``$PATH``. See
docs/colab.md.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

__all__ = ["DurafsError", "install", "mount", "flush", "flush_and_unmount", "unmount",
           "status"]

DEFAULT_MOUNTPOINT = "/content/drive"
DEFAULT_SRC = "/content/durafs"


class DurafsError(ValueError):
    """A durafs operation failed. A ValueError, as google.colab.drive raises.

    ``files`` lists the paths (relative to the mount) that are not committed,
    ``failed`` the daemon's records of them (dicts with ``path``, ``op``,
    ``state``, ``error``, ``reason``...), ``result`` the daemon's final reply
    (or None)."""

    def __init__(self, message, files=(), failed=(), result=None):
        super().__init__(message)
        self.files = list(files)
        self.failed = list(failed)
        self.result = result


# --- the binary -------------------------------------------------------------

def _durafs():
    path = os.environ.get("DURAFS_BIN") or shutil.which("durafs")
    if not path or not os.access(path, os.X_OK):
        raise DurafsError("durafs is not installed (run durafs_colab.install(), or set "
                          "DURAFS_BIN to the durafs binary)")
    return path


def _run(args, timeout_s=None):
    """Run durafs ARGS, capture its output; a CompletedProcess (text)."""
    try:
        return subprocess.run([_durafs()] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as e:
        raise DurafsError("durafs %s: no answer after %.0f s" % (args[0], e.timeout)) from None


def _last_line(text):
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# --- mountpoints ------------------------------------------------------------

def _unescape_mountinfo(s):
    # mountinfo escapes space, tab, newline and backslash as \ooo
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1:i + 4].isdigit():
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def _mount_fstype(path):
    """The filesystem type mounted exactly at path ("fuse.durafs", ...) or None."""
    path = os.path.realpath(path)
    found = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) >= 5 and _unescape_mountinfo(fields[4]) == path:
                    found = right.split()[0] if right else "?"
    except OSError:
        return None
    return found  # the last one listed is the one on top


def _is_durafs_mount(path):
    return _mount_fstype(path) == "fuse.durafs"


def _check_mountpoint(mountpoint):
    """google.colab.drive.mount's refusals, with its messages."""
    if " " in mountpoint:
        raise DurafsError("Mountpoint must not contain a space.")
    mountpoint = os.path.expanduser(mountpoint)
    if os.path.islink(mountpoint):
        raise DurafsError("Mountpoint must not be a symlink")
    normed = os.path.normpath(mountpoint)
    parent = os.path.dirname(os.path.abspath(normed))
    if not os.path.isdir(parent):
        raise DurafsError("Mountpoint must be in a directory that exists")
    if os.path.exists(mountpoint) and not os.path.isdir(mountpoint):
        raise DurafsError("Mountpoint must either be a directory or not exist")
    if os.path.isdir(mountpoint) and os.listdir(mountpoint):
        raise DurafsError("Mountpoint must not already contain files")
    return os.path.abspath(normed)


# --- help-driven features -----------------------------------------------------

def _mount_help():
    res = _run(["mount", "--help"], timeout_s=30)
    return res.stdout if res.returncode == 0 else ""


def _mount_has_option(name):
    """Does this durafs's `mount --help` list the -o option NAME?"""
    for line in _mount_help().splitlines():
        if line.startswith("  ") and not line.startswith("   ") and \
                line[2:].split("=")[0].split(" ")[0] == name:
            return True
    return False


def _option_args(readonly, options):
    """-o list from mount()'s keyword options: True -> name, False/None ->
    left out, anything else -> name=value."""
    opts = []
    if readonly:
        opts.append("ro")
    for k, v in options.items():
        if v is None or v is False:
            continue
        if not k or "," in k or "=" in k:
            raise DurafsError("bad mount option name %r" % (k,))
        if v is True:
            opts.append(k)
        else:
            v = str(v)
            if "," in v:
                raise DurafsError("mount option %s: a value cannot hold a comma" % k)
            opts.append("%s=%s" % (k, v))
    return opts


# --- the API --------------------------------------------------------------------

def mount(mountpoint=DEFAULT_MOUNTPOINT, source="drive:", force_remount=False,
          timeout_ms=120000, readonly=False, **options):
    """Mount SOURCE at MOUNTPOINT, like google.colab.drive.mount.

    source: "drive:" (your Drive; with -o layout=colab the root shows MyDrive/
    and Shareddrives/NAME/ as Colab's mount does), "drive:PATH", or
    "gs://BUCKET[/PREFIX]". Keyword options become durafs -o options
    (cache_size="20G", sync_on_close=True...); cache_dir= becomes
    --cache-dir. Refuses a mountpoint with a space, a symlink or a non-empty
    directory (ValueError). If a durafs mount is already there, returns
    without doing anything unless force_remount, which first flushes and
    unmounts it. Raises DurafsError (a ValueError) with durafs' reason when
    the mount fails. Prints "Mounted at PATH"."""
    mountpoint = os.path.expanduser(mountpoint)
    if " " in mountpoint:
        raise DurafsError("Mountpoint must not contain a space.")
    if os.path.islink(mountpoint):
        raise DurafsError("Mountpoint must not be a symlink")
    fstype = _mount_fstype(mountpoint)
    if fstype == "fuse.durafs":
        try:
            os.listdir(mountpoint)
            alive = True
        except OSError:
            alive = False  # the daemon died: a dead mount to clear away
        if alive and not force_remount:
            print("Drive already mounted at %s; to attempt to forcibly remount, call "
                  "drive.mount(\"%s\", force_remount=True)." % (mountpoint, mountpoint))
            return
        if alive:
            unmount(mountpoint, timeout_ms=timeout_ms)
        else:
            _run(["unmount", "--no-flush", mountpoint], timeout_s=60)
    elif fstype is not None:
        raise DurafsError("%s is already a mount point (%s): unmount it first (Colab's own "
                          "Drive: google.colab.drive.flush_and_unmount())" % (mountpoint, fstype))
    path = _check_mountpoint(mountpoint)
    os.makedirs(path, exist_ok=True)

    options = dict(options)
    cache_dir = options.pop("cache_dir", None)
    opts = _option_args(readonly, options)
    if source.startswith("drive:") and "layout" not in options:
        if _mount_has_option("layout"):
            opts.append("layout=colab")
        else:
            print("durafs: this durafs has no -o layout=colab yet: the Drive root is "
                  "mounted as is (no MyDrive/ folder)", file=sys.stderr)
    args = ["mount", source, path]
    if cache_dir:
        args += ["--cache-dir", os.path.abspath(os.path.expanduser(cache_dir))]
    if opts:
        args += ["-o", ",".join(opts)]
    res = _run(args, timeout_s=timeout_ms / 1000.0 if timeout_ms else None)
    if res.returncode != 0:
        why = _last_line(res.stderr) or _last_line(res.stdout) or \
            "durafs mount exited with %d" % res.returncode
        raise DurafsError(why)
    if not _is_durafs_mount(path):
        raise DurafsError("durafs mount returned but nothing is mounted at %s" % path)
    print("Mounted at %s" % path)


# --- progress -------------------------------------------------------------------

def _fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024
    return "%d B" % n


def _fmt_eta(s):
    if s is None or s < 0:
        return "--"
    s = int(s)
    if s >= 3600:
        return "%dh%02dm" % (s // 3600, s % 3600 // 60)
    if s >= 60:
        return "%dm%02ds" % (s // 60, s % 60)
    return "%ds" % s


def progress_line(p):
    """One line for a `sync --flush --json` progress record (a dict):
    files, bytes, rate and ETA."""
    if not p.get("files_total") and not p.get("bytes_total") and not p.get("failed"):
        return "flush: nothing pending"
    line = "flush: %d/%d files, %s/%s, %s/s, ETA %s" % (
        p.get("files_done", 0), p.get("files_total", 0), _fmt_bytes(p.get("bytes_done", 0)),
        _fmt_bytes(p.get("bytes_total", 0)),
        _fmt_bytes(p["rate"]) if p.get("rate") else "-- B",
        _fmt_eta(p.get("eta_s")))
    if p.get("failed"):
        line += ", %d FAILED" % p["failed"]
    return line


class _Progress:
    """One line that updates: an IPython display (Colab, Jupyter), '\\r' on a
    terminal, else plain lines, at most one every `plain_every` seconds, and
    the last one at the end."""

    def __init__(self, out=None, plain_every=5.0):
        self.out = out or sys.stdout
        self.handle = None
        self.last = None
        self.printed = None
        self.last_print = 0.0
        self.plain_every = plain_every
        self.mode = "lines"
        ip = sys.modules.get("IPython")
        if out is None and ip is not None and callable(getattr(ip, "get_ipython", None)) \
                and ip.get_ipython() is not None:
            try:
                from IPython.display import Pretty, display
                self.pretty, self.display = Pretty, display
                self.mode = "ipython"
            except ImportError:
                pass
        if self.mode == "lines" and hasattr(self.out, "isatty") and self.out.isatty():
            self.mode = "tty"

    def update(self, line):
        if line == self.last:
            return
        self.last = line
        if self.mode == "ipython":
            if self.handle is None:
                self.handle = self.display(self.pretty(line), display_id=True)
            else:
                self.handle.update(self.pretty(line))
        elif self.mode == "tty":
            self.out.write("\r" + line + "\033[K")
            self.out.flush()
        else:
            now = time.monotonic()
            if self.printed is None or now - self.last_print >= self.plain_every:
                self.out.write(line + "\n")
                self.out.flush()
                self.printed = line
                self.last_print = now

    def finish(self):
        """Show the last state for good (a terminal gets its newline)."""
        if self.last is None:
            return
        if self.mode == "tty":
            self.out.write("\n")
            self.out.flush()
        elif self.mode == "lines" and self.printed != self.last:
            self.out.write(self.last + "\n")
            self.out.flush()


def _describe(f):
    path = f.get("path") or "?"
    if f.get("path2"):
        path += " -> " + f["path2"]
    if f.get("state") == "conflict":
        return "%s: conflict: changed remotely; the remote version was kept and yours was " \
               "committed as %s" % (path, f.get("copy") or "a conflict copy")
    reason = f.get("reason") or ""
    return "%s: %s %s: %s%s%s" % (path, f.get("op") or "change", f.get("state") or "failed",
                                  f.get("error") or "error", ": " if reason else "", reason)


def flush(mountpoint=DEFAULT_MOUNTPOINT, timeout_ms=None, retry_failed=False):
    """Block until every change made before the call is committed remotely;
    the mount stays. Shows the progress (files, bytes, rate, ETA) as one line
    that updates. Raises DurafsError naming every file not committed (with
    the reason) when a change failed or conflicted, when timeout_ms expired
    (the changes stay queued and keep going up), or when the mount is not
    reachable. retry_failed: first send the changes that failed permanently
    back to the queue."""
    mountpoint = os.path.expanduser(mountpoint)
    args = [_durafs(), "sync", "--flush", mountpoint, "--json"]
    if timeout_ms is not None:
        args += ["--timeout", "%dms" % int(timeout_ms)]
    if retry_failed:
        args.append("--retry-failed")
    prog = _Progress()
    result = None
    with tempfile.TemporaryFile(mode="w+") as errf:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=errf, text=True)
        try:
            for line in proc.stdout:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if "progress" in msg:
                    prog.update(progress_line(msg["progress"]))
                elif "result" in msg:
                    result = msg
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
            prog.finish()
        errf.seek(0)
        err = errf.read()
    if rc == 0 and result is not None and result.get("result") == "ok":
        return
    failed = list((result or {}).get("failed") or [])
    if result is None:
        why = _last_line(err) or "durafs sync exited with %d" % rc
        raise DurafsError("durafs flush: %s" % why)
    # What else is not committed: the mount's status names the uploads in
    # flight and the changes being retried, and counts the rest.
    pending, queued = _still_pending(mountpoint, failed)
    files = [f.get("path") for f in failed + pending if f.get("path")]
    lines = ["  " + _describe(f) for f in failed]
    lines += ["  %s: %s" % (f["path"], f["why"]) for f in pending]
    if queued:
        lines.append("  ... and %d more change%s queued behind them" % (
            queued, "" if queued == 1 else "s"))
    if result.get("timeout"):
        head = "durafs flush: timed out after %d ms" % int(timeout_ms or 0)
        tail = "The changes stay queued and keep uploading."
    elif failed:
        head = "durafs flush: %d change%s not committed" % (len(failed),
                                                           "" if len(failed) == 1 else "s")
        tail = "The data stays in durafs' cache and journal; see durafs_colab.status()."
    else:
        head = "durafs flush: %s" % (result.get("error") or _last_line(err) or
                                     "durafs sync exited with %d" % rc)
        tail = ""
    msg = head + (":\n" + "\n".join(lines) if lines else "") + ("\n" + tail if tail else "")
    raise DurafsError(msg, files=files, failed=failed, result=result)


def _still_pending(mountpoint, failed):
    """([{"path", "why"}] of uploads in flight and changes being retried,
    count of the other changes still queued), from the mount's status;
    ([], 0) when it cannot be read."""
    try:
        st = status(mountpoint)
    except DurafsError:
        return [], 0
    seen = {(f.get("seq"), f.get("path")) for f in failed}
    out = []
    for u in st.get("uploads") or []:
        if u.get("path") and (u.get("seq"), u["path"]) not in seen:
            seen.add((u.get("seq"), u["path"]))
            out.append({"path": u["path"], "why": "uploading, %s of %s bytes persisted" % (
                u.get("persisted", "?"), u.get("total", "?"))})
    for r in st.get("retrying") or []:
        if r.get("path") and (r.get("seq"), r["path"]) not in seen:
            seen.add((r.get("seq"), r["path"]))
            out.append({"path": r["path"], "why": "retrying after %s: %s" % (
                r.get("error") or "an error", r.get("reason") or "")})
    ops = (st.get("pending") or {}).get("ops") or 0
    return out, max(0, ops - len(out))


def unmount(mountpoint=DEFAULT_MOUNTPOINT, flush=True, timeout_ms=None):
    """Unmount a durafs mount and wait for its daemon to exit. flush=True
    (default) first commits every pending change and, if one cannot be
    committed, leaves the mount in place and raises DurafsError naming the
    files. flush=False unmounts at once: pending changes stay in durafs'
    journal and go up at the next mount of the same source there."""
    mountpoint = os.path.expanduser(mountpoint)
    args = ["unmount", mountpoint]
    if not flush:
        args.append("--no-flush")
    if timeout_ms is not None:
        args += ["--timeout", "%dms" % int(timeout_ms)]
    res = _run(args, timeout_s=(timeout_ms / 1000.0 + 120) if timeout_ms else None)
    if res.returncode != 0:
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        raise DurafsError("durafs unmount: " + ("\n".join(lines) or
                                                "exited with %d" % res.returncode))


def flush_and_unmount(mountpoint=DEFAULT_MOUNTPOINT, timeout_ms=24 * 60 * 60 * 1000):
    """Flush (with progress), then unmount, like
    google.colab.drive.flush_and_unmount; raises ValueError (DurafsError)
    naming the files not committed, leaving the mount in place.
    Colab's positional form flush_and_unmount(TIMEOUT_MS) is accepted."""
    if isinstance(mountpoint, (int, float)) and not isinstance(mountpoint, bool):
        mountpoint, timeout_ms = DEFAULT_MOUNTPOINT, mountpoint
    start = time.monotonic()
    flush(mountpoint, timeout_ms=timeout_ms)
    left = None
    if timeout_ms is not None:
        left = max(1000, int(timeout_ms - (time.monotonic() - start) * 1000))
    unmount(mountpoint, flush=True, timeout_ms=left)


def status(mountpoint=DEFAULT_MOUNTPOINT):
    """durafs status --json of the mount, as a dict (keys in docs/mount.md:
    pending, uploads, failed, conflicts, cache, ...)."""
    res = _run(["status", os.path.expanduser(mountpoint), "--json"], timeout_s=60)
    if res.returncode != 0:
        raise DurafsError("durafs status: " + (_last_line(res.stderr) or
                                               "exited with %d" % res.returncode))
    try:
        return json.loads(res.stdout)
    except ValueError:
        raise DurafsError("durafs status: not JSON: %r" % res.stdout[:200]) from None


# --- install --------------------------------------------------------------------

def _default_src():
    here = os.path.dirname(os.path.abspath(__file__))
    tree = os.path.dirname(os.path.dirname(here))
    if os.path.isfile(os.path.join(tree, "Makefile")) and \
            os.path.isfile(os.path.join(tree, "contrib", "colab", "durafs_colab.py")):
        return tree
    return os.environ.get("DURAFS_SRC") or DEFAULT_SRC


def _step(name, args, cwd, quiet, env=None):
    if not quiet:
        print("durafs install: %s" % name)
    res = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = "\n".join(res.stdout.strip().splitlines()[-25:])
        raise DurafsError("durafs install: step '%s' failed (%s exited with %d):\n%s" % (
            name, " ".join(args), res.returncode, tail))
    return res


def install(src=None, prefix="/usr/local", quiet=True, jobs=None, build_dir=None,
            make_args=()):
    """Build and install durafs from its source tree (Colab VMs run as root,
    Ubuntu): the apt dependencies (contrib/install-deps.sh, only what is
    missing), `make`, `make install PREFIX=prefix`. Idempotent: a second call
    only re-checks (make rebuilds nothing that is up to date). src: the
    durafs source tree; default this module's own tree when imported from
    it, else $DURAFS_SRC, else /content/durafs (clone it there first).
    build_dir: make's BUILD (default SRC/build); make_args: extra make
    arguments (variables such as CC=clang). Quiet unless a step fails:
    raises DurafsError naming the step, with the end of its output. Returns
    the installed binary's path."""
    src = os.path.abspath(os.path.expanduser(src or _default_src()))
    if not os.path.isfile(os.path.join(src, "Makefile")):
        raise DurafsError("durafs install: no durafs source tree at %s (clone it there, or "
                          "pass src=)" % src)
    build_dir = os.path.abspath(build_dir or os.path.join(src, "build"))
    jobs = jobs or os.cpu_count() or 2
    make = ["make", "--no-print-directory", "-C", src, "BUILD=" + build_dir,
            "PYTHON=" + sys.executable] + list(make_args)
    _step("dependencies (apt-get)", ["sh", os.path.join(src, "contrib", "install-deps.sh"),
                                     "--if-missing"], src, quiet)
    _step("build (make)", make + ["-j%d" % jobs, os.path.join(build_dir, "durafs")], src, quiet)
    _step("install (make install)", make + ["install", "PREFIX=" + prefix], src, quiet)
    binary = os.path.join(prefix, "bin", "durafs")
    res = _step("check (durafs --version)", [binary, "--version"], src, quiet)
    if not quiet:
        print(res.stdout.strip())
    return binary
