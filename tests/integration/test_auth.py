"""`durafs auth print-token|whoami|login` against the emulator: every token
source yields a token the emulator's API accepts, discovery follows the
documented order and says why, errors name the file and field, refusals
show Google's error, the loopback and device login flows store a working
login, and no secret ever appears in any output or log of the run."""
import json
import os
import queue
import re
import socket
import stat
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

import conftest
from auth_util import (api_ok, clean_env, gen_rsa, issue, register_rt, register_sa,
                       run, sa_file, user_file, write_json)

SA_EMAIL = "robot@durafs-test.iam.gserviceaccount.com"
CID = "cid.apps.googleusercontent.com"
CSECRET = "GOCSPX-test-secret"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("keys"))
    return {"good": gen_rsa(d, "good"), "other": gen_rsa(d, "other")}


@pytest.fixture
def home(workdir):
    h = os.path.join(workdir, "home")
    os.makedirs(h)
    return h


def token_of(res):
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1
    return lines[0]


# --- each source ---------------------------------------------------------------

def test_service_account_via_gac(emulator, keys, home, workdir):
    priv, pub = keys["good"]
    register_sa(emulator, SA_EMAIL, pub)
    path = sa_file(emulator, os.path.join(workdir, "sa.json"), SA_EMAIL, priv)
    env = clean_env(home, GOOGLE_APPLICATION_CREDENTIALS=path)
    tok = token_of(run(["auth", "print-token"], env))
    assert api_ok(emulator, tok)
    assert not api_ok(emulator, tok + "x")

    res = run(["auth", "whoami"], env)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "source:   service_account" in out
    assert "ADC step 1: $GOOGLE_APPLICATION_CREDENTIALS" in out
    assert "account:  " + SA_EMAIL in out
    assert "devstorage.read_write" in out
    assert "expires:  " in out and "(in 5" in out  # ~59 min
    assert tok not in out + res.stderr

    res = run(["auth", "whoami", "--json", "--scope", "drive"], env)
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["source"] == "service_account"
    assert info["account"] == SA_EMAIL
    assert info["path"] == path
    assert info["scopes"] == "https://www.googleapis.com/auth/drive"
    assert 3000 < info["expires_in"] <= 3600
    assert info["checked"][-1].startswith("4. $GOOGLE_APPLICATION_CREDENTIALS=")


def test_authorized_user_gcloud_file(emulator, home):
    register_rt(emulator, "1//gcloud-rt")
    user_file(os.path.join(home, ".config", "gcloud", "application_default_credentials.json"),
              "1//gcloud-rt", emulator.url + "/token")
    env = clean_env(home)
    tok = token_of(run(["auth", "print-token"], env))
    assert api_ok(emulator, tok)
    res = run(["auth", "whoami"], env)
    assert res.returncode == 0, res.stderr
    assert "source:   authorized_user" in res.stdout
    assert "ADC step 2" in res.stdout


def test_authorized_user_cloudsdk_config(emulator, home, workdir):
    register_rt(emulator, "1//sdk-rt")
    cfg = os.path.join(workdir, "gcloud-cfg")
    user_file(os.path.join(cfg, "application_default_credentials.json"), "1//sdk-rt",
              emulator.url + "/token")
    env = clean_env(home, CLOUDSDK_CONFIG=cfg)
    assert api_ok(emulator, token_of(run(["auth", "print-token"], env)))


def test_static_sources(emulator, home, workdir):
    tok = issue(emulator)
    env = clean_env(home, DURAFS_ACCESS_TOKEN=tok)
    assert token_of(run(["auth", "print-token"], env)) == tok
    res = run(["auth", "whoami"], env)
    assert res.returncode == 0 and "$DURAFS_ACCESS_TOKEN" in res.stdout
    assert tok not in res.stdout + res.stderr

    tok2 = issue(emulator)
    path = os.path.join(workdir, "token.txt")
    with open(path, "w") as f:
        f.write(tok2 + "\n")
    os.chmod(path, 0o600)
    # The explicit option wins over the environment.
    assert token_of(run(["auth", "print-token", "--token-file", path], env)) == tok2
    assert api_ok(emulator, tok2)


