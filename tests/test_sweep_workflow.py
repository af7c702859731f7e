"""A robustness sweep end to end (tiny config, one width, learning rates 1 and 1000): the grid's sub-runs,
the jobs they share with the base run, a diverging point reported and left out, and adding a grid value."""
import csv
import math

import pytest
import yaml

from conftest import ROOT
from test_workflow import copy_repo, planned, snakemake

pytestmark = pytest.mark.workflow
CONFIGS = [ROOT / "tests" / "configs" / "tiny.yaml", ROOT / "tests" / "configs" / "tiny-sweep.yaml"]
SHARED = {"prepare_data": 1, "subset_order": 1, "init_checkpoint": 1, "entk_kernel": 1, "infinite_kernel": 1,
          "regress_kernel": 1 + 2}  # entk_init; NTK and NNGP


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def in_sweep(work, *args, extra=()):
    configs = [str(c) for c in CONFIGS] + [str(c) for c in extra]
    return snakemake("--configfile", *configs, *args, cwd=work, repo=work / "repo")


@pytest.fixture(scope="module")
def sweep_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("sweep")
    copy_repo(work / "repo")
    plan = planned(in_sweep(work, "-n"))
    res = in_sweep(work)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return work, plan, res.stdout + res.stderr


def test_grid_expands_into_sub_runs_that_share_the_base_runs_jobs(sweep_run):
    _, plan, _ = sweep_run
    # before training, the plan holds the shared jobs once and every point's networks (3 n); what else of a
    # point runs waits for its training outcome (a Snakemake checkpoint)
    assert plan == {**SHARED, "sweep_lr_1_train_network": 3, "sweep_lr_1000_train_network": 3, "sweep_outcome": 2,
                    "all": 1}


def test_sweep_outputs_and_shared_jobs_run_once(sweep_run):
    work, _, log = sweep_run
    base = work / "results" / "tiny"
    for rule, count in SHARED.items():  # the base run's rules ran these, once
        assert log.count(f"rule {rule}:") == count, rule
    ok = base / "sweep" / "lr=1"
    assert not (ok / "kernels" / "entk_init").exists() and not (ok / "init").exists() and not (ok / "data").exists()
    assert (base / "kernels" / "entk_init" / "w16" / "s0" / "mean.npy").exists()
    for name in ("summary/exponents.csv", "scaling/metrics.csv", "figures/data_scaling.png"):
        assert (ok / name).stat().st_size > 100, name
    # the point's tables hold the shared kernels' regressions (read from the base run) beside its own
    methods = {r["method"] for r in _csv(ok / "summary" / "exponents.csv")}
    assert {"network_best", "entk_init", "entk_after", "infinite_ntk"} <= methods
    assert (work / "results" / "tiny" / "sweep" / "sweep.png").stat().st_size > 1000


def test_diverging_point_is_reported_and_left_out(sweep_run):
    work, _, log = sweep_run
    sweep_dir = work / "results" / "tiny" / "sweep"
    outcome = _csv(sweep_dir / "lr=1000" / "outcome.csv")
    assert len(outcome) == 3 and any(r["diverged"] == "1" for r in outcome)
    assert all(math.isnan(float(r["train_loss"])) for r in outcome if r["diverged"] == "1")
    assert not (sweep_dir / "lr=1000" / "summary").exists() and not (sweep_dir / "lr=1000" / "kernels").exists()
    train_logs = (work / "logs" / "tiny" / "sweep" / "lr=1000" / "train").glob("*.log")
    assert any("recorded, not failed (train.on_divergence: record): training diverged" in p.read_text()
               for p in train_logs)
    table = _csv(sweep_dir / "summary.csv")
    diverged = [r for r in table if r["point"] == "lr=1000"]
    assert len(diverged) == 1 and diverged[0]["status"] == "diverged" and diverged[0]["alpha"] == ""
    assert int(diverged[0]["networks_diverged"]) >= 1 and diverged[0]["train.lr"] == "1000.0"
    trained = [r for r in table if r["point"] == "lr=1"]
    assert trained and all(r["status"] == "ok" and r["networks_diverged"] == "0" for r in trained)
    assert all(float(r["alpha_lo"]) <= float(r["alpha"]) <= float(r["alpha_hi"]) for r in trained)
    entk = [r for r in trained if r["method"] == "entk_init" and r["metric"] == "test_mse"]
    point = [r for r in _csv(sweep_dir / "lr=1" / "summary" / "exponents.csv")
             if r["method"] == "entk_init" and r["metric"] == "test_mse"]
    assert len(entk) == 1 and float(entk[0]["alpha"]) == float(point[0]["alpha"])


def test_adding_a_grid_value_runs_only_that_point(sweep_run, tmp_path):
    work, _, _ = sweep_run
    assert planned(in_sweep(work, "-n")) == {}  # a finished sweep: nothing to do
    more = tmp_path / "more.yaml"
    more.write_text(yaml.safe_dump({"sweep": {"train.lr": [1.0, 1000.0, 0.5]}}))
    # the new point's networks and outcome; nothing of the other points, no shared job (the new point's
    # kernels, the sweep table and figure follow once its outcome is known)
    assert planned(in_sweep(work, "-n", extra=[more])) == {"sweep_lr_0_5_train_network": 3, "sweep_outcome": 1,
                                                           "all": 1}


def test_an_output_scale_point_shares_the_initial_networks_and_their_kernels(sweep_run, tmp_path):
    work, _, _ = sweep_run
    lazy = tmp_path / "lazy.yaml"
    lazy.write_text(yaml.safe_dump({"sweep": [{"model.output_scale": [30.0]}]}))  # a list replaces the lr grid
    # the lazy point trains its own networks; the initial networks, their eNTKs and regressions and the
    # infinite kernels are the base run's, already made
    assert planned(in_sweep(work, "-n", extra=[lazy])) == {"sweep_output_scale_30_train_network": 3,
                                                           "sweep_outcome": 1, "all": 1}


def test_publish_copies_a_finished_sweeps_tables_and_figures_with_their_hashes(sweep_run, tmp_path):
    import hashlib
    import json

    from ntkscaling import publish
    work, _, _ = sweep_run
    dest = tmp_path / "docs" / "results" / "tiny"
    written = publish.publish(work / "results" / "tiny", dest)
    names = {str(p.relative_to(dest)) for p in written}
    assert {"sweep/summary.csv", "sweep/sweep.png", "sweep/lr=1/summary/exponents.csv",
            "sweep/lr=1/figures/data_scaling.png"} <= names
    assert not any(name.startswith("sweep/lr=1000/") for name in names)  # the diverged point has none
    prov = json.loads((dest / "provenance.json").read_text())
    assert prov["files"] == {name: hashlib.sha256((dest / name).read_bytes()).hexdigest() for name in names}
    assert prov["config"]["run_name"] == "tiny"
    metrics = {r["metric"] for r in _csv(dest / "sweep" / "lr=1" / "scaling" / "metrics.csv")}
    assert metrics == {"test_error", "test_mse"}
    (work / "results" / "tiny" / "sweep" / "sweep.png").rename(tmp_path / "moved.png")
    try:
        with pytest.raises(publish.PublishError, match="not finished; missing sweep/sweep.png"):
            publish.publish(work / "results" / "tiny", tmp_path / "again")
        assert not (tmp_path / "again").exists()
    finally:
        (tmp_path / "moved.png").rename(work / "results" / "tiny" / "sweep" / "sweep.png")
