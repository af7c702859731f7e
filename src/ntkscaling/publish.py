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
naming what is missing, before anything is written, and so is a file that is not what its job recorded.

publish writes only into a folder of its own and never deletes what it did not write: the destination must be
new, empty, or an earlier publication of the same run (every file there listed in its provenance.json with
the bytes it was published with); never a link, a file, the run, the checkout or a folder holding either.
The new copy is built beside the old one and swapped in at once, so a publish killed mid-copy leaves the
earlier publication whole. Torch-free.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import files
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


PUBLICATION_RECORD = "provenance.json"


def _inside(path: Path, folder: Path) -> bool:
    """Whether the physical `path` is `folder` or lies inside it."""
    return path == folder or folder in path.parents


def _earlier_publication(dest: Path) -> dict:
    """What an existing destination holds when it is a publication of this command (its provenance.json lists
    every file there, each with the bytes it was published with); PublishError naming what else it holds."""
    held = {}
    for path in sorted(dest.rglob("*")):
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise PublishError(f"{dest}: holds {path.relative_to(dest)}, which is not a plain file or folder; "
                               f"publish writes only into a folder of its own: choose another destination")
        if path.is_file():
            held[path.relative_to(dest).as_posix()] = path
    if not held:
        return {}
    record = dest / PUBLICATION_RECORD
    try:
        if record.stat().st_size > files.RECORD_MAX_BYTES * 64:
            raise ValueError
        prov = json.loads(record.read_text())
        listed = prov["files"]
        if not (isinstance(listed, dict) and isinstance(prov.get("run"), str)):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise PublishError(f"{dest}: holds {len(held)} file(s) and is not an earlier publication of a run (no "
                           f"readable {PUBLICATION_RECORD} written by publish); nothing there is replaced: choose "
                           f"another destination, e.g. docs/results/<run_name>") from None
    others = sorted(set(held) - set(listed) - {PUBLICATION_RECORD})
    if others:
        raise PublishError(f"{dest}: holds files its earlier publication did not write ({', '.join(others[:5])}"
                           f"{' ...' if len(others) > 5 else ''}); nothing there is replaced: move them away or "
                           f"choose another destination")
    edited = sorted(name for name, digest in listed.items() if name in held and _sha256(held[name]) != digest)
    if edited:
        raise PublishError(f"{dest}: {', '.join(edited[:5])} changed since it was published; nothing there is "
                           f"replaced: keep your edits elsewhere, or restore the published files, then publish again")
    return prov


def check_destination(run: Path, dest: Path, checkout: Path) -> dict:
    """Refuse a destination publish may not write (before anything is written): a link or a file, the run
    itself or a folder holding it or inside it, the checkout or a folder holding it, a folder holding anything
    but an earlier publication of this same run. Returns that earlier publication's provenance, or {}."""
    if dest.is_symlink():
        raise PublishError(f"{dest}: a symbolic link; publish writes only into a folder of its own: give the "
                           f"folder itself (or a new one)")
    if dest.exists() and not dest.is_dir():
        raise PublishError(f"{dest}: a file, not a folder; choose another destination")
    where, run_at = dest.resolve(), run.resolve()
    for root in {checkout.resolve(), Path.cwd().resolve()}:
        if _inside(root, where):
            raise PublishError(f"{dest}: is or holds the checkout {root}; publish to a folder of its own, e.g. "
                               f"docs/results/{run.name}")
    if _inside(where, run_at) or _inside(run_at, where):
        raise PublishError(f"{dest}: is, holds or lies inside the run {run}; publish to a folder of its own, "
                           f"e.g. docs/results/{run.name}")
    earlier = _earlier_publication(dest) if dest.is_dir() else {}
    if earlier and Path(earlier["run"]).name != run.name:
        raise PublishError(f"{dest}: holds the publication of {earlier['run']}, not of {run}; nothing there is "
                           f"replaced: publish to docs/results/{run.name}, or remove that folder yourself first")
    return earlier