def test_metadata_server(emulator, home):
    emulator.control("metadata/config", {"email": "vm@durafs-test.iam.gserviceaccount.com"})
    host = emulator.url[len("http://"):]
    env = clean_env(home, GCE_METADATA_HOST=host)
    tok = token_of(run(["auth", "print-token", "--scope", "gcs"], env))
    assert api_ok(emulator, tok)
    res = run(["auth", "whoami"], env)
    assert res.returncode == 0, res.stderr
    assert "source:   metadata" in res.stdout
    assert "ADC step 3: metadata server " + host in res.stdout
    assert "vm@durafs-test.iam.gserviceaccount.com" in res.stdout


def test_order_stored_login_before_adc(emulator, keys, home, workdir):
    priv, pub = keys["good"]
    register_sa(emulator, SA_EMAIL, pub)
    sa = sa_file(emulator, os.path.join(workdir, "sa.json"), SA_EMAIL, priv)
    register_rt(emulator, "1//stored-rt")
    user_file(os.path.join(home, ".config", "durafs", "credentials.json"), "1//stored-rt",
              emulator.url + "/token")
    env = clean_env(home, GOOGLE_APPLICATION_CREDENTIALS=sa)
    res = run(["auth", "whoami"], env)
    assert res.returncode == 0, res.stderr
    assert "durafs login (" in res.stdout
    # XDG_CONFIG_HOME moves durafs' own login: now ADC step 1 wins.
    env["XDG_CONFIG_HOME"] = os.path.join(workdir, "xdg")
    res = run(["auth", "whoami"], env)
    assert "ADC step 1" in res.stdout
    # --credentials beats everything.
    res = run(["auth", "whoami", "--credentials", sa], clean_env(home))
    assert "chosen:   --credentials" in res.stdout


# --- errors --------------------------------------------------------------------

def test_no_credentials_lists_what_was_tried(home):
    env = clean_env(home)
    t0 = time.monotonic()
    res = run(["auth", "print-token"], env)
    elapsed = time.monotonic() - t0
    assert res.returncode == 1
    assert res.stdout == ""
    err = res.stderr
    assert "no Google credentials found" in err
    steps = [l.strip() for l in err.splitlines() if l.strip()[:2] in ("1.", "2.", "3.", "4.",
                                                                       "5.", "6.")]
    assert [s[:3] for s in steps] == ["1. ", "2. ", "3. ", "4. ", "5. ", "6. "]
    assert "$DURAFS_ACCESS_TOKEN: not set" in steps[1]
    assert "durafs/credentials.json: not found" in steps[2]
    assert "$GOOGLE_APPLICATION_CREDENTIALS: not set" in steps[3]
    assert "application_default_credentials.json: not found" in steps[4]
    assert steps[5].startswith("6. metadata server 127.0.0.1:")
    assert elapsed < 2
    assert run(["auth", "whoami"], env).returncode == 1


def test_metadata_probe_fails_fast_when_silent(home):
    # Accepts TCP connections, never answers: the probe gives up in ~1 s.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    try:
        env = clean_env(home, GCE_METADATA_HOST="127.0.0.1:%d" % srv.getsockname()[1])
        t0 = time.monotonic()
        res = run(["auth", "print-token"], env)
        elapsed = time.monotonic() - t0
    finally:
        srv.close()
    assert res.returncode == 1
    assert "no Google credentials found" in res.stderr
    assert elapsed < 2, elapsed


def test_wrong_key_refused_clearly(emulator, keys, home, workdir):
    _, pub = keys["good"]
    other, _ = keys["other"]
    register_sa(emulator, SA_EMAIL, pub)
    path = sa_file(emulator, os.path.join(workdir, "sa.json"), SA_EMAIL, other)
    res = run(["auth", "print-token", "--credentials", path], clean_env(home))
    assert res.returncode == 1
    assert res.stdout == ""
    msg = res.stderr
    assert SA_EMAIL in msg and path in msg
    assert "refused (HTTP 400): invalid_grant" in msg
    assert "eyJ" not in msg and "PRIVATE KEY" not in msg


def test_revoked_refresh_token_says_how_to_log_in(emulator, home):
    register_rt(emulator, "1//revoked-rt")
    emulator.control("oauth/revoke", {"refresh_token": "1//revoked-rt"})
    path = user_file(os.path.join(home, ".config", "durafs", "credentials.json"),
                     "1//revoked-rt", emulator.url + "/token")
    res = run(["auth", "print-token"], clean_env(home))
    assert res.returncode == 1
    assert "invalid_grant" in res.stderr
    assert "durafs auth login" in res.stderr
    assert path in res.stderr
    assert "1//revoked-rt" not in res.stderr and CSECRET not in res.stderr


