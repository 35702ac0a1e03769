"""The write path for long-running writers and errors a user can act on:
an open log file reaching the remote while still open (open_upload_interval
snapshots, small files and resumable 1 MiB ones on GCS and Drive, a
checkpoint rewritten in place sent untorn), a growing GCS file composed
rather than re-uploaded, and Google's quota and rate reasons shown with what
to do (status, log, errno).
"""
import errno
import os
import re
import time

from gcs_util import Gcs
from mount_util import TIMEOUT_SCALE, blob, bucket, mounts, wait_until  # noqa: F401

KiB = 1024
MiB = 1024 * 1024


def remote_data(gcs, name, bucket_name="bkt"):
    r = gcs.media(bucket_name, name)
    return r.body if r.status == 200 else None


def test_open_log_reaches_remote_while_open(mounts, bucket, emulator_noauth):
    """A log appended every 100 ms with a 2 s interval is on the remote while
    still open; what the remote holds is always a prefix of what was written
    (never torn), and everything after close."""
    gcs = Gcs(emulator_noauth)
    m = mounts(emulator_noauth, "gs://bkt", options=["open_upload_interval=2s",
                                                     "writeback_delay=1h"])
    written = bytearray()
    seen = []
    fd = os.open(m.path("train.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.time()
        i = 0
        while time.time() - t0 < 12 * TIMEOUT_SCALE:
            line = ("step %06d loss %.6f %s\n" % (i, 1.0 / (i + 1), "x" * (i % 50))).encode()
            assert os.write(fd, line) == len(line)
            written += line
            i += 1
            time.sleep(0.1)
            if i % 10 == 0:
                data = remote_data(gcs, "train.log")
                if data:
                    seen.append(data)
                    if len(seen) >= 2 and len(seen[-1]) > len(seen[0]):
                        break
        assert seen, "nothing reached the remote while the file was open (wrote %d bytes)" \
            % len(written)
        for data in seen:
            assert bytes(written[:len(data)]) == data, "remote holds a torn copy"
        # several snapshots, each a longer prefix: the interval repeats
        assert len(seen[-1]) > len(seen[0]), "only one snapshot in 12 s with a 2 s interval"
        # the writer goes on after the snapshots; the rest follows at close
        for j in range(5):
            line = b"after %d\n" % j
            assert os.write(fd, line) == len(line)
            written += line
        st = m.status()
        assert st["pending"]["dirty_files"] >= 1
    finally:
        os.close(fd)
    m.flush()
    assert remote_data(gcs, "train.log") == bytes(written)
    assert m.xattr("train.log", "user.durafs.state") in ("committed", "clean")


def test_open_upload_interval_zero_is_off(mounts, bucket, emulator_noauth):
    """With open_upload_interval=0 (and a long writeback delay) an open file
    stays local until it is closed."""
    gcs = Gcs(emulator_noauth)
    m = mounts(emulator_noauth, "gs://bkt", options=["open_upload_interval=0",
                                                     "writeback_delay=1h"])
    fd = os.open(m.path("quiet.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for i in range(30):
            os.write(fd, b"line %d\n" % i)
            time.sleep(0.1)
        assert remote_data(gcs, "quiet.log") is None
        assert m.xattr("quiet.log", "user.durafs.state") == "dirty"
    finally:
        os.close(fd)
    m.flush()
    assert remote_data(gcs, "quiet.log") == b"".join(b"line %d\n" % i for i in range(30))


def fault_upload(emu, status, reason, count=None, path="/upload/*"):
    rule = {"kind": "status", "status": status, "reason": reason, "path": path}
    if count:
        rule["count"] = count
    emu.faults([rule])


def action_for(st, path):
    return [a for a in st.get("action_needed", []) if a["path"] == path]


def test_rate_limit_reason_shown_and_retried(mounts, bucket, emulator_noauth):
    """userRateLimitExceeded: one log line and one status line naming the
    file, Google's reason and what to do; the write stays queued and is
    committed once Google lets it through."""
    gcs = Gcs(emulator_noauth)
    m = mounts(emulator_noauth, "gs://bkt", options=["writeback_delay=0", "retry_max=1s"])
    m.allow_log(r"userRateLimitExceeded")
    fault_upload(emulator_noauth, 403, "userRateLimitExceeded")
    data = blob(100 * KiB, 3)
    m.write("ratelimited.bin", data)

    def listed():
        st = m.status()
        return st if action_for(st, "ratelimited.bin") else None
    st = wait_until(listed, 60, 0.2, "status to show the rate limit")
    a = action_for(st, "ratelimited.bin")[0]
    assert a["google_reason"] == "userRateLimitExceeded"
    assert "retried" in a["advice"]
    assert a["state"] == "pending"
    assert [r for r in st["retrying"] if r["path"] == "ratelimited.bin"]
    assert st["failed"] == []
    human = m.cli("status", m.mnt, check=True).stdout
    assert re.search(r"action +ratelimited\.bin: Google says userRateLimitExceeded", human), human
    lines = [ln for ln in m.log().splitlines()
             if "ratelimited.bin" in ln and "userRateLimitExceeded" in ln and "what to do" in ln]
    assert len(lines) == 1, "expected one log line, got %r" % lines
    assert " WARN " in lines[0]
    assert remote_data(gcs, "ratelimited.bin") is None
    emulator_noauth.faults([])
    m.flush(timeout=120)
    assert remote_data(gcs, "ratelimited.bin") == data
    assert action_for(m.status(), "ratelimited.bin") == []


def test_storage_quota_exceeded_enospc_then_retry(mounts, bucket, emulator_noauth):
    """storageQuotaExceeded: fsync gives ENOSPC, the change stays in the
    journal (status: failed, with the reason and what to do), and
    `durafs sync --flush --retry-failed` commits it once there is room."""
    gcs = Gcs(emulator_noauth)
    m = mounts(emulator_noauth, "gs://bkt", options=["writeback_delay=0"])
    m.allow_log(r"storageQuotaExceeded")
    fault_upload(emulator_noauth, 403, "storageQuotaExceeded")
    data = blob(300 * KiB, 4)
    fd = os.open(m.path("full.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        try:
            os.fsync(fd)
            got = 0
        except OSError as e:
            got = e.errno
    finally:
        os.close(fd)
    assert got == errno.ENOSPC, "expected ENOSPC from fsync, got %r" % got
    st = m.status()
    a = action_for(st, "full.bin")
    assert a and a[0]["google_reason"] == "storageQuotaExceeded", st
    assert a[0]["state"] == "failed"
    assert "--retry-failed" in a[0]["advice"]
    assert [f for f in st["failed"] if f["path"] == "full.bin" and f["error"] == "no-space"]
    human = m.cli("status", m.mnt, check=True).stdout
    assert "full.bin: Google says storageQuotaExceeded" in human, human
    assert any("full.bin" in ln and "storageQuotaExceeded" in ln and "what to do" in ln
               for ln in m.log().splitlines() if " ERROR " in ln)
    # the data is still readable locally and nothing was sent
    assert m.read("full.bin") == data
    assert remote_data(gcs, "full.bin") is None
    # a plain flush does not retry it: it reports the failure
    res = m.flush(timeout=60, check=False)
    assert res.returncode != 0
    emulator_noauth.faults([])
    res = m.cli("sync", "--flush", "--retry-failed", m.mnt, "--timeout", "120")
    assert res.returncode == 0, res.stdout + res.stderr
    assert remote_data(gcs, "full.bin") == data
    st = m.status()
    assert st["failed"] == [] and action_for(st, "full.bin") == []


def test_growing_gcs_file_is_composed_not_reuploaded(mounts, bucket, emulator_noauth):
    """A committed GCS file appended and fsynced 10 times: each fsync sends
    only the new tail (a temporary object composed onto the committed one
    and deleted), so the emulator receives about the bytes appended; the
    remote is byte-identical, holds no temporary, and its crc32c is the
    composite's."""
    from mount_util import requests_of
    from gcs_util import crc32c_b64
    emu = emulator_noauth
    gcs = Gcs(emu)
    m = mounts(emu, "gs://bkt", options=["writeback_delay=0"])
    data = bytearray(blob(2 * MiB, 7))
    fd = os.open(m.path("grow.csv"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        before = emu.stats()
        appended = 0
        for i in range(10):
            tail = blob(40 * KiB + i * 1000, 20 + i)
            assert os.write(fd, tail) == len(tail)
            os.fsync(fd)
            data += tail
            appended += len(tail)
        after = emu.stats()
    finally:
        os.close(fd)
    received = after["bytes_received"] - before["bytes_received"]
    assert received >= appended
    # about the bytes appended (JSON bodies and multipart framing aside),
    # far from 10 whole re-uploads (> 20 MiB)
    assert received < appended * 1.25 + 64 * KiB, (received, appended)
    composes = requests_of(after, "gcs.objects.compose") - requests_of(before, "gcs.objects.compose")
    assert composes == 10, after.get("requests")
    assert remote_data(gcs, "grow.csv") == bytes(data)
    item = gcs.meta("bkt", "grow.csv").json()
    assert item["crc32c"] == crc32c_b64(bytes(data))
    assert int(item["componentCount"]) == 11
    names = remote_objects_names(gcs)
    assert names == ["grow.csv"], names
    m.flush()


def remote_objects_names(gcs):
    from mount_util import remote_objects
    return sorted(remote_objects(gcs))


def test_rewrite_below_committed_size_is_uploaded_whole(mounts, bucket, emulator_noauth):
    """A write into the committed part (then growth) is not an append: the
    whole file goes up, and the remote matches."""
    from mount_util import requests_of
    emu = emulator_noauth
    gcs = Gcs(emu)
    m = mounts(emu, "gs://bkt", options=["writeback_delay=0"])
    data = bytearray(blob(1 * MiB, 8))
    fd = os.open(m.path("rw.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        before = emu.stats()
        os.pwrite(fd, b"CHANGED", 1000)
        data[1000:1007] = b"CHANGED"
        os.pwrite(fd, b"tail" * 1000, len(data))
        data += b"tail" * 1000
        os.fsync(fd)
        after = emu.stats()
        # a truncate below the committed size, then growth: whole again
        os.ftruncate(fd, 512 * KiB)
        del data[512 * KiB:]
        os.pwrite(fd, b"again" * 100, len(data))
        data += b"again" * 100
        os.fsync(fd)
        after2 = emu.stats()
    finally:
        os.close(fd)
    assert requests_of(after, "gcs.objects.compose") == requests_of(before, "gcs.objects.compose")
    assert requests_of(after2, "gcs.objects.compose") == requests_of(before, "gcs.objects.compose")
    assert after["bytes_received"] - before["bytes_received"] >= len(data) - 1000
    assert remote_data(gcs, "rw.bin") == bytes(data)
    assert remote_objects_names(gcs) == ["rw.bin"]


def test_drive_growing_file_is_reuploaded_whole_and_quota_advice(mounts, emulator_noauth):
    """Drive has no compose: a file appended and fsynced is re-uploaded whole
    (content byte-identical), and Drive's storageQuotaExceeded gives ENOSPC,
    a status action line, and `sync --flush --retry-failed` after room is
    made commits the change."""
    from drive_util import Drive, md5hex, mount_drive
    emu = emulator_noauth
    dr = Drive(emu)
    m = mount_drive(mounts, emu, "drive:", ["writeback_delay=0"])
    m.allow_log(r"storageQuotaExceeded")
    data = bytearray(blob(600 * KiB, 30))
    fd = os.open(m.path("grow.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
        before = emu.stats()["bytes_received"]
        tail = blob(30 * KiB, 31)
        os.write(fd, tail)
        data += tail
        os.fsync(fd)
        received = emu.stats()["bytes_received"] - before
        assert received >= len(data), "a whole re-upload expected on Drive"
        res = dr.lookup("grow.log")
        assert res and res["md5Checksum"] == md5hex(bytes(data))
        emu.control("drive/storage_quota_exceeded", {"on": True})
        os.write(fd, b"more")
        data += b"more"
        try:
            os.fsync(fd)
            got = 0
        except OSError as e:
            got = e.errno
    finally:
        os.close(fd)
    assert got == errno.ENOSPC, got
    st = m.status()
    a = action_for(st, "grow.log")
    assert a and a[0]["google_reason"] == "storageQuotaExceeded" and a[0]["state"] == "failed"
    emu.control("drive/storage_quota_exceeded", {"on": False})
    res = m.cli("sync", "--flush", "--retry-failed", m.mnt, "--timeout", "120")
    assert res.returncode == 0, res.stdout + res.stderr
    assert dr.lookup("grow.log")["md5Checksum"] == md5hex(bytes(data))


# --- snapshots of open files at or above small_file_max ------------------------

SNAP_OPTS = ["open_upload_interval=1s", "writeback_delay=1h", "small_file_max=256K",
             "chunk_size=256K"]


def snapshot_in_flight(m, name):
    """The status JSON entry of name's upload when it is a snapshot in flight."""
    for u in m.status()["uploads"]:
        if u["path"] == name and u["snapshot"]:
            return u
    return None


def check_large_open_file_snapshots(m, emu, remote, name):
    """A 1 MiB file (four 256 KiB chunks: a resumable upload) kept open:
    its snapshot is uploaded while it is open, shown as such while in
    flight, byte-identical on the remote; writes made during that upload
    follow in the next snapshot, and the rest at close."""
    data1 = blob(1 * MiB, 40)
    # Slow chunks, so the upload can be seen in flight.
    emu.faults([{"kind": "latency", "method": "PUT", "path": "/upload/*", "ms": 400}])
    fd = os.open(m.path(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        assert os.write(fd, data1) == len(data1)
        # Closing a duplicate sends a FLUSH while the file stays open (as a
        # forked child does at exec): the content is journaled with the
        # writeback delay (1h) and the file is no longer "written since";
        # the snapshot must still go out at the next interval.
        os.close(os.dup(fd))
        up = wait_until(lambda: snapshot_in_flight(m, name), timeout=30,
                        what="the snapshot of %s in flight" % name)
        assert up["total"] == len(data1)
        assert m.xattr(name, "user.durafs.state") == "uploading"
        res = m.cli("status", m.mnt)
        assert res.returncode == 0, res.stderr
        assert re.search(re.escape(name) + r".*\(snapshot of open file\)", res.stdout), \
            res.stdout
        # Later writes while the snapshot uploads: an in-place change and
        # a tail. The snapshot in flight is not torn by them.
        data2 = bytearray(data1)
        data2[1000:1100] = b"\x5a" * 100
        data2 += blob(100 * KiB, 41)
        assert os.pwrite(fd, b"\x5a" * 100, 1000) == 100
        assert os.write(fd, data2[len(data1):]) == len(data2) - len(data1)
        seen = wait_until(lambda: remote(name), timeout=30, what="the first snapshot")
        assert seen in (data1, bytes(data2)), "the remote holds neither snapshot (%d bytes)" \
            % len(seen)
        # The writes made meanwhile are not lost: the next snapshot sends
        # them while the file is still open.
        wait_until(lambda: remote(name) == bytes(data2), timeout=30,
                   what="the second snapshot")
        emu.faults([])
        data3 = b"the end\n"
        assert os.write(fd, data3) == len(data3)
    finally:
        os.close(fd)
    m.flush()
    assert remote(name) == bytes(data2) + data3
    assert m.xattr(name, "user.durafs.state") in ("committed", "clean")


def test_large_open_file_snapshot(mounts, bucket, emulator_noauth):
    gcs = Gcs(emulator_noauth)
    m = mounts(emulator_noauth, "gs://bkt", options=SNAP_OPTS)
    check_large_open_file_snapshots(m, emulator_noauth, lambda n: remote_data(gcs, n),
                                    "ckpt.bin")


def test_drive_large_open_file_snapshot(mounts, emulator_noauth):
    from drive_util import Drive, mount_drive
    dr = Drive(emulator_noauth)
    m = mount_drive(mounts, emulator_noauth, "drive:", SNAP_OPTS)

    def remote(name):
        res = dr.lookup(name)
        return dr.content(res["id"]) if res else None

    check_large_open_file_snapshots(m, emulator_noauth, remote, "ckpt.bin")


def test_checkpoint_rewritten_in_place_reaches_remote_untorn(mounts, bucket, emulator_noauth):
    """A 1 MiB file rewritten in place every 50 ms while open, with chunks
    slower than that: each snapshot is a copy of one moment, so the remote
    gets a whole version (all one byte) while the file is open, never a
    torn mix."""
    gcs = Gcs(emulator_noauth)
    m = mounts(emulator_noauth, "gs://bkt", options=SNAP_OPTS)
    emulator_noauth.faults([{"kind": "latency", "method": "PUT", "path": "/upload/*",
                             "ms": 200}])
    fd = os.open(m.path("model.ckpt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    seen = None
    try:
        t0 = time.time()
        i = 0
        while time.time() - t0 < 30 * TIMEOUT_SCALE:
            v = bytes([0x41 + i % 26]) * MiB
            assert os.pwrite(fd, v, 0) == len(v)
            i += 1
            time.sleep(0.05)
            if i % 5 == 0:
                seen = remote_data(gcs, "model.ckpt")
                if seen:
                    break
        assert seen, "no snapshot reached the remote in 30 s (%d rewrites)" % i
        assert len(seen) == MiB and seen == seen[:1] * MiB, "the remote holds a torn copy"
        last = v
    finally:
        os.close(fd)
    emulator_noauth.faults([])
    m.flush()
    assert remote_data(gcs, "model.ckpt") == last
