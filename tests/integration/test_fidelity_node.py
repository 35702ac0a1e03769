"""Fidelity of the emulator's Cloud Storage API, checked with Google's own
Node.js client (@google-cloud/storage, pinned in node/package.json):
resumable upload in 256 KiB chunks, paginated listing, ranged download,
precondition failures. Once through `apiEndpoint` and once through
STORAGE_EMULATOR_HOST alone. The client sends no credentials to a custom
endpoint on its resumable path (the emulator convention), so the emulator
runs with --no-auth; the client still gets a static OAuth2 client so it
never looks for real credentials, and the script refuses any connection
that is not to loopback."""
import json
import os
import shutil
import subprocess

import pytest

from gcs_util import Gcs

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node")
NPM = shutil.which("npm")
NODE = shutil.which("node")


def _install():
    """node_modules for the pinned client, installed once; a reason to skip or None."""
    if not NPM or not NODE:
        return "npm/node not installed (apt-get install npm)"
    if os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@google-cloud", "storage")):
        return None
    try:
        p = subprocess.run([NPM, "install", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                           capture_output=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return "npm install failed: %s" % e
    if p.returncode != 0:
        return "npm install failed: %s" % p.stderr.decode(errors="replace")[-500:]
    return None


@pytest.fixture(scope="module")
def node_ready():
    why = _install()
    if why:
        pytest.skip(why)


@pytest.mark.parametrize("mode", ["apiEndpoint", "env"])
def test_node_client(node_ready, emulator_noauth, mode):
    emulator = emulator_noauth
    token = "ya29.static-test-token"
    g = Gcs(emulator)
    g.mkbucket("nodebkt")
    names = ["page/%03d" % i for i in range(60)]
    g.put_many("nodebkt", names, b"p")

    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_", "STORAGE_EMULATOR"))}
    env.update({
        "EMU_URL": emulator.url, "EMU_TOKEN": token, "BUCKET": "nodebkt", "MODE": mode,
        # belt and braces: credentials lookups stay on loopback
        "GCE_METADATA_HOST": emulator.url[len("http://"):],
        "GCE_METADATA_IP": emulator.url[len("http://"):],
        "METADATA_SERVER_DETECTION": "none",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    if mode == "env":
        env["STORAGE_EMULATOR_HOST"] = emulator.url
    p = subprocess.run([NODE, os.path.join(NODE_DIR, "gcs_fidelity.js")], cwd=NODE_DIR,
                       env=env, capture_output=True, timeout=180)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, err[-3000:]
    assert "non-loopback" not in err
    out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert out["size"] == 5 * 256 * 1024 + 4321
    assert out["md5"] == out["want_md5"]
    assert out["contentType"] == "application/x-node" and out["custom"] == {"k": "v"}
    assert out["small"] == "small and simple"
    assert out["range_ok"] is True and out["range_len"] == 70000
    assert out["names"] == names and out["pages"] == 3
    assert out["auto_count"] == 60
    assert out["prefixes"] == ["node/dir/"]
    assert out["codes"] == {"save": 412, "delete": 412, "resumable": 412}
    assert out["unchanged"] is True and out["exists_after_delete"] is False
    stats = emulator.stats()
    chunks = sum(stats["requests"].get("gcs.upload.chunk", {}).values())
    assert chunks >= 6  # 5 full chunks and the tail, 256 KiB each
    assert stats["counters"]["gcs.upload_sessions_started"] == 1
    # the second resumable upload (ifGenerationMatch=0) is refused when it starts
    assert stats["requests"]["gcs.objects.insert.resumable"] == {"200": 1, "412": 1}