def _verified(run: Path, names: list[str], checkout: Path) -> None:
    """Every file to publish is what the run's job recorded (bytes and place); PublishError naming it if not."""
    for name in names:
        try:
            files.verify(run / name, root=checkout)
        except files.FileFormatError as e:
            raise PublishError(f"{e}; nothing was published") from None


def _swap_in(staging: Path, dest: Path) -> None:
    """Put the complete new copy at `dest` in one step: an exchange of the two folders where the system has
    one (Linux renameat2), else two renames; the old publication ends up at `staging`."""
    import ctypes
    import os
    if not dest.exists():
        os.rename(staging, dest)
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        if libc.renameat2(at_fdcwd, os.fsencode(staging), at_fdcwd, os.fsencode(dest), rename_exchange) == 0:
            return
    except (OSError, AttributeError):
        pass
    old = staging.with_name(staging.name + ".old")
    os.rename(dest, old)
    os.rename(staging, dest)
    os.rename(old, staging)


def publish(run, dest) -> list[Path]:
    """Copy a finished run's tables and figures to `dest`, a folder of publish's own: new, empty, or an earlier
    publication of the same run, which the complete new copy replaces in one step (`check_destination`).
    Every file is verified against its job's record first."""
    run, dest = Path(run), Path(dest)
    if not (run / "data" / "prepared.json").is_file():
        raise PublishError(f"{run}: not a run of this workflow (no data/prepared.json)")
    if not ((run / "sweep" / "summary.csv").is_file() or (run / "summary" / "exponents.csv").is_file()):
        raise PublishError(f"{run}: not finished (no summary/exponents.csv, no sweep/summary.csv); run the workflow "
                           f"to the end first")
    names = planned(run)
    missing = [name for name in names if not (run / name).is_file()]
    if missing:
        raise PublishError(f"{run}: not finished; missing {', '.join(missing[:5])}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    checkout = Path(os.path.abspath(run)).parent.parent  # the working directory of results/<run_name>
    if Path(os.path.abspath(run)).parent.name != files.WORKFLOW_ROOT:
        raise PublishError(f"{run}: not a run folder results/<run_name> of a checkout")
    _verified(run, [*names, "data/prepared.json"], checkout)
    check_destination(run, dest, checkout)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for stale in dest.parent.glob(f".{dest.name}.publish-*"):  # left by a publish killed mid-copy
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.publish-"))
    try:
        written = [_copy_one(run, name, staging) for name in names]
        with open(run / "data" / "prepared.json") as f:
            prepared = json.load(f)
        save_json(staging / PUBLICATION_RECORD, {
            "run": str(run), "command": f"python -m ntkscaling.publish {run} {dest}",
            "config": prepared.get("provenance", {}).get("config"), "publish_code_version": code_version(),
            "files": {str(p.relative_to(staging)): _sha256(p) for p in written}})
        _swap_in(staging, dest)
    finally:
        if staging.exists():  # a failed copy, or the earlier publication after the swap
            shutil.rmtree(staging)
    return [dest / p.relative_to(staging) for p in written]


def _copy_one(run: Path, name: str, staging: Path) -> Path:
    target = staging / name
    target.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith("scaling/metrics.csv"):
        _filtered_metrics(run / name, target)
    else:
        with atomic_path(target) as tmp:
            shutil.copyfile(run / name, tmp)
    return target


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) not in (1, 2):
        raise SystemExit("usage: python -m ntkscaling.publish results/<run_name> [docs/results/<run_name>]")
    run = Path(argv[0])
    dest = Path(argv[1]) if len(argv) == 2 else Path("docs") / "results" / run.name
    try:
        written = publish(run, dest)
    except (PublishError, OSError) as e:
        raise SystemExit(f"publish: {e}") from None
    print(f"published {len(written)} files of {run} to {dest}")


if __name__ == "__main__":
    main()
