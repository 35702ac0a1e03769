"""Nothing drifts: every command, subcommand and option that `durafs --help`
and `durafs CMD --help` list (parsed from the binary, help_util) appears in
the man page (under that command's own section, or MOUNT OPTIONS for -o
options), in the bash completion (asked through bash, as a user's TAB
would) and in README.md. The man page also renders without a warning and
carries the binary's version."""
import os
import re
import shutil
import signal
import subprocess

import pytest

import conftest
from help_util import (OPTION_RE, ROOT, bash_complete, durafs_help, mount_opt_placeholders,
                       parse_cli)
from mount_util import bucket, mounts  # noqa: F401  (fixtures)

MAN = os.path.join(ROOT, "contrib", "durafs.1")
README = os.path.join(ROOT, "README.md")


@pytest.fixture(scope="module")
def cli():
    return parse_cli()


def token_in(token, text):
    """token as a whole word/option in text (not a piece of a longer one)."""
    return re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(token), text) is not None


# --- the man page -------------------------------------------------------------

def man_text(raw):
    """roff source -> plain text, keeping the line structure."""
    t = raw.replace("\\-", "-").replace("\\(aq", "'").replace("\\&", "").replace("\\e", "\\")
    t = re.sub(r"\\f[BIRP]", "", t)
    t = re.sub(r'"', "", t)
    return t


def man_sections(raw):
    """{heading: [lines]} of .SH and .SS sections, roff stripped."""
    sections, cur = {}, None
    for line in raw.splitlines():
        m = re.match(r"^\.(SH|SS)\s+(.*)$", line)
        if m:
            cur = man_text(m.group(2)).strip()
            sections[cur] = []
            continue
        if cur is not None:
            sections[cur].append(man_text(line))
    return sections


def tags(lines):
    """The tag lines of .TP items (the line after each .TP), macros dropped."""
    out = []
    for i, line in enumerate(lines):
        if line.strip() == ".TP" and i + 1 < len(lines):
            out.append(re.sub(r"^\.(B|I|BI|BR|IR|RB|RI)\s+", "", lines[i + 1]))
    return out


def command_section(sections, name):
    for heading, lines in sections.items():
        if heading.startswith("durafs %s " % name) or heading == "durafs %s" % name:
            return heading, lines
    return None, None


def test_man_page_has_every_command_and_option(cli):
    commands, top_opts, mount_opts = cli
    with open(MAN) as f:
        raw = f.read()
    sections = man_sections(raw)
    missing = []
    for cmd in commands.values():
        heading, lines = command_section(sections, cmd.name)
        if heading is None:
            missing.append("command %r: no section '.SS \"durafs %s ...\"'" % (cmd.name, cmd.name))
            continue
        for sub in cmd.subcommands:
            if not token_in(sub, heading):
                missing.append("durafs %s: subcommand %r not in the section heading %r"
                               % (cmd.name, sub, heading))
        documented = heading + "\n" + "\n".join(tags(lines))
        for opt in cmd.options:
            if opt in ("-h", "--help"):
                continue  # documented once, under "durafs --version | --help"
            if not token_in(opt, documented):
                missing.append("durafs %s: option %s not documented (a .TP item in its "
                               "section)" % (cmd.name, opt))
    top_heading = [h for h in sections if h.startswith("durafs --version")]
    for opt in top_opts:
        if not top_heading or not token_in(opt, top_heading[0] + "\n" +
                                           "\n".join(sections[top_heading[0]])):
            missing.append("durafs %s (top level) not documented" % opt)
    mo = sections.get("MOUNT OPTIONS")
    if mo is None:
        missing.append("no MOUNT OPTIONS section")
    else:
        tagtext = "\n".join(tags(mo))
        for opt in mount_opts:
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt), tagtext):
                missing.append("-o %s: not a .TP item of MOUNT OPTIONS" % opt)
    assert not missing, "contrib/durafs.1 lags behind the binary's --help:\n  " + \
        "\n  ".join(missing)