@pytest.mark.parametrize("drop,want", [
    ("client_email", 'field "client_email" missing'),
    ("private_key", 'field "private_key" missing'),
    ("type", 'field "type" missing'),
])
def test_malformed_file_names_file_and_field(emulator, keys, home, workdir, drop, want):
    priv, _ = keys["good"]
    path = sa_file(emulator, os.path.join(workdir, "sa.json"), SA_EMAIL, priv)
    with open(path) as f:
        obj = json.load(f)
    del obj[drop]
    write_json(path, obj)
    res = run(["auth", "whoami"], clean_env(home, GOOGLE_APPLICATION_CREDENTIALS=path))
    assert res.returncode == 1
    assert "%s: %s" % (path, want) in res.stderr
    assert "BEGIN" not in res.stderr


def test_unsupported_type_and_missing_gac(home, workdir):
    path = write_json(os.path.join(workdir, "ext.json"), {"type": "external_account"})
    res = run(["auth", "whoami"], clean_env(home, GOOGLE_APPLICATION_CREDENTIALS=path))
    assert res.returncode == 1 and "not supported" in res.stderr
    missing = os.path.join(workdir, "nope.json")
    res = run(["auth", "whoami"], clean_env(home, GOOGLE_APPLICATION_CREDENTIALS=missing))
    assert res.returncode == 1
    assert "$GOOGLE_APPLICATION_CREDENTIALS names a missing file" in res.stderr
    assert missing in res.stderr


def test_permission_warning(emulator, keys, home, workdir):
    priv, pub = keys["good"]
    register_sa(emulator, SA_EMAIL, pub)
    path = sa_file(emulator, os.path.join(workdir, "sa.json"), SA_EMAIL, priv, mode=0o644)
    res = run(["auth", "print-token", "--credentials", path], clean_env(home))
    assert res.returncode == 0
    assert "warning" in res.stderr and path in res.stderr
    assert "chmod 600 " + path in res.stderr
    os.chmod(path, 0o600)
    res = run(["auth", "print-token", "--credentials", path], clean_env(home))
    assert res.returncode == 0 and "warning" not in res.stderr


def test_token_endpoint_5xx_retried_refusal_not(emulator, keys, home, workdir):
    priv, pub = keys["good"]
    register_sa(emulator, SA_EMAIL, pub)
    path = sa_file(emulator, os.path.join(workdir, "sa.json"), SA_EMAIL, priv)
    emulator.faults([{"kind": "status", "status": 503, "path": "/token", "count": 2}])
    res = run(["auth", "print-token", "--credentials", path], clean_env(home))
    assert res.returncode == 0, res.stderr
    assert api_ok(emulator, res.stdout.strip())
    emulator.clear_faults()
    before = emulator.stats()["requests"].get("oauth.token", {})
    register_rt(emulator, "1//bad-rt")
    emulator.control("oauth/revoke", {"refresh_token": "1//bad-rt"})
    p2 = user_file(os.path.join(workdir, "u.json"), "1//bad-rt", emulator.url + "/token")
    assert run(["auth", "print-token", "--credentials", p2], clean_env(home)).returncode == 1
    after = emulator.stats()["requests"].get("oauth.token", {})
    assert int(after.get("400", 0)) - int(before.get("400", 0)) == 1


# --- login ---------------------------------------------------------------------

