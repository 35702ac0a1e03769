"""`make demo`, README's first quick-start command, as a new user runs it
(contrib/demo.sh against the build under test): it exits 0, the fsynced
file's remote md5 is the local one, the flushed notes reach the remote, the
mount is gone at the end, and nothing is left behind in /tmp."""
import os
import re
import subprocess

import conftest
from help_util import ROOT


def test_make_demo_runs_as_readme_says():
    env = dict(os.environ, DURAFS_BUILD=conftest.BUILD)
    for k in ("STORAGE_EMULATOR_HOST", "DURAFS_DRIVE_ENDPOINT", "GOOGLE_APPLICATION_CREDENTIALS",
              "DURAFS_ACCESS_TOKEN"):
        env.pop(k, None)
    res = subprocess.run(["sh", os.path.join(ROOT, "contrib", "demo.sh")], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    assert not conftest.SUSPICIOUS.search(out + res.stderr), out + res.stderr
    local = re.search(r"local md5: +([0-9a-f]{32})", out)
    remote = re.search(r"remote md5: +([0-9a-f]{32})", out)
    assert local and remote and local.group(1) == remote.group(1), out
    assert "user.durafs.state = committed" in out, out
    after_flush = out.split("returns when every change is committed")[1]
    for n in (1, 2, 3):
        assert "notes/note%d.txt  (" % n in after_flush, out
    assert "unmounted; the daemon has exited" in out, out
    assert "README.md" in out.splitlines()[-1], out
    work = re.search(r"durafs mount gs://demo (/tmp/durafs-demo\.\w+)/mnt", out)
    assert work and not os.path.exists(work.group(1)), out
