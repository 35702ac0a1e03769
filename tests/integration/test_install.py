"""`make install DESTDIR=... PREFIX=...` installs exactly the listed files
(binary, mount helper and its mount.fuse.durafs alias, man page, bash completion, Colab helper module,
systemd template unit) with the right modes and @BINDIR@ substituted, into
directories the system actually searches (mount(8) for the helper,
python3's sys.path for durafs_colab, systemd's unit path); `make
uninstall` removes exactly those files and nothing else. The installed
pieces work: the completion completes, the man page renders, the unit
passes `systemd-analyze verify`."""
import filecmp
import os
import shutil
import stat
import subprocess
import sys

import pytest

import conftest
from help_util import ROOT, bash_complete

PYVER = "%d.%d" % sys.version_info[:2]


def make(*args, check=True):
    """Run make in the source tree against the test's build directory,
    never rebuilding it (-o: the binary and the config are taken as they
    are), with no make variables inherited from an outer make."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR",
                        "PREFIX", "BINDIR", "SBINDIR", "MANDIR", "COMPLETIONSDIR",
                        "SYSTEMDUNITDIR", "PYTHONDIR")}
    cmd = ["make", "--no-print-directory", "-C", ROOT, "BUILD=" + conftest.BUILD,
           "PYTHON=" + sys.executable, "-o", conftest.DURAFS,
           "-o", os.path.join(conftest.BUILD, "config.mk")] + list(args)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, timeout=300)
    if check:
        assert res.returncode == 0, "%s -> %d\n%s\n%s" % (" ".join(cmd), res.returncode,
                                                          res.stdout, res.stderr)
    return res


def files_under(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def expected_files(prefix, pythondir, sbindir="/sbin"):
    def rel(p):
        return p.lstrip("/")
    return {
        rel(prefix + "/bin/durafs"),
        rel(sbindir + "/mount.durafs"),
        rel(sbindir + "/mount.fuse.durafs"),
        rel(prefix + "/share/man/man1/durafs.1"),
        rel(prefix + "/share/bash-completion/completions/durafs"),
        rel(pythondir + "/durafs_colab.py"),
        rel(prefix + "/lib/systemd/system/durafs@.service"),
    }


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def substituted(src, bindir):
    with open(src) as f:
        return f.read().replace("@BINDIR@", bindir)


@pytest.mark.parametrize("prefix,pythondir", [
    ("/usr/local", "/usr/local/lib/python%s/dist-packages" % PYVER),
    ("/usr", "/usr/lib/python3/dist-packages"),
], ids=["usr-local", "usr"])
def test_install_exactly_the_listed_files_then_uninstall(workdir, prefix, pythondir):
    dest = os.path.join(workdir, "stage")
    # a file of someone else's in the same directories: uninstall keeps it
    other = os.path.join(dest, prefix.lstrip("/"), "bin", "not-durafs")
    os.makedirs(os.path.dirname(other))
    with open(other, "w") as f:
        f.write("keep me\n")
    make("install", "DESTDIR=" + dest, "PREFIX=" + prefix)
    want = expected_files(prefix, pythondir) | {os.path.relpath(other, dest)}
    assert files_under(dest) == want

    root = dest + "/"
    b = root + prefix.lstrip("/")
    assert filecmp.cmp(b + "/bin/durafs", conftest.DURAFS, shallow=False)
    assert mode(b + "/bin/durafs") == 0o755
    helper = root + "sbin/mount.durafs"
    assert mode(helper) == 0o755
    with open(helper) as f:
        assert f.read() == substituted(os.path.join(ROOT, "contrib", "mount.durafs"),
                                       prefix + "/bin")
    # mount(8) runs mount.fuse.durafs for -t fuse.durafs: the same helper
    alias = root + "sbin/mount.fuse.durafs"
    assert os.path.islink(alias) and os.readlink(alias) == "mount.durafs"
    unit = b + "/lib/systemd/system/durafs@.service"
    assert mode(unit) == 0o644
    with open(unit) as f:
        text = f.read()
    assert "@BINDIR@" not in text
    assert text == substituted(os.path.join(ROOT, "contrib", "systemd", "durafs@.service"),
                               prefix + "/bin")
    assert "ExecStart=%s/bin/durafs mount --foreground" % prefix in text
    for installed, src in [
            (b + "/share/man/man1/durafs.1", "contrib/durafs.1"),
            (b + "/share/bash-completion/completions/durafs", "contrib/completions/durafs.bash"),
            (root + pythondir.lstrip("/") + "/durafs_colab.py", "contrib/colab/durafs_colab.py")]:
        assert mode(installed) == 0o644, installed
        assert filecmp.cmp(installed, os.path.join(ROOT, src), shallow=False), installed

    # a second install over the first is fine and changes nothing
    make("install", "DESTDIR=" + dest, "PREFIX=" + prefix)
    assert files_under(dest) == want

    make("uninstall", "DESTDIR=" + dest, "PREFIX=" + prefix)
    assert files_under(dest) == {os.path.relpath(other, dest)}
    # and uninstalling again is not an error
    make("uninstall", "DESTDIR=" + dest, "PREFIX=" + prefix)


@pytest.mark.parametrize("prefix", ["/usr/local", "/usr"])
def test_python_dir_is_on_python3_path(prefix):
    """`import durafs_colab` works after `make install PREFIX=...` without
    PYTHONPATH: the directory make installs into is on python3's path."""
    # where `make install` puts it: read from a dry run
    res = subprocess.run(
        ["make", "--no-print-directory", "-C", ROOT, "-n", "install", "BUILD=" + conftest.BUILD,
         "PREFIX=" + prefix, "PYTHON=" + sys.executable, "-o", conftest.DURAFS,
         "-o", os.path.join(conftest.BUILD, "config.mk")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAKE")})
    assert res.returncode == 0, res.stderr
    line = [ln for ln in res.stdout.splitlines() if "durafs_colab.py" in ln][0]
    pydir = os.path.dirname(line.split()[-1])
    path = subprocess.run([sys.executable, "-c", "import sys; print('\\n'.join(sys.path))"],
                          stdout=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin"},
                          timeout=30).stdout.split()
    assert pydir in path, "%s is not on %s's sys.path %s" % (pydir, sys.executable, path)


def test_installed_pieces_work(workdir):
    """The staged files, as installed: the helper finds the installed
    binary by its substituted path, the completion completes, the man page
    renders, the module imports, the unit verifies."""
    dest = os.path.join(workdir, "stage")
    # BINDIR = the build dir, so that paths baked into the helper and the
    # unit (without DESTDIR) point at a real binary
    bindir = os.path.dirname(conftest.DURAFS)
    make("install", "DESTDIR=" + dest, "PREFIX=/usr", "BINDIR=" + bindir)
    helper = os.path.join(dest, "sbin", "mount.durafs")
    env = {k: v for k, v in os.environ.items() if k != "DURAFS_BIN"}
    env["PATH"] = "/usr/bin:/bin"
    res = subprocess.run([helper, "gs://bkt", workdir, "-fv", "-o", "rw,_netdev,ro"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         timeout=30)
    assert res.returncode == 0, res.stderr
    assert "%s/durafs mount gs://bkt %s -o ro" % (bindir, workdir) in res.stderr

    comp = os.path.join(dest, "usr", "share", "bash-completion", "completions", "durafs")
    got = bash_complete("durafs ", script=comp)
    assert "mount" in got and "unmount" in got

    man = shutil.which("man")
    if man:
        res = subprocess.run([man, "-l", os.path.join(dest, "usr/share/man/man1/durafs.1")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, MANWIDTH="80", MANPAGER="cat", PAGER="cat"),
                             timeout=60)
        assert res.returncode == 0 and "durafs sync --flush" in res.stdout, res.stderr

    res = subprocess.run([sys.executable, "-c",
                          "import durafs_colab; print(durafs_colab.__file__)"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=os.path.join(
                             dest, "usr/lib/python3/dist-packages")), timeout=30)
    assert res.returncode == 0 and res.stdout.startswith(dest), res.stderr

    sa = shutil.which("systemd-analyze")
    if not sa:
        pytest.skip("systemd-analyze not installed: unit not verified")
    unit_dir = os.path.join(workdir, "units")
    os.makedirs(unit_dir)
    # a template is verified through an instance
    shutil.copy(os.path.join(dest, "usr/lib/systemd/system/durafs@.service"),
                os.path.join(unit_dir, "durafs@data.service"))
    res = subprocess.run([sa, "verify", "--man=no", os.path.join(unit_dir, "durafs@data.service")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr.strip() == "" and res.stdout.strip() == "", \
        "systemd-analyze verify: %s %s" % (res.stdout, res.stderr)
