"""Sweeps: grid expansion, the points' configs, training outcomes and the sweep table (ntkscaling.sweep)."""
import math

import pandas as pd
import pytest
import yaml

from conftest import ROOT
from ntkscaling.pipeline import config, sweep

TINY = ROOT / "tests" / "configs" / "tiny.yaml"


def _tiny(**grid):
    cfg = yaml.safe_load(TINY.read_text())
    cfg["sweep"] = {key.replace("__", "."): values for key, values in grid.items()}
    return config.validate(cfg, check_data=False)


def test_grid_is_every_combination_in_key_order():
    cfg = _tiny(train__lr=[0.5, 5.0, 15.0], train__optimizer=["sgd", "adam"])
    points = sweep.grid_points(cfg)
    assert len(points) == 6 and points[0] == {"train.lr": 0.5, "train.optimizer": "sgd"}
    assert points[1] == {"train.lr": 0.5, "train.optimizer": "adam"} and points[-1]["train.lr"] == 15.0
    assert [sweep.point_name(p) for p in points[:2]] == ["lr=0.5__optimizer=sgd", "lr=0.5__optimizer=adam"]
    assert sweep.grid_points(_tiny()) == []  # no sweep: no points (and no recursion in the checks)


def test_point_config_changes_only_the_swept_keys_and_records_divergence():
    cfg = _tiny(train__lr=[0.5, 5.0], model__parameterization=["ntk", "standard"])
    point = sweep.grid_points(cfg)[3]
    sub = sweep.point_config(cfg, point)
    assert sub["train"]["lr"] == 5.0 and sub["model"]["parameterization"] == "standard"
    assert sub["train"]["on_divergence"] == "record" and sub["sweep"] == {}
    # the config check sorts mappings: model.parameterization comes first, then train.lr
    assert sub["_sweep"] == {"name": "parameterization=standard__lr=5", "shares_init": False}
    assert cfg["train"]["lr"] == 1.0 and cfg["train"]["on_divergence"] == "fail"  # the base is untouched
    changed = {(s, k) for s in sub if isinstance(sub[s], dict) for k in sub[s] if sub[s][k] != cfg.get(s, {}).get(k)}
    assert changed == {("train", "lr"), ("model", "parameterization"), ("train", "on_divergence"),
                       ("_sweep", "name"), ("_sweep", "shares_init")}
    assert sweep.shares_init({"train.lr": 1.0, "train.batch_size": 8})


def test_output_scale_points_share_the_initial_networks():
    # the lazy-training scale changes how a network trains, not the network it starts from nor its eNTK
    cfg = _tiny(model__output_scale=[0.1, 100.0])
    points = sweep.grid_points(cfg)
    assert [sweep.point_name(p) for p in points] == ["output_scale=0.1", "output_scale=100"]
    sub = sweep.point_config(cfg, points[1])
    assert sub["model"]["output_scale"] == 100.0 and sub["_sweep"]["shares_init"] is True
    assert not sweep.shares_init({"model.output_scale": 10.0, "model.parameterization": "standard"})
    uncentred = yaml.safe_load(TINY.read_text())
    uncentred["model"]["center"] = False
    uncentred["sweep"] = {"model.output_scale": [1.0, 30.0]}
    with pytest.raises(config.ConfigError, match=r"sweep point output_scale=30: config key 'model.output_scale'"):
        config.validate(uncentred, check_data=False)


def test_every_point_is_checked_before_any_job():
    with pytest.raises(config.ConfigError, match=r"sweep point lr=-1__optimizer=adam: config key 'train.lr': "
                                                 r"got -1.0; expected a number > 0"):
        _tiny(train__lr=[1.0, -1.0], train__optimizer=["sgd", "adam"])
    with pytest.raises(config.ConfigError, match=r"config key 'sweep': got 'train.log_checkpoints'; expected one "
                                                 r"of \['train.lr'"):
        _tiny(train__log_checkpoints=[1, 2])
    with pytest.raises(config.ConfigError, match=r"'sweep.train.lr': got \[\]; expected a list with at least 1"):
        _tiny(train__lr=[])


def _rows(n, steps, diverged_at=None, width=16, seed=0):
    ident = {"dataset": "digits", "arch": "mlp", "width": str(width), "seed": str(seed), "method": "network",
             "kind": "", "ridge": "", "n": str(n), "k": str(n), "epoch": "0"}
    rows = [{**ident, "step": str(s), "metric": m, "value": str(v)}
            for s in steps for m, v in (("train_loss", 1.0 / (s + 1)), ("test_error", 0.5 / (s + 1)),
                                        ("test_mse", 0.1 / (s + 1)))]
    rows += [{**ident, "method": "network_best", "step": str(steps[-1]), "metric": "test_error", "value": "0.9"}]
    if diverged_at is not None:
        rows.append({**ident, "step": str(diverged_at), "metric": sweep.DIVERGED, "value": "1.0"})
    return rows


def test_training_outcome_and_point_status():
    ok = sweep.training_outcome(_rows(64, [0, 10, 40]))
    assert ok == {"width": "16", "seed": 0, "n": 64, "diverged": 0, "steps": 40, "train_loss": 1 / 41,
                  "test_error": 0.5 / 41, "test_mse": 0.1 / 41}
    bad = sweep.training_outcome(_rows(32, [0, 10], diverged_at=17))
    assert bad["diverged"] == 1 and bad["steps"] == 10 and math.isnan(bad["train_loss"])
    status = sweep.point_status([ok, sweep.training_outcome(_rows(64, [0, 20], seed=1)), bad])
    assert status["status"] == "diverged" and status["networks"] == 3 and status["networks_diverged"] == 1
    assert status["outcome_n"] == 64 and status["final_train_loss"] == pytest.approx((1 / 41 + 1 / 21) / 2)
    assert sweep.point_status([ok])["status"] == "ok"


def test_sweep_table_keeps_every_point_and_reports_diverged_ones_without_exponents():
    points = [{"train.lr": 1.0}, {"train.lr": 1000.0}]
    summary = pd.DataFrame({"method": ["network_best", "entk_init"], "kind": ["", "mean"], "k": [None, 0.0],
                            "width": ["16", "16"], "ridge": ["", "tuned"], "metric": ["test_mse"] * 2,
                            "alpha": [0.6, 0.4], "alpha_lo": [0.5, 0.3], "alpha_hi": [0.7, 0.5],
                            "alpha_deficit": [0.0, 0.2], "deficit_lo": [0.0, 0.1], "deficit_hi": [0.0, 0.3]})
    ok = sweep.point_status([sweep.training_outcome(_rows(64, [0, 40]))])
    bad = sweep.point_status([sweep.training_outcome(_rows(64, [0], diverged_at=3))])
    table = sweep.sweep_table(points, [ok, bad], [summary, None])
    assert list(table.columns[:2]) == ["point", "train.lr"]
    assert list(table["point"]) == ["lr=1", "lr=1", "lr=1000"] and list(table["status"]) == ["ok", "ok", "diverged"]
    assert table.loc[1, "alpha"] == 0.4 and table.loc[1, "deficit_hi"] == 0.3
    assert math.isnan(table.loc[2, "alpha"]) and table.loc[2, "networks_diverged"] == 1
