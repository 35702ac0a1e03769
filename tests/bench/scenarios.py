"""The `make bench` scenarios (issue 8). Each scenario measures the same
work three ways in one run -- durafs, rclone mount, and the machine's limit
(curl over loopback, dd on the local disk) -- and checks what it produced:
a wrong count or wrong bytes from durafs or from a limit raises
CorrectnessError (the bench then exits non-zero); rclone's misbehaviour is
recorded as a note, since it is what we compare against.

A scenario method returns {metric: value} for one run; seconds are
wall-clock, measured with time.monotonic() around exactly the work named."""
import io
import os
import random
import re
import shutil
import signal
import subprocess
import tarfile
import time

from benchlib import (CURL, KiB, MiB, GiB, BenchError, Blob, CorrectnessError, CurlBatch, DurafsMount,
                      Emulator, RcloneMount, b64_to_hex, curl_resumable_batch, curl_start_resumable,
                      curl_upload_status, md5_hex_file, now, q, run)

BUCKET = "bkt"
CHUNK = 16 * MiB        # durafs' default chunk_size; curl uses the same
PARALLEL = 8            # durafs' default upload_workers; rclone --transfers and curl -Z the same
FETCHED_LABEL = "MiB asked of the emulator (a range the client stops reading counts whole)"


class Metric:
    """One row of the table. unit: 's', 'MiB', 'entries'. target(values by
    tool) -> (met: bool, text) or None."""

    def __init__(self, key, label, unit, tools=("durafs", "rclone", "limit"), target=None,
                 target_text=None, ratio=True):
        self.key = key
        self.label = label
        self.unit = unit
        self.tools = tools
        self.target = target
        self.target_text = target_text
        self.ratio = ratio


class Ctx:
    """What every scenario shares: directories, sizes, and where notes go."""

    def __init__(self, workdir, shmdir, quick):
        self.workdir = workdir
        self.shmdir = shmdir
        self.quick = quick
        self._n = 0
        self.notes = []      # [scenario key, tool, text, times seen]

    def note(self, item):
        """Record (scenario key, tool, text); a text seen again with other
        numbers in it only bumps the count of the first one."""
        key, who, text = item
        shape = re.sub(r"[0-9.]+", "#", text)
        for n in self.notes:
            if n[0] == key and n[1] == who and re.sub(r"[0-9.]+", "#", n[2]) == shape:
                n[3] += 1
                return
        self.notes.append([key, who, text, 1])

    def uniq(self, prefix):
        self._n += 1
        return "%s-%d" % (prefix, self._n)

    def subdir(self, prefix, shm=False):
        d = os.path.join(self.shmdir if shm else self.workdir, self.uniq(prefix))
        os.makedirs(d)
        return d


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


def fresh_emulator(ctx, prefix):
    emu = Emulator(ctx.workdir, ctx.uniq(prefix + "-emu")).start()
    emu.mkbucket(BUCKET)
    return emu


def check_object(emu, name, size, md5_hex, who):
    meta = emu.meta(BUCKET, name)
    if meta is None:
        raise CorrectnessError("%s: object %s is missing on the emulator" % (who, name))
    if int(meta["size"]) != size:
        raise CorrectnessError("%s: object %s has %s bytes, expected %d" % (who, name, meta["size"], size))
    # a composed object has no md5Hash: then hash its bytes
    got = b64_to_hex(meta["md5Hash"]) if "md5Hash" in meta else emu.media_md5(BUCKET, name)
    if got != md5_hex:
        raise CorrectnessError("%s: object %s has md5 %s, expected %s" % (who, name, got, md5_hex))
    return meta


def object_complete(emu, name, size):
    meta = emu.meta(BUCKET, name)
    return meta is not None and int(meta["size"]) == size


def write_file(path, blob, fsync):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        blob.write_fd(fd)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def durafs_log_notes(ctx, key, m):
    bad = m.bad_log_lines()
    if bad:
        ctx.note((key, "durafs", "daemon log of %s has %d ERROR/WARN lines, first: %s"
                          % (os.path.basename(m.log_path), len(bad), " | ".join(bad[:3]))))


class Writer:
    """Writes a Blob to a new file and closes it in a thread, so that a
    close() that blocks until the upload is done (rclone) does not stop us
    from killing the daemon halfway. finish() joins; returns the error."""

    def __init__(self, path, blob):
        import threading
        self.error = None
        self.done = False
        self.t = threading.Thread(target=self._run, args=(path, blob), daemon=True)
        self.t.start()

    def _run(self, path, blob):
        try:
            write_file(path, blob, fsync=False)
        except OSError as e:
            self.error = e
        self.done = True

    def finish(self, timeout=60):
        self.t.join(timeout)
        if not self.done:
            self.error = "still blocked %d s after the kill" % timeout
        return self.error


class Scenario:
    key = "?"
    title = "?"
    metrics = []
    quick_runs = 1      # runs under --quick (make bench-quick must stay under 3 minutes)

    def __init__(self, ctx):
        self.ctx = ctx

    def setup(self):
        pass

    def teardown(self):
        pass


# --- 1. large file ----------------------------------------------------------------

