#!/usr/bin/env python3
"""`make bench` / `make bench-quick`: runs the scenarios of scenarios.py
(durafs, rclone mount and the machine's limit, side by side, in one run),
prints the table and writes it to tests/bench/results/latest.md (the quick
run to latest-quick.md) with the raw figures beside it as JSON.

Exit status: 0 when every correctness check passed; 1 when durafs or a
limit produced a wrong result or a durafs step failed (the table is still
written, and the failures are named on stderr); 2 for a bad command line
or a missing binary. Timings are reported, never asserted."""
import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback

import benchlib
from benchlib import REAPER, BenchError, CorrectnessError, log
import scenarios

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = ("durafs", "rclone", "limit")


def parse_args(argv):
    ap = argparse.ArgumentParser(description="durafs benchmark against rclone mount and the machine's limits")
    ap.add_argument("--quick", action="store_true", help="reduced sizes (make bench-quick)")
    ap.add_argument("--runs", type=int, default=None, help="runs per measurement (default 3)")
    ap.add_argument("--only", default="", help="comma-separated scenario keys: " +
                    ",".join(c.key for c in scenarios.ALL))
    ap.add_argument("--out", default=None, help="markdown output (default results/latest.md, "
                    "results/latest-quick.md with --quick)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = ap.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        ap.error("--runs must be >= 1")
    keys = [c.key for c in scenarios.ALL]
    args.only = [k for k in args.only.split(",") if k]
    for k in args.only:
        if k not in keys:
            ap.error("unknown scenario %r (have %s)" % (k, ", ".join(keys)))
    return args


def check_binaries():
    missing = [p for p in (benchlib.DURAFS, benchlib.EMULATOR, benchlib.CURL, benchlib.FUSERMOUNT)
               if not os.access(p, os.X_OK)]
    if not os.path.exists("/dev/fuse"):
        missing.append("/dev/fuse")
    return missing


# --- formatting ---------------------------------------------------------------------

def median(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def fmt_num(x, unit):
    if unit in ("entries", "req"):
        return "%d" % round(x)
    if abs(x) >= 100:
        return "%.0f" % x
    if abs(x) >= 10:
        return "%.1f" % x
    if abs(x) >= 1:
        return "%.2f" % x
    return "%.3f" % x


def fmt_cell(vals, unit, failed=0):
    if not vals:
        return "failed" if failed else "—"
    m = median(vals)
    s = fmt_num(m, unit)
    if len(vals) > 1:
        s += " (%s-%s)" % (fmt_num(min(vals), unit), fmt_num(max(vals), unit))
    if failed:
        s += ", %d failed" % failed
    return s


def fmt_ratio(a, b):
    if not a or not b:
        return "—"
    mb = median(b)
    if mb == 0:
        return "—"
    return "%.2f" % (median(a) / mb)


def scenario_table(sc, res):
    lines = ["| measure | unit | durafs | rclone | limit | durafs/limit | durafs/rclone | target |",
             "|---|---|---|---|---|---|---|---|"]
    for m in sc.metrics:
        v = {t: res["values"].get(m.key, {}).get(t, []) for t in TOOLS}
        cells = []
        for t in TOOLS:
            if t not in m.tools:
                cells.append("—")
            else:
                cells.append(fmt_cell(v[t], m.unit, res["failed"].get(t, 0)))
        rl = fmt_ratio(v["durafs"], v["limit"]) if m.ratio and "limit" in m.tools else "—"
        rr = fmt_ratio(v["durafs"], v["rclone"]) if m.ratio and "rclone" in m.tools else "—"
        target = ""
        if m.target_text:
            verdict = m.target(v) if m.target else None
            if verdict is None:
                target = "%s: not measured" % m.target_text
            else:
                target = "%s: %s, **%s**" % (m.target_text, verdict[1], "met" if verdict[0] else "NOT met")
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
            m.label, m.unit, cells[0], cells[1], cells[2], rl, rr, target))
    return lines


def target_summary(done):
    lines = ["| scenario | target | result |", "|---|---|---|"]
    for sc, res in done:
        for m in sc.metrics:
            if not m.target_text:
                continue
            v = {t: res["values"].get(m.key, {}).get(t, []) for t in TOOLS}
            verdict = m.target(v) if m.target else None
            if verdict is None:
                r = "not measured"
            else:
                r = "%s (%s)" % ("met" if verdict[0] else "**NOT met**", verdict[1])
            lines.append("| %s | %s | %s |" % (sc.key, m.target_text, r))
    return lines


