"""Fidelity of the emulator's Drive v3 service, checked with Google's own
Node.js client (@googleapis/drive, pinned in node_drive/package.json):
listing through every page, an upload with a media body stream, a
resumable upload in chunks, a ranged download, a batch delete and Google's
error shapes. The emulator enforces auth; the client carries a token the
emulator issued (no real credentials), and the script refuses any
connection that is not to loopback."""
import json
import os
import shutil
import subprocess

import pytest

NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "node_drive")
NPM = shutil.which("npm")
NODE = shutil.which("node")


def _install():
    """node_modules for the pinned client, installed once; a reason to skip or None."""
    if not NPM or not NODE:
        return "npm/node not installed (apt-get install npm)"
    if os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@googleapis", "drive")):
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


def test_node_drive_client(node_ready, emulator):
    tok = emulator.control("oauth/issue", {"scopes": "https://www.googleapis.com/auth/drive"})
    st, _, body = emulator.request(
        "POST", "/drive/v3/files?fields=id",
        {"name": "node", "mimeType": "application/vnd.google-apps.folder"},
        token=tok["access_token"])
    assert st == 200, body
    folder = json.loads(body)["id"]
    emulator.control("drive/bulk", {"parent": folder, "count": 250, "prefix": "page-",
                                    "width": 3, "content": "p"})
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "GCLOUD_", "CLOUDSDK_"))}
    env.update({
        "EMU_URL": emulator.url, "EMU_TOKEN": tok["access_token"], "FOLDER": folder,
        "GCE_METADATA_HOST": emulator.url[len("http://"):],
        "GCE_METADATA_IP": emulator.url[len("http://"):],
        "METADATA_SERVER_DETECTION": "none",
        "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    p = subprocess.run([NODE, os.path.join(NODE_DIR, "drive_fidelity.js")], cwd=NODE_DIR,
                       env=env, capture_output=True, timeout=180)
    err = p.stderr.decode(errors="replace")
    assert p.returncode == 0, err[-3000:]
    assert "non-loopback" not in err
    out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    assert out["list_count"] == 250 and out["list_pages"] == 3
    assert out["list_first"] == "page-000" and out["list_last"] == "page-249"
    assert out["stream"] == {"status": 200, "size": "100000", "md5_ok": True,
                             "mimeType": "application/x-node", "appProperties": {"by": "node"},
                             "parent_ok": True}
    assert out["resumable"]["statuses"] == [308, 201]
    assert out["resumable"]["size"] == str(3 * 262144 + 5000)
    assert out["resumable"]["md5_ok"] is True
    assert out["range"] == {"status": 206, "len": 70000, "ok": True}
    assert out["whole_ok"] is True
    assert out["batch"]["parts"] == 50 and out["batch"]["all_204"] is True
    assert out["batch"]["in_order"] is False  # replies come shuffled, matched by Content-ID
    assert out["after_batch"] == 250 - 50 + 2
    assert out["notfound"] == {"status": 404, "reason": "notFound"}
    assert out["duplicate"] == 409
    stats = emulator.stats()
    kinds = stats["requests"]
    assert kinds["drive.files.create.multipart"] == {"200": 1}
    assert kinds["drive.files.create.resumable"] == {"200": 1}
    assert kinds["drive.upload.chunk"] == {"308": 1, "201": 1}
    assert kinds["drive.batch"] == {"200": 1}
    assert kinds["drive.files.get.media"] == {"206": 1, "200": 1}
    assert stats["counters"]["drive.batch_parts"] == 50
    assert "core.unauthorized" not in kinds