class LargeFile(Scenario):
    key = "large"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.size = 128 * MiB if ctx.quick else GiB
        self.title = "1. Large file: write %s sequentially + fsync (rclone: until uploaded)" % human(self.size)
        self.metrics = [
            Metric("time", "write + fsync/upload", "s",
                   target=lambda v: ratio_target(v, "limit", 1.3),
                   target_text="durafs/limit <= 1.3"),
            Metric("write", "of which write() calls", "s", tools=("durafs", "rclone"), ratio=False),
            Metric("dd", "limit part: dd write to local disk (conv=fdatasync)", "s", tools=("limit",),
                   ratio=False),
            Metric("curl", "limit part: curl resumable upload, %d MiB chunks" % (CHUNK // MiB), "s",
                   tools=("limit",), ratio=False),
            rss_metric(),
        ]

    def setup(self):
        self.blob = Blob(self.size, seed=11)
        self.md5 = self.blob.md5_hex()
        self.chunkdir = self.ctx.subdir("large-chunks", shm=True)
        self.chunks = self.blob.write_chunks(self.chunkdir, CHUNK)

    def teardown(self):
        rmtree(self.chunkdir)

    def durafs(self, i):
        emu = fresh_emulator(self.ctx, "large-d")
        m = None
        try:
            m = DurafsMount(emu, self.ctx.workdir, self.ctx.uniq("large-durafs")).mount()
            t0 = now()
            fd = os.open(os.path.join(m.mnt, "large.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                self.blob.write_fd(fd)
                t1 = now()
                try:
                    os.fsync(fd)
                except OSError as e:
                    raise CorrectnessError("durafs: fsync of a %s file failed: %s" % (human(self.size), e))
                t2 = now()
            finally:
                os.close(fd)
            check_object(emu, "large.bin", self.size, self.md5, "durafs")
            m.sample_rss()
            m.unmount()
            durafs_log_notes(self.ctx, self.key, m)
            return {"time": t2 - t0, "write": t1 - t0, "rss": m.peak_rss / MiB}
        finally:
            if m:
                m.teardown()
                rmtree(m.cache_dir)
            emu.stop()

    def rclone(self, i):
        emu = fresh_emulator(self.ctx, "large-r")
        r = None
        try:
            r = RcloneMount(emu, self.ctx.workdir, self.ctx.uniq("large-rclone")).mount()
            t0 = now()
            write_file(os.path.join(r.mnt, "large.bin"), self.blob, fsync=True)
            t1 = now()
            waited, note = r.wait_uploaded(lambda: object_complete(emu, "large.bin", self.size), 1800)
            t2 = now()
            if note:
                self.ctx.note((self.key, "rclone", note))
            check_object(emu, "large.bin", self.size, self.md5, "rclone")
            r.unmount()
            return {"time": t2 - t0, "write": t1 - t0, "rss": r.peak_rss / MiB}
        finally:
            if r:
                r.teardown()
                rmtree(r.cache_dir)
            emu.stop()

    def limit(self, i):
        # local disk: the bytes a mount's cache must take
        ddf = os.path.join(self.ctx.workdir, self.ctx.uniq("dd") + ".bin")
        t0 = now()
        run(["dd", "if=/dev/zero", "of=" + ddf, "bs=1M", "count=%d" % (self.size // MiB),
             "conv=fdatasync", "status=none"], timeout=1800)
        t_dd = now() - t0
        os.unlink(ddf)
        emu = fresh_emulator(self.ctx, "large-l")
        try:
            t0 = now()
            session = curl_start_resumable(emu, BUCKET, "large.bin")
            batch = curl_resumable_batch(os.path.join(self.ctx.workdir, self.ctx.uniq("l.curl")),
                                         session, self.chunks, self.size)
            _, codes = batch.run(timeout=1800)
            t_curl = now() - t0
            want = ["308"] * (len(self.chunks) - 1) + ["200"]
            if codes != want:
                raise CorrectnessError("curl resumable upload: statuses %s, expected %s" % (codes[-5:], want[-5:]))
            check_object(emu, "large.bin", self.size, self.md5, "curl")
            return {"time": max(t_dd, t_curl), "dd": t_dd, "curl": t_curl}
        finally:
            emu.stop()


# --- 2. many small files ----------------------------------------------------------

class SmallFiles(Scenario):
    key = "small"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.nfiles = 500 if ctx.quick else 5000
        self.ndirs = 10 if ctx.quick else 50
        self.title = ("2. Many small files: tar -x of %d files of 4-64 KiB in %d dirs, then "
                      "`durafs sync --flush` (rclone: until uploaded)" % (self.nfiles, self.ndirs))
        self.metrics = [
            Metric("time", "tar -x + flush/upload", "s",
                   target=lambda v: rclone_faster_target(v, 3.0),
                   target_text="durafs >= 3x faster than rclone"),
            Metric("extract", "of which tar -x", "s", ratio=False),
            Metric("requests", "HTTP requests seen by the emulator", "req", ratio=False),
            rss_metric(),
        ]

    def setup(self):
        rng = random.Random(22)
        self.expected = {}
        self.tar = os.path.join(self.ctx.workdir, "small.tar")
        total = 0
        with tarfile.open(self.tar, "w", format=tarfile.GNU_FORMAT) as tf:
            for d in range(self.ndirs):
                ti = tarfile.TarInfo("tree/d%02d" % d)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                ti.mtime = 1700000000
                tf.addfile(ti)
            for k in range(self.nfiles):
                name = "tree/d%02d/f%05d.dat" % (k % self.ndirs, k)
                size = rng.randint(4 * KiB, 64 * KiB)
                data = rng.randbytes(size)
                ti = tarfile.TarInfo(name)
                ti.size = size
                ti.mode = 0o644
                ti.mtime = 1700000000 + k
                tf.addfile(ti, io.BytesIO(data))
                self.expected[name] = (size, _md5(data))
                total += size
        self.bytes = total
        self.title += " (%s)" % human(total)

    def verify(self, emu, who):
        got = emu.list_all(BUCKET, prefix="tree/")
        files = {n: it for n, it in got.items() if not n.endswith("/")}
        missing = sorted(set(self.expected) - set(files))
        extra = sorted(set(files) - set(self.expected))
        bad = [n for n, (size, md5) in self.expected.items() if n in files and (
            int(files[n]["size"]) != size or b64_to_hex(files[n].get("md5Hash", "")) != md5)]
        if missing or extra or bad:
            raise CorrectnessError("%s: %d objects missing (%s), %d unexpected (%s), %d with wrong bytes (%s)"
                                   % (who, len(missing), missing[:3], len(extra), extra[:3], len(bad), bad[:3]))

    def count_done(self, emu):
        got = emu.list_all(BUCKET, prefix="tree/", fields="items(name),nextPageToken")
        return sum(1 for n in got if not n.endswith("/")) >= self.nfiles

    def durafs(self, i):
        emu = fresh_emulator(self.ctx, "small-d")
        m = None
        try:
            m = DurafsMount(emu, self.ctx.workdir, self.ctx.uniq("small-durafs")).mount()
            t0 = now()
            run(["tar", "-xf", self.tar, "-C", m.mnt], timeout=1800)
            t1 = now()
            try:
                m.flush()
            except BenchError as e:
                raise CorrectnessError("durafs: sync --flush failed: %s" % e)
            t2 = now()
            self.verify(emu, "durafs")
            reqs = emu.stats().get("requests_total", 0)
            m.sample_rss()
            m.unmount()
            durafs_log_notes(self.ctx, self.key, m)
            return {"time": t2 - t0, "extract": t1 - t0, "requests": reqs, "rss": m.peak_rss / MiB}
        finally:
            if m:
                m.teardown()
                rmtree(m.cache_dir)
            emu.stop()

    def rclone(self, i):
        emu = fresh_emulator(self.ctx, "small-r")
        r = None
        try:
            r = RcloneMount(emu, self.ctx.workdir, self.ctx.uniq("small-rclone")).mount()
            t0 = now()
            run(["tar", "-xf", self.tar, "-C", r.mnt], timeout=1800)
            t1 = now()
            _, note = r.wait_uploaded(lambda: self.count_done(emu), 1800)
            t2 = now()
            if note:
                self.ctx.note((self.key, "rclone", note))
            self.verify(emu, "rclone")
            reqs = emu.stats().get("requests_total", 0)
            r.unmount()
            return {"time": t2 - t0, "extract": t1 - t0, "requests": reqs, "rss": r.peak_rss / MiB}
        finally:
            if r:
                r.teardown()
                rmtree(r.cache_dir)
            emu.stop()

    def limit(self, i):
        src = self.ctx.subdir("small-src")
        emu = fresh_emulator(self.ctx, "small-l")
        try:
            t0 = now()
            run(["tar", "-xf", self.tar, "-C", src], timeout=1800)
            t_tar = now() - t0
            batch = CurlBatch(os.path.join(self.ctx.workdir, self.ctx.uniq("small.curl")))
            for name in self.expected:
                batch.add("%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (emu.url, BUCKET, q(name)),
                          method="POST", upload=os.path.join(src, name),
                          headers=["Content-Type: application/octet-stream"])
            dt, codes = batch.run(parallel=PARALLEL)
            if len(codes) != self.nfiles or any(c != "200" for c in codes):
                raise CorrectnessError("curl: %d uploads, statuses %s" % (len(codes), sorted(set(codes))))
            self.verify(emu, "curl")
            reqs = emu.stats().get("requests_total", 0)
            return {"time": dt, "extract": t_tar, "requests": reqs}
        finally:
            emu.stop()
            rmtree(src)


# --- 3. huge directory ------------------------------------------------------------

class HugeDir(Scenario):
    key = "hugedir"
    quick_runs = 3

    def __init__(self, ctx):
        super().__init__(ctx)
        self.n = 10000 if ctx.quick else 100000
        self.title = "3. Huge directory: %d objects under one prefix; cold `ls -f`, then warm `ls -l`" % self.n
        self.metrics = [
            Metric("cold", "cold ls -f (limit: paged listing with curl)", "s"),
            Metric("count", "entries listed by cold ls -f (must be %d)" % self.n, "entries",
                   target=lambda v: exact_target(v, self.n, ("durafs",)),
                   target_text="durafs exactly %d every run" % self.n, ratio=False),
            Metric("warm", "warm ls -l (limit: ls -l of %d empty files on tmpfs)" % self.n, "s",
                   target=lambda v: abs_target(v, "durafs", 1.0),
                   target_text="durafs < 1 s every run"),
            Metric("remount", "remount (same cache dir), then ls -f: time to the listing "
                   "(durafs answers from the stored listing; rclone lists again)", "s",
                   tools=("durafs", "rclone"), ratio=False),
            Metric("mount", "of which the remount itself (durafs mount returns)", "s",
                   tools=("durafs",), ratio=False),
            rss_metric(),
        ]

    def setup(self):
        self.names = ["h/f%06d" % k for k in range(self.n)]
        self.base = {n[2:] for n in self.names}
        self.emu = fresh_emulator(self.ctx, "hugedir")
        dt = self.emu.put_small_many(BUCKET, self.names, threads=16)
        self.ctx.note((self.key, "setup", "%d objects created on the emulator in %.1f s "
                               "(curl -Z, 16 connections)" % (self.n, dt)))
        self.local = self.ctx.subdir("hugedir-local", shm=True)
        for b in self.base:
            os.close(os.open(os.path.join(self.local, b), os.O_WRONLY | os.O_CREAT, 0o644))

    def teardown(self):
        self.emu.stop()
        rmtree(self.local)

    def list_dir(self, path, who, hard):
        """Timed cold `ls -f` and warm `ls -l` of path; checks."""
        t0 = now()
        res = run(["ls", "-f", path], timeout=1800, check=False)
        t1 = now()
        names = [n for n in res.stdout.decode(errors="replace").split("\n") if n not in ("", ".", "..")]
        problems = []
        if res.returncode != 0:
            problems.append("ls -f exited %d: %s" % (res.returncode, res.stderr.decode(errors="replace")[-300:]))
        got = set(names)
        if len(names) != self.n or got != self.base:
            problems.append("cold ls -f listed %d entries (%d distinct), expected %d; missing %d, unexpected %d"
                            % (len(names), len(got), self.n, len(self.base - got), len(got - self.base)))
        t2 = now()
        res2 = run(["ls", "-l", path], timeout=1800, check=False)
        t3 = now()
        lines = res2.stdout.decode(errors="replace").count("\n")
        if res2.returncode != 0 or lines != self.n + 1:
            problems.append("warm ls -l exited %d with %d lines (expected %d): %s"
                            % (res2.returncode, lines, self.n + 1, res2.stderr.decode(errors="replace")[-300:]))
        if problems:
            if hard:
                raise CorrectnessError("%s: %s" % (who, "; ".join(problems)))
            self.ctx.note((self.key, who, "; ".join(problems)))
        return {"cold": t1 - t0, "count": len(names), "warm": t3 - t2}

    def remount_list(self, mnt, path, who, hard):
        """Unmount, mount again on the same cache dir, and time the mount
        plus an `ls -f` of path (which must still list every name)."""
        mnt.unmount()
        t0 = now()
        mnt.mount()
        t1 = now()
        res = run(["ls", "-f", path], timeout=1800, check=False)
        t2 = now()
        names = [n for n in res.stdout.decode(errors="replace").split("\n") if n not in ("", ".", "..")]
        if res.returncode != 0 or set(names) != self.base or len(names) != self.n:
            msg = "ls -f after a remount exited %d with %d entries (expected %d)" % (
                res.returncode, len(names), self.n)
            if hard:
                raise CorrectnessError("%s: %s" % (who, msg))
            self.ctx.note((self.key, who, msg))
        return {"remount": t2 - t0, "mount": t1 - t0}

    def durafs(self, i):
        m = None
        try:
            m = DurafsMount(self.emu, self.ctx.workdir, self.ctx.uniq("hugedir-durafs")).mount()
            out = self.list_dir(os.path.join(m.mnt, "h"), "durafs", hard=True)
            out.update(self.remount_list(m, os.path.join(m.mnt, "h"), "durafs", hard=True))
            m.sample_rss()
            m.unmount()
            durafs_log_notes(self.ctx, self.key, m)
            out["rss"] = m.peak_rss / MiB
            return out
        finally:
            if m:
                m.teardown()
                rmtree(m.cache_dir)

    def rclone(self, i):
        r = None
        try:
            r = RcloneMount(self.emu, self.ctx.workdir, self.ctx.uniq("hugedir-rclone")).mount()
            out = self.list_dir(os.path.join(r.mnt, "h"), "rclone", hard=False)
            out.update(self.remount_list(r, os.path.join(r.mnt, "h"), "rclone", hard=False))
            r.unmount()
            out["rss"] = r.peak_rss / MiB
            return out
        finally:
            if r:
                r.teardown()
                rmtree(r.cache_dir)

    def limit(self, i):
        import json
        t0 = now()
        token = None
        count = 0
        pages = 0
        while True:
            url = "%s/storage/v1/b/%s/o?prefix=h/&delimiter=/&maxResults=1000" % (self.emu.url, BUCKET)
            if token:
                url += "&pageToken=" + q(token)
            res = run([CURL, "-sS", "-f", url], timeout=120)
            page = json.loads(res.stdout)
            count += len(page.get("items", []))
            pages += 1
            token = page.get("nextPageToken")
            if not token:
                break
        t1 = now()
        if count != self.n:
            raise CorrectnessError("curl paged listing: %d objects in %d pages, expected %d" % (count, pages, self.n))
        t2 = now()
        res = run(["ls", "-l", self.local], timeout=600)
        t3 = now()
        if res.stdout.decode().count("\n") != self.n + 1:
            raise CorrectnessError("local ls -l: wrong line count")
        return {"cold": t1 - t0, "count": count, "warm": t3 - t2}


# --- 4. cold sequential read -------------------------------------------------------

class BigObject(Scenario):
    """Base of the read scenarios: one object on a fresh emulator."""

    def setup(self):
        self.blob = Blob(self.size, seed=44)
        self.md5 = self.blob.md5_hex()
        d = self.ctx.subdir(self.key + "-src", shm=True)
        src = os.path.join(d, "big.bin")
        self.blob.write_file(src)
        self.emu = fresh_emulator(self.ctx, self.key)
        self.emu.put_file(BUCKET, "big.bin", src)
        rmtree(d)
        check_object(self.emu, "big.bin", self.size, self.md5, "setup")

    def teardown(self):
        self.emu.stop()


class SeqRead(BigObject):
    key = "seqread"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.size = 128 * MiB if ctx.quick else GiB
        self.title = "4. Cold sequential read of a %s object (`cat > /dev/null`; rclone --vfs-cache-mode full)" \
            % human(self.size)
        self.metrics = [
            Metric("time", "cold cat > /dev/null (limit: curl download)", "s",
                   target=lambda v: ratio_target(v, "limit", 1.3), target_text="durafs/limit <= 1.3"),
            Metric("warm", "warm re-read + md5 (correctness check)", "s", tools=("durafs", "rclone"),
                   ratio=False),
            Metric("tofile", "limit part: curl download into a file on the cache disk", "s",
                   tools=("limit",), ratio=False),
            Metric("disk", "limit part: dd read of a local file (iflag=direct)", "s", tools=("limit",),
                   ratio=False),
            Metric("fetched", FETCHED_LABEL, "MiB", ratio=False),
            Metric("media", "media requests", "req", ratio=False),
            rss_metric(),
        ]

    def setup(self):
        super().setup()
        self.ddf = os.path.join(self.ctx.workdir, "seqread-dd.bin")
        run(["dd", "if=/dev/zero", "of=" + self.ddf, "bs=1M", "count=%d" % (self.size // MiB),
             "conv=fdatasync", "status=none"], timeout=1800)

    def teardown(self):
        super().teardown()
        if os.path.exists(self.ddf):
            os.unlink(self.ddf)

    def _read(self, mnt, who):
        path = os.path.join(mnt, "big.bin")
        st0 = self.emu.stats()
        t0 = now()
        run(["cat", path], timeout=1800, stdout=subprocess.DEVNULL)
        t1 = now()
        st1 = self.emu.stats()
        got = md5_hex_file(path)
        t2 = now()
        if got != self.md5:
            raise CorrectnessError("%s: read back md5 %s, expected %s" % (who, got, self.md5))
        return {"time": t1 - t0, "warm": t2 - t1,
                "fetched": media_diff(st0, st1, "gcs.media_bytes_sent") / MiB,
                "media": requests_diff(st0, st1, "gcs.objects.get.media")}

    def durafs(self, i):
        m = None
        try:
            m = DurafsMount(self.emu, self.ctx.workdir, self.ctx.uniq("seqread-durafs")).mount()
            out = self._read(m.mnt, "durafs")
            m.sample_rss()
            m.unmount()
            durafs_log_notes(self.ctx, self.key, m)
            out["rss"] = m.peak_rss / MiB
            return out
        finally:
            if m:
                m.teardown()
                rmtree(m.cache_dir)

    def rclone(self, i):
        r = None
        try:
            r = RcloneMount(self.emu, self.ctx.workdir, self.ctx.uniq("seqread-rclone"), cache_mode="full").mount()
            out = self._read(r.mnt, "rclone")
            r.unmount()
            out["rss"] = r.peak_rss / MiB
            return out
        finally:
            if r:
                r.teardown()
                rmtree(r.cache_dir)

    def limit(self, i):
        st0 = self.emu.stats()
        t0 = now()
        res = run([CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                   "%s/storage/v1/b/%s/o/big.bin?alt=media" % (self.emu.url, BUCKET)], timeout=1800)
        t1 = now()
        st1 = self.emu.stats()
        code, size = res.stdout.decode().split()
        if code != "200" or int(size) != self.size:
            raise CorrectnessError("curl download: HTTP %s, %s bytes" % (code, size))
        t2 = now()
        run(["dd", "if=" + self.ddf, "of=/dev/null", "bs=1M", "iflag=direct", "status=none"], timeout=1800)
        t3 = now()
        dl = os.path.join(self.ctx.workdir, self.ctx.uniq("download") + ".bin")
        try:
            run([CURL, "-sS", "-f", "-o", dl, "%s/storage/v1/b/%s/o/big.bin?alt=media" % (self.emu.url, BUCKET)],
                timeout=1800)
            t4 = now()
        finally:
            if os.path.exists(dl):
                os.unlink(dl)
        return {"time": t1 - t0, "disk": t3 - t2, "tofile": t4 - t3,
                "fetched": media_diff(st0, st1, "gcs.media_bytes_sent") / MiB,
                "media": requests_diff(st0, st1, "gcs.objects.get.media")}


# --- 5. random reads --------------------------------------------------------------

class RandRead(BigObject):
    key = "randread"
    quick_runs = 3

    def __init__(self, ctx):
        super().__init__(ctx)
        self.size = 128 * MiB if ctx.quick else GiB
        self.nreads = 500 if ctx.quick else 2000
        self.title = ("5. Random reads: %d x 4 KiB (os.pread, 4 KiB aligned) across a %s object, cold "
                      "(rclone --vfs-cache-mode full; limit: curl range GETs on one connection)"
                      % (self.nreads, human(self.size)))
        self.metrics = [
            Metric("time", "%d random 4 KiB reads" % self.nreads, "s"),
            Metric("fetched", FETCHED_LABEL, "MiB", ratio=False),
            Metric("media", "media requests", "req", ratio=False),
            rss_metric(),
        ]

    def setup(self):
        super().setup()
        rng = random.Random(55)
        self.offsets = [rng.randrange(self.size // 4096) * 4096 for _ in range(self.nreads)]
        self.want = [self.blob.range(o, 4096) for o in self.offsets]

    def _read(self, mnt, who):
        st0 = self.emu.stats()
        fd = os.open(os.path.join(mnt, "big.bin"), os.O_RDONLY)
        try:
            t0 = now()
            got = [os.pread(fd, 4096, o) for o in self.offsets]
            t1 = now()
        finally:
            os.close(fd)
        st1 = self.emu.stats()
        bad = [k for k in range(self.nreads) if got[k] != self.want[k]]
        if bad:
            raise CorrectnessError("%s: %d of %d reads returned wrong bytes (first at offset %d)"
                                   % (who, len(bad), self.nreads, self.offsets[bad[0]]))
        return {"time": t1 - t0, "fetched": media_diff(st0, st1, "gcs.media_bytes_sent") / MiB,
                "media": requests_diff(st0, st1, "gcs.objects.get.media")}

    def durafs(self, i):
        m = None
        try:
            m = DurafsMount(self.emu, self.ctx.workdir, self.ctx.uniq("randread-durafs")).mount()
            out = self._read(m.mnt, "durafs")
            m.sample_rss()
            m.unmount()
            durafs_log_notes(self.ctx, self.key, m)
            out["rss"] = m.peak_rss / MiB
            return out
        finally:
            if m:
                m.teardown()
                rmtree(m.cache_dir)

    def rclone(self, i):
        r = None
        try:
            r = RcloneMount(self.emu, self.ctx.workdir, self.ctx.uniq("randread-rclone"), cache_mode="full").mount()
            out = self._read(r.mnt, "rclone")
            r.unmount()
            out["rss"] = r.peak_rss / MiB
            return out
        finally:
            if r:
                r.teardown()
                rmtree(r.cache_dir)

    def limit(self, i):
        d = self.ctx.subdir("randread-out", shm=True)
        try:
            batch = CurlBatch(os.path.join(self.ctx.workdir, self.ctx.uniq("rand.curl")))
            outs = []
            for k, o in enumerate(self.offsets):
                p = os.path.join(d, "r%05d" % k)
                outs.append(p)
                batch.add("%s/storage/v1/b/%s/o/big.bin?alt=media" % (self.emu.url, BUCKET),
                          rng="%d-%d" % (o, o + 4095), output=p)
            st0 = self.emu.stats()
            dt, codes = batch.run(parallel=1)
            st1 = self.emu.stats()
            if len(codes) != self.nreads or any(c != "206" for c in codes):
                raise CorrectnessError("curl range GETs: %d replies, statuses %s" % (len(codes), sorted(set(codes))))
            for k, p in enumerate(outs):
                with open(p, "rb") as f:
                    if f.read() != self.want[k]:
                        raise CorrectnessError("curl range GET %d returned wrong bytes" % k)
            return {"time": dt, "fetched": media_diff(st0, st1, "gcs.media_bytes_sent") / MiB,
                    "media": requests_diff(st0, st1, "gcs.objects.get.media")}
        finally:
            rmtree(d)


# --- 6. crash resume --------------------------------------------------------------

class CrashResume(Scenario):
    key = "crash"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.size = 128 * MiB if ctx.quick else GiB
        self.title = ("6. Crash resume: kill -9 halfway through a %s upload, remount, flush "
                      "(rclone: restart, until uploaded; limit: kill curl, status query, resume)" % human(self.size))
        self.metrics = [
            Metric("twice", "bytes sent twice (emulator: received - object size)", "MiB", ratio=False,
                   target=lambda v: max_target(v, "durafs", CHUNK / MiB),
                   target_text="durafs <= one chunk (%d MiB) every run" % (CHUNK // MiB)),
            Metric("resume", "remount + flush (rclone: restart until uploaded; curl: status + rest)", "s"),
            Metric("killed_at", "persisted on the emulator at the kill", "MiB", ratio=False),
            rss_metric(),
        ]

    def setup(self):
        self.blob = Blob(self.size, seed=66)
        self.md5 = self.blob.md5_hex()
        self.chunkdir = self.ctx.subdir("crash-chunks", shm=True)
        self.chunks = self.blob.write_chunks(self.chunkdir, CHUNK)

    def teardown(self):
        rmtree(self.chunkdir)

    def _wait_half(self, emu, alive, who):
        """Poll the emulator until half the object is persisted; returns the
        persisted bytes. Fails when the upload completed first."""
        half = self.size // 2
        deadline = time.time() + 600
        while True:
            c = emu.stats().get("counters", {})
            p = c.get("gcs.upload_bytes_persisted", 0)
            if p >= self.size:
                raise BenchError("%s: the whole upload finished before the kill (poll too slow)" % who)
            if p >= half:
                return p
            if not alive():
                raise BenchError("%s: process exited before half the upload was persisted" % who)
            if time.time() > deadline:
                raise BenchError("%s: half the upload not persisted after 600 s (%d bytes)" % (who, p))
            time.sleep(0.005)

    def durafs(self, i):
        emu = fresh_emulator(self.ctx, "crash-d")
        name = self.ctx.uniq("crash-durafs")
        cache = os.path.join(self.ctx.workdir, name + "-cache")
        m1 = m2 = None
        try:
            m1 = DurafsMount(emu, self.ctx.workdir, name, cache_dir=cache).mount()
            # durafs' close() returns at once (the upload starts after writeback_delay)
            write_file(os.path.join(m1.mnt, "crash.bin"), self.blob, fsync=False)
            killed_at = self._wait_half(emu, lambda: m1.pid is not None and os.path.exists("/proc/%d" % m1.pid),
                                        "durafs")
            m1.kill9()
            rss1 = m1.peak_rss
            m1.teardown()
            m2 = DurafsMount(emu, self.ctx.workdir, name, cache_dir=cache)
            t0 = now()
            m2.mount()
            try:
                m2.flush()
            except BenchError as e:
                raise CorrectnessError("durafs: sync --flush after the crash failed: %s" % e)
            t1 = now()
            check_object(emu, "crash.bin", self.size, self.md5, "durafs")
            c = emu.stats().get("counters", {})
            twice = c.get("gcs.upload_bytes_received", 0) - self.size
            if c.get("gcs.upload_sessions_resumed", 0) == 0:
                self.ctx.note((self.key, "durafs", "run %d: the emulator saw no resumed session "
                                       "(the upload restarted from zero?)" % (i + 1)))
            m2.sample_rss()
            m2.unmount()
            durafs_log_notes(self.ctx, self.key, m2)
            return {"twice": twice / MiB, "resume": t1 - t0, "killed_at": killed_at / MiB,
                    "rss": max(rss1, m2.peak_rss) / MiB}
        finally:
            for m in (m1, m2):
                if m:
                    m.teardown()
            rmtree(cache)
            emu.stop()

    def rclone(self, i):
        emu = fresh_emulator(self.ctx, "crash-r")
        name = self.ctx.uniq("crash-rclone")
        cache = os.path.join(self.ctx.workdir, name + "-cache")
        r1 = r2 = None
        try:
            r1 = RcloneMount(emu, self.ctx.workdir, name, cache_dir=cache).mount()
            writer = Writer(os.path.join(r1.mnt, "crash.bin"), self.blob)
            killed_at = self._wait_half(emu, lambda: r1.proc.poll() is None, "rclone")
            r1.kill9()
            if writer.finish() is not None:
                self.ctx.note((self.key, "rclone", "run %d: close() had not returned when half "
                                       "the upload was persisted (rclone uploads inside close); it failed "
                                       "at the kill: %s" % (i + 1, writer.error)))
            rss1 = r1.peak_rss
            t0 = now()
            r2 = RcloneMount(emu, self.ctx.workdir, name, cache_dir=cache).mount()
            try:
                _, note = r2.wait_uploaded(lambda: object_complete(emu, "crash.bin", self.size),
                                           120 if self.ctx.quick else 300)
            except BenchError as e:
                self.ctx.note((self.key, "rclone", "run %d: after kill -9 and restart, the file was "
                                       "not uploaded: %s" % (i + 1, e)))
                raise
            t1 = now()
            if note:
                self.ctx.note((self.key, "rclone", note))
            check_object(emu, "crash.bin", self.size, self.md5, "rclone")
            twice = emu.stats().get("counters", {}).get("gcs.upload_bytes_received", 0) - self.size
            r2.unmount()
            return {"twice": twice / MiB, "resume": t1 - t0, "killed_at": killed_at / MiB,
                    "rss": max(rss1, r2.peak_rss) / MiB}
        finally:
            for r in (r1, r2):
                if r:
                    r.teardown()
            rmtree(cache)
            emu.stop()

    def limit(self, i):
        emu = fresh_emulator(self.ctx, "crash-l")
        proc = None
        try:
            session = curl_start_resumable(emu, BUCKET, "crash.bin")
            batch = curl_resumable_batch(os.path.join(self.ctx.workdir, self.ctx.uniq("c.curl")),
                                         session, self.chunks, self.size)
            proc = subprocess.Popen(batch.command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            killed_at = self._wait_half(emu, lambda: proc.poll() is None, "curl")
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            t0 = now()
            off = curl_upload_status(session, self.size)
            rest = [(p, s, n) for p, s, n in self.chunks if s + n > off]
            b2 = CurlBatch(os.path.join(self.ctx.workdir, self.ctx.uniq("c2.curl")))
            for p, s, n in rest:
                b2.add(session, method="PUT", upload=p, continue_at=max(0, off - s),
                       headers=["Content-Range: bytes %d-%d/%d" % (max(s, off), s + n - 1, self.size)])
            _, codes = b2.run()
            t1 = now()
            if not codes or codes[-1] != "200":
                raise CorrectnessError("curl resume from %d: statuses %s" % (off, codes))
            check_object(emu, "crash.bin", self.size, self.md5, "curl")
            twice = emu.stats().get("counters", {}).get("gcs.upload_bytes_received", 0) - self.size
            return {"twice": twice / MiB, "resume": t1 - t0, "killed_at": killed_at / MiB}
        finally:
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait(10)
            emu.stop()


# --- 8. dataset epochs (issue 10) --------------------------------------------------

def read_files(paths, threads=PARALLEL):
    """Read whole files with `threads` parallel readers (as a data loader
    does); returns (seconds, {path: (size, crc32)}). An unreadable file is
    recorded as (-1, errno text)."""
    import concurrent.futures
    import zlib

    def one(part):
        out = {}
        for p in part:
            try:
                with open(p, "rb", buffering=0) as f:
                    crc = 0
                    size = 0
                    while True:
                        b = f.read(MiB)
                        if not b:
                            break
                        crc = zlib.crc32(b, crc)
                        size += len(b)
                out[p] = (size, crc)
            except OSError as e:
                out[p] = (-1, str(e))
        return out
    parts = [paths[k::threads] for k in range(threads)]
    t0 = now()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        results = list(ex.map(one, parts))
    dt = now() - t0
    got = {}
    for r in results:
        got.update(r)
    return dt, got


class Dataset(Scenario):
    key = "dataset"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.n = 1000 if ctx.quick else 10000
        self.size = 100 * KiB
        self.ndirs = 10 if ctx.quick else 100
        self.title = ("8. Dataset epochs (issue 10): %d files of 100 KiB in %d dirs read whole by %d parallel "
                      "readers, in a shuffled order (rclone --vfs-cache-mode full)" % (self.n, self.ndirs, PARALLEL))
        self.metrics = [
            Metric("cold", "epoch 1, cold (limit: curl, %d parallel downloads)" % PARALLEL, "s",
                   target=lambda v: ratio_target(v, "limit", 1.5), target_text="durafs/limit <= 1.5"),
            Metric("warmcmd", "`durafs cache warm` of the tree", "s", tools=("durafs",), ratio=False),
            Metric("afterwarm", "epoch 1 after `cache warm` (limit: the same read of local files)", "s",
                   tools=("durafs", "limit"),
                   target=lambda v: ratio_target(v, "limit", 1.2), target_text="durafs/limit <= 1.2"),
            Metric("epoch2", "epoch 2 (limit: the same read of local files)", "s",
                   target=lambda v: both_targets(ratio_target(v, "limit", 1.2), faster_than_rclone(v)),
                   target_text="durafs/limit <= 1.2 and faster than rclone"),
            Metric("fetched", FETCHED_LABEL, "MiB", ratio=False),
            rss_metric(),
        ]

    def setup(self):
        rng = random.Random(88)
        self.names = ["ds/c%03d/img%05d.bin" % (k % self.ndirs, k) for k in range(self.n)]
        self.src = self.ctx.subdir("dataset-src", shm=True)
        self.local = self.ctx.subdir("dataset-local")
        self.expected = {}
        import zlib
        for name in self.names:
            data = rng.randbytes(self.size)
            for base in (self.src, self.local):
                p = os.path.join(base, name)
                os.makedirs(os.path.dirname(p), exist_ok=True)
                with open(p, "wb") as f:
                    f.write(data)
            self.expected[name] = (self.size, zlib.crc32(data))
        self.order = list(self.names)
        random.Random(89).shuffle(self.order)
        self.emu = fresh_emulator(self.ctx, "dataset")
        batch = CurlBatch(os.path.join(self.ctx.workdir, "dataset-put.curl"))
        for name in self.names:
            batch.add("%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (self.emu.url, BUCKET, q(name)),
                      method="POST", upload=os.path.join(self.src, name),
                      headers=["Content-Type: application/octet-stream"])
        dt, codes = batch.run(parallel=16)
        if len(codes) != self.n or any(c != "200" for c in codes):
            raise BenchError("dataset upload: %d replies, statuses %s" % (len(codes), sorted(set(codes))))
        rmtree(self.src)
        self.ctx.note((self.key, "setup", "%d objects of 100 KiB created on the emulator in %.1f s" % (self.n, dt)))

    def teardown(self):
        self.emu.stop()
        rmtree(self.local)

    def _epoch(self, base, who, label, hard=True):
        dt, got = read_files([os.path.join(base, n) for n in self.order])
        bad = [n for n in self.names if got.get(os.path.join(base, n)) != self.expected[n]]
        if bad:
            first = got.get(os.path.join(base, bad[0]))
            msg = "%s, %s: %d of %d files read wrong (first %s: got %s, expected %s)" % (
                who, label, len(bad), self.n, bad[0], first, self.expected[bad[0]])
            if hard:
                raise CorrectnessError(msg)
            raise BenchError(msg)
        return dt

    def durafs(self, i):
        out = {}
        m = None
        try:
            st0 = self.emu.stats()
            m = DurafsMount(self.emu, self.ctx.workdir, self.ctx.uniq("dataset-durafs")).mount()
            out["cold"] = self._epoch(m.mnt, "durafs", "epoch 1 cold")
            out["fetched"] = media_diff(st0, self.emu.stats(), "gcs.media_bytes_sent") / MiB
            out["epoch2"] = self._epoch(m.mnt, "durafs", "epoch 2")
            m.sample_rss()
            m.unmount()
            durafs_log_notes(self.ctx, self.key, m)
            rmtree(m.cache_dir)
            rss1 = m.peak_rss
            # a fresh cache: `durafs cache warm`, then epoch 1
            m2 = DurafsMount(self.emu, self.ctx.workdir, self.ctx.uniq("dataset-durafs-w")).mount()
            m = m2
            t0 = now()
            res = m2.cli(["cache", "warm", os.path.join(m2.mnt, "ds")], timeout=1800, check=False)
            t1 = now()
            if res.returncode == 0:
                out["warmcmd"] = t1 - t0
                out["afterwarm"] = self._epoch(m2.mnt, "durafs", "epoch 1 after cache warm")
            else:
                self.ctx.note((self.key, "durafs", "`durafs cache warm` is not available (exit %d: %s); "
                               "the after-warm row is not measured" % (
                                   res.returncode, res.stderr.decode(errors="replace").strip()[:200])))
            m2.sample_rss()
            m2.unmount()
            durafs_log_notes(self.ctx, self.key, m2)
            out["rss"] = max(rss1, m2.peak_rss) / MiB
            return out
        finally:
            if m:
                m.teardown()
                rmtree(m.cache_dir)

    def rclone(self, i):
        r = None
        try:
            st0 = self.emu.stats()
            r = RcloneMount(self.emu, self.ctx.workdir, self.ctx.uniq("dataset-rclone"), cache_mode="full").mount()
            out = {"cold": self._epoch(r.mnt, "rclone", "epoch 1 cold", hard=False)}
            out["fetched"] = media_diff(st0, self.emu.stats(), "gcs.media_bytes_sent") / MiB
            out["epoch2"] = self._epoch(r.mnt, "rclone", "epoch 2", hard=False)
            r.unmount()
            out["rss"] = r.peak_rss / MiB
            return out
        finally:
            if r:
                r.teardown()
                rmtree(r.cache_dir)

    def limit(self, i):
        batch = CurlBatch(os.path.join(self.ctx.workdir, self.ctx.uniq("dataset-get.curl")))
        for name in self.order:
            batch.add("%s/storage/v1/b/%s/o/%s?alt=media" % (self.emu.url, BUCKET, q(name)))
        st0 = self.emu.stats()
        dt, codes = batch.run(parallel=PARALLEL)
        fetched = media_diff(st0, self.emu.stats(), "gcs.media_bytes_sent") / MiB
        if len(codes) != self.n or any(c != "200" for c in codes):
            raise CorrectnessError("curl downloads: %d replies, statuses %s" % (len(codes), sorted(set(codes))))
        local = self._epoch(self.local, "local disk", "read")
        return {"cold": dt, "afterwarm": local, "epoch2": local, "fetched": fetched}


# --- helpers for metrics ----------------------------------------------------------

def _md5(data):
    import hashlib
    return hashlib.md5(data).hexdigest()


def human(n):
    if n >= GiB and n % GiB == 0:
        return "%d GiB" % (n // GiB)
    if n >= MiB:
        return "%.0f MiB" % (n / MiB)
    return "%d KiB" % (n // KiB)


def media_diff(a, b, name):
    return b.get("counters", {}).get(name, 0) - a.get("counters", {}).get(name, 0)


def requests_diff(a, b, kind):
    return sum(b.get("requests", {}).get(kind, {}).values()) - sum(a.get("requests", {}).get(kind, {}).values())


def rss_metric():
    return Metric("rss", "peak RSS (VmHWM) of the daemon", "MiB", tools=("durafs", "rclone"),
                  target=lambda v: max_target(v, "durafs", 100.0, strict=True), target_text="durafs < 100 MiB every run",
                  ratio=True)


def _median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def ratio_target(v, other, limit):
    if not v.get("durafs") or not v.get(other):
        return None
    r = _median(v["durafs"]) / _median(v[other])
    return (r <= limit, "%.2fx" % r)


def rclone_faster_target(v, factor):
    if not v.get("durafs") or not v.get("rclone"):
        return None
    r = _median(v["rclone"]) / _median(v["durafs"])
    return (r >= factor, "durafs %.2fx faster" % r)


def faster_than_rclone(v):
    if not v.get("durafs") or not v.get("rclone"):
        return None
    r = _median(v["rclone"]) / _median(v["durafs"])
    return (r > 1.0, "durafs %.2fx faster than rclone" % r)


def both_targets(a, b):
    if a is None or b is None:
        return a or b
    return (a[0] and b[0], "%s; %s" % (a[1], b[1]))


def exact_target(v, n, tools):
    if not v.get("durafs"):
        return None
    ok = all(x == n for x in v["durafs"])
    return (ok, "%d/%d runs exact" % (sum(1 for x in v["durafs"] if x == n), len(v["durafs"])))


def abs_target(v, tool, limit):
    if not v.get(tool):
        return None
    worst = max(v[tool])
    return (worst < limit, "worst %.3f s" % worst)


def max_target(v, tool, limit, strict=False):
    if not v.get(tool):
        return None
    worst = max(v[tool])
    return (worst < limit if strict else worst <= limit, "worst %.1f" % worst)


ALL = [LargeFile, SmallFiles, HugeDir, SeqRead, RandRead, CrashResume, Dataset]