class LineReader:
    """Collects a process's stderr lines in a thread."""

    def __init__(self, stream):
        self.q = queue.Queue()
        self.all = []
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        for line in stream:
            self.all.append(line)
            self.q.put(line)

    def wait_for(self, pred, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self.q.get(timeout=0.1)
            except queue.Empty:
                continue
            if pred(line):
                return line
        raise AssertionError("not seen; output so far:\n" + "".join(self.all))


def finish(p, reader, timeout=30):
    """Wait for the login process; returns its stdout once stderr is all read."""
    p.wait(timeout=timeout)
    out = p.stdout.read()
    reader.t.join(10)
    p.stdin.close()
    p.stdout.close()
    assert not conftest.SUSPICIOUS.search("".join(reader.all)), "".join(reader.all)
    return out


def start_login(env, extra=()):
    return subprocess.Popen([conftest.DURAFS, "auth", "login", "--no-browser", "--client-id",
                             CID, "--timeout", "30"] + list(extra), env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


LOGIN_RT = "1//login-rt"
LOGIN_CODE = "4/0AdQt8q-test-authorization-code"


def login_env(home, emu):
    """The token and device endpoints are the emulator's; the consent page
    URL is only shown (the tests play the browser)."""
    return clean_env(home, DURAFS_CLIENT_SECRET=CSECRET,
                     DURAFS_OAUTH_AUTH_URI="https://accounts.example.invalid/o/oauth2/v2/auth",
                     DURAFS_OAUTH_TOKEN_URI=emu.url + "/token",
                     DURAFS_OAUTH_DEVICE_URI=emu.url + "/device/code")


def consent(emu, q, code=LOGIN_CODE, rt=LOGIN_RT):
    """The user approves in the browser: the emulator will take code for
    exactly what this authorization URL asked (client, redirect_uri, PKCE
    challenge, scope), as Google does after consent."""
    emu.control("oauth/auth_codes", {"code": code, "client_id": q["client_id"],
                                     "client_secret": CSECRET,
                                     "redirect_uri": q["redirect_uri"],
                                     "code_challenge": q["code_challenge"],
                                     "refresh_token": rt, "scopes": q["scope"]})


def token_calls(emu):
    """Status counts of the emulator's token endpoint, e.g. {"200": 1}."""
    return emu.stats()["requests"].get("oauth.token", {})


def read_auth_url(reader):
    line = reader.wait_for(lambda l: l.startswith("https://accounts.example.invalid/"))
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(line.strip()).query))
    assert q["response_type"] == "code"
    assert q["client_id"] == CID
    assert q["code_challenge_method"] == "S256"
    assert len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 32
    assert q["access_type"] == "offline" and q["prompt"] == "consent"
    assert q["scope"] == "https://www.googleapis.com/auth/drive"
    assert q["redirect_uri"].startswith("http://127.0.0.1:")
    assert CSECRET not in line
    return q


def browser_get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_stored_login(emulator, home, env, rt=LOGIN_RT):
    path = os.path.join(home, ".config", "durafs", "credentials.json")
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    with open(path) as f:
        saved = json.load(f)
    assert saved["type"] == "authorized_user"
    assert saved["client_id"] == CID and saved["client_secret"] == CSECRET
    assert saved["refresh_token"] == rt
    # The stored login works: durafs refreshes it and the API accepts it.
    tok = token_of(run(["auth", "print-token"], env))
    assert api_ok(emulator, tok)
    res = run(["auth", "whoami"], env)
    assert "durafs login (" + path in res.stdout


def test_login_loopback_flow(emulator, home):
    env = login_env(home, emulator)
    p = start_login(env)
    reader = LineReader(p.stderr)
    q = read_auth_url(reader)
    consent(emulator, q)
    # Stray requests do not end the login: a favicon, a forged state.
    assert browser_get(q["redirect_uri"] + "/favicon.ico")[0] == 404
    st, _ = browser_get(q["redirect_uri"] + "/?code=evil&state=forged")
    assert st == 400
    # The browser comes back with the code.
    st, page = browser_get(q["redirect_uri"] + "/?" + urllib.parse.urlencode(
        {"state": q["state"], "code": LOGIN_CODE, "scope": q["scope"]}))
    assert st == 200 and "signed in" in page
    out = finish(p, reader)
    assert p.returncode == 0, "".join(reader.all)
    assert "Logged in" in out
    # One code exchange, accepted: client, redirect_uri and PKCE verifier
    # matched what the authorization URL carried.
    assert token_calls(emulator) == {"200": 1}
    assert emulator.stats()["counters"]["oauth.codes_exchanged"] == 1
    check_stored_login(emulator, home, clean_env(home))


