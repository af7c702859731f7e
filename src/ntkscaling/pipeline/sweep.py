"""Robustness sweeps: the same run at every point of a grid over training and model settings.

A config's `sweep` section maps dotted keys (training settings, the parameterization and the lazy-training
output scale: the schema's `sweep` lists them) to lists of values; every combination is a grid point (`grid_points`) run as a sub-run
of its own under results/<run_name>/sweep/<point>/ (`point_config`): the base config with the point's
values, whose training records a divergence instead of failing. A point shares with the base run every job
it does not change: the prepared data and subsets and the infinite kernels always, the initial networks and
their eNTKs (and their regressions) when it changes only training settings (`shares_init`).

Then, per point, the training outcome of its networks (`training_outcome`: diverged or not, final training
loss, test error and MSE); points with a diverged network are reported and left out of the exponents, never
a failure of the whole run. `sweep_table` joins every point's summary/exponents.csv and outcome into one tidy
table. Torch-free: the workflow expands the grid while it builds the DAG.
"""
from __future__ import annotations

import copy
import itertools
import re

import numpy as np

from .. import files

DIVERGED = files.DIVERGED


def _grids(config: dict) -> list[dict]:
    """The sweep as a list of grids: one mapping, or a list of them (e.g. each optimizer with its own rates)."""
    sweep = config.get("sweep") or {}
    return [grid for grid in ([sweep] if isinstance(sweep, dict) else sweep) if grid]


def swept_keys(config: dict) -> list[str]:
    """The dotted keys of the config's sweep (sorted by the config check), over all its grids."""
    return list(dict.fromkeys(key for grid in _grids(config) for key in grid))


def grid_points(config: dict) -> list[dict]:
    """Every combination of each grid's values, as {dotted key: value} over all swept keys (a key a grid does
    not sweep keeps the base config's value), grid by grid, the first key (keys are sorted by the config
    check) varying slowest; a point two grids share comes once; none without a sweep."""
    keys = swept_keys(config)
    points = []
    for grid in _grids(config):
        for values in itertools.product(*grid.values()):
            point = {key: config[section][leaf] for key in keys for section, leaf in [_split(key)]}
            point |= dict(zip(grid, values))
            if point not in points:
                points.append(point)
    return points


def _split(key: str) -> tuple[str, str]:
    """A dotted sweep key as (config section, key in it)."""
    section, leaf = key.split(".")
    return section, leaf


def _value_text(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, float):
        return format(value, "g")
    return str(value)


def point_name(point: dict) -> str:
    """The folder of a grid point: `<leaf key>=<value>` joined by `__` (lr=0.5__optimizer=adam)."""
    leaves = [k.split(".")[-1] for k in point]
    names = leaves if len(set(leaves)) == len(leaves) else list(point)  # dotted keys where leaves collide
    return "__".join(f"{name}={_value_text(v)}" for name, v in zip(names, point.values()))


def module_name(point: dict) -> str:
    """The Snakemake module of a grid point, the prefix of its rules' names (an identifier)."""
    return "sweep_" + re.sub(r"\W", "_", point_name(point))


def names_pattern(points: list[dict]) -> str:
    """A regular expression matching exactly the grid points' names (the {point} wildcard)."""
    return "|".join(re.escape(point_name(p)) for p in points) or "no sweep"


# model keys that change how a network trains, not the network it starts from (nor its eNTKs)
TRAINING_MODEL_KEYS = ("model.output_scale",)


def shares_init(point: dict) -> bool:
    """A point that changes only training settings (train.*, model.output_scale) starts from the base run's
    initial networks."""
    return not any(k.startswith("model.") and k not in TRAINING_MODEL_KEYS for k in point)


