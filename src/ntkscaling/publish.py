"""Results you can check: copy a finished run's answer tables and figures into docs/results/<run_name>/.

    python -m ntkscaling.publish results/<run_name> [docs/results/<run_name>]

What is copied (every number the README quotes comes from these files): summary/exponents.csv (the answer
table) with the run's own summary/provenance.json (its config and code version), scaling/exponents.csv (every
curve and ridge), evolution/evolution.csv (the kernel-evolution rows), scaling/metrics.csv restricted to the
test metrics of every (method, n, seed) (the points of the figures), the PNG figures, and for a sweep its
summary.csv and sweep.png with the same files and the outcome.csv (each network's final training loss and
test metrics) of every trained grid point under sweep/<point>/. A provenance.json says what was published:
the run's config (from its prepared data's record), the command, the library's code version at publishing,
and the sha256 of every file copied. A run that is not finished (a missing table or figure) is refused,
naming what is missing, before anything is written. Torch-free.
"""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
import sys
from pathlib import Path

from .files import atomic_path, code_version, save_json

RUN_FILES = ("summary/exponents.csv", "summary/provenance.json", "scaling/exponents.csv", "evolution/evolution.csv")
FIGURES = ("data_scaling", "after_kernel", "kernel_evolution", "width_scaling", "theory")
METRICS_KEPT = ("test_error", "test_mse")


class PublishError(ValueError):
    """The run is not finished, or not a run of this workflow."""


def run_files() -> list[str]:
    """The files of one run (or a sweep's grid point) to publish, relative to it."""
    return [*RUN_FILES, "scaling/metrics.csv", *(f"figures/{name}.png" for name in FIGURES)]


def sweep_points(run: Path) -> list[str]:
    """The grid points of a sweep whose networks trained (those in sweep/summary.csv with status ok)."""
    with open(run / "sweep" / "summary.csv", newline="") as f:
        return list(dict.fromkeys(r["point"] for r in csv.DictReader(f) if r.get("status") == "ok"))


def planned(run: Path) -> list[str]:
    """Every file to publish from a finished run, relative to it."""
    if (run / "sweep" / "summary.csv").is_file():
        return ["sweep/summary.csv", "sweep/sweep.png",
                *(f"sweep/{point}/{name}" for point in sweep_points(run)
                  for name in ("outcome.csv", *run_files()))]
    return run_files()


def _filtered_metrics(source: Path, dest: Path):
    """scaling/metrics.csv with only the test metrics (the training curves stay in the run)."""
    with open(source, newline="") as f, atomic_path(dest) as tmp, open(tmp, "w", newline="") as g:
        reader = csv.DictReader(f)
        writer = csv.DictWriter(g, fieldnames=reader.fieldnames)
        writer.writeheader()
        writer.writerows(r for r in reader if r["metric"] in METRICS_KEPT)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def publish(run, dest) -> list[Path]:
    """Copy a finished run's tables and figures to `dest` (replacing what a previous publish wrote there)."""
    run, dest = Path(run), Path(dest)
    if not (run / "data" / "prepared.json").is_file():
        raise PublishError(f"{run}: not a run of this workflow (no data/prepared.json)")
    if not ((run / "sweep" / "summary.csv").is_file() or (run / "summary" / "exponents.csv").is_file()):
        raise PublishError(f"{run}: not finished (no summary/exponents.csv, no sweep/summary.csv); run the workflow "
                           f"to the end first")
    files = planned(run)
    missing = [name for name in files if not (run / name).is_file()]
    if missing:
        raise PublishError(f"{run}: not finished; missing {', '.join(missing[:5])}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if dest.exists():
        shutil.rmtree(dest)
    written = []
    for name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("scaling/metrics.csv"):
            _filtered_metrics(run / name, target)
        else:
            with atomic_path(target) as tmp:
                shutil.copyfile(run / name, tmp)
        written.append(target)
    with open(run / "data" / "prepared.json") as f:
        prepared = json.load(f)
    save_json(dest / "provenance.json", {
        "run": str(run), "command": f"python -m ntkscaling.publish {run} {dest}",
        "config": prepared.get("provenance", {}).get("config"), "publish_code_version": code_version(),
        "files": {str(p.relative_to(dest)): _sha256(p) for p in written}})
    return written


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        raise SystemExit("usage: python -m ntkscaling.publish results/<run_name> [docs/results/<run_name>]")
    run = Path(argv[0])
    dest = Path(argv[1]) if len(argv) == 2 else Path("docs") / "results" / run.name
    try:
        written = publish(run, dest)
    except PublishError as e:
        raise SystemExit(f"publish: {e}") from None
    print(f"published {len(written)} files of {run} to {dest}")


if __name__ == "__main__":
    main()
