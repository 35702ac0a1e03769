"""Helpers for the `durafs auth` integration tests: a clean environment that
can only reach the emulator, RSA keys made with the openssl command line,
credentials files, and registrations of service accounts and refresh tokens
with the emulator (whose OAuth service also plays Google's consent page,
authorization-code and device grants for the login tests).
"""
import json
import os
import socket
import subprocess

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
