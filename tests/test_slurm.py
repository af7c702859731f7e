"""The workflow through a real SLURM (one node on localhost, started by the test) with the shipped profile.

Skipped, with the reason, only where SLURM's Debian packages cannot be installed. Runs are wrapped in a
timeout: a misconfigured status query makes Snakemake wait forever instead of failing.
"""
import csv
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from slurm_cluster import Cluster, ensure_installed
from test_workflow import _tiny_with, copy_repo, planned, smaller, snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.workflow]

# Test-cluster settings: no slurmdbd, so no sacct (job status from squeue) and no accounts.
CLUSTER = ("--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
           "--slurm-no-account")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    why = ensure_installed()
    if why:
        pytest.skip(f"no SLURM: {why}")
    c = Cluster(tmp_path_factory.mktemp("slurm-state"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


LOCAL_RULES = {"prepare_data", "subset_order", "collect_metrics", "fit_exponents", "collect_evolution",
               "collect_width_distance", "summarize_exponents", "figure_data_scaling", "figure_after_kernel",
               "figure_kernel_evolution", "figure_width_scaling", "figure_theory", "all"}


def on_slurm(*args, cwd, timeout=900):
    return snakemake("--profile", str(cwd / "repo" / "profiles" / "slurm"), "--configfile",
                     str(cwd / "changed.yaml"), *CLUSTER, *args, cwd=cwd, repo=cwd / "repo", timeout=timeout)


def _two_sizes(config):
    """`smaller`, on two sample sizes (the fewest a fit takes): every rule still runs, through fewer jobs."""
    smaller(config)
    config["sample_sizes"] = [16, 32]


def test_tiny_config_runs_through_slurm(cluster, tmp_path):
    copy_repo(tmp_path / "repo")
    _tiny_with(tmp_path, _two_sizes)
    res = on_slurm(cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:] + cluster.log()[-2000:]
    # every job went through SLURM: submitted ids, known to slurmctld, completed
    ids = set(re.findall(r"SLURM jobid (\d+)", out))
    jobs = planned(snakemake("--configfile", str(tmp_path / "changed.yaml"), "-n", "-F", cwd=tmp_path,
                             repo=tmp_path / "repo"))
    # the quick aggregate, fit and figure rules run on the submitting machine, everything else through SLURM
    assert len(ids) == sum(v for k, v in jobs.items() if k not in LOCAL_RULES) > 10
    shown = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, env=cluster.env).stdout
    jobs_known = {re.search(r"JobId=(\d+)", line).group(1): line for line in shown.splitlines() if "JobId=" in line}
    assert ids <= set(jobs_known), "submitted jobs unknown to slurmctld"
    assert all("JobState=COMPLETED" in jobs_known[i] for i in ids)
    submitted = {re.search(r"Comment=rule_(\w+?)_wildcards", jobs_known[i]).group(1) for i in ids}
    assert not submitted & LOCAL_RULES
    # requests are sized from the jobs: the tiny config's largest job fits a small node
    mem = [int(re.search(r"MinMemoryNode=(\d+)M", jobs_known[i]).group(1)) for i in ids]
    assert max(mem) <= 5000, max(mem)
    log = cluster.log()
    assert all(re.search(rf"_job_complete: JobId={i} ", log) for i in ids)
    # the GPU rules asked SLURM for a (fake) GPU as the profile says; the others did not
    gpu_jobs = {i for i in ids if re.search(r"TresPerJob=\S*gpu", jobs_known[i])}
    assert gpu_jobs and {re.search(r"Comment=rule_(\w+?)_wildcards", jobs_known[i]).group(1) for i in gpu_jobs} \
        <= {"train_network", "track_network", "entk_kernel", "infinite_kernel", "kernel_evolution"}
    # outputs are right
    results = tmp_path / "results" / "tiny"
    with open(results / "scaling" / "exponents.csv") as f:
        methods = {r["method"] for r in csv.DictReader(f)}
    assert methods == {"network", "network_best", "linearized", "entk_init", "entk_after", "infinite_ntk",
                       "infinite_nngp"}
    for fig in ("data_scaling", "after_kernel", "kernel_evolution", "width_scaling", "theory"):
        assert (results / "figures" / f"{fig}.pdf").stat().st_size > 1000
    # and a second run has nothing to do
    res = on_slurm("-n", cwd=tmp_path)
    assert res.returncode == 0 and "Nothing to be done" in res.stdout + res.stderr


def _long_training(config):
    """One network long enough to be requeued mid-training, checkpointed every 10 epochs."""
    smaller(config)
    config["train"].update(steps=None, epochs=150, checkpoint_epochs=list(range(10, 150, 10)))


def test_requeued_training_job_resumes_from_its_last_checkpoint(cluster, tmp_path):
    import time
    copy_repo(tmp_path / "repo")
    _tiny_with(tmp_path, _long_training)
    target = "results/tiny/train/w16/s0/n32/metrics.csv"
    cmd = ["timeout", "600", sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "repo" / "Snakefile"),
           "--cores", "2", "--profile", str(tmp_path / "repo" / "profiles" / "slurm"),
           "--configfile", str(tmp_path / "changed.yaml"), *CLUSTER, "--slurm-requeue", target]
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "repo" / "src")}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    ckpts = tmp_path / "results" / "tiny" / "train" / "w16" / "s0" / "n32" / "checkpoints"
    t0, job = time.time(), None
    while time.time() - t0 < 300:  # wait for a mid-training checkpoint, then have SLURM requeue the job
        time.sleep(0.3)
        if ckpts.exists() and any(p.name != "step00000000.ckpt" for p in ckpts.glob("step*.ckpt")):
            queue = subprocess.run(["squeue", "-h", "-t", "running", "-o", "%i %k"], capture_output=True,
                                   text=True, env=cluster.env).stdout.split("\n")
            job = next((line.split()[0] for line in queue if "rule_train_network" in line), None)
            if job:
                subprocess.run(["scontrol", "requeue", job], check=True, env=cluster.env)
                # SLURM holds a requeued job back for 2 minutes; once it is pending, let it start at once
                for _ in range(120):
                    time.sleep(0.5)
                    state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                                           text=True, env=cluster.env).stdout.strip()
                    if state == "PENDING":
                        subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=cluster.env)
                        break
                break
    t_requeue = time.time() - t0
    out, _ = proc.communicate(timeout=600)
    print(f"requeued after {t_requeue:.0f}s, workflow done after {time.time() - t0:.0f}s")
    assert job, "the training job never reached a mid-training checkpoint"
    assert proc.returncode == 0, out[-4000:] + cluster.log()[-2000:]
    shown = subprocess.run(["scontrol", "-o", "show", "job", job], capture_output=True, text=True,
                           env=cluster.env).stdout
    assert "Restarts=1" in shown and "JobState=COMPLETED" in shown
    log = (tmp_path / "logs" / "tiny" / "train" / "w16_s0_n32.log").read_text()
    assert "resuming from" in log and "done:" in log
    # the same numbers as the same job run once, uninterrupted, without SLURM
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    res = snakemake(target, "--configfile", str(tmp_path / "changed.yaml"), cwd=fresh, repo=tmp_path / "repo")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / target).read_text() == (fresh / target).read_text()
