"""Streamed uploads (sync/stream.c): a large file written sequentially
reaches the remote's upload session while it is still being written, fsync
sends only the rest, and the remote never shows a part of it; a seek back
abandons the stream and the whole file goes up; a daemon killed mid-stream
resumes the streamed session after the remount."""
import os

from gcs_util import Gcs
from mount_util import blob, bucket, counter, mounts, remote_objects, wait_until  # noqa: F401

KiB = 1024
MiB = 1024 * 1024
CHUNK = 256 * KiB
# chunk_size 256 KiB: a chunk goes once 1 MiB (the lead) follows the
# start of the last write
OPTIONS = ["chunk_size=256K", "writeback_delay=1h", "open_upload_interval=0"]


def received(emu):
    return counter(emu.stats(), "gcs.upload_bytes_received")


def test_streamed_before_fsync_then_only_the_tail(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTIONS)
    data = blob(6 * MiB + 12345, 41)
    fd = os.open(m.path("big.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        half = 5 * MiB
        os.write(fd, data[:half])
        # chunks arrive while the file is open and nothing was fsynced (the
        # last MiB write and the 1 MiB lead stay)
        wait_until(lambda: received(emu) >= 2 * MiB, 60,
                   what="streamed chunks before fsync")
        before = received(emu)
        assert before <= half + 4 * KiB   # (the session's JSON metadata too)
        # the remote shows nothing of it yet: the session is not finished
        assert "big.bin" not in remote_objects(gcs)
        off = half
        while off < len(data):
            off += os.write(fd, data[off:off + 512 * KiB])
        os.fsync(fd)
        total = received(emu)
    finally:
        os.close(fd)
    assert gcs.media("bkt", "big.bin").body == data
    # every byte sent once: the streamed part, then only the rest (plus the
    # session's JSON metadata)
    assert len(data) <= total <= len(data) + 4 * KiB, (total, len(data), before)
    st = counter(emu.stats(), "gcs.upload_sessions_started")
    assert st == 1, emu.stats().get("counters")
    m.flush()


def test_seek_back_rewrite_abandons_the_stream(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTIONS)
    data = bytearray(blob(5 * MiB, 42))
    fd = os.open(m.path("rw.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data[:3 * MiB])
        wait_until(lambda: received(emu) >= CHUNK, 60, what="a streamed chunk")
        # rewrite bytes that were already streamed, then go on
        os.pwrite(fd, b"CHANGED!", 1000)
        data[1000:1008] = b"CHANGED!"
        os.lseek(fd, 3 * MiB, os.SEEK_SET)
        off = 3 * MiB
        while off < len(data):
            off += os.write(fd, data[off:off + 256 * KiB])
        os.fsync(fd)
    finally:
        os.close(fd)
    assert gcs.media("bkt", "rw.bin").body == bytes(data)
    assert sorted(remote_objects(gcs)) == ["rw.bin"]
    # the streamed session was cancelled; the file went up whole (in one
    # request: 5 MiB is below small_file_max)
    from mount_util import requests_of
    assert requests_of(emu.stats(), "gcs.upload.cancel") >= 1, emu.stats().get("requests")
    m.flush()


def test_truncate_below_streamed_then_rewrite(bucket, mounts):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTIONS)
    first = blob(4 * MiB, 43)
    data = blob(3 * MiB + 5, 44)
    fd = os.open(m.path("t.bin"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, first)
        wait_until(lambda: received(emu) >= CHUNK, 60, what="a streamed chunk")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + 128 * KiB])
        os.fsync(fd)
    finally:
        os.close(fd)
    assert gcs.media("bkt", "t.bin").body == data
    assert sorted(remote_objects(gcs)) == ["t.bin"]
    m.flush()


def test_kill9_mid_stream_resumes_the_session(bucket, mounts, workdir):
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTIONS)
    data = blob(6 * MiB + 777, 45)
    fd = os.open(m.path("k.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        wait_until(lambda: received(emu) >= 3 * MiB, 60, what="streamed chunks")
        m.kill9()
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    streamed = received(emu)
    assert "k.bin" not in remote_objects(gcs)
    m2 = mounts(emu, "gs://bkt", options=OPTIONS, cache_dir=m.cache_dir)
    m2.flush()
    assert gcs.media("bkt", "k.bin").body == data
    # the streamed session was resumed: at most one chunk sent twice
    total = received(emu)
    assert total <= len(data) + CHUNK + 4 * KiB, (total, streamed, len(data))
    assert counter(emu.stats(), "gcs.upload_sessions_started") == 1


def test_stream_uploads_off_waits_for_fsync(bucket, mounts):
    """-o stream_uploads=off: nothing of a file written sequentially is
    sent before fsync (where streaming sends chunks within a moment, see
    the first test); fsync then uploads it whole."""
    import time
    emu, gcs = bucket
    m = mounts(emu, "gs://bkt", options=OPTIONS + ["stream_uploads=off"])
    data = blob(6 * MiB + 99, 47)
    fd = os.open(m.path("nostream.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        off = 0
        while off < len(data):
            off += os.write(fd, data[off:off + 512 * KiB])
        time.sleep(1.5)
        assert received(emu) == 0
        assert counter(emu.stats(), "gcs.upload_sessions_started") == 0
        os.fsync(fd)
    finally:
        os.close(fd)
    assert gcs.media("bkt", "nostream.bin").body == data
    m.flush()
