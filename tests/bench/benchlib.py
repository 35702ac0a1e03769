"""Plumbing for `make bench`: deterministic test data, the processes a
measurement needs (durafs-emulator, a durafs mount, an rclone mount, curl
runs) and a reaper that always unmounts and stops them, by PID only.

Python 3 standard library only. Nothing here ever talks to a host other
than 127.0.0.1: the emulator listens there, durafs and rclone are pointed
at it, and every proxy variable points at a dead loopback port."""
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

BUILD = os.path.abspath(os.environ.get("DURAFS_BUILD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build"))
DURAFS = os.path.join(BUILD, "durafs")
EMULATOR = os.path.join(BUILD, "durafs-emulator")
RCLONE = os.environ.get("RCLONE") or "/usr/bin/rclone"
CURL = shutil.which("curl") or "/usr/bin/curl"
FUSERMOUNT = shutil.which("fusermount3") or "/usr/bin/fusermount3"

# Environment shared by every child: no credentials, no metadata server, and
# any connection that is not to 127.0.0.1 goes to a dead proxy and fails.
_DEAD_PROXY = "http://127.0.0.1:9"
SAFE_ENV = dict(os.environ)
for _k in ("GOOGLE_APPLICATION_CREDENTIALS", "DURAFS_ACCESS_TOKEN", "CLOUDSDK_CONFIG",
           "STORAGE_EMULATOR_HOST", "RCLONE_CONFIG"):
    SAFE_ENV.pop(_k, None)
SAFE_ENV.update({
    "HTTP_PROXY": _DEAD_PROXY, "HTTPS_PROXY": _DEAD_PROXY, "ALL_PROXY": _DEAD_PROXY,
    "http_proxy": _DEAD_PROXY, "https_proxy": _DEAD_PROXY, "all_proxy": _DEAD_PROXY,
    "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    "DURAFS_NO_METADATA": "1",
    "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
})


class BenchError(Exception):
    """A step of a measurement failed (not a correctness failure)."""


class CorrectnessError(Exception):
    """What a tool produced is wrong: missing objects, wrong bytes, wrong count."""


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# --- reaper -------------------------------------------------------------------

class Reaper:
    """Cleanup actions run in reverse order of registration: on normal exit,
    on an exception and on SIGTERM/SIGINT (turned into exceptions by
    bench.py). Each action is registered when the resource is made and
    dropped when it is released normally."""

    def __init__(self):
        self._actions = {}
        self._next = 0

    def add(self, what, fn):
        self._next += 1
        self._actions[self._next] = (what, fn)
        return self._next

    def drop(self, token):
        self._actions.pop(token, None)

    def run_all(self):
        for token in sorted(self._actions, reverse=True):
            what, fn = self._actions.pop(token)
            try:
                fn()
            except Exception as e:  # keep cleaning up the rest
                log("cleanup of %s failed: %s" % (what, e))


REAPER = Reaper()


def pid_alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def kill_pid(pid, sig=signal.SIGKILL, wait=10.0):
    """Send sig to one process by PID and wait until it is gone."""
    if not pid or not pid_alive(pid):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.time() + wait
    while pid_alive(pid) and time.time() < deadline:
        time.sleep(0.02)


