"""./run.sh's lock rule: one writer per checkout. A lock held by a live Snakemake (however it was started) is
never lifted; a stale one (the run was killed) is. Run against a stand-in Snakemake, in a copy of run.sh."""
import hashlib
import shutil
import subprocess
import sys
import time

import pytest

from conftest import ROOT

FAKE_SNAKEMAKE = """#!/usr/bin/env bash
echo "called: $*" >> "$(dirname "$0")/calls.log"
if [ "${1:-}" = --hold ]; then sleep 60; fi
"""


@pytest.fixture
def checkout(tmp_path):
    repo, venv = tmp_path / "repo", tmp_path / "venv"
    (repo / "envs").mkdir(parents=True)
    for name in ("run.sh", "envs/setup.sh", "envs/ntkscaling.yaml", "pyproject.toml"):
        shutil.copy2(ROOT / name, repo / name)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "snakemake").write_text(FAKE_SNAKEMAKE)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for exe in ("snakemake", "python"):
        (venv / "bin" / exe).chmod(0o755)
    pins = b"".join((repo / f).read_bytes() for f in ("envs/ntkscaling.yaml", "pyproject.toml"))
    (venv / ".ntkscaling-installed").write_text(hashlib.sha256(pins).hexdigest() + "\n")  # setup.sh: current
    (repo / ".snakemake" / "locks").mkdir(parents=True)
    (repo / ".snakemake" / "locks" / "0.input.lock").write_text("results/x\n")
    return repo, venv


def _run_sh(repo, venv, script="./run.sh"):
    env = {"PATH": "/usr/bin:/bin", "NTKSCALING_VENV": str(venv), "HOME": str(repo)}
    return subprocess.run([script, "--cores", "1"], cwd=repo, env=env, capture_output=True, text=True,
                          timeout=60)


def _calls(venv):
    log = venv / "bin" / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def _second_checkout_sharing_results(repo):
    """Another checkout whose results/ is a link to this one's (shared scratch)."""
    other = repo.parent / "other"
    shutil.copytree(repo, other, symlinks=True)
    (repo / "results").mkdir()
    (other / "results").symlink_to(repo / "results")
    return other


# (how the live Snakemake was started, where ./run.sh is then run from)
LIVE = [("snakemake", "checkout"), ("python -m snakemake", "checkout"), ("snakemake", "a link to the checkout"),
        ("snakemake", "a checkout sharing its results/")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="live Snakemakes are found through /proc")
@pytest.mark.parametrize("started,where", LIVE, ids=[f"{a} / {b}" for a, b in LIVE])
def test_a_live_snakemake_keeps_its_lock(checkout, started, where):
    repo, venv = checkout
    if started == "snakemake":
        holder = subprocess.Popen([str(venv / "bin" / "snakemake"), "--hold"], cwd=repo)
    else:  # a Snakemake run as a module
        package = venv / "modules" / "snakemake"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "__main__.py").write_text(f"import time\nwith open({str(venv / 'bin' / 'calls.log')!r}, 'a') as f:\n"
                                             f"    f.write('called: --hold\\n')\ntime.sleep(60)\n")
        holder = subprocess.Popen([sys.executable, "-m", "snakemake", "--hold"], cwd=repo,
                                  env={"PYTHONPATH": str(venv / "modules"), "PATH": "/usr/bin:/bin"})
    run_in, script = repo, "./run.sh"
    if where == "a link to the checkout":
        (repo.parent / "link").symlink_to(repo)
        run_in, script = repo.parent, "link/run.sh"
    elif where == "a checkout sharing its results/":
        run_in = _second_checkout_sharing_results(repo)
    try:
        t0 = time.time()
        while not _calls(venv) and time.time() - t0 < 10:
            time.sleep(0.05)
        res = _run_sh(run_in, venv, script)
    finally:
        holder.kill()
        holder.wait()
    assert res.returncode == 1, res.stderr
    assert f"a Snakemake (process {holder.pid}) is running in " in res.stderr
    assert _calls(venv) == ["called: --hold"]  # neither --unlock nor a second run
    assert (repo / ".snakemake" / "locks" / "0.input.lock").exists()


def test_a_stale_lock_is_lifted_and_the_run_goes_on(checkout):
    repo, venv = checkout
    res = _run_sh(repo, venv)
    assert res.returncode == 0, res.stderr
    assert "lifting the lock left by an interrupted run" in res.stderr
    assert _calls(venv) == ["called: --unlock --cores 1 --cores 1", "called: --cores all --cores 1"]
