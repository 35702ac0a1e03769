"""Fidelity of the emulator's Cloud Storage API, checked with a client
written by others: Debian's rclone (GCS backend, Google's Go API library)
pointed at the emulator with `endpoint`, anonymous, behind a proxy setting
that makes any non-loopback connection fail."""
import hashlib
import os
import shutil
import subprocess

import pytest

from gcs_util import Gcs, pattern

RCLONE = shutil.which("rclone") or "/usr/bin/rclone"

pytestmark = pytest.mark.skipif(not os.access(RCLONE, os.X_OK),
                                reason="rclone is not installed (apt-get install rclone)")


def rclone(emu, workdir, *args, check=True, binary=False):
    conf = os.path.join(workdir, "rclone.conf")
    if not os.path.exists(conf):
        open(conf, "w").close()
    env = dict(os.environ)
    env.update({
        "RCLONE_CONFIG": conf,
        "RCLONE_CONFIG_EMU_TYPE": "google cloud storage",
        "RCLONE_CONFIG_EMU_ANONYMOUS": "true",
        "RCLONE_CONFIG_EMU_ENDPOINT": emu.url + "/storage/v1/",
        # anything not on loopback goes to a dead proxy and fails
        "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
        "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9",
        "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
        "GCE_METADATA_HOST": emu.url[len("http://"):],
    })
    env.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
    p = subprocess.run([RCLONE, "--retries", "1", "--low-level-retries", "2"] + list(args),
                       env=env, capture_output=True, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.stderr.decode(errors="replace")[-2000:])
    return p if binary else subprocess.CompletedProcess(
        p.args, p.returncode, p.stdout.decode(errors="replace"),
        p.stderr.decode(errors="replace"))


def request_counts(emu, kind):
    return sum(emu.stats()["requests"].get(kind, {}).values())


@pytest.fixture
def emu(make_emulator):
    e = make_emulator(args=["--verbose"], no_auth=True)
    Gcs(e).mkbucket("rcl")
    return e


def test_rclone_copy_40mib_resumable_and_check(emu, workdir):
    src = os.path.join(workdir, "src")
    os.mkdir(src)
    data = os.urandom(40 * 1024 * 1024)
    with open(os.path.join(src, "big.bin"), "wb") as f:
        f.write(data)
    with open(os.path.join(src, "small.txt"), "wb") as f:
        f.write(b"small file\n")
    rclone(emu, workdir, "copy", src, "emu:rcl/dir")
    # the 40 MiB file went as a chunked resumable upload
    c = emu.stats()["counters"]
    assert c["gcs.upload_sessions_started"] == 1
    assert request_counts(emu, "gcs.upload.chunk") >= 3
    assert request_counts(emu, "gcs.objects.insert.multipart") == 1  # the small one
    g = Gcs(emu)
    meta = g.meta("rcl", "dir/big.bin").json()
    assert meta["size"] == str(len(data))
    assert hashlib.md5(g.media("rcl", "dir/big.bin").body).digest() == hashlib.md5(data).digest()
    # rclone check compares sizes and md5 hashes: no differences
    rclone(emu, workdir, "check", src, "emu:rcl/dir")
    # cat with offset and count reads a range
    p = rclone(emu, workdir, "cat", "--offset", "1000000", "--count", "70000",
               "emu:rcl/dir/big.bin", binary=True)
    assert p.stdout == data[1000000:1070000]
    assert request_counts(emu, "gcs.objects.get.media") >= 1
    # a changed remote object makes check fail
    g.put("rcl", "dir/small.txt", b"changed!!!\n", "text/plain")
    p = rclone(emu, workdir, "check", src, "emu:rcl/dir", check=False)
    assert p.returncode != 0 and "1 differences found" in p.stderr
    log = emu.log()
    assert "googleapis.com" not in log


def test_rclone_lsf_over_many_pages(emu, workdir):
    g = Gcs(emu)
    names = ["many/f%04d" % i for i in range(250)] + ["many/sub%d/x" % i for i in range(5)]
    names += ["other/x"]
    g.put_many("rcl", names, pattern(10, 1))
    emu.faults([{"kind": "page_cap", "path": "/storage/v1/b/rcl/o", "max": 40}])
    before = request_counts(emu, "gcs.objects.list")
    p = rclone(emu, workdir, "lsf", "emu:rcl/many")
    got = p.stdout.splitlines()
    want = sorted(["f%04d" % i for i in range(250)] + ["sub%d/" % i for i in range(5)])
    assert got == want
    assert request_counts(emu, "gcs.objects.list") - before >= 7  # 255 entries / 40
    p = rclone(emu, workdir, "lsf", "-R", "--files-only", "emu:rcl/many")
    assert len(p.stdout.splitlines()) == 255
    p = rclone(emu, workdir, "size", "--json", "emu:rcl/many")
    assert '"count":255' in p.stdout.replace(" ", "")