def vm_hwm(pid):
    """Peak resident set size (VmHWM) of a live process, in bytes; None if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == path:
                return True
    return False


def force_unmount(path):
    """Remove whatever is mounted at path, alive or dead (lazy if busy)."""
    for args in ([FUSERMOUNT, "-u", path], [FUSERMOUNT, "-u", "-z", path], ["umount", "-l", path]):
        if not is_mounted(path):
            return
        subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)


def free_port():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def now():
    return time.monotonic()


def run(args, timeout, env=None, check=True, stdout=subprocess.PIPE, stdin=None, cwd=None):
    """Run a command to completion (killed at timeout); text output."""
    try:
        res = subprocess.run(args, env=env or SAFE_ENV, stdout=stdout, stderr=subprocess.PIPE,
                             stdin=stdin, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise BenchError("%s: still running after %d s (killed)" % (" ".join(args[:4]), timeout))
    if check and res.returncode != 0:
        out = res.stdout.decode(errors="replace")[-1500:] if isinstance(res.stdout, bytes) else ""
        raise BenchError("%s exited %d: %s %s" % (" ".join(str(a) for a in args[:6]), res.returncode,
                                                 out, res.stderr.decode(errors="replace")[-1500:]))
    return res


# --- data -----------------------------------------------------------------------

class Blob:
    """size deterministic bytes that never repeat at a 4 KiB granularity:
    a 1 MiB random block whose every 4 KiB page starts with its page number
    (so a read from a wrong offset is always caught)."""

    PAGE = 4096

    def __init__(self, size, seed=1):
        self.size = size
        self.base = random.Random(seed).randbytes(MiB)
        self._md5 = None

    def block(self, i):
        """The i-th MiB (shorter at the end)."""
        b = bytearray(self.base)
        first = i * (MiB // self.PAGE)
        for j in range(MiB // self.PAGE):
            b[j * self.PAGE:j * self.PAGE + 8] = struct.pack(">Q", first + j)
        n = min(MiB, self.size - i * MiB)
        return bytes(b[:n])

    def nblocks(self):
        return (self.size + MiB - 1) // MiB

    def md5_hex(self):
        if self._md5 is None:
            h = hashlib.md5()
            for i in range(self.nblocks()):
                h.update(self.block(i))
            self._md5 = h.hexdigest()
        return self._md5

    def range(self, off, n):
        """Bytes [off, off+n) (clipped at the end)."""
        out = bytearray()
        end = min(self.size, off + n)
        while off < end:
            i = off // MiB
            b = self.block(i)
            take = b[off - i * MiB:min(len(b), end - i * MiB)]
            out += take
            off += len(take)
        return bytes(out)

    def write_fd(self, fd):
        """Write every byte to fd (handles short writes)."""
        for i in range(self.nblocks()):
            view = memoryview(self.block(i))
            while view:
                n = os.write(fd, view)
                view = view[n:]

    def write_file(self, path, off=0, n=None):
        """Write bytes [off, off+n) to a new file at path."""
        end = self.size if n is None else min(self.size, off + n)
        with open(path, "wb") as f:
            pos = off
            while pos < end:
                i = pos // MiB
                b = self.block(i)
                piece = b[pos - i * MiB:min(len(b), end - i * MiB)]
                f.write(piece)
                pos += len(piece)

    def write_chunks(self, dirpath, chunk, off=0):
        """Write bytes [off, size) as files of chunk bytes; returns
        [(path, start, length)]."""
        out = []
        pos = off
        k = 0
        while pos < self.size:
            n = min(chunk, self.size - pos)
            p = os.path.join(dirpath, "chunk%05d" % k)
            self.write_file(p, pos, n)
            out.append((p, pos, n))
            pos += n
            k += 1
        return out


def md5_hex_file(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        while True:
            b = f.read(MiB)
            if not b:
                return h.hexdigest()
            h.update(b)


def b64_to_hex(s):
    import base64
    return base64.b64decode(s).hex()


# --- emulator -------------------------------------------------------------------

class Emulator:
    """One durafs-emulator on 127.0.0.1, state in memory (no --data-dir: no
    disk I/O competes with the mounts' caches), no auth, started fresh for
    every measurement that writes."""

    def __init__(self, workdir, name="emu"):
        self.workdir = workdir
        self.name = name
        self.proc = None
        self.url = None
        self.host = "127.0.0.1"
        self.port = None
        self.log_path = os.path.join(workdir, name + ".log")
        self._token = None

    def start(self):
        ready = os.path.join(self.workdir, self.name + ".ready")
        if os.path.exists(ready):
            os.unlink(ready)
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [EMULATOR, "--listen", "127.0.0.1:0", "--ready-file", ready, "--no-auth"],
                stdout=logf, stderr=logf, env=SAFE_ENV)
        finally:
            logf.close()
        self._token = REAPER.add("emulator %d" % self.proc.pid, self.stop)
        deadline = time.time() + 20
        while not os.path.exists(ready):
            if self.proc.poll() is not None:
                raise BenchError("emulator exited %d at start: %s" % (self.proc.returncode, self.log()))
            if time.time() > deadline:
                raise BenchError("emulator not ready after 20 s")
            time.sleep(0.01)
        with open(ready) as f:
            self.url = f.read().strip()
        u = urllib.parse.urlsplit(self.url)
        self.port = u.port
        return self

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        REAPER.drop(self._token)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, ok=(200,)):
        hdr = {"Content-Type": "application/json"} if body is not None else {}
        st, _, data = self.request(method, path, json.dumps(body) if body is not None else None, hdr)
        if st not in ok:
            raise BenchError("%s %s -> %d %s" % (method, path, st, data[:300]))
        return json.loads(data) if data else {}

    def stats(self):
        return self.json("GET", "/_emulator/stats")

    def counter(self, name):
        return self.stats().get("counters", {}).get(name, 0)

    def mkbucket(self, name):
        self.json("POST", "/storage/v1/b", {"name": name})

    def meta(self, bucket, name):
        st, _, data = self.request("GET", "/storage/v1/b/%s/o/%s" % (bucket, q(name)))
        if st == 404:
            return None
        if st != 200:
            raise BenchError("metadata of %s: HTTP %d" % (name, st))
        return json.loads(data)

    def media_md5(self, bucket, name):
        """MD5 (hex) of an object's bytes, streamed."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        try:
            conn.request("GET", "/storage/v1/b/%s/o/%s?alt=media" % (bucket, q(name)))
            r = conn.getresponse()
            if r.status != 200:
                raise BenchError("download of %s: HTTP %d" % (name, r.status))
            h = hashlib.md5()
            while True:
                b = r.read(MiB)
                if not b:
                    return h.hexdigest()
                h.update(b)
        finally:
            conn.close()

    def list_all(self, bucket, prefix="", fields="items(name,size,md5Hash),nextPageToken"):
        """Every object under prefix (all pages, no delimiter): {name: item}."""
        out = {}
        token = None
        while True:
            qs = {"prefix": prefix, "maxResults": "1000", "fields": fields}
            if token:
                qs["pageToken"] = token
            page = self.json("GET", "/storage/v1/b/%s/o?%s" % (bucket, urllib.parse.urlencode(qs)))
            for it in page.get("items", []):
                out[it["name"]] = it
            token = page.get("nextPageToken")
            if not token:
                return out

    def put_small_many(self, bucket, names, body=b"x", threads=16):
        """Create many small objects fast with curl's parallel transfers over
        keep-alive connections; returns the seconds it took."""
        cfg = os.path.join(self.workdir, "mkobjs.curl")
        src = os.path.join(self.workdir, "mkobjs.body")
        with open(src, "wb") as f:
            f.write(body)
        with open(cfg, "w") as f:
            for k, n in enumerate(names):
                f.write("next\n" if k else "")
                f.write('url = "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s"\n'
                        'request = "POST"\nupload-file = "%s"\n'
                        'header = "Content-Type: application/octet-stream"\n'
                        'output = "/dev/null"\nwrite-out = "%%{http_code}\\n"\n'
                        % (self.url, bucket, q(n), src))
        t0 = now()
        res = run([CURL, "-sS", "-Z", "--parallel-max", str(threads), "--parallel-immediate",
                   "-K", cfg], timeout=1800)
        dt = now() - t0
        codes = res.stdout.decode().split()
        bad = [c for c in codes if c != "200"]
        if len(codes) != len(names) or bad:
            raise BenchError("creating %d objects: %d replies, %d not 200 (%s)"
                             % (len(names), len(codes), len(bad), sorted(set(bad))[:5]))
        os.unlink(cfg)
        return dt

    def put_file(self, bucket, name, path):
        """One media upload of a local file with curl (streams, no copy in memory)."""
        res = run([CURL, "-sS", "-X", "POST", "-T", path, "-H", "Content-Type: application/octet-stream",
                   "-o", "/dev/null", "-w", "%{http_code}",
                   "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (self.url, bucket, q(name))],
                  timeout=600)
        if res.stdout.decode().strip() != "200":
            raise BenchError("upload of %s: HTTP %s" % (name, res.stdout.decode()))


def q(name):
    return urllib.parse.quote(name, safe="")


# --- durafs mount ---------------------------------------------------------------

_LOG_BAD = re.compile(r"^\S+Z (ERROR|WARN) |AddressSanitizer|runtime error|Segmentation fault")


class DurafsMount:
    """`durafs mount gs://BUCKET` at a private mountpoint with its own cache
    dir, pointed at an emulator through STORAGE_EMULATOR_HOST (no
    credentials). The daemon's PID comes from `durafs status --json`."""

    def __init__(self, emu, workdir, name, bucket="bkt", options=(), cache_dir=None):
        self.emu = emu
        self.bucket = bucket
        self.mnt = os.path.join(workdir, name + "-mnt")
        self.cache_dir = cache_dir or os.path.join(workdir, name + "-cache")
        self.log_path = os.path.join(workdir, name + ".log")
        self.options = list(options)
        self.pid = None
        self.env = dict(SAFE_ENV)
        self.env["STORAGE_EMULATOR_HOST"] = emu.url
        self._token = None
        self.peak_rss = 0  # highest VmHWM seen over every daemon of this mount
        os.makedirs(self.mnt, exist_ok=True)

    def cli(self, args, timeout=600, check=True):
        return run([DURAFS] + list(args), timeout=timeout, env=self.env, check=check)

    def mount(self):
        opts = ["log_file=" + self.log_path] + self.options
        self._token = REAPER.add("durafs mount " + self.mnt, self.teardown)
        self.cli(["mount", "gs://" + self.bucket, self.mnt, "--cache-dir", self.cache_dir,
                  "-o", ",".join(opts)], timeout=120)
        if not is_mounted(self.mnt):
            raise BenchError("durafs mount exited 0 but nothing is mounted at " + self.mnt)
        st = json.loads(self.cli(["status", self.mnt, "--json"], timeout=60).stdout)
        self.pid = int(st["mount"]["pid"])
        return self

    def sample_rss(self):
        if self.pid:
            v = vm_hwm(self.pid)
            if v:
                self.peak_rss = max(self.peak_rss, v)
        return self.peak_rss

    def flush(self, timeout=1800):
        self.cli(["sync", "--flush", self.mnt, "--timeout", str(timeout)], timeout=timeout + 60)

    def status(self):
        return json.loads(self.cli(["status", self.mnt, "--json"], timeout=60).stdout)

    def kill9(self):
        """SIGKILL the daemon (as a crash would) and remove the dead mount."""
        self.sample_rss()
        kill_pid(self.pid, signal.SIGKILL)
        self.pid = None
        force_unmount(self.mnt)

    def unmount(self):
        """Clean unmount (flushes first) and wait for the daemon to exit."""
        self.sample_rss()
        try:
            self.cli(["unmount", self.mnt, "--timeout", "300"], timeout=400)
        finally:
            self.teardown()

    def teardown(self):
        pid = self.pid
        if is_mounted(self.mnt):
            try:
                self.cli(["unmount", "--no-flush", "--timeout", "30", self.mnt], timeout=60, check=False)
            except BenchError:
                pass
        if pid:
            deadline = time.time() + 10
            while pid_alive(pid) and time.time() < deadline:
                time.sleep(0.05)
            kill_pid(pid, signal.SIGKILL)
        force_unmount(self.mnt)
        self.pid = None
        REAPER.drop(self._token)

    def bad_log_lines(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return [ln.rstrip() for ln in f if _LOG_BAD.search(ln)]
        except OSError:
            return []


# --- rclone mount ---------------------------------------------------------------

class RcloneMount:
    """`rclone mount` of the emulator's bucket (GCS backend, endpoint = the
    emulator, anonymous) in the foreground as our child, with its remote
    control API on a loopback port to read `vfs/stats`."""

    def __init__(self, emu, workdir, name, bucket="bkt", cache_mode="writes", cache_dir=None,
                 transfers=8, write_back="0s"):
        self.emu = emu
        self.bucket = bucket
        self.mnt = os.path.join(workdir, name + "-mnt")
        self.cache_dir = cache_dir or os.path.join(workdir, name + "-cache")
        self.log_path = os.path.join(workdir, name + ".log")
        self.conf = os.path.join(workdir, "rclone.conf")
        self.cache_mode = cache_mode
        self.transfers = transfers
        self.write_back = write_back
        self.proc = None
        self.port = None
        self._token = None
        self.peak_rss = 0
        self.env = dict(SAFE_ENV)
        self.env.update({
            "RCLONE_CONFIG": self.conf,
            "RCLONE_CONFIG_EMU_TYPE": "google cloud storage",
            "RCLONE_CONFIG_EMU_ANONYMOUS": "true",
            "RCLONE_CONFIG_EMU_ENDPOINT": emu.url + "/storage/v1/",
        })
        os.makedirs(self.mnt, exist_ok=True)
        if not os.path.exists(self.conf):
            open(self.conf, "w").close()

    def mount(self):
        self.port = free_port()
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [RCLONE, "mount", "emu:" + self.bucket, self.mnt,
                 "--vfs-cache-mode", self.cache_mode, "--vfs-write-back", self.write_back,
                 "--transfers", str(self.transfers), "--cache-dir", self.cache_dir,
                 "--rc", "--rc-addr", "127.0.0.1:%d" % self.port, "--rc-no-auth"],
                stdout=logf, stderr=logf, env=self.env, stdin=subprocess.DEVNULL)
        finally:
            logf.close()
        self._token = REAPER.add("rclone mount " + self.mnt, self.teardown)
        deadline = time.time() + 30
        while True:
            if self.proc.poll() is not None:
                raise BenchError("rclone mount exited %d: %s" % (self.proc.returncode, self.log()))
            if is_mounted(self.mnt):
                try:
                    self.vfs_stats()
                    break
                except OSError:
                    pass
            if time.time() > deadline:
                raise BenchError("rclone mount not ready after 30 s: " + self.log())
            time.sleep(0.02)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def vfs_stats(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request("POST", "/vfs/stats", body=b"{}", headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            if r.status != 200:
                raise BenchError("rclone rc vfs/stats: HTTP %d %s" % (r.status, data[:200]))
            return json.loads(data)
        finally:
            conn.close()

    def uploads_pending(self):
        dc = self.vfs_stats().get("diskCache", {})
        return dc.get("uploadsInProgress", 0) + dc.get("uploadsQueued", 0)

    def wait_uploaded(self, done, timeout):
        """Poll vfs/stats until rclone's upload queue is empty and done()
        (a check of the remote) holds. Returns (seconds, note): note says
        when rclone reported an empty queue before the remote was complete."""
        t0 = now()
        note = None
        empty_since = None
        while True:
            self.sample_rss()
            if self.proc.poll() is not None:
                raise BenchError("rclone exited %d while uploading: %s" % (self.proc.returncode, self.log()))
            if self.uploads_pending() == 0:
                if done():
                    if empty_since is not None and now() - empty_since > 1.0:
                        note = ("its rc vfs/stats showed no upload in progress or queued for %.1f s "
                                "while the upload was still running (timed until the remote was "
                                "complete)" % (now() - empty_since))
                    return now() - t0, note
                if empty_since is None:
                    empty_since = now()
            else:
                empty_since = None
            if now() - t0 > timeout:
                raise BenchError("rclone uploads not done after %d s (queue %d)" % (timeout, self.uploads_pending()))
            time.sleep(0.05)

    def sample_rss(self):
        if self.proc and self.proc.poll() is None:
            v = vm_hwm(self.proc.pid)
            if v:
                self.peak_rss = max(self.peak_rss, v)
        return self.peak_rss

    def kill9(self):
        self.sample_rss()
        if self.proc:
            self.proc.kill()
            self.proc.wait(10)
        force_unmount(self.mnt)
        REAPER.drop(self._token)

    def unmount(self):
        self.sample_rss()
        self.teardown()

    def teardown(self):
        if is_mounted(self.mnt):
            subprocess.run([FUSERMOUNT, "-u", self.mnt], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=30)
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
        force_unmount(self.mnt)
        REAPER.drop(self._token)


# --- curl -----------------------------------------------------------------------

class CurlBatch:
    """A curl config file of many transfers run by one curl process (over
    keep-alive connections; in parallel with -Z when parallel > 1). Each
    transfer prints its HTTP status on its own line."""

    def __init__(self, path):
        self.path = path
        self.f = open(path, "w")
        self.n = 0

    def add(self, url, method=None, upload=None, headers=(), rng=None, output="/dev/null",
            continue_at=None):
        f = self.f
        if self.n:
            f.write("next\n")
        f.write('url = "%s"\n' % url)
        if method:
            f.write('request = "%s"\n' % method)
        if upload:
            f.write('upload-file = "%s"\n' % upload)
        if continue_at:
            f.write('continue-at = %d\n' % continue_at)
        for h in headers:
            f.write('header = "%s"\n' % h)
        if rng:
            f.write('range = "%s"\n' % rng)
        f.write('output = "%s"\nwrite-out = "%%{http_code}\\n"\n' % output)
        self.n += 1

    def close(self):
        if self.f:
            self.f.close()
            self.f = None

    def command(self, parallel=1):
        self.close()
        args = [CURL, "-sS"]
        if parallel > 1:
            args += ["-Z", "--parallel-max", str(parallel), "--parallel-immediate"]
        return args + ["-K", self.path]

    def run(self, parallel=1, timeout=1800):
        """Run; returns (seconds, [status codes])."""
        cmd = self.command(parallel)
        t0 = now()
        res = run(cmd, timeout=timeout)
        dt = now() - t0
        return dt, res.stdout.decode().split()


def curl_start_resumable(emu, bucket, name):
    """Initiate a resumable upload with curl; returns the session URI."""
    res = run([CURL, "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST",
               "-H", "Content-Type: application/json", "-d", json.dumps({"name": name}),
               "%s/upload/storage/v1/b/%s/o?uploadType=resumable" % (emu.url, bucket)], timeout=60)
    for line in res.stdout.decode(errors="replace").splitlines():
        if line.lower().startswith("location:"):
            return line.split(":", 1)[1].strip()
    raise BenchError("resumable upload start: no Location in " + res.stdout.decode()[:300])


def curl_resumable_batch(path, session, chunks, total):
    """The chunk PUTs of a resumable upload (chunks as Blob.write_chunks gives)."""
    b = CurlBatch(path)
    for p, start, n in chunks:
        b.add(session, method="PUT", upload=p,
              headers=["Content-Range: bytes %d-%d/%d" % (start, start + n - 1, total)])
    return b


def curl_upload_status(session, total):
    """Status query of a resumable session: bytes persisted (or total if done)."""
    res = run([CURL, "-sS", "-D", "-", "-o", "/dev/null", "-X", "PUT", "-H",
               "Content-Range: bytes */%d" % total, "-H", "Content-Length: 0", session], timeout=60)
    text = res.stdout.decode(errors="replace")
    status = int(text.split()[1]) if text.startswith("HTTP/") else 0
    if status == 200:
        return total
    if status != 308:
        raise BenchError("status query: HTTP %d" % status)
    m = re.search(r"(?im)^range:\s*bytes=0-(\d+)", text)
    return int(m.group(1)) + 1 if m else 0


# --- machine --------------------------------------------------------------------

def machine_info(workdir):
    info = {}
    info["nproc"] = os.cpu_count()
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory"] = "%.1f GiB" % (int(line.split()[1]) / (1024 * 1024))
    except OSError:
        pass
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info["cpu"] = model
    info["kernel"] = os.uname().release
    try:
        res = run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "-T", workdir], timeout=10, check=False)
        src = res.stdout.decode().strip()
        dev = os.path.basename(src.split()[0]) if src else ""
        rot = ""
        try:
            with open("/sys/block/%s/queue/rotational" % dev) as f:
                rot = "rotational" if f.read().strip() == "1" else "non-rotational"
        except OSError:
            pass
        info["disk"] = "%s%s, work dir %s" % (src, (" " + rot) if rot else "", workdir)
    except BenchError:
        info["disk"] = "?"
    info["load"] = " ".join("%.2f" % x for x in os.getloadavg())
    return info


def versions():
    def first_line(args):
        try:
            res = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20,
                                 env=SAFE_ENV)
            return res.stdout.decode(errors="replace").strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"
    v = {
        "durafs": first_line([DURAFS, "--version"]),
        "rclone": first_line([RCLONE, "version"]),
        "curl": " ".join(first_line([CURL, "--version"]).split()[:3]),
        "libfuse": "fuse3 " + first_line(["pkg-config", "--modversion", "fuse3"]),
    }
    try:
        res = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse",
                              "--short", "HEAD"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=10)
        if res.returncode == 0:
            v["durafs"] += " (git HEAD %s; the working tree may hold uncommitted work)" % (
                res.stdout.decode().strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return v


def make_workdir():
    base = os.environ.get("BENCH_DIR") or tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="durafs-bench-", dir=base)


def make_shmdir():
    """A RAM directory for the bytes curl sends (so the limit is not held
    back by reading its input from disk)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="durafs-bench-", dir=base)
