"""Helpers for the `durafs auth` integration tests: a clean environment that
can only reach the emulator, RSA keys made with the openssl command line,
credentials files, and the part of Google's OAuth server the emulator does
not implement (the authorization-code and device-code grants), served by a
small local server that forwards every other grant to the emulator's /token.
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import conftest

# Variables that would let a run find real credentials or a real host.
SCRUB = ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "XDG_CONFIG_HOME",
         "DURAFS_ACCESS_TOKEN", "DURAFS_CLIENT_ID", "DURAFS_CLIENT_SECRET",
         "DURAFS_OAUTH_TOKEN_URI", "DURAFS_OAUTH_AUTH_URI", "DURAFS_OAUTH_DEVICE_URI",
         "DURAFS_NO_METADATA", "GCE_METADATA_HOST", "GCE_METADATA_IP", "BROWSER", "DISPLAY",
         "WAYLAND_DISPLAY", "STORAGE_EMULATOR_HOST")


def dead_port():
    """A loopback port where nothing listens (bound then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def clean_env(home, **extra):
    """os.environ without any credential variable, HOME at home, and the
    metadata server at a dead loopback port (never 169.254.169.254)."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    env["HOME"] = home
    env["GCE_METADATA_HOST"] = "127.0.0.1:%d" % dead_port()
    for k, v in extra.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(args, env, stdin=None, timeout=60):
    """Run `durafs ARGS`; returns CompletedProcess with text stdout/stderr."""
    res = subprocess.run([conftest.DURAFS] + list(args), env=env, input=stdin,
                         capture_output=True, text=True, timeout=timeout)
    assert not conftest.SUSPICIOUS.search(res.stderr), res.stderr
    return res


def gen_rsa(workdir, name):
    """(private PEM, public PEM) of a new 2048-bit RSA key."""
    priv = os.path.join(workdir, name + ".pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", priv], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "pkey", "-in", priv, "-pubout"], check=True,
                         capture_output=True, text=True).stdout
    with open(priv) as f:
        return f.read(), pub


def write_json(path, obj, mode=0o600):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f)
    os.chmod(path, mode)
    return path


def register_sa(emu, email, pub, key_id="key-1"):
    emu.control("oauth/service_accounts", {"client_email": email, "public_key_pem": pub,
                                           "key_id": key_id})


def sa_file(emu, path, email, priv, key_id="key-1", mode=0o600):
    return write_json(path, {"type": "service_account", "project_id": "durafs-test",
                             "private_key_id": key_id, "private_key": priv,
                             "client_email": email, "client_id": "1234",
                             "token_uri": emu.url + "/token"}, mode)


def register_rt(emu, rt, client_id="cid.apps.googleusercontent.com",
                client_secret="GOCSPX-test-secret", account="user@example.com"):
    emu.control("oauth/refresh_tokens", {"client_id": client_id,
                                         "client_secret": client_secret,
                                         "refresh_token": rt, "account": account})


def user_file(path, rt, token_uri, client_id="cid.apps.googleusercontent.com",
              client_secret="GOCSPX-test-secret", mode=0o600):
    return write_json(path, {"type": "authorized_user", "client_id": client_id,
                             "client_secret": client_secret, "refresh_token": rt,
                             "token_uri": token_uri}, mode)


def api_ok(emu, token):
    """True when the emulator's GCS API accepts token."""
    st, _, _ = emu.request("GET", "/storage/v1/b?project=durafs-test", token=token)
    return st == 200


def issue(emu, lifetime=3600):
    return emu.control("oauth/issue", {"lifetime": lifetime})["access_token"]


def s256(verifier):
    d = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


class OAuthServer:
    """Google's authorization-code and device-code grants for one login, on
    127.0.0.1; any other POST /token is forwarded to the emulator's /token.

    The code exchange is checked as Google does: the code is the one handed
    out, redirect_uri and client match, and code_verifier's S256 equals the
    code_challenge the browser brought (set by the test via expect()).
    """

    def __init__(self, emu, client_id, client_secret, refresh_token, pending_polls=1):
        self.emu = emu
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.code = "4/0AdQt8q-test-authorization-code"
        self.device_code = "AH-1Ng-test-device-code"
        self.challenge = None
        self.redirect_uri = None
        self.pending_polls = pending_polls
        self.exchanges = []      # (grant_type, ok) per /token call handled here
        self.lock = threading.Lock()
        register_rt(emu, refresh_token, client_id, client_secret)
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                # The consent page: approve at once and send the browser
                # back to the redirect URI, as Google does after consent.
                u = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(u.query))
                if u.path != "/auth" or q.get("client_id") != outer.client_id:
                    return self.reply(400, {"error": "invalid_request"})
                outer.expect(q.get("code_challenge"), q.get("redirect_uri"))
                loc = q["redirect_uri"] + "/?" + urllib.parse.urlencode(
                    {"state": q.get("state", ""), "code": outer.code, "scope": q.get("scope")})
                self.send_response(302)
                self.send_header("Location", loc)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                form = dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))
                if self.path == "/device/code":
                    return self.reply(200, outer.device_reply(form))
                if self.path != "/token":
                    return self.reply(404, {"error": "not_found"})
                gt = form.get("grant_type")
                if gt == "authorization_code":
                    return self.reply(*outer.exchange(form))
                if gt == "urn:ietf:params:oauth:grant-type:device_code":
                    return self.reply(*outer.device_poll(form))
                # Everything else is the emulator's business.
                req = urllib.request.Request(outer.emu.url + "/token", data=body,
                                             method="POST", headers={
                                                 "Content-Type": self.headers.get(
                                                     "Content-Type", "")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        st, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    st, data = e.code, e.read()
                self.send_response(st)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def expect(self, challenge, redirect_uri):
        """What the browser carried to the authorization page."""
        self.challenge = challenge
        self.redirect_uri = redirect_uri

    def _client_ok(self, form):
        return (form.get("client_id") == self.client_id and
                form.get("client_secret") == self.client_secret)

    def _tokens(self):
        return {"access_token": issue(self.emu), "expires_in": 3599, "token_type": "Bearer",
                "refresh_token": self.refresh_token,
                "scope": "https://www.googleapis.com/auth/drive"}

    def exchange(self, form):
        ok = (self._client_ok(form) and form.get("code") == self.code and
              form.get("redirect_uri") == self.redirect_uri and
              self.challenge is not None and
              s256(form.get("code_verifier", "")) == self.challenge)
        with self.lock:
            self.exchanges.append(("authorization_code", ok))
        if not ok:
            return 400, {"error": "invalid_grant", "error_description": "Bad Request"}
        return 200, self._tokens()

    def device_reply(self, form):
        return {"device_code": self.device_code, "user_code": "WXYZ-QRST",
                "verification_url": "https://www.google.com/device", "expires_in": 60,
                "interval": 1}

    def device_poll(self, form):
        ok = self._client_ok(form) and form.get("device_code") == self.device_code
        with self.lock:
            self.exchanges.append(("device_code", ok))
            if ok and self.pending_polls > 0:
                self.pending_polls -= 1
                return 428, {"error": "authorization_pending",
                             "error_description": "Precondition Required"}
        if not ok:
            return 400, {"error": "invalid_grant"}
        return 200, self._tokens()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