def test_man_page_renders_cleanly_with_the_binary_version():
    groff = shutil.which("groff")
    if not groff:
        pytest.skip("groff not installed: cannot render the man page")
    res = subprocess.run([groff, "-man", "-ww", "-z", MAN], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    version = subprocess.run([conftest.DURAFS, "--version"], stdout=subprocess.PIPE,
                             text=True, timeout=30).stdout.split()[-1]
    with open(MAN) as f:
        th = [ln for ln in f if ln.startswith(".TH ")][0]
    assert '"durafs %s"' % version in th, "man page .TH does not say durafs %s: %s" % (
        version, th)


# --- the bash completion --------------------------------------------------------

def test_completion_offers_every_command_and_option(cli):
    commands, top_opts, mount_opts = cli
    missing = []
    got = bash_complete("durafs ")
    for name in commands:
        if name not in got:
            missing.append("command %s (offered: %s)" % (name, got))
    got = bash_complete("durafs -")
    for opt in top_opts:
        if opt not in got:
            missing.append("top-level option %s" % opt)
    for cmd in commands.values():
        if cmd.subcommands:
            got = bash_complete("durafs %s " % cmd.name)
            for sub in cmd.subcommands:
                if sub not in got:
                    missing.append("durafs %s: subcommand %s (offered: %s)" % (cmd.name, sub, got))
        got = bash_complete("durafs %s -" % cmd.name)
        for opt in cmd.options:
            if opt not in got:
                missing.append("durafs %s: option %s (offered: %s)" % (cmd.name, opt, got))
    got = bash_complete("durafs mount -o ")
    names = {g.rstrip("=") for g in got}
    for opt in mount_opts:
        if opt not in names:
            missing.append("durafs mount -o %s (offered: %s)" % (opt, got))
    assert not missing, "the bash completion misses:\n  " + "\n  ".join(missing)


def test_completion_values(workdir):
    os.makedirs(os.path.join(workdir, "mnt-a"))
    os.makedirs(os.path.join(workdir, "mnt-b"))
    with open(os.path.join(workdir, "key.json"), "w") as f:
        f.write("{}")
    # -o lists: the part after the last comma; choices of conflict=
    got = bash_complete("durafs mount -o ro,cache_size=1G,conf")
    assert got == ["1G,conflict="], got
    placeholders = mount_opt_placeholders()
    if "|" in placeholders.get("conflict", ""):
        got = bash_complete("durafs mount -o conflict=")
        assert sorted(got) == sorted(placeholders["conflict"].split("|")), got
    # options that take a directory / a file
    got = bash_complete("durafs mount --cache-dir %s/mnt-" % workdir)
    assert sorted(got) == [workdir + "/mnt-a", workdir + "/mnt-b"], got
    got = bash_complete("durafs auth whoami --credentials %s/ke" % workdir)
    assert got == [workdir + "/key.json"], got
    # --opt=value form: bash splits at '=', the reply is what follows it
    got = bash_complete("durafs mount --cache-dir=%s/mnt-a" % workdir)
    assert got == [workdir + "/mnt-a"], got
    # positionals: sources, then the mountpoint (directories only)
    got = bash_complete("durafs mount ")
    assert set(got) == {"gs://", "drive:"}, got
    got = bash_complete("durafs mount gs:")
    assert got == ["//"], got
    got = bash_complete("durafs mount gs://b %s/mnt-" % workdir)
    assert sorted(got) == [workdir + "/mnt-a", workdir + "/mnt-b"], got
    got = bash_complete("durafs mount gs://b %s/ke" % workdir)
    assert got == [], got
    # a flag takes no argument: what follows is a positional again
    got = bash_complete("durafs mount --foreground ")
    assert set(got) == {"gs://", "drive:"}, got
    got = bash_complete("durafs sync --flush --timeout 10 -")
    assert "--json" in got


# --- README.md ----------------------------------------------------------------------

def test_readme_mentions_every_command_and_option(cli):
    commands, top_opts, mount_opts = cli
    if not os.path.exists(README):
        pytest.fail("README.md does not exist; it must mention every command (as `durafs "
                    "CMD`), subcommand, option and -o option of the binary's --help")
    with open(README) as f:
        text = f.read()
    missing = []
    for cmd in commands.values():
        if not re.search(r"durafs %s(?![\w-])" % re.escape(cmd.name), text):
            missing.append("`durafs %s`" % cmd.name)
        for sub in cmd.subcommands:
            if not token_in(sub, text):
                missing.append("`durafs %s %s`" % (cmd.name, sub))
        for opt in cmd.options:
            if opt in ("-h", "--help"):
                continue
            if not token_in(opt, text):
                missing.append("durafs %s %s" % (cmd.name, opt))
    for opt in top_opts:
        if opt not in ("-h", "--help") and not token_in(opt, text):
            missing.append("durafs %s" % opt)
    for opt in mount_opts:
        if not token_in(opt, text):
            missing.append("-o %s" % opt)
    assert not missing, "README.md does not mention:\n  " + "\n  ".join(missing)


def test_help_parsing_sees_the_known_basics(cli):
    """Guards the parser itself: if the help format changes so that nothing
    is found, the tests above would pass vacuously."""
    commands, top_opts, mount_opts = cli
    assert {"mount", "unmount", "sync", "status", "auth"} <= set(commands)
    assert "--version" in top_opts
    assert {"--cache-dir", "--foreground", "-o"} <= set(commands["mount"].options)
    assert "--flush" in commands["sync"].options
    assert {"login", "whoami", "print-token"} <= set(commands["auth"].subcommands)
    assert {"cache_size", "ro", "rw", "writeback_delay"} <= set(mount_opts)
    rc, _ = durafs_help("mount")
    assert rc == 0


def test_completion_of_positionals_follows_the_usage(bucket, mounts, workdir):
    """Positional arguments are completed by what the usage line calls them:
    SOURCE -> gs:// drive:, MOUNTPOINT -> the running durafs mounts (for
    `mount`: directories), PATH -> files."""
    emu, _ = bucket
    m = mounts(emu, "gs://bkt")
    prefix = m.mnt[:-2]
    for cmd in ("unmount", "status", "sync --flush"):
        got = bash_complete("durafs %s %s" % (cmd, prefix))
        assert m.mnt in got, (cmd, got)
    commands, _, _ = parse_cli()
    if "cache" in commands and "PATH" in commands["cache"].usage:
        with open(os.path.join(workdir, "data.bin"), "w") as f:
            f.write("x")
        sub = commands["cache"].subcommands[0]
        got = bash_complete("durafs cache %s %s/data" % (sub, workdir))
        assert got == [workdir + "/data.bin"], got
    if "trash" in commands and commands["trash"].subcommands:
        got = bash_complete("durafs trash %s " % commands["trash"].subcommands[0])
        assert set(got) == {"gs://", "drive:"}, got


def test_command_list_shows_each_commands_usage_options(cli):
    """`durafs --help`'s line for unmount, sync and status names every option
    of the command's own usage lines (it had left out unmount --json, sync
    --retry-failed, status --cache-dir and --ack-conflicts, which README's
    command headers show)."""
    commands, _, _ = cli
    for name in ("unmount", "sync", "status"):
        rc, text = durafs_help(name)
        assert rc == 0
        usage = []
        for line in text.splitlines():
            if not line.strip():
                break
            usage.append(line)
        want = set(OPTION_RE.findall(" ".join(usage))) - {"-h", "--help"}
        if name == "sync":
            # the --cache-dir form's credentials are the command's own detail
            want -= {"--token-file", "--credentials", "--debug"}
        got = set(OPTION_RE.findall(commands[name].usage))
        assert want <= got, "durafs --help, %s: missing %s" % (name, sorted(want - got))


def test_readme_emulator_recipe_runs(workdir):
    """README's recipe for trying durafs against the bundled emulator runs
    as written (its /tmp paths moved into the test's directory, build/ being
    the build under test): both mounts made, a file flushed, both unmounted,
    the emulator stopped. It once used bucket 'b', which Google's naming
    rules (and so durafs and the emulator) refuse."""
    with open(os.path.join(ROOT, "README.md")) as f:
        text = f.read()
    start = text.index("To try every command of [Using durafs]")
    block = text[start:].split("```sh\n", 1)[1].split("```", 1)[0]
    assert "build/durafs mount gs://" in block and "build/durafs mount drive:" in block
    script = block.replace("/tmp/", workdir + "/").replace("build/", conftest.BUILD + "/")
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "DURAFS_DRIVE_ENDPOINT",
                        "GOOGLE_APPLICATION_CREDENTIALS", "DURAFS_ACCESS_TOKEN")}
    env["DURAFS_NO_METADATA"] = "1"
    env["XDG_CACHE_HOME"] = os.path.join(workdir, "xdg")
    # output to files: a pipe would stay open as long as the emulator runs
    out_path, err_path = os.path.join(workdir, "out"), os.path.join(workdir, "err")
    with open(out_path, "w") as out_f, open(err_path, "w") as err_f:
        proc = subprocess.Popen(["bash", "-e", "-c", script], cwd=workdir, env=env,
                                stdout=out_f, stderr=err_f, start_new_session=True)
    try:
        proc.wait(timeout=120)
    finally:
        # a failed step leaves the emulator (its background job) and mounts behind
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        with open("/proc/self/mounts") as f:
            left = [ln.split()[1] for ln in f if workdir in ln.split()[1]]
        for mnt in left:
            subprocess.run(["fusermount3", "-u", "-z", mnt], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    with open(out_path) as f:
        out = f.read()
    with open(err_path) as f:
        err = f.read()
    assert proc.returncode == 0, "%s\n%s\n%s" % (script, out, err)
    assert not conftest.SUSPICIOUS.search(err), err
    assert '"name":"my-bucket"' in out, out
    assert not left, left