def point_config(config: dict, point: dict) -> dict:
    """The config of one grid point's sub-run: the base config with the point's values, no sweep of its own,
    training that records divergence, and (key `_sweep`, read by the workflow: results/<run_name>/sweep/
    <name>) the point's name and whether it shares the base run's initial networks."""
    sub = copy.deepcopy(config)
    for key, value in point.items():
        section, leaf = _split(key)
        sub[section][leaf] = value
    sub["sweep"] = {}
    sub["train"]["on_divergence"] = "record"
    sub["_sweep"] = {"name": point_name(point), "shares_init": shares_init(point)}
    return sub


OUTCOME_COLUMNS = ("width", "seed", "n", "diverged", "steps", "train_loss", "test_error", "test_mse")


def training_outcome(rows) -> dict:
    """One network's outcome from its training metrics (tidy rows as dicts, method 'network'): diverged
    (1/0), the last step evaluated, and the training loss, test error and test MSE there (NaN if diverged)."""
    rows = [r for r in rows if r["method"] == "network"]
    ident = rows[0]
    diverged = any(r["metric"] == DIVERGED and float(r["value"]) > 0 for r in rows)
    evaluated = [r for r in rows if r["metric"] != DIVERGED]
    last = max((int(r["step"]) for r in evaluated), default=0)
    at_last = {r["metric"]: float(r["value"]) for r in evaluated if int(r["step"]) == last}
    final = {m: float("nan") if diverged else at_last.get(m, float("nan"))
             for m in ("train_loss", "test_error", "test_mse")}
    return {"width": ident["width"], "seed": int(ident["seed"]), "n": int(ident["n"]), "diverged": int(diverged),
            "steps": last, **final}


def point_status(outcomes) -> dict:
    """A point's training outcome in a few numbers: how many networks it trained and how many diverged,
    and the mean final training loss and test error of the networks on the largest n."""
    diverged = sum(int(o["diverged"]) for o in outcomes)
    n_max = max(int(o["n"]) for o in outcomes)
    largest = [o for o in outcomes if int(o["n"]) == n_max and not int(o["diverged"])]
    mean = (lambda key: float(np.mean([float(o[key]) for o in largest])) if largest else float("nan"))
    return {"status": DIVERGED if diverged else "ok", "networks": len(outcomes), "networks_diverged": diverged,
            "final_train_loss": mean("train_loss"), "final_test_error": mean("test_error"), "outcome_n": n_max}


SWEEP_KEEP = ("method", "kind", "k", "width", "ridge", "metric", "alpha", "alpha_lo", "alpha_hi", "n_min", "network_method",
              "network_alpha", "alpha_deficit", "deficit_lo", "deficit_hi", "n_seeds", "untrained_seeds",
              "n_min_upper", "alpha_deficit_upper", "deficit_upper_lo", "deficit_upper_hi",  # where in n it lives
              "init_gain", "init_gain_lo", "init_gain_hi")  # after-kernels over the eNTK at init, same range


def sweep_table(points: list[dict], statuses: list[dict], summaries: list):
    """The sweep's answer: one row per (grid point, method row of its summary/exponents.csv) with the point's
    settings (a column per swept key) and training outcome; a diverged point gets one row with its outcome
    and no exponents (status 'diverged').

    Args:
        points: the grid points ({dotted key: value}); statuses: `point_status` of each; summaries: each
            point's summary table (scaling.read_exponents of summary/exponents.csv), None for a diverged point.
    """
    import pandas as pd
    frames = []
    for point, status, summary in zip(points, statuses, summaries):
        settings = {"point": point_name(point), **point, **status}
        if summary is None or status["status"] == DIVERGED:
            frames.append(pd.DataFrame([settings]))
            continue
        part = summary[[c for c in SWEEP_KEEP if c in summary.columns]].copy()
        for key, value in reversed(settings.items()):
            part.insert(0, key, [value] * len(part))
        frames.append(part)
    table = pd.concat(frames, ignore_index=True)
    first = ["point", *points[0].keys()] if points else ["point"]
    return table[first + [c for c in table.columns if c not in first]]
