"""Shared pytest fixtures: the durafs binaries and a running durafs-emulator.

Every integration test talks only to the emulator on 127.0.0.1. The
emulator's log is scanned after each test for unexpected error lines (as
sshfs's suite does); a test that expects some can register them with
``emulator.allow_log(regex)``.
"""
import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import pytest

BUILD = os.environ.get("DURAFS_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build")
BUILD = os.path.abspath(BUILD)
DURAFS = os.path.join(BUILD, "durafs")
EMULATOR = os.path.join(BUILD, "durafs-emulator")

# Log lines that fail a test unless allowed.
SUSPICIOUS = re.compile(r"(AddressSanitizer|UndefinedBehaviorSanitizer|runtime error|"
                        r"\bpanic\b|\bcrash|\bassert|Segmentation fault|\bleak)", re.I)


def pytest_configure(config):
    config.addinivalue_line("markers", "soak: long-running test, only under `make soak`")
    config.addinivalue_line("markers", "slow: slower test, still part of `make test`")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DURAFS_SOAK"):
        return
    skip = pytest.mark.skip(reason="soak test: run with `make soak`")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


class Emulator:
    """A durafs-emulator process and helpers to drive its control API."""

    def __init__(self, workdir, args=(), data_dir=None, no_auth=False):
        self.workdir = workdir
        self.args = list(args)
        self.data_dir = data_dir
        self.no_auth = no_auth
        self.proc = None
        self.url = None
        self.log_path = os.path.join(workdir, "emulator.log")
        self.allowed = []
        self.port = 0

    def start(self):
        ready = os.path.join(self.workdir, "emulator.ready")
        if os.path.exists(ready):
            os.unlink(ready)
        listen = "127.0.0.1:%d" % self.port
        cmd = [EMULATOR, "--listen", listen, "--ready-file", ready] + self.args
        if self.data_dir:
            cmd += ["--data-dir", self.data_dir]
        if self.no_auth:
            cmd += ["--no-auth"]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.time() + 20
        while time.time() < deadline:
            if os.path.exists(ready):
                with open(ready) as f:
                    url = f.read().strip()
                if url:
                    self.url = url
                    self.port = int(url.rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError("emulator exited with %s: %s" % (
                    self.proc.returncode, self.log()))
            time.sleep(0.02)
        raise RuntimeError("emulator not ready after 20 s: " + self.log())

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self):
        """Stop and start again on the same port (state kept with data_dir)."""
        self.stop()
        return self.start()

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def allow_log(self, regex):
        self.allowed.append(re.compile(regex))

    # --- HTTP helpers -------------------------------------------------------
    def request(self, method, path, body=None, headers=None, token=None):
        """Returns (status, headers dict, body bytes). Never raises on HTTP status."""
        data = body
        hdrs = dict(headers or {})
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        if token:
            hdrs["Authorization"] = "Bearer " + token
        url = path if path.startswith("http") else self.url + path
        req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def control(self, path, body=None, method="POST"):
        st, _, data = self.request(method, "/_emulator/" + path.lstrip("/"),
                                   body if body is not None else {})
        if st >= 300:
            raise RuntimeError("control %s -> %d %s" % (path, st, data[:300]))
        return json.loads(data) if data else None

    def stats(self):
        return self.control("stats", method="GET")

    def reset(self):
        return self.control("reset")

    def faults(self, rules):
        """Install fault rules (list of dicts, see README 'Emulator faults')."""
        return self.control("faults", {"rules": rules})

    def clear_faults(self):
        return self.control("faults", {"rules": []})


@pytest.fixture
def workdir():
    with tempfile.TemporaryDirectory(prefix="durafs-test-") as d:
        yield d


def _check_log(emu):
    bad = []
    for line in emu.log().splitlines():
        if SUSPICIOUS.search(line) and not any(a.search(line) for a in emu.allowed):
            bad.append(line)
    assert not bad, "unexpected lines in emulator log:\n" + "\n".join(bad[:20])


@pytest.fixture
def emulator(workdir):
    """A fresh emulator (in memory, auth enforced) for one test."""
    emu = Emulator(workdir).start()
    try:
        yield emu
    finally:
        emu.stop()
    _check_log(emu)


@pytest.fixture
def emulator_noauth(workdir):
    """A fresh emulator with --no-auth (the STORAGE_EMULATOR_HOST convention)."""
    emu = Emulator(workdir, no_auth=True).start()
    try:
        yield emu
    finally:
        emu.stop()
    _check_log(emu)


@pytest.fixture
def make_emulator(workdir):
    """Factory for emulators with custom args / data dir; all stopped at the end."""
    made = []

    def factory(args=(), data_dir=None, no_auth=False):
        emu = Emulator(workdir, args=args, data_dir=data_dir, no_auth=no_auth)
        made.append(emu)
        return emu.start()
    yield factory
    for emu in made:
        emu.stop()
    for emu in made:
        _check_log(emu)