def test_login_pasted_redirect(emulator, home):
    env = login_env(home, emulator)
    p = start_login(env)
    reader = LineReader(p.stderr)
    q = read_auth_url(reader)
    consent(emulator, q)
    # A headless machine: the browser elsewhere could not load the
    # redirect; the user pastes its address (first a typo).
    p.stdin.write("not a url\n")
    p.stdin.flush()
    reader.wait_for(lambda l: "neither the redirect URL" in l)
    p.stdin.write(q["redirect_uri"] + "/?state=%s&code=%s&scope=x\n" % (
        q["state"], urllib.parse.quote(LOGIN_CODE, safe="")))
    p.stdin.flush()
    finish(p, reader)
    assert p.returncode == 0, "".join(reader.all)
    assert token_calls(emulator) == {"200": 1}
    check_stored_login(emulator, home, clean_env(home))


def test_login_refused_by_user(emulator, home):
    p = start_login(login_env(home, emulator))
    reader = LineReader(p.stderr)
    q = read_auth_url(reader)
    st, _ = browser_get(q["redirect_uri"] + "/?error=access_denied&state=" + q["state"])
    assert st == 400
    finish(p, reader)
    assert p.returncode == 1
    assert "refused: access_denied" in "".join(reader.all)
    assert not os.path.exists(os.path.join(home, ".config", "durafs", "credentials.json"))
    assert token_calls(emulator) == {}


def test_login_code_refused_by_google(emulator, home):
    """The code exchange fails (the code was issued for another PKCE
    challenge): Google's error is shown and nothing is stored."""
    p = start_login(login_env(home, emulator))
    reader = LineReader(p.stderr)
    q = read_auth_url(reader)
    consent(emulator, dict(q, code_challenge="A" * 43))
    browser_get(q["redirect_uri"] + "/?" + urllib.parse.urlencode(
        {"state": q["state"], "code": LOGIN_CODE}))
    finish(p, reader)
    assert p.returncode == 1
    assert "invalid_grant" in "".join(reader.all)
    assert not os.path.exists(os.path.join(home, ".config", "durafs", "credentials.json"))
    assert token_calls(emulator) == {"400": 1}


