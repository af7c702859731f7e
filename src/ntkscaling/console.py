"""What a run prints: one line per finished job, and the headline at the end.

`quiet` filters Snakemake's console (./run.sh pipes it through `python -m ntkscaling.console`): each job's
block (rule, inputs, outputs, resources, "Shell command: None") becomes one line when the job finishes,

    [ 12/145 ~6 min left] train_network  width=512 seed=0 n=1024  14 s

and the banner, the scheduler's chatter and the absolute paths are dropped. Everything else (errors with
their logs, warnings, the job plan, a dry run's listing, the closing summary) passes through unchanged;
Snakemake's full console stays in .snakemake/log/. `closing_summary` is that closing summary (the
Snakefile's onsuccess): each method's exponent and deficit with intervals, and where the outputs are.
Torch-free: it starts in a fraction of a second.
"""
from __future__ import annotations

import csv
import math
import re
import signal
import sys
import time
from pathlib import Path

_BLOCK_START = re.compile(r"^(local)?(checkpoint|rule) (\S+):$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\S+)\)")
_PROGRESS = re.compile(r"^(\d+) of (\d+) steps \(\d+%\) done")
_DATE = re.compile(r"^\[\w{3} \w{3} +\d+ [\d:]+ \d{4}\]$")
_NOISE = re.compile(
    r"^(Using workflow specific profile|Config file .* is extended|Assuming unrestricted shared filesystem|"
    r"SNAKEMAKE$|=+$|  (Date|Workflow ID|Platform|Host|User|Snakemake version|Python version|Command|Snakefile|"
    r"Base directory|Run directory|Working directory|Config file\(s\)|Config MD5):|Building DAG of jobs|"
    r"Using shell:|Provided cores:|Rules claiming more threads|Conda environments: ignored|Select jobs to execute|"
    r"Execute \d+ jobs|DAG of jobs will be updated|Updating checkpoint dependencies|Shell command: None|"
    r"Complete log\(s\):|Waiting at most|\s*$)")


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes:.0f} min" if minutes < 60 else f"{int(minutes // 60)} h {int(minutes % 60):02d} min"


def quiet(lines, write, clock=time.monotonic):
    """Write (through `write`) the quiet console of Snakemake's output `lines`.

    A job block is held back until its "Finished jobid" line, then written as one line: progress, an
    estimate of the time left (the mean duration of finished steps so far times those left, an estimate
    that the first steps' sizes bias), the rule, its wildcards and how long the job took."""
    start = clock()
    jobs = {}  # jobid -> (rule, wildcards, start time)
    block = None  # the job block being read: {"rule", "wildcards", "jobid"}
    finished = []  # (rule, wildcards, seconds) waiting for the progress line
    for raw in lines:
        line = raw.rstrip("\n")
        if block is not None:
            field = line.strip()
            if line.startswith("    ") and ":" in field:
                key, _, value = field.partition(":")
                if key in ("jobid", "wildcards"):
                    block[key] = value.strip()
                continue
            if block.get("jobid"):
                jobs[block["jobid"]] = (block["rule"], block.get("wildcards", ""), clock())
            block = None
        m = _BLOCK_START.match(line)
        if m:
            block = {"rule": m.group(3)}
            continue
        m = _FINISHED.match(line)
        if m:
            rule, wildcards, began = jobs.pop(m.group(1), (m.group(2), "", clock()))
            finished.append((rule, wildcards.replace(",", ""), clock() - began))
            continue
        m = _PROGRESS.match(line)
        if m:
            done, total = int(m.group(1)), int(m.group(2))
            left = (clock() - start) / done * (total - done) if done else math.nan
            eta = "" if done == total or not math.isfinite(left) else f" ~{_duration(left)} left"
            for rule, wildcards, seconds in finished or [("", "", math.nan)]:
                took = _duration(seconds) if math.isfinite(seconds) else ""
                write(f"[{done:>{len(str(total))}}/{total}{eta}] {rule}  {wildcards}  {took}".rstrip() + "\n")
            finished = []
            continue
        if _DATE.match(line) or _NOISE.match(line):
            continue
        write(line + "\n")


def _interval(value, lo, hi) -> str:
    try:
        return f"{float(value):.2f} [{float(lo):.2f}, {float(hi):.2f}]"
    except (TypeError, ValueError):
        return ""


def _method_label(row: dict) -> str:
    label = row["method"]
    if row.get("k") not in (None, "", "0", "0.0"):
        label += f" k={int(float(row['k']))}"
    return label


def headline_rows(exponents_csv: Path, width=None) -> list[str]:
    """Each method's exponent and deficit (with their intervals) from a run's summary/exponents.csv, at
    `width` (None: the largest), the networks and the validation-tuned kernels."""
    with open(exponents_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("ridge") in ("", "tuned")]
    widths = {float(r["width"]) for r in rows if r["width"] not in ("", "inf")}
    width = float(width) if width is not None else (max(widths) if widths else None)
    rows = [r for r in rows if r["width"] in ("", "inf") or float(r["width"]) == width]
    lines = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        lines.append(f"  {metric}: alpha (deficit = the reference network's alpha - alpha; in brackets over the "
                     f"upper half of n)")
        for r in rows:
            if r["metric"] != metric:
                continue
            interval = _interval(r["alpha_deficit"], r["deficit_lo"], r["deficit_hi"])
            deficit = "" if r["method"] == r.get("network_method") or not interval else "  deficit " + interval
            upper = _interval(r.get("alpha_deficit_upper", ""), r.get("deficit_upper_lo", ""),
                              r.get("deficit_upper_hi", ""))
            upper = f"  (n >= {float(r['n_min_upper']):g}: {upper})" if deficit and upper and "nan" not in upper else ""
            untrained = f"  untrained (n:seeds, left out) {r['untrained_seeds']}" if r.get("untrained_seeds") else ""
            lines.append(f"    {_method_label(r):<18} {_interval(r['alpha'], r['alpha_lo'], r['alpha_hi']):<22}"
                         f"{deficit}{upper}{untrained}".rstrip())
    return lines


def sweep_rows(summary_csv: Path) -> list[str]:
    """Per grid point of a sweep: each kernel's deficit against the reference network (tuned ridge)."""
    with open(summary_csv, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("ridge") == "tuned" and r.get("alpha_deficit")]
    lines = []
    for metric in dict.fromkeys(r["metric"] for r in rows):
        lines.append(f"  {metric}: deficit (the reference network's alpha - the kernel's) by grid point")
        for r in rows:
            if r["metric"] == metric:
                lines.append(f"    {r['point']:<24} {_method_label(r):<18} "
                             f"{_interval(r['alpha_deficit'], r['deficit_lo'], r['deficit_hi'])}")
    return lines


def closing_summary(results: str, figure_width=None) -> str:
    """The end of a successful run: the headline numbers and where the figures, tables and logs are."""
    root = Path(results)
    sweep_summary, exponents = root / "sweep" / "summary.csv", root / "summary" / "exponents.csv"
    lines = ["", f"ntkscaling: finished ({root})"]
    if sweep_summary.is_file():
        lines += sweep_rows(sweep_summary)
        lines.append(f"  per point: {root}/sweep/<point>/summary/exponents.csv and figures/; "
                     f"the sweep: {sweep_summary}, {root}/sweep/sweep.png")
    elif exponents.is_file():
        lines += headline_rows(exponents, figure_width)
        lines.append(f"  table: {exponents}   figures: {root}/figures/   "
                     f"report: snakemake --report {root}/report.html (same arguments)")
    else:
        lines.append("  (the targets asked for did not include the summary tables)")
    lines.append(f"  job logs: logs/{root.parts[1] if len(root.parts) > 1 else root.name}/   "
                 f"publish: python -m ntkscaling.publish {root}")
    return "\n".join(lines)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops Snakemake; its last words still get through
    closed = []

    def write(text):
        """To stdout while it is open; once its reader is gone (`./run.sh | head`) the run goes on unseen: the
        rest is read and dropped, so Snakemake never writes into a closed pipe."""
        if closed:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            closed.append(True)
            import os
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own last flush must not fail either
    quiet(sys.stdin, write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
