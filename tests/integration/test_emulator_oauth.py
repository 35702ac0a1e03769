"""durafs-emulator OAuth2 and metadata services: refresh-token and JWT-bearer
grants (keys made with the openssl command line), the authorization-code
grant with PKCE and its consent page, the device grant, refusals with
Google's error shapes, token lifetimes and expiry, revocation, tokeninfo,
the GCE metadata handshake, persistence with --data-dir, and no secret in
the log."""
import base64
import hashlib
import http.client
import json
import os
import subprocess
import time
import urllib.parse

import pytest

API = "/storage/v1/b?project=durafs-test"
MD = "/computeMetadata/v1/instance/service-accounts/default/"
MD_HDR = {"Metadata-Flavor": "Google"}
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def form(**kw):
    return urllib.parse.urlencode(kw).encode()


def post_token(emu, body, path="/token"):
    st, hdrs, out = emu.request("POST", path, body, headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    return st, json.loads(out)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Two RSA keys made with the openssl command line: (key, pubkey pem) each."""
    out = []
    d = tmp_path_factory.mktemp("keys")
    for name in ("k1", "k2"):
        key = d / (name + ".pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", str(key)], check=True,
                       capture_output=True)
        pub = subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout"], check=True,
                             capture_output=True).stdout.decode()
        out.append((str(key), pub))
    return out


def make_jwt(key, claims, header=None):
    header = header or {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    signing = (b64url(json.dumps(header).encode()) + "." +
               b64url(json.dumps(claims).encode()))
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key],
                         input=signing.encode(), check=True, capture_output=True).stdout
    return signing + "." + b64url(sig)


def claims(emu, **over):
    now = int(time.time())
    c = {"iss": "sa@proj.iam.gserviceaccount.com", "scope": SCOPE,
         "aud": emu.url + "/token", "iat": now, "exp": now + 3600}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def register_sa(emu, pub, kid="kid-1", email="sa@proj.iam.gserviceaccount.com"):
    return emu.control("oauth/service_accounts", {
        "client_email": email, "public_key_pem": pub, "key_id": kid})


def api_ok(emu, token):
    return emu.request("GET", API, token=token)[0] != 401


def s256(verifier):
    return b64url(hashlib.sha256(verifier.encode()).digest())


CID = "cid.apps.googleusercontent.com"
CSECRET = "GOCSPX-code-secret"
VERIFIER = "v" * 20 + "-._~" + "0123456789ABCDEFGHIJ"   # 44 unreserved characters
REDIRECT = "http://127.0.0.1:45555"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def get_no_redirect(emu, path):
    """GET without following redirects: (status, headers, body)."""
    host, port = emu.url[len("http://"):].rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def register_rt(emu, **over):
    body = {"client_id": "cid.apps.googleusercontent.com", "client_secret": "s3cret-xyz",
            "refresh_token": "1//refresh-abc", "account": "alice@example.com"}
    body.update(over)
    emu.control("oauth/refresh_tokens", body)
    return body


# --- refresh_token grant ----------------------------------------------------

def test_refresh_grant_ok(emulator):
    rt = register_rt(emulator)
    st, j = post_token(emulator, form(grant_type="refresh_token",
                                      client_id=rt["client_id"],
                                      client_secret=rt["client_secret"],
                                      refresh_token=rt["refresh_token"]))
    assert st == 200, j
    assert j["token_type"] == "Bearer" and j["access_token"].startswith("ya29.")
    assert 3000 <= j["expires_in"] <= 3600 and j["scope"]
    assert api_ok(emulator, j["access_token"])
    s = emulator.stats()
    assert s["requests"]["oauth.token"] == {"200": 1}
    assert s["counters"]["oauth.tokens_issued"] == 1
    # tokeninfo knows the account
    st, _, out = emulator.request(
        "GET", "/oauth2/v3/tokeninfo?access_token=" + j["access_token"])
    assert st == 200 and json.loads(out)["email"] == "alice@example.com"


def test_refresh_grant_refusals(emulator):
    rt = register_rt(emulator)
    base = dict(grant_type="refresh_token", client_id=rt["client_id"],
                client_secret=rt["client_secret"], refresh_token=rt["refresh_token"])
    st, j = post_token(emulator, form(**dict(base, refresh_token="1//unknown")))
    assert st == 400 and j["error"] == "invalid_grant" and j["error_description"]
    st, j = post_token(emulator, form(**dict(base, client_secret="wrong")))
    assert st == 401 and j["error"] == "invalid_client"
    st, j = post_token(emulator, form(**dict(base, client_id="other.apps")))
    assert st == 401 and j["error"] == "invalid_client"
    st, j = post_token(emulator, form(grant_type="refresh_token"))
    assert st == 400 and j["error"] == "invalid_request"
    st, j = post_token(emulator, form(client_id="x"))
    assert st == 400 and j["error"] == "invalid_request"
    st, j = post_token(emulator, form(grant_type="password"))
    assert st == 400 and j["error"] == "unsupported_grant_type"
    st, j = post_token(emulator, b"grant_type=%zz")
    assert st == 400 and j["error"] == "invalid_request"
    st, _, _ = emulator.request("GET", "/token")
    assert st == 405
    assert emulator.stats()["counters"].get("oauth.tokens_issued", 0) == 0


def test_revoked_refresh_token(emulator):
    rt = register_rt(emulator)
    body = form(grant_type="refresh_token", client_id=rt["client_id"],
                client_secret=rt["client_secret"], refresh_token=rt["refresh_token"])
    assert post_token(emulator, body)[0] == 200
    emulator.control("oauth/revoke", {"refresh_token": rt["refresh_token"]})
    st, j = post_token(emulator, body)
    assert st == 400 and j["error"] == "invalid_grant"
    assert "revoked" in j["error_description"]


def test_json_body_and_alternate_token_paths(emulator):
    rt = register_rt(emulator)
    st, _, out = emulator.request("POST", "/oauth2/v4/token", {
        "grant_type": "refresh_token", "client_id": rt["client_id"],
        "client_secret": rt["client_secret"], "refresh_token": rt["refresh_token"]})
    assert st == 200 and api_ok(emulator, json.loads(out)["access_token"])


# --- authorization_code grant (PKCE) and the consent page -------------------

def test_authorization_code_grant(emulator):
    reg = emulator.control("oauth/auth_codes", {
        "code": "4/0Acode-1", "client_id": CID, "client_secret": CSECRET,
        "redirect_uri": REDIRECT, "code_challenge": s256(VERIFIER),
        "refresh_token": "1//code-rt", "account": "carol@example.com",
        "scopes": "https://www.googleapis.com/auth/drive"})
    assert reg["code"] == "4/0Acode-1" and reg["refresh_token"] == "1//code-rt"
    assert reg["awaiting_consent"] is False
    emulator.control("oauth/refresh_tokens", {"client_id": "known.apps", "client_secret": "x",
                                              "refresh_token": "1//other"})
    good = dict(grant_type="authorization_code", code="4/0Acode-1", client_id=CID,
                client_secret=CSECRET, redirect_uri=REDIRECT, code_verifier=VERIFIER)
    refusals = [
        (dict(good, code=None), 400, "invalid_request"),
        (dict(good, client_id=None), 400, "invalid_request"),
        (dict(good, code="4/0Aunknown"), 400, "invalid_grant"),
        (dict(good, client_id="stranger.apps"), 401, "invalid_client"),
        (dict(good, client_id="known.apps"), 400, "invalid_grant"),
        (dict(good, client_secret="wrong"), 401, "invalid_client"),
        (dict(good, client_secret=None), 401, "invalid_client"),
        (dict(good, redirect_uri=REDIRECT + "/other"), 400, "redirect_uri_mismatch"),
        (dict(good, redirect_uri=None), 400, "redirect_uri_mismatch"),
        (dict(good, code_verifier=None), 400, "invalid_grant"),
        (dict(good, code_verifier=VERIFIER[:-1] + "x"), 400, "invalid_grant"),
        (dict(good, code_verifier="short"), 400, "invalid_grant"),
    ]
    for params, status, error in refusals:
        st, j = post_token(emulator, form(**{k: v for k, v in params.items() if v is not None}))
        assert (st, j["error"]) == (status, error), (params, j)
        assert j["error_description"]
    # the refusals did not use the code up
    st, j = post_token(emulator, form(**good))
    assert st == 200, j
    assert j["token_type"] == "Bearer" and j["refresh_token"] == "1//code-rt"
    assert j["scope"] == "https://www.googleapis.com/auth/drive"
    assert 3000 <= j["expires_in"] <= 3600 and api_ok(emulator, j["access_token"])
    st, _, out = emulator.request("GET", "/oauth2/v3/tokeninfo?access_token=" + j["access_token"])
    assert json.loads(out)["email"] == "carol@example.com"
    # single use
    st, j = post_token(emulator, form(**good))
    assert st == 400 and j["error"] == "invalid_grant" and "used" in j["error_description"]
    # the refresh token handed out is registered: the refresh grant takes it
    st, j = post_token(emulator, form(grant_type="refresh_token", client_id=CID,
                                      client_secret=CSECRET, refresh_token="1//code-rt"))
    assert st == 200 and api_ok(emulator, j["access_token"])
    c = emulator.stats()["counters"]
    assert c["oauth.codes_exchanged"] == 1 and c["oauth.tokens_issued"] == 2
    # no PKCE challenge registered: no verifier needed; generated code and
    # refresh token; an expired code is refused
    reg = emulator.control("oauth/auth_codes", {"client_id": CID, "client_secret": CSECRET,
                                                "redirect_uri": REDIRECT})
    assert reg["code"].startswith("4/") and reg["refresh_token"].startswith("1//")
    st, j = post_token(emulator, form(grant_type="authorization_code", code=reg["code"],
                                      client_id=CID, client_secret=CSECRET,
                                      redirect_uri=REDIRECT))
    assert st == 200 and j["refresh_token"] == reg["refresh_token"], j
    reg = emulator.control("oauth/auth_codes", {"client_id": CID, "client_secret": CSECRET,
                                                "redirect_uri": REDIRECT, "expires_in": 1})
    time.sleep(1.2)
    st, j = post_token(emulator, form(grant_type="authorization_code", code=reg["code"],
                                      client_id=CID, client_secret=CSECRET,
                                      redirect_uri=REDIRECT))
    assert st == 400 and "expired" in j["error_description"]
    # bad registrations
    for body in ({"client_id": CID}, {"client_id": CID, "client_secret": "s",
                                      "redirect_uri": REDIRECT, "code_challenge": "short"},
                 {"client_id": CID, "client_secret": "s", "code_challenge": s256(VERIFIER)},
                 {"client_id": CID, "client_secret": "s", "expires_in": 0}):
        with pytest.raises(RuntimeError):
            emulator.control("oauth/auth_codes", body)


def test_consent_page(emulator):
    """A code registered without redirect_uri waits for the consent page,
    which binds the browser's redirect_uri and challenge and sends it back."""
    reg = emulator.control("oauth/auth_codes", {"client_id": CID, "client_secret": CSECRET,
                                                "refresh_token": "1//consent-rt"})
    assert reg["awaiting_consent"] is True
    # not exchangeable before the consent
    st, j = post_token(emulator, form(grant_type="authorization_code", code=reg["code"],
                                      client_id=CID, client_secret=CSECRET,
                                      redirect_uri=REDIRECT, code_verifier=VERIFIER))
    assert st == 400 and j["error"] == "invalid_grant"
    q = {"response_type": "code", "client_id": CID, "redirect_uri": REDIRECT,
         "scope": "https://www.googleapis.com/auth/drive", "state": "st/8 x",
         "code_challenge": s256(VERIFIER), "code_challenge_method": "S256",
         "access_type": "offline", "prompt": "consent"}
    bad = [dict(q, redirect_uri="https://evil.example/cb"), dict(q, response_type="token"),
           dict(q, code_challenge_method="plain"), dict(q, client_id="")]
    for b in bad:
        st, _, body = get_no_redirect(emulator, "/o/oauth2/v2/auth?" + urllib.parse.urlencode(b))
        assert st == 400, (b, body)
    st, hdrs, _ = get_no_redirect(emulator, "/o/oauth2/v2/auth?" + urllib.parse.urlencode(q))
    assert st == 302, hdrs
    loc = urllib.parse.urlsplit(hdrs["location"])
    assert "%s://%s" % (loc.scheme, loc.netloc) == REDIRECT and loc.path == "/"
    back = dict(urllib.parse.parse_qsl(loc.query))
    assert back == {"code": reg["code"], "state": "st/8 x", "scope": q["scope"]}
    # nothing else is waiting: the next consent is refused
    st, _, body = get_no_redirect(emulator, "/o/oauth2/v2/auth?" + urllib.parse.urlencode(q))
    assert st == 400 and json.loads(body)["error"] == "access_denied"
    st, j = post_token(emulator, form(grant_type="authorization_code", code=back["code"],
                                      client_id=CID, client_secret=CSECRET,
                                      redirect_uri=REDIRECT, code_verifier="w" * 43))
    assert st == 400 and j["error"] == "invalid_grant"
    st, j = post_token(emulator, form(grant_type="authorization_code", code=back["code"],
                                      client_id=CID, client_secret=CSECRET,
                                      redirect_uri=REDIRECT, code_verifier=VERIFIER))
    assert st == 200 and j["refresh_token"] == "1//consent-rt"
    assert j["scope"] == q["scope"] and api_ok(emulator, j["access_token"])
    assert emulator.stats()["counters"]["oauth.consents"] == 1


# --- device grant -------------------------------------------------------------

def device_code(emu, scope="https://www.googleapis.com/auth/drive.file", client_id=CID):
    st, _, out = emu.request("POST", "/device/code", form(client_id=client_id, scope=scope),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    return st, json.loads(out)


def poll(emu, dc, client_id=CID, secret=CSECRET):
    return post_token(emu, form(grant_type=DEVICE_GRANT, device_code=dc, client_id=client_id,
                                client_secret=secret))


def test_device_grant(emulator):
    assert emulator.control("oauth/config", {"device_interval": 1})["device_interval"] == 1
    # Google allows only sign-in scopes and drive.file/drive.appdata here
    for scope in ("https://www.googleapis.com/auth/drive",
                  "email https://www.googleapis.com/auth/cloud-platform", ""):
        st, j = device_code(emulator, scope)
        assert st == 400 and j["error"] == "invalid_scope", (scope, j)
    st, d = device_code(emulator, "email https://www.googleapis.com/auth/drive.file")
    assert st == 200, d
    assert d["verification_url"] == "https://www.google.com/device"
    assert d["interval"] == 1 and d["expires_in"] == 1800
    assert len(d["user_code"]) == 9 and d["user_code"][4] == "-"
    st, j = poll(emulator, d["device_code"])
    assert st == 428 and j["error"] == "authorization_pending"
    time.sleep(1.05)
    st, j = poll(emulator, d["device_code"], client_id="other.apps")
    assert st == 401 and j["error"] == "invalid_client"
    st, j = poll(emulator, "AH-1Ngnope")
    assert st == 400 and j["error"] == "invalid_grant"
    with pytest.raises(RuntimeError):
        emulator.control("oauth/device_approve", {"user_code": "ZZZZ-ZZZZ"})
    r = emulator.control("oauth/device_approve", {"user_code": d["user_code"].lower(),
                                                  "refresh_token": "1//device-rt",
                                                  "account": "dave@example.com"})
    assert r["approved"] is True and r["refresh_token"] == "1//device-rt"
    with pytest.raises(RuntimeError):  # decided already
        emulator.control("oauth/device_approve", {"user_code": d["user_code"]})
    time.sleep(1.05)
    st, j = poll(emulator, d["device_code"], secret="")
    assert st == 401 and j["error"] == "invalid_client"
    time.sleep(1.05)
    st, j = poll(emulator, d["device_code"])
    assert st == 200, j
    assert j["refresh_token"] == "1//device-rt" and api_ok(emulator, j["access_token"])
    assert j["scope"] == "email https://www.googleapis.com/auth/drive.file"
    time.sleep(1.05)
    st, j = poll(emulator, d["device_code"])
    assert st == 400 and j["error"] == "invalid_grant"  # used
    st, j = post_token(emulator, form(grant_type="refresh_token", client_id=CID,
                                      client_secret=CSECRET, refresh_token="1//device-rt"))
    assert st == 200
    # polling faster than the interval: slow_down, and the interval grows
    st, d = device_code(emulator)
    assert poll(emulator, d["device_code"])[1]["error"] == "authorization_pending"
    st, j = poll(emulator, d["device_code"])
    assert st == 403 and j["error"] == "slow_down"
    time.sleep(1.05)   # 1 s is no longer enough: the interval is now 6 s
    st, j = poll(emulator, d["device_code"])
    assert st == 403 and j["error"] == "slow_down"
    # denied on the other device; a generated refresh token when none given
    st, d = device_code(emulator)
    emulator.control("oauth/device_approve", {"user_code": d["user_code"], "deny": True})
    st, j = poll(emulator, d["device_code"])
    assert st == 403 and j["error"] == "access_denied"
    st, d = device_code(emulator)
    r = emulator.control("oauth/device_approve", {"user_code": d["user_code"]})
    assert r["refresh_token"].startswith("1//")
    st, j = poll(emulator, d["device_code"])
    assert st == 200 and j["refresh_token"] == r["refresh_token"]
    # expiry
    emulator.control("oauth/config", {"device_expires_in": 1})
    st, d = device_code(emulator)
    assert d["expires_in"] == 1
    time.sleep(1.2)
    st, j = poll(emulator, d["device_code"])
    assert st == 400 and j["error"] == "expired_token"
    with pytest.raises(RuntimeError):
        emulator.control("oauth/device_approve", {"user_code": d["user_code"]})
    with pytest.raises(RuntimeError):
        emulator.control("oauth/config", {"device_interval": 0})
    st, _, _ = emulator.request("GET", "/device/code")
    assert st == 405
    c = emulator.stats()["counters"]
    assert c["oauth.device_codes"] == 5 and c["oauth.device_grants"] == 2


# --- JWT-bearer grant -------------------------------------------------------

def test_jwt_grant_ok(emulator, keys):
    key, pub = keys[0]
    register_sa(emulator, pub)
    st, j = post_token(emulator, form(grant_type=JWT_GRANT,
                                      assertion=make_jwt(key, claims(emulator))))
    assert st == 200, j
    assert j["scope"] == SCOPE and j["expires_in"] > 0
    assert api_ok(emulator, j["access_token"])
    # without kid: every key of the account is tried
    jwt = make_jwt(key, claims(emulator), header={"alg": "RS256", "typ": "JWT"})
    assert post_token(emulator, form(grant_type=JWT_GRANT, assertion=jwt))[0] == 200
    # sub (domain-wide delegation) becomes the token's account
    jwt = make_jwt(key, claims(emulator, sub="bob@example.com"))
    st, j = post_token(emulator, form(grant_type=JWT_GRANT, assertion=jwt))
    st, _, out = emulator.request(
        "GET", "/oauth2/v3/tokeninfo?access_token=" + j["access_token"])
    assert json.loads(out)["email"] == "bob@example.com"
    assert emulator.stats()["counters"]["oauth.tokens_issued"] == 3


def test_jwt_with_service_account_json_registration(emulator, keys):
    key, _ = keys[1]
    with open(key) as f:
        sa = {"type": "service_account", "client_email": "other@p.iam.gserviceaccount.com",
              "private_key": f.read(), "private_key_id": "abc123",
              "token_uri": emulator.url + "/token"}
    out = emulator.control("oauth/service_accounts", sa)
    assert out["key_id"] == "abc123"
    jwt = make_jwt(key, claims(emulator, iss=sa["client_email"]),
                   header={"alg": "RS256", "typ": "JWT", "kid": "abc123"})
    assert post_token(emulator, form(grant_type=JWT_GRANT, assertion=jwt))[0] == 200


@pytest.mark.parametrize("case,expect", [
    ("wrong_key", "Signature"),
    ("expired", "expired"),
    ("wrong_aud", "audience"),
    ("too_long", "short-lived"),
    ("future_iat", "future"),
    ("no_scope", "scope"),
    ("unknown_kid", "key id"),
    ("unknown_iss", "account not found"),
    ("hs256", "RS256"),
    ("garbage", "Invalid JWT"),
    ("two_parts", "three"),
    ("tampered", "Signature"),
])
def test_jwt_refusals(emulator, keys, case, expect):
    key, pub = keys[0]
    other, _ = keys[1]
    register_sa(emulator, pub)
    now = int(time.time())
    c, hdr, k = claims(emulator), None, key
    if case == "wrong_key":
        k = other
    elif case == "expired":
        c = claims(emulator, iat=now - 7200, exp=now - 3600)
    elif case == "wrong_aud":
        c = claims(emulator, aud="https://oauth2.googleapis.com/token")
    elif case == "too_long":
        c = claims(emulator, exp=now + 7200)
    elif case == "future_iat":
        c = claims(emulator, iat=now + 3000, exp=now + 3500)
    elif case == "no_scope":
        c = claims(emulator, scope=None)
    elif case == "unknown_kid":
        hdr = {"alg": "RS256", "typ": "JWT", "kid": "nope"}
    elif case == "unknown_iss":
        c = claims(emulator, iss="ghost@p.iam.gserviceaccount.com")
    elif case == "hs256":
        hdr = {"alg": "HS256", "typ": "JWT", "kid": "kid-1"}
    jwt = make_jwt(k, c, hdr)
    if case == "garbage":
        jwt = "not.a.jwt!"
    elif case == "two_parts":
        jwt = jwt.rsplit(".", 1)[0]
    elif case == "tampered":
        h, p, s = jwt.split(".")
        jwt = ".".join([h, b64url(json.dumps(claims(emulator, scope="all")).encode()), s])
    st, j = post_token(emulator, form(grant_type=JWT_GRANT, assertion=jwt))
    assert st == 400, j
    assert j["error"] == "invalid_grant"
    assert expect.lower() in j["error_description"].lower(), j
    assert emulator.stats()["counters"].get("oauth.tokens_issued", 0) == 0


# --- lifetimes, expiry, revoke ----------------------------------------------

def test_token_lifetime_config_and_expiry(emulator, keys):
    key, pub = keys[0]
    register_sa(emulator, pub)
    jwt = make_jwt(key, claims(emulator))
    assert emulator.control("oauth/config", {"token_lifetime": 3})["token_lifetime"] == 3
    st, j = post_token(emulator, form(grant_type=JWT_GRANT, assertion=jwt))
    assert st == 200 and j["expires_in"] == 3
    assert api_ok(emulator, j["access_token"])
    short = emulator.control("oauth/issue", {"lifetime": 2})
    assert short["expires_in"] == 2 and api_ok(emulator, short["access_token"])
    time.sleep(3.3)
    st, _, body = emulator.request("GET", API, token=j["access_token"])
    assert st == 401 and b"authError" in body
    assert not api_ok(emulator, short["access_token"])
    st, _, _ = emulator.request(
        "GET", "/oauth2/v3/tokeninfo?access_token=" + j["access_token"])
    assert st == 400


def test_revoke_access_token(emulator):
    tok = emulator.control("oauth/issue", {})["access_token"]
    assert api_ok(emulator, tok)
    st, _, _ = emulator.request("POST", "/revoke?token=" + tok)
    assert st == 200
    assert not api_ok(emulator, tok)
    st, _, _ = emulator.request("POST", "/revoke?token=unknown")
    assert st == 400


# --- metadata server --------------------------------------------------------

def test_metadata_token(emulator):
    st, hdrs, body = emulator.request("GET", MD + "token")
    assert st == 403
    st, hdrs, body = emulator.request("GET", MD + "token", headers=MD_HDR)
    assert st == 200
    assert hdrs["Metadata-Flavor"] == "Google"
    j = json.loads(body)
    assert j["token_type"] == "Bearer" and j["expires_in"] > 0
    assert api_ok(emulator, j["access_token"])
    s = emulator.stats()
    assert s["counters"]["metadata.tokens_issued"] == 1
    assert s["requests"]["metadata.token"] == {"200": 1}
    assert s["requests"]["metadata.refused"] == {"403": 1}


def test_metadata_scopes_email_probe(emulator):
    st, _, body = emulator.request(
        "GET", MD + "token?scopes=https://a.example/x,https://a.example/y", headers=MD_HDR)
    tok = json.loads(body)["access_token"]
    st, _, out = emulator.request("GET", "/oauth2/v3/tokeninfo?access_token=" + tok)
    assert json.loads(out)["scope"] == "https://a.example/x https://a.example/y"
    st, hdrs, body = emulator.request("GET", MD + "email", headers=MD_HDR)
    assert st == 200 and b"@" in body and hdrs["Metadata-Flavor"] == "Google"
    st, hdrs, body = emulator.request("GET", "/")
    assert st == 200 and hdrs["Metadata-Flavor"] == "Google"
    st, hdrs, _ = emulator.request("GET", "/computeMetadata/v1/", headers=MD_HDR)
    assert st == 200 and hdrs["Metadata-Flavor"] == "Google"
    st, _, body = emulator.request("GET", MD + "scopes", headers=MD_HDR)
    assert b"cloud-platform" in body
    st, _, body = emulator.request("GET", MD + "?recursive=true", headers=MD_HDR)
    assert json.loads(body)["email"].endswith(".gserviceaccount.com")
    st, _, _ = emulator.request("GET", MD + "nosuch", headers=MD_HDR)
    assert st == 404


def test_metadata_config(emulator):
    emulator.control("metadata/config", {"email": "vm@p.iam.gserviceaccount.com",
                                         "scopes": ["https://www.googleapis.com/auth/drive"]})
    st, _, body = emulator.request("GET", MD + "email", headers=MD_HDR)
    assert body == b"vm@p.iam.gserviceaccount.com"
    st, _, body = emulator.request(
        "GET", "/computeMetadata/v1/instance/service-accounts/vm@p.iam.gserviceaccount.com/token",
        headers=MD_HDR)
    tok = json.loads(body)["access_token"]
    st, _, out = emulator.request("GET", "/oauth2/v3/tokeninfo?access_token=" + tok)
    info = json.loads(out)
    assert info["scope"] == "https://www.googleapis.com/auth/drive"
    assert info["email"] == "vm@p.iam.gserviceaccount.com"
    emulator.control("metadata/config", {"disabled": True})
    st, hdrs, _ = emulator.request("GET", "/")
    assert st == 404 and "Metadata-Flavor" not in hdrs
    st, _, _ = emulator.request("GET", MD + "token", headers=MD_HDR)
    assert st == 404


# --- persistence and secrets ------------------------------------------------

def test_state_survives_restart_with_data_dir(make_emulator, workdir, keys):
    data = os.path.join(workdir, "data")
    emu = make_emulator(data_dir=data)
    rt = register_rt(emu)
    key, pub = keys[0]
    register_sa(emu, pub)
    emu.control("oauth/config", {"token_lifetime": 1000})
    tok = emu.control("oauth/issue", {})["access_token"]
    emu.restart()
    assert api_ok(emu, tok)
    st, j = post_token(emu, form(grant_type="refresh_token", client_id=rt["client_id"],
                                 client_secret=rt["client_secret"],
                                 refresh_token=rt["refresh_token"]))
    assert st == 200 and j["expires_in"] == 1000
    st, j = post_token(emu, form(grant_type=JWT_GRANT, assertion=make_jwt(key, claims(emu))))
    assert st == 200
    saved = open(os.path.join(data, "oauth.json")).read()
    assert "PRIVATE" not in saved
    assert oct(os.stat(os.path.join(data, "oauth.json")).st_mode & 0o777) == "0o600"


def test_broken_state_file_is_a_clear_error(workdir):
    import conftest
    data = os.path.join(workdir, "broken")
    os.makedirs(data)
    with open(os.path.join(data, "oauth.json"), "w") as f:
        f.write("{truncated")
    r = subprocess.run([conftest.EMULATOR, "--listen", "127.0.0.1:0", "--data-dir", data],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode != 0
    assert "oauth.json" in r.stderr


def test_no_secret_in_verbose_log(make_emulator, keys):
    emu = make_emulator(args=["--verbose"])
    rt = register_rt(emu, client_secret="SECRET-never-logged",
                     refresh_token="1//REFRESH-never-logged")
    key, pub = keys[0]
    register_sa(emu, pub)
    jwt = make_jwt(key, claims(emu))
    secrets = [rt["client_secret"], rt["refresh_token"], jwt, jwt.split(".")[2]]
    st, j = post_token(emu, form(grant_type="refresh_token", client_id=rt["client_id"],
                                 client_secret=rt["client_secret"],
                                 refresh_token=rt["refresh_token"]))
    secrets.append(j["access_token"])
    st, j = post_token(emu, form(grant_type=JWT_GRANT, assertion=jwt))
    secrets.append(j["access_token"])
    emu.request("GET", "/oauth2/v3/tokeninfo?access_token=" + j["access_token"])
    emu.request("GET", API, token=j["access_token"])
    post_token(emu, form(grant_type=JWT_GRANT, assertion=jwt + "x"))
    reg = emu.control("oauth/auth_codes", {"code": "4/0ACODE-never-logged", "client_id": CID,
                                           "client_secret": "SECRET2-never-logged",
                                           "refresh_token": "1//REFRESH2-never-logged"})
    st, hdrs, _ = get_no_redirect(emu, "/o/oauth2/v2/auth?" + urllib.parse.urlencode(
        {"response_type": "code", "client_id": CID, "redirect_uri": REDIRECT,
         "code_challenge": s256(VERIFIER), "code_challenge_method": "S256"}))
    assert st == 302
    st, j = post_token(emu, form(grant_type="authorization_code", code=reg["code"],
                                 client_id=CID, client_secret="SECRET2-never-logged",
                                 redirect_uri=REDIRECT, code_verifier=VERIFIER))
    assert st == 200
    secrets += [reg["code"], "SECRET2-never-logged", "1//REFRESH2-never-logged", VERIFIER,
                j["access_token"]]
    emu.stop()
    log = emu.log()
    assert "/token" in log  # verbose logging is on
    for s in secrets:
        assert s not in log