def report(args, info, vers, done, notes, failures, started, load_end, runs):
    mode = "quick (`make bench-quick`)" if args.quick else "full (`make bench`)"
    out = ["# durafs benchmark results", "",
           "Written by `tests/bench/run.sh` on %s UTC; %s, %s run(s) per measurement, "
           "%.1f min in all. Cells are `median (min-max)` over the runs; ratios are of medians. "
           "Compare ratios, not seconds: the machine is shared." % (
               time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)), mode,
               runs if not args.quick or args.runs else "1-3 (see each scenario)",
               (time.time() - started) / 60), "",
           "## Machine", "",
           "- nproc: %s; memory: %s; CPU: %s" % (info.get("nproc"), info.get("memory"), info.get("cpu")),
           "- kernel: %s" % info.get("kernel"),
           "- disk: %s" % info.get("disk"),
           "- load average (1/5/15 min) at start: %s; at end: %s" % (info.get("load"), load_end),
           "", "## Versions", ""]
    for k in ("durafs", "rclone", "curl", "libfuse"):
        out.append("- %s: %s" % (k, vers.get(k)))
    out += ["", "## Setup", "",
            "- Everything runs against `durafs-emulator` on 127.0.0.1 with its state in memory (no "
            "`--data-dir`: nothing it does touches the disk the mounts cache on), `--no-auth`; a fresh "
            "emulator for every write measurement and for every read scenario.",
            "- durafs: `durafs mount gs://bkt` with `STORAGE_EMULATOR_HOST`, default options (chunk_size "
            "16M, upload_workers 8, writeback_delay 2s: fsync and `sync --flush` do not wait for it), "
            "a fresh cache dir per run (cold).",
            "- rclone: `rclone mount` (GCS backend, endpoint = emulator, anonymous) with "
            "`--vfs-cache-mode writes` (`full` for the read scenarios 4, 5 and 8), `--vfs-write-back 0s` and "
            "`--transfers 8` (tuned in rclone's favour: no 5 s wait, same parallelism as durafs); "
            "\"until uploaded\" = its rc `vfs/stats` shows no upload in progress or queued *and* the "
            "emulator holds the complete data.",
            "- limit: curl over loopback to the same emulator (resumable upload in 16 MiB chunks, "
            "8 parallel connections for many files, paged listing, download) and dd on the local disk "
            "that holds the caches.",
            ""]
    out += ["## Targets (issue 8)", ""] + target_summary(done) + [""]
    for sc, res in done:
        out += ["## %s" % sc.title, "",
                "%d run(s); load average during the scenario: %s" % (res.get("runs", 0), res.get("load", "?")), ""]
        out += scenario_table(sc, res)
        sn = [n for n in notes if n[0] == sc.key]
        if sn:
            out.append("")
            for _, who, text, seen in sn:
                out.append("- %s: %s%s" % (who, text, " (and in %d more runs)" % (seen - 1) if seen > 1 else ""))
        out.append("")
    if failures:
        out += ["## FAILURES", ""] + ["- %s" % f for f in failures] + [""]
    return "\n".join(out)


# --- running --------------------------------------------------------------------------

