"""durafs-emulator core: ready file, routing, auth enforcement, every fault
kind, statistics, reset, the control API and HTTP/1.1 behaviour
(keep-alive, Expect: 100-continue, raw percent-encoded paths)."""
import http.client
import json
import os
import signal
import socket
import subprocess
import time

import pytest

import conftest

MD_EMAIL = "/computeMetadata/v1/instance/service-accounts/default/email"
MD_HDR = {"Metadata-Flavor": "Google"}
# An API path served by the GCS service (needs a bearer token unless --no-auth).
API = "/storage/v1/b?project=durafs-test"


def google_error(body):
    j = json.loads(body)
    assert set(j) == {"error"}, j
    err = j["error"]
    assert isinstance(err["code"], int) and err["message"]
    assert err["errors"][0]["reason"] and err["errors"][0]["domain"] == "global"
    return err


def issue(emu, lifetime=None):
    body = {} if lifetime is None else {"lifetime": lifetime}
    return emu.control("oauth/issue", body)["access_token"]


def raw_request(emu, data, timeout=10):
    """Send raw bytes on a new connection; return everything read until close."""
    s = socket.create_connection(("127.0.0.1", emu.port), timeout=timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


# --- start, routing, auth --------------------------------------------------

def test_ready_file_and_clean_shutdown(emulator, workdir):
    with open(os.path.join(workdir, "emulator.ready")) as f:
        text = f.read()
    assert text == emulator.url + "\n"
    assert text.startswith("http://127.0.0.1:") and emulator.port > 0
    assert not [n for n in os.listdir(workdir) if ".tmp." in n]
    st, _, _ = emulator.request("GET", "/_emulator/health")
    assert st == 200
    emulator.proc.send_signal(signal.SIGTERM)
    assert emulator.proc.wait(10) == 0


def test_sigint_exits_zero(make_emulator):
    emu = make_emulator()
    emu.proc.send_signal(signal.SIGINT)
    assert emu.proc.wait(10) == 0


def test_bad_command_line(workdir):
    for listen in ("nonsense", "127.0.0.1:99999", "127.0.0.1:-1", "localhost:0"):
        r = subprocess.run([conftest.EMULATOR, "--listen", listen],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode != 0 and "--listen" in r.stderr, listen
    r = subprocess.run([conftest.EMULATOR, "--faults", "{bad json"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "--faults" in r.stderr
    r = subprocess.run([conftest.EMULATOR, "--help"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and "--ready-file" in r.stdout


def test_unknown_path_is_google_shaped_404(emulator):
    st, hdrs, body = emulator.request("GET", "/no/such/api")
    assert st == 404
    assert hdrs["Content-Type"].startswith("application/json")
    assert google_error(body)["code"] == 404
    st, _, body = emulator.request("POST", "/_emulator/nosuch", {})
    assert st == 404
    google_error(body)


def test_auth_enforced(emulator):
    st, hdrs, body = emulator.request("GET", API)
    assert st == 401
    assert hdrs["WWW-Authenticate"].startswith("Bearer")
    assert google_error(body)["code"] == 401
    st, _, body = emulator.request("GET", API, token="ya29.not-issued-here")
    assert st == 401
    assert google_error(body)["errors"][0]["reason"] == "authError"
    st, _, _ = emulator.request("GET", API, token=issue(emulator))
    assert st != 401
    # The control API and the token endpoints never need a token.
    st, _, _ = emulator.request("GET", "/_emulator/stats")
    assert st == 200
    st, _, _ = emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    assert st == 200
    stats = emulator.stats()
    assert stats["requests"]["core.unauthorized"]["401"] == 2


def test_no_auth(emulator_noauth):
    st, _, _ = emulator_noauth.request("GET", API)
    assert st != 401


# --- HTTP behaviour ---------------------------------------------------------

def test_keep_alive_reuses_the_connection(emulator):
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    conn.connect()
    sock = conn.sock
    for _ in range(20):
        conn.request("GET", MD_EMAIL, headers=MD_HDR)
        r = conn.getresponse()
        assert r.status == 200 and r.read()
        # a 404 and a control call keep the connection too
        conn.request("GET", "/nope")
        r = conn.getresponse()
        assert r.status == 404 and r.read()
    assert conn.sock is sock
    conn.close()


def test_expect_100_continue(emulator):
    body = b"grant_type=refresh_token&client_id=c&refresh_token=r"
    s = socket.create_connection(("127.0.0.1", emulator.port), timeout=10)
    try:
        s.sendall(b"POST /token HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                  b"Content-Type: application/x-www-form-urlencoded\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body))
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 100 Continue"), first
        s.sendall(body)
        out = b""
        while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    finally:
        s.close()
    assert out.startswith(b"HTTP/1.1 401"), out[:200]  # unknown OAuth client
    assert b"invalid_client" in out


def test_raw_percent_encoded_path_reaches_matching(emulator):
    # %2F inside a segment must stay distinguishable from '/': fault paths are
    # matched against the raw path.
    emulator.faults([{"kind": "status", "path": "/storage/v1/b/bk/o/a%2Fb",
                      "status": 409}])
    st, _, _ = emulator.request("GET", "/storage/v1/b/bk/o/a%2Fb")
    assert st == 409
    st, _, _ = emulator.request("GET", "/storage/v1/b/bk/o/a/b")
    assert st == 401


def test_malformed_query_is_400(emulator):
    st, _, body = emulator.request("GET", "/storage/v1/b?x=%zz")
    assert st == 400
    google_error(body)


def test_body_cap_gives_413(make_emulator):
    emu = make_emulator(args=["--max-body", "1000"])
    st, _, body = emu.request("POST", "/token", b"x" * 2000)
    assert st == 413
    google_error(body)
    st, _, _ = emu.request("POST", "/token", b"grant_type=x")
    assert st == 400


# --- faults -----------------------------------------------------------------

def test_status_fault_with_count_and_retry_after(emulator):
    tok = issue(emulator)
    listed = emulator.faults([{"kind": "status", "method": "GET", "path": "/storage/*",
                               "count": 2, "status": 503, "retry_after": 3}])
    assert listed["rules"][0]["remaining"] == 2
    for _ in range(2):
        st, hdrs, body = emulator.request("GET", API, token=tok)
        assert st == 503
        assert hdrs["Retry-After"] == "3"
        assert google_error(body)["errors"][0]["reason"] == "backendError"
    st, _, _ = emulator.request("GET", API, token=tok)
    assert st not in (401, 503)
    rules = emulator.control("faults", method="GET")["rules"]
    assert rules[0]["remaining"] == 0 and rules[0]["hits"] == 2
    stats = emulator.stats()
    assert stats["requests"]["gcs.fault"]["503"] == 2
    assert stats["faults_fired"]["status"] == 2


def test_status_fault_403_reason_and_method_filter(emulator):
    emulator.faults([{"kind": "status", "method": "POST", "path": "/token",
                      "status": 403, "reason": "rateLimitExceeded", "count": 1},
                     {"kind": "status", "path": "/token", "status": 429, "count": 1,
                      "query": "magic=1"}])
    st, _, body = emulator.request("POST", "/token", b"grant_type=refresh_token")
    assert st == 403
    assert google_error(body)["errors"][0]["reason"] == "rateLimitExceeded"
    st, _, _ = emulator.request("POST", "/token", b"grant_type=refresh_token")
    assert st == 400  # rule used up; the service answers
    st, _, body = emulator.request("POST", "/token?magic=1", b"grant_type=refresh_token")
    assert st == 429
    assert google_error(body)["errors"][0]["reason"] == "rateLimitExceeded"


def test_status_fault_fraction_is_seeded(emulator):
    def run():
        emulator.control("faults", {"seed": 1234, "rules": [
            {"kind": "status", "path": "/computeMetadata/*", "fraction": 0.3,
             "status": 500}]})
        seq = []
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
        for _ in range(200):
            conn.request("GET", MD_EMAIL, headers=MD_HDR)
            r = conn.getresponse()
            r.read()
            seq.append(r.status)
        conn.close()
        return seq

    a = run()
    fails = a.count(500)
    assert 30 <= fails <= 90, fails
    assert set(a) == {200, 500}
    assert run() == a  # same seed, same draws


def test_fraction_and_count_together(emulator):
    emulator.faults([{"kind": "status", "path": "/computeMetadata/*", "fraction": 0.5,
                      "count": 3, "status": 502}])
    codes = [emulator.request("GET", MD_EMAIL, headers=MD_HDR)[0] for _ in range(60)]
    assert codes.count(502) == 3


def test_cut_request_mid_body(emulator):
    size, cut = 1 << 20, 100000
    emulator.faults([{"kind": "cut", "method": "POST", "path": "/token",
                      "after_bytes": cut, "count": 1}])
    before = emulator.stats()["bytes_received"]
    head = (b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n" % size)
    s = socket.create_connection(("127.0.0.1", emulator.port), timeout=10)
    got, err = b"", None
    try:
        s.sendall(head)
        sent = 0
        while sent < size:
            try:
                sent += s.send(b"a" * min(65536, size - sent))
            except (BrokenPipeError, ConnectionResetError) as e:
                err = e
                break
        if err is None:
            try:
                got = s.recv(4096)
            except ConnectionResetError as e:
                err = e
    finally:
        s.close()
    # the client sees the connection closed or reset, never a reply
    assert got == b"", got[:200]
    stats = emulator.stats()
    assert stats["bytes_received"] - before == cut
    assert stats["faults_fired"]["cut"] == 1
    assert any("cut" in v for v in stats["requests"].values()), stats["requests"]
    # the next request is served normally
    st, _, _ = emulator.request("POST", "/token", b"grant_type=refresh_token")
    assert st == 400


def test_cut_rule_skips_short_bodies(emulator):
    emulator.faults([{"kind": "cut", "path": "/token", "after_bytes": 1000}])
    st, _, _ = emulator.request("POST", "/token", b"grant_type=refresh_token")
    assert st == 400
    assert emulator.stats()["faults_fired"]["cut"] == 0


def test_cut_response(emulator):
    emulator.faults([{"kind": "cut_response", "path": MD_EMAIL, "after_bytes": 10,
                      "count": 1}])
    conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    conn.request("GET", MD_EMAIL, headers=MD_HDR)
    r = conn.getresponse()
    assert r.status == 200
    length = int(r.headers["Content-Length"])
    assert length > 10
    with pytest.raises(http.client.IncompleteRead) as ei:
        r.read()
    assert len(ei.value.partial) == 10
    conn.close()
    st, _, body = emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    assert st == 200 and len(body) == length
    assert emulator.stats()["faults_fired"]["cut_response"] == 1


def test_latency(emulator):
    t0 = time.monotonic()
    emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    fast = time.monotonic() - t0
    emulator.faults([{"kind": "latency", "ms": 1000, "path": "/computeMetadata/*",
                      "count": 1}])
    t0 = time.monotonic()
    st, _, _ = emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    slow = time.monotonic() - t0
    assert st == 200
    assert slow >= 1.0 and fast < 0.9
    t0 = time.monotonic()
    emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    assert time.monotonic() - t0 < 0.9  # the rule was used up


def test_service_fault_kinds_are_accepted_and_listed(emulator):
    rules = [{"kind": "short308", "persist_less": 262144, "count": 1},
             {"kind": "page_cap", "max": 100},
             {"kind": "expire_session", "path": "/upload/*", "count": 2}]
    listed = emulator.faults(rules)["rules"]
    assert [r["kind"] for r in listed] == ["short308", "page_cap", "expire_session"]
    assert listed[0]["persist_less"] == 262144 and listed[1]["max"] == 100
    assert listed[1]["remaining"] is None and listed[2]["remaining"] == 2
    added = emulator.control("faults", {"add": [{"kind": "latency", "ms": 1}]})
    assert len(added["rules"]) == 4
    emulator.clear_faults()
    assert emulator.control("faults", method="GET")["rules"] == []


def test_faults_from_command_line(make_emulator, workdir):
    spec = json.dumps([{"kind": "status", "path": MD_EMAIL, "status": 500, "count": 1}])
    emu = make_emulator(args=["--faults", spec])
    assert emu.request("GET", MD_EMAIL, headers=MD_HDR)[0] == 500
    assert emu.request("GET", MD_EMAIL, headers=MD_HDR)[0] == 200
    emu.stop()
    path = os.path.join(workdir, "faults.json")
    with open(path, "w") as f:
        json.dump({"rules": [{"kind": "status", "path": MD_EMAIL, "status": 503,
                              "retry_after": 1}]}, f)
    emu2 = make_emulator(args=["--faults", "@" + path, "--seed", "7"])
    st, hdrs, _ = emu2.request("GET", MD_EMAIL, headers=MD_HDR)
    assert st == 503 and hdrs["Retry-After"] == "1"
    assert emu2.control("faults", method="GET")["seed"] == 7


@pytest.mark.parametrize("body", [
    b"{not json",
    b"[1, 2]",
    b'{"rules": "x"}',
    b'{"rules": [{"kind": "nope"}]}',
    b'{"rules": [{"kind": "status"}]}',
    b'{"rules": [{"kind": "status", "status": 99}]}',
    b'{"rules": [{"kind": "status", "status": 500, "fraction": 2}]}',
    b'{"rules": [{"kind": "status", "status": 500, "count": -1}]}',
    b'{"rules": [{"kind": "cut", "after": 5}]}',
    b'{"rules": [{"kind": "latency", "ms": "slow"}]}',
    b'{"rules": [], "other": 1}',
    b'{}',
])
def test_malformed_fault_json_is_400(emulator, body):
    emulator.faults([{"kind": "latency", "ms": 1}])
    st, _, out = emulator.request("POST", "/_emulator/faults", body,
                                  headers={"Content-Type": "application/json"})
    assert st == 400, out
    assert google_error(out)["message"]
    # nothing changed, and the emulator still serves
    assert len(emulator.control("faults", method="GET")["rules"]) == 1


@pytest.mark.parametrize("path,body", [
    ("oauth/config", b"{oops"),
    ("oauth/config", b'{"token_lifetime": "long"}'),
    ("oauth/service_accounts", b'{"client_email": "a@b"}'),
    ("oauth/service_accounts", b'{"client_email": "a@b", "public_key_pem": "junk"}'),
    ("oauth/refresh_tokens", b'{"client_id": 3}'),
    ("oauth/issue", b'{"lifetime": -5}'),
    ("oauth/revoke", b"[]"),
    ("metadata/config", b'{"disabled": "yes"}'),
    ("metadata/config", b'{"scopes": "x"}'),
    ("metadata/config", b"\xff\xfe"),
])
def test_malformed_control_json_is_400(emulator, path, body):
    st, _, out = emulator.request("POST", "/_emulator/" + path, body)
    assert st == 400, out
    google_error(out)
    assert emulator.request("GET", "/_emulator/stats")[0] == 200


# --- stats, reset, control --------------------------------------------------

def test_stats_count_requests_and_bytes(emulator):
    emulator.reset()
    body = b"grant_type=refresh_token&client_id=nobody&refresh_token=zzz"
    for _ in range(3):
        emulator.request("POST", "/token", body)
    for _ in range(2):
        emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    emulator.request("GET", MD_EMAIL)
    s = emulator.stats()
    assert s["requests"]["oauth.token"] == {"401": 3}
    assert s["requests"]["metadata.email"] == {"200": 2}
    assert s["requests"]["metadata.refused"] == {"403": 1}
    assert s["bytes_received"] == 3 * len(body)
    assert s["services"]["oauth"]["requests"] == 3
    assert s["services"]["oauth"]["bytes_received"] == 3 * len(body)
    assert s["services"]["metadata"]["requests"] == 3
    assert s["requests_total"] == 6
    assert s["bytes_sent"] > 0
    # control calls are not counted
    assert emulator.stats()["requests_total"] == 6


def test_reset_clears_stats_faults_and_services(emulator):
    emulator.faults([{"kind": "latency", "ms": 1}])
    emulator.control("metadata/config", {"email": "x@y.z"})
    emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    tok = issue(emulator)
    emulator.reset()
    s = emulator.stats()
    assert s["requests"] == {} and s["bytes_received"] == 0 and s["counters"] == {}
    assert emulator.control("faults", method="GET")["rules"] == []
    st, _, body = emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    assert body != b"x@y.z"
    assert emulator.request("GET", API, token=tok)[0] == 401  # oauth reset too


def test_control_forwarding(emulator):
    out = emulator.control("metadata/config", {"email": "robot@proj.iam.gserviceaccount.com"})
    assert out["email"] == "robot@proj.iam.gserviceaccount.com"
    st, _, body = emulator.request("GET", MD_EMAIL, headers=MD_HDR)
    assert body == b"robot@proj.iam.gserviceaccount.com"
    st, _, _ = emulator.request("POST", "/_emulator/metadata/nosuch", {})
    assert st == 404
    st, _, _ = emulator.request("PUT", "/_emulator/reset", {})
    assert st == 405


def test_parallel_requests(emulator):
    import concurrent.futures
    tok = issue(emulator)

    def one(i):
        conn = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=30)
        codes = []
        for _ in range(20):
            conn.request("GET", API, headers={"Authorization": "Bearer " + tok})
            r = conn.getresponse()
            r.read()
            codes.append(r.status)
        conn.close()
        return codes

    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        results = [c for codes in ex.map(one, range(16)) for c in codes]
    assert len(results) == 320 and 401 not in results
    assert emulator.stats()["services"]["gcs"]["requests"] == 320
