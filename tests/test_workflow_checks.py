"""Workflow checks that need no finished run (dry runs, lint, job sizing, bad configs, killed and failing
jobs): a file of their own, so that `./test.sh`'s two workers run them beside the tiny run of
tests/test_workflow.py instead of after it."""
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from ntkscaling import files
from test_workflow import TINY, _tiny_with, smaller, snakemake

pytestmark = pytest.mark.workflow


def test_dry_run_and_lint_of_default_config(tmp_path):
    res = snakemake("-n", cwd=tmp_path)  # a fresh directory: every job is planned
    assert res.returncode == 0, res.stderr[-2000:]
    for rule in ("prepare_data", "train_network", "entk_kernel", "infinite_kernel", "regress_kernel",
                 "kernel_evolution", "width_distance", "fit_exponents", "summarize_exponents",
                 "figure_data_scaling", "figure_after_kernel", "figure_kernel_evolution", "figure_width_scaling",
                 "figure_theory"):
        assert rule in res.stdout
    res = snakemake("-n", "--profile", str(ROOT / "profiles" / "gpu"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    block = res.stdout[res.stdout.index("rule train_network:"):]
    assert "gpu=1" in block[:block.index("\n\n")]  # the GPU profile claims the GPU for training
    res = snakemake("--lint", cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def _requests(res) -> list[tuple[str, dict]]:
    """(rule, resources) of every job in a dry run's listing."""
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", res.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        found = re.search(r"resources: (.*)", block)
        if rule and found:
            pairs = (kv.split("=", 1) for kv in found.group(1).split(", "))
            jobs.append((rule.group(1), dict(pairs)))
    return jobs


GPU_RULES = {"train_network", "track_network", "entk_kernel", "infinite_kernel", "kernel_evolution"}


def test_slurm_profile_sizes_requests_from_the_jobs(tmp_path):
    slurm = ("--profile", str(ROOT / "profiles" / "slurm"))
    tiny = _requests(snakemake("-n", *slurm, "--configfile", str(TINY), cwd=tmp_path))
    assert {rule for rule, r in tiny if r.get("gpu") == "1"} == GPU_RULES  # the profile's one GPU setting
    sized = [int(r["mem_mb"]) for rule, r in tiny if r["mem_mb"] != "<TBD>"]  # training: from the data file
    assert sized and max(sized) <= 5000  # the tiny config fits a small node
    # a CPU-only, small cluster: no GPU asked for anywhere, every request within the caps
    small = _requests(snakemake("-n", *slurm, "--configfile", str(TINY), "--config", "gpus_per_job=0",
                                "max_job_mem_mb=1500", "max_job_runtime=7", cwd=tmp_path))
    assert not [rule for rule, r in small if r.get("gpu") not in (None, "0")]
    assert all(int(r["mem_mb"]) <= 1500 for _, r in small if r["mem_mb"] != "<TBD>")
    assert all(int(r["runtime"]) <= 7 for _, r in small if "runtime" in r)
    # the paper preset asks for what its kernels need (36 768 rows: hours and tens of GB)
    paper = _requests(snakemake("-n", *slurm, "--configfile", str(ROOT / "config" / "presets" / "cifar10-myrtle.yaml"),
                                cwd=tmp_path))
    infinite = next(r for rule, r in paper if rule == "infinite_kernel")
    assert int(infinite["mem_mb"]) > 20_000 and int(infinite["runtime"]) > 600


def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: -0.5\n")
    res = snakemake("--configfile", str(bad), cwd=tmp_path)
    assert res.returncode != 0
    assert "'train.lr': got -0.5; expected a number > 0" in res.stderr + res.stdout
    assert not (tmp_path / "results").exists()


def test_jobs_die_with_a_killed_snakemake(tmp_path):
    # Snakemake itself is killed (not its process group, as a crashed node or the OOM killer would): its
    # running jobs must stop too, not go on writing outputs behind a workflow that no longer exists
    import signal
    import time
    config = _tiny_with(tmp_path, lambda c: (smaller(c), c["train"].update(steps=5000)))
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2",
           "--configfile", str(config)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    logs = tmp_path / "logs" / "tiny" / "train"
    t0 = time.time()
    while time.time() - t0 < 120 and not (logs.exists() and any("step " in p.read_text() for p in logs.glob("*.log"))):
        time.sleep(0.2)
    assert logs.exists(), "no training job started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.time()
    while time.time() - t0 < 10:
        try:
            os.killpg(proc.pid, 0)  # any process left in the run's session?
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("jobs kept running after Snakemake was killed")
    assert not (tmp_path / "results" / "tiny" / "train" / "w16" / "s0" / "n64" / "metrics.csv").exists()


def test_nan_kernel_stops_its_job_naming_it(tmp_path):
    # a checkpoint whose weights turned NaN (a corrupt file, a diverged run): the eNTK job fails, says which
    # checkpoint and why, and leaves no kernel (final or partial) that a later run or regression would trust
    import torch
    config = _tiny_with(tmp_path, smaller)
    ckpt = tmp_path / "results" / "tiny" / "init" / "w16" / "s0.ckpt"
    kernel = tmp_path / "results" / "tiny" / "kernels" / "entk_init" / "w16" / "s0" / "mean.npy"
    res = snakemake(str(ckpt.relative_to(tmp_path)), "--configfile", str(config), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    state = torch.load(ckpt, weights_only=True)
    first = next(k for k in state["state_dict"] if k.endswith("weight"))
    state["state_dict"][first][0, 0] = float("nan")
    torch.save(state, ckpt)
    files.record_digest(ckpt, root=tmp_path)  # as if its producer had written it so: the eNTK job's own check must catch it
    res = snakemake(str(kernel.relative_to(tmp_path)), "--configfile", str(config), cwd=tmp_path)
    assert res.returncode != 0
    log = tmp_path / "logs" / "tiny" / "entk_kernel" / "entk_init_w16_s0_mean.log"
    assert f"eNTK of {ckpt.relative_to(tmp_path)} contains NaN or inf" in log.read_text()
    assert "Error in rule entk_kernel" in res.stdout + res.stderr
    assert not kernel.exists() and not list(kernel.parent.glob("*.tmp*"))