def run_scenario(sc, runs, failures):
    res = {"values": {}, "failed": {}, "errors": []}
    l0 = os.getloadavg()[0]
    log("== %s" % sc.title)
    try:
        sc.setup()
    except Exception as e:  # a scenario that cannot be set up is a failure of the bench
        failures.append("%s: setup failed: %s" % (sc.key, e))
        traceback.print_exc()
        try:
            sc.teardown()
        except Exception:
            pass
        return res
    try:
        for i in range(runs):
            order = TOOLS[i % 3:] + TOOLS[:i % 3]  # rotate, so no tool always runs first
            for tool in order:
                t0 = time.time()
                try:
                    vals = getattr(sc, tool)(i)
                except CorrectnessError as e:
                    msg = "%s run %d, %s: WRONG RESULT: %s" % (sc.key, i + 1, tool, e)
                    res["failed"][tool] = res["failed"].get(tool, 0) + 1
                    if tool == "rclone":
                        sc.ctx.note((sc.key, "rclone", "run %d: %s" % (i + 1, e)))
                    else:
                        failures.append(msg)
                    log(msg)
                    continue
                except (BenchError, OSError) as e:
                    msg = "%s run %d, %s: failed: %s" % (sc.key, i + 1, tool, e)
                    res["failed"][tool] = res["failed"].get(tool, 0) + 1
                    if tool == "rclone":
                        sc.ctx.note((sc.key, "rclone", "run %d failed: %s" % (i + 1, e)))
                    else:
                        failures.append(msg)
                    log(msg)
                    continue
                for k, v in vals.items():
                    res["values"].setdefault(k, {}).setdefault(tool, []).append(v)
                log("%s run %d %-6s %.1fs: %s" % (sc.key, i + 1, tool, time.time() - t0, ", ".join(
                    "%s=%s" % (k, fmt_num(v, "")) for k, v in vals.items())))
    finally:
        try:
            sc.teardown()
        except Exception as e:
            log("teardown of %s: %s" % (sc.key, e))
    res["load"] = "%.2f at start, %.2f at end (1-min)" % (l0, os.getloadavg()[0])
    return res


def main(argv):
    args = parse_args(argv)
    missing = check_binaries()
    if missing:
        print("bench: missing %s (build with `make`; apt-get install fuse3 curl)" % ", ".join(missing),
              file=sys.stderr)
        return 2
    have_rclone = os.access(benchlib.RCLONE, os.X_OK)
    runs = args.runs or 3   # quick: each scenario's quick_runs
    out_md = args.out or os.path.join(HERE, "results", "latest-quick.md" if args.quick else "latest.md")

    def on_term(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    started = time.time()
    workdir = benchlib.make_workdir()
    shmdir = benchlib.make_shmdir()
    if not args.keep:
        REAPER.add("work dir", lambda: shutil.rmtree(workdir, ignore_errors=True))
    REAPER.add("shm dir", lambda: shutil.rmtree(shmdir, ignore_errors=True))
    failures = []
    done = []
    ctx = scenarios.Ctx(workdir, shmdir, args.quick)
    try:
        info = benchlib.machine_info(workdir)
        vers = benchlib.versions()
        log("work dir %s; %s mode; load %s" % (workdir, "quick" if args.quick else "full", info["load"]))
        for cls in scenarios.ALL:
            if args.only and cls.key not in args.only:
                continue
            sc = cls(ctx)
            if not have_rclone:
                sc.rclone = _no_rclone
            res = run_scenario(sc, args.runs or (sc.quick_runs if args.quick else 3), failures)
            res["runs"] = args.runs or (sc.quick_runs if args.quick else 3)
            done.append((sc, res))
        load_end = " ".join("%.2f" % x for x in os.getloadavg())
        if not have_rclone:
            ctx.note(("-", "rclone", "not installed: %s" % benchlib.RCLONE))
        text = report(args, info, vers, done, ctx.notes, failures, started, load_end, runs)
        print()
        print(text)
        os.makedirs(os.path.dirname(os.path.abspath(out_md)), exist_ok=True)
        with open(out_md, "w") as f:
            f.write(text + "\n")
        raw = {"machine": info, "versions": vers, "quick": args.quick, "runs": runs,
               "failures": failures, "notes": ctx.notes,
               "scenarios": {sc.key: {"title": sc.title, "values": res["values"], "failed": res["failed"],
                                      "load": res.get("load")} for sc, res in done}}
        with open(os.path.splitext(out_md)[0] + ".json", "w") as f:
            json.dump(raw, f, indent=1, sort_keys=True)
        log("written %s" % out_md)
        if args.keep:
            log("work dir kept: %s" % workdir)
    except (KeyboardInterrupt, SystemExit) as e:
        code = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        print("bench: interrupted; unmounting and stopping everything it started", file=sys.stderr)
        REAPER.run_all()
        return code
    finally:
        REAPER.run_all()
    if failures:
        print("\nBENCH FAILED: %d correctness or durafs failure(s):" % len(failures), file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


def _no_rclone(i):
    raise BenchError("rclone is not installed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
