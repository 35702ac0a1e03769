"""What the durafs binary says it accepts, parsed from its own `--help`
output: commands (with their subcommands, and whether they are only
planned), each command's options, and the mount's -o options. The docs
consistency test and the completion tests check everything else against
this, so nothing is hand-copied."""
import os
import re
import subprocess

import conftest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# an option token in help text: preceded by a line start, a space or [ ( | ,
OPTION_RE = re.compile(r"(?:^|(?<=[\s\[(|,]))(--?[A-Za-z][A-Za-z0-9-]*)")
SUBCMDS_RE = re.compile(r"^[a-z][a-z0-9-]*(\|[a-z][a-z0-9-]*)*$")
MOUNT_OPT_RE = re.compile(r"^  ([a-z][a-z0-9_.]*)(=\S*)?(\s|$)")


def durafs_help(*args):
    """(exit status, stdout) of `durafs ARGS --help`."""
    res = subprocess.run([conftest.DURAFS] + list(args) + ["--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=30)
    return res.returncode, res.stdout


def options_in(text):
    """The options a help text lists, in order, once: every -x / --long
    token of its usage block (from "usage:" to the first blank line), and
    those that start an indented line ("  -f, --foreground  stay..."; only
    before the description). Options merely named in prose or in a
    description (another command's) do not count."""
    seen = []
    in_usage = False
    for line in text.splitlines():
        if line.startswith("usage:"):
            in_usage = True
        elif not line.strip():
            in_usage = False
        if in_usage:
            part = line
        elif line[:1].isspace() and line.lstrip().startswith("-"):
            part = re.split(r"\s{2,}", line.strip())[0]
        else:
            continue
        for m in OPTION_RE.finditer(part):
            if m.group(1) not in seen:
                seen.append(m.group(1))
    return seen


class Command:
    def __init__(self, name, usage, planned):
        self.name = name
        self.usage = usage          # the line of `durafs --help`
        self.planned = planned      # listed, but refuses to run
        words = usage.split()
        self.subcommands = words[1].split("|") if len(words) > 1 and \
            SUBCMDS_RE.match(words[1]) else []
        self.help = ""
        self.options = []


def parse_cli():
    """(commands {name: Command}, top-level options, mount -o option names)."""
    rc, top = durafs_help()
    assert rc == 0, "durafs --help failed"
    # The "Commands:" block: an entry starts at a line indented by exactly
    # two spaces ("  [durafs ]NAME USAGE... [summary]"); deeper-indented
    # lines continue it (the summary, in the two-line layout).
    commands = {}
    entries = []
    in_cmds = False
    for line in top.splitlines():
        if line.startswith("Commands:"):
            in_cmds = True
            continue
        if not in_cmds:
            continue
        if not line.strip():
            break
        m = re.match(r"^  (?:durafs )?([a-z][a-z0-9-]*)(?:\s|$)", line)
        if m:
            entries.append([m.group(1), line.strip(), line.strip()])
        else:
            assert entries and line.startswith("   "), \
                "unexpected line in durafs --help: %r" % line
            entries[-1][2] += " " + line.strip()
    for name, usage, whole in entries:
        if usage.startswith("durafs "):
            usage = usage[len("durafs "):]
        commands[name] = Command(name, usage, "(planned" in whole)
    assert commands, "no commands found in durafs --help"
    top_opts = options_in(top.split("Commands:")[0])
    for cmd in commands.values():
        rc, text = durafs_help(cmd.name)
        if cmd.planned and rc != 0:
            # a planned command has no --help yet: its usage line is all
            cmd.help = cmd.usage
            cmd.options = [m.group(1) for m in OPTION_RE.finditer(cmd.usage)]
        else:
            assert rc == 0, "durafs %s --help exited %d" % (cmd.name, rc)
            cmd.help = text
            cmd.options = options_in(cmd.help)
        if "--help" not in cmd.options:
            cmd.options.append("--help")
    mount_opts = []
    in_opts = False
    for line in commands["mount"].help.splitlines():
        if re.match(r"^\s+-o\s", line):
            in_opts = True
            continue
        if in_opts:
            if not line.strip():
                break
            m = MOUNT_OPT_RE.match(line)
            if m:
                mount_opts.append(m.group(1))
    assert mount_opts, "no -o options found in durafs mount --help"
    return commands, top_opts, mount_opts


def mount_opt_placeholders():
    """{name: placeholder or ''} of the mount's -o options ("conflict":
    "keep-both|fail", "ro": "")."""
    _, text = durafs_help("mount")
    out = {}
    in_opts = False
    for line in text.splitlines():
        if re.match(r"^\s+-o\s", line):
            in_opts = True
            continue
        if in_opts:
            if not line.strip():
                break
            m = MOUNT_OPT_RE.match(line)
            if m:
                out[m.group(1)] = (m.group(2) or "")[1:]
    return out


COMPLETION = os.path.join(ROOT, "contrib", "completions", "durafs.bash")
_WORDBREAK_RE = re.compile(r"[=:]+|[^=:]+")


def comp_words(line):
    """COMP_WORDS as bash builds them for line (default COMP_WORDBREAKS: a
    run of '=' or ':' is a word of its own), and COMP_CWORD."""
    words = []
    for tok in line.split():
        words += _WORDBREAK_RE.findall(tok)
    if not line or line[-1].isspace():
        words.append("")
    return words, len(words) - 1


def bash_complete(line, script=COMPLETION, bindir=None, cwd=None):
    """What the durafs completion in script proposes for the command line
    `line` (the cursor at its end), as bash would call it: a list."""
    words, cword = comp_words(line)
    prog = ("source %s\n" % _sh(script) +
            "COMP_WORDS=(%s)\n" % " ".join(_sh(w) for w in words) +
            "COMP_CWORD=%d\nCOMP_LINE=%s\nCOMP_POINT=%d\n" % (cword, _sh(line), len(line)) +
            "_durafs\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n")
    env = dict(os.environ)
    env["PATH"] = (bindir or os.path.dirname(conftest.DURAFS)) + ":" + env.get("PATH", "")
    res = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, timeout=60)
    assert res.returncode == 0 and not res.stderr, "completion failed for %r: %s" % (
        line, res.stderr)
    return [w for w in res.stdout.split("\n") if w]


def _sh(s):
    return "'" + s.replace("'", "'\\''") + "'"
