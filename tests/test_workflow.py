"""The Snakemake workflow end to end on the tiny config, plus dry-run, lint and bad-config checks."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

pytestmark = pytest.mark.workflow
TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def snakemake(*args, cwd, timeout=600):
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("tiny")
    res = snakemake("--configfile", str(TINY), cwd=work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work


def test_tiny_run_outputs(tiny_run):
    out = tiny_run / "results" / "tiny"
    with open(out / "scaling" / "exponents.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["metric"] for r in rows} == {"test_error", "test_mse"}
    assert {(r["method"], r["width"], r["kind"], r["ridge"]) for r in rows} == {
        ("network", "32", "", ""), ("entk_init", "32", "mean", "0.001"),
        ("infinite_ntk", "inf", "mean", "0.001"), ("infinite_nngp", "inf", "mean", "0.001")}
    for r in rows:
        assert float(r["alpha_lo"]) <= float(r["alpha"]) <= float(r["alpha_hi"])
        assert float(r["alpha"]) > 0  # more data helps on digits
    kernel = np.load(out / "kernels" / "entk_init" / "w32" / "s0" / "mean.npy")
    assert kernel.shape == (64 + 100, 64 + 100)
    np.testing.assert_allclose(kernel, kernel.T, rtol=1e-5, atol=1e-6)
    ntk_inf = np.load(out / "kernels" / "infinite_ntk" / "winf" / "s1" / "mean.npy")
    assert ntk_inf.shape == kernel.shape and ntk_inf.dtype == np.float64
    with open(out / "scaling" / "metrics.csv") as f:
        metrics = list(csv.DictReader(f))
    assert {(r["seed"], r["n"]) for r in metrics} == {(s, n) for s in "01" for n in ("16", "32", "64")}
    for ext in ("pdf", "png"):
        assert (out / "figures" / f"data_scaling.{ext}").stat().st_size > 1000
    assert (tiny_run / "logs" / "tiny" / "train" / "w32_s0_n16.log").read_text().count("done:") == 1


def test_second_run_has_nothing_to_do(tiny_run):
    res = snakemake("--configfile", str(TINY), "-n", cwd=tiny_run)
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_dry_run_and_lint_of_default_config(tmp_path):
    res = snakemake("-n", cwd=tmp_path)  # a fresh directory: every job is planned
    assert res.returncode == 0, res.stderr[-2000:]
    for rule in ("prepare_data", "train_network", "entk_kernel", "infinite_kernel", "regress_kernel",
                 "fit_exponents", "figure_data_scaling"):
        assert rule in res.stdout
    res = snakemake("--lint", cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: -0.5\n")
    res = snakemake("--configfile", str(bad), cwd=tmp_path)
    assert res.returncode != 0
    assert "'train.lr': got -0.5; expected a number > 0" in res.stderr + res.stdout
    assert not (tmp_path / "results").exists()