def test_login_device_flow(emulator, home):
    emulator.control("oauth/config", {"device_interval": 1})
    env = login_env(home, emulator)
    p = subprocess.Popen([conftest.DURAFS, "auth", "login", "--device", "--scope", "drive.file",
                          "--client-id", CID, "--timeout", "30"], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    reader = LineReader(p.stderr)
    reader.wait_for(lambda l: "https://www.google.com/device" in l)
    code = reader.wait_for(lambda l: re.fullmatch(r"\s+[A-Z]{4}-[A-Z]{4}\s*", l)).strip()
    # durafs polls meanwhile: the emulator answers authorization_pending
    end = time.monotonic() + 20
    while token_calls(emulator).get("428", 0) < 1 and time.monotonic() < end:
        time.sleep(0.1)
    emulator.control("oauth/device_approve", {"user_code": code, "refresh_token": LOGIN_RT})
    finish(p, reader)
    assert p.returncode == 0, "".join(reader.all)
    calls = token_calls(emulator)
    assert calls["200"] == 1 and calls["428"] >= 1 and set(calls) == {"200", "428"}, calls
    assert emulator.stats()["counters"]["oauth.device_grants"] == 1
    check_stored_login(emulator, home, clean_env(home))
    # Google allows the device flow for drive.file only.
    res = run(["auth", "login", "--device", "--scope", "drive", "--client-id", CID], env)
    assert res.returncode == 2 and "drive.file" in res.stderr


def test_login_opens_browser(emulator, home, workdir):
    """$BROWSER is started with the consent URL; the "browser" here loads
    the emulator's consent page, which approves at once and redirects back
    to durafs' loopback listener."""
    browser = os.path.join(workdir, "browser")
    with open(browser, "w") as f:
        f.write("#!/usr/bin/python3\nimport sys, urllib.request\n"
                "urllib.request.urlopen(sys.argv[1], timeout=20).read()\n")
    os.chmod(browser, 0o755)
    # the approval waits for the browser: the consent page binds it
    emulator.control("oauth/auth_codes", {"code": LOGIN_CODE, "client_id": CID,
                                          "client_secret": CSECRET, "refresh_token": LOGIN_RT})
    env = login_env(home, emulator)
    env["DURAFS_OAUTH_AUTH_URI"] = emulator.url + "/o/oauth2/v2/auth"
    env["BROWSER"] = browser
    res = run(["auth", "login", "--client-id", CID, "--timeout", "30"], env, timeout=40)
    assert res.returncode == 0, res.stderr
    assert "browser has been opened" in res.stderr
    c = emulator.stats()["counters"]
    assert c["oauth.consents"] == 1 and c["oauth.codes_exchanged"] == 1
    assert token_calls(emulator) == {"200": 1}
    check_stored_login(emulator, home, clean_env(home))


def test_login_needs_a_client(home):
    res = run(["auth", "login", "--no-browser"], clean_env(home))
    assert res.returncode == 2
    assert "Desktop app" in res.stderr and "--client-id" in res.stderr


# --- secrets -------------------------------------------------------------------

def test_no_secret_in_any_output(make_emulator, keys, home, workdir):
    """Every flow with --debug; every output (print-token's stdout aside,
    which is the token by design) and the emulator's verbose log are
    searched for every secret the run used."""
    emu = make_emulator(args=["--verbose"])
    priv, pub = keys["good"]
    other, _ = keys["other"]
    register_sa(emu, SA_EMAIL, pub)
    sa = sa_file(emu, os.path.join(workdir, "sa.json"), SA_EMAIL, priv)
    bad_sa = sa_file(emu, os.path.join(workdir, "bad.json"), SA_EMAIL, other)
    register_rt(emu, "1//secret-user-rt")
    user = user_file(os.path.join(workdir, "user.json"), "1//secret-user-rt", emu.url + "/token")
    register_rt(emu, "1//secret-revoked-rt")
    emu.control("oauth/revoke", {"refresh_token": "1//secret-revoked-rt"})
    revoked = user_file(os.path.join(workdir, "rev.json"), "1//secret-revoked-rt",
                        emu.url + "/token")
    static = issue(emu)
    outputs, tokens = [], [static]

    def go(args, env, is_token=False):
        res = run(list(args) + ["--debug"], env)
        outputs.append(res.stderr)
        if is_token and res.returncode == 0:
            tokens.append(res.stdout.strip())
        else:
            outputs.append(res.stdout)
        return res

    env = clean_env(home)
    emu.faults([{"kind": "status", "status": 503, "path": "/token", "count": 1}])
    assert go(["auth", "print-token", "--credentials", sa], env, True).returncode == 0
    assert go(["auth", "whoami", "--credentials", sa], env).returncode == 0
    assert go(["auth", "print-token", "--credentials", user], env, True).returncode == 0
    assert go(["auth", "whoami", "--json", "--credentials", user], env).returncode == 0
    assert go(["auth", "print-token", "--credentials", bad_sa], env).returncode == 1
    assert go(["auth", "print-token", "--credentials", revoked], env).returncode == 1
    senv = clean_env(home, DURAFS_ACCESS_TOKEN=static)
    assert go(["auth", "whoami"], senv).returncode == 0
    emu.control("metadata/config", {"email": "vm@durafs-test.iam.gserviceaccount.com"})
    menv = clean_env(home, GCE_METADATA_HOST=emu.url[len("http://"):])
    assert go(["auth", "print-token"], menv, True).returncode == 0
    assert go(["auth", "whoami"], menv).returncode == 0

    p = start_login(login_env(home, emu), ["--debug"])
    reader = LineReader(p.stderr)
    q = read_auth_url(reader)
    consent(emu, q, rt="1//secret-login-rt")
    browser_get(q["redirect_uri"] + "/?" + urllib.parse.urlencode(
        {"state": q["state"], "code": LOGIN_CODE}))
    out = finish(p, reader)
    assert p.returncode == 0
    outputs += [out, "".join(reader.all)]
    assert go(["auth", "print-token"], clean_env(home), True).returncode == 0

    assert len(tokens) == 5  # the static one and four fetched
    pem_lines = [l for l in (priv + other).splitlines()
                 if l and not l.startswith("-----")]
    secrets = (["1//secret-user-rt", "1//secret-revoked-rt", "1//secret-login-rt", CSECRET,
                LOGIN_CODE, "eyJhbGciOiJSUzI1NiIs"] + tokens + pem_lines)
    text = "\n".join(outputs)
    assert "DEBUG" in text  # debug logging really was on
    for s in secrets:
        assert s not in text, "secret found in durafs output: %s..." % s[:12]
    log = emu.log()
    leaked = [s[:12] for s in secrets if s in log]
    assert not leaked, "secrets in the emulator's log: %s" % leaked
