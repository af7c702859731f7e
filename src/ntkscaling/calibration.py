"""Calibration of the exponent intervals: simulated experiments with a known truth, and the coverage the
intervals of analysis/scaling.py reach on them at the seed counts users run.

A simulated experiment has two curves (a network and a kernel) with known mean exponents (TRUTH) over NS. Each
seed has its own slope and offset per curve (a new initialization and subset order), each (seed, n) its own
multiplicative noise, and each test point a mean-one difficulty factor exp(c_p z(n) - tau^2 z(n)^2 / 2) shared
by both curves and every seed (one test set), times exponential per-point noise (as squared errors have).
SCENARIOS sets how large the seed and test-point parts are. `coverage` counts how often the nominal intervals
of `bootstrap_exponents` and `paired_deficit` hold the truth, beside the percentile bootstrap over seeds and
test points that this project reported before (`percentile_deficit_interval`).

Run `python -m ntkscaling.calibration docs/results/calibration/coverage.csv` to write the table the README
quotes (about a minute). Torch-free.
"""
from __future__ import annotations

import sys

import numpy as np

from .analysis import scaling

NS = np.array([64, 128, 256, 512, 1024, 2048])
TRUTH = {"net": 0.5, "kernel": 0.3}
SCENARIOS = {  # per-seed slope sd, test-point difficulty sd (tau)
    "seed-dominated": {"slope_sd": 0.1, "tau": 0.05},
    "mixed": {"slope_sd": 0.05, "tau": 0.3},
    "test-dominated": {"slope_sd": 0.01, "tau": 0.3},
    "point-noise-dominated": {"slope_sd": 0.01, "tau": 0.02},  # each run's own per-point noise: the seed term
}
COVERAGE_COLUMNS = ("scenario", "seeds", "trials", "confidence", "alpha_coverage", "deficit_coverage",
                    "deficit_width_median", "reference_trials", "percentile_deficit_coverage")


def simulated_experiment(rng, seeds: int, points: int = 200, slope_sd: float = 0.05, tau: float = 0.3,
                         offset_sd: float = 0.2, noise_sd: float = 0.04) -> dict:
    """{curve: per-point values (len(NS), seeds, points)} of one simulated experiment (module docstring)."""
    z = (np.log(NS) - np.log(NS).mean()) / np.log(NS).std()
    c = rng.normal(0, tau, points)
    shared = np.exp(c[None, :] * z[:, None] - tau ** 2 * z[:, None] ** 2 / 2)  # (n, p), mean one over points
    out = {}
    for key, alpha in TRUTH.items():
        slope = alpha + rng.normal(0, slope_sd, seeds)
        offset = np.exp(rng.normal(0, offset_sd, seeds))
        mean = offset * NS[:, None] ** -slope * np.exp(rng.normal(0, noise_sd, (len(NS), seeds)))
        out[key] = mean[:, :, None] * shared[:, None, :] * rng.exponential(1.0, (len(NS), seeds, points))
    return out


def percentile_deficit_interval(curves: dict, rng, n_boot: int = 200, confidence: float = 0.95):
    """The interval this project reported before: a percentile bootstrap over seeds and test points of the
    difference of the fits to the mean curves."""
    S, P = curves["net"].shape[1:]
    diffs = []
    for _ in range(n_boot):
        ws = np.bincount(rng.integers(0, S, S), minlength=S) / S
        wp = np.bincount(rng.integers(0, P, P), minlength=P) / P
        a = {key: scaling.fit_power_law(NS, (v @ wp) @ ws)["alpha"] for key, v in curves.items()}
        diffs.append(a["net"] - a["kernel"])
    return tuple(np.quantile(diffs, [(1 - confidence) / 2, (1 + confidence) / 2]))


def coverage(scenario: str, seeds: int, trials: int = 200, confidence: float = 0.95, n_boot: int = 200,
             reference_trials: int = 0, seed: int = 0) -> dict:
    """How often the nominal intervals hold the truth over `trials` simulated experiments of a scenario (and
    the old percentile interval's coverage of the deficit over the first `reference_trials`)."""
    rng = np.random.default_rng([seed, seeds, list(SCENARIOS).index(scenario)])
    truth = TRUTH["net"] - TRUTH["kernel"]
    hits_alpha = hits_deficit = hits_old = 0
    widths = []
    for trial in range(trials):
        curves = simulated_experiment(rng, seeds, **SCENARIOS[scenario])
        fits = scaling.bootstrap_exponents(NS, curves, n_boot=n_boot, confidence=confidence, seed=trial)
        hits_alpha += fits["net"]["alpha_lo"] <= TRUTH["net"] <= fits["net"]["alpha_hi"]
        d = scaling.paired_deficit(fits["net"], fits["kernel"], confidence)
        hits_deficit += d["deficit_lo"] <= truth <= d["deficit_hi"]
        widths.append(d["deficit_hi"] - d["deficit_lo"])
        if trial < reference_trials:
            lo, hi = percentile_deficit_interval(curves, rng, n_boot, confidence)
            hits_old += lo <= truth <= hi
    return {"scenario": scenario, "seeds": seeds, "trials": trials, "confidence": confidence,
            "alpha_coverage": hits_alpha / trials, "deficit_coverage": hits_deficit / trials,
            "deficit_width_median": float(np.median(widths)), "reference_trials": reference_trials,
            "percentile_deficit_coverage": hits_old / reference_trials if reference_trials else np.nan}


def main(argv=None):
    import argparse

    from .files import write_rows
    parser = argparse.ArgumentParser(prog="python -m ntkscaling.calibration", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the coverage table to write (CSV)")
    parser.add_argument("--trials", type=int, default=400, help="simulated experiments per scenario and seed "
                        "count (default 400; a quarter of them also for the percentile bootstrap)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.trials < 4:
        parser.error(f"--trials {args.trials}: expected at least 4")
    rows = [coverage(name, seeds, trials=args.trials, reference_trials=args.trials // 4)
            for name in SCENARIOS for seeds in (2, 3, 5)]
    for r in rows:
        print(f"{r['scenario']:15s} seeds {r['seeds']}: exponent {r['alpha_coverage']:.3f}, deficit "
              f"{r['deficit_coverage']:.3f} (median width {r['deficit_width_median']:.3f}); percentile bootstrap "
              f"{r['percentile_deficit_coverage']:.3f}")
    write_rows(args.out, rows, columns=COVERAGE_COLUMNS)


if __name__ == "__main__":
    main()
