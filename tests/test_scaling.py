"""Power-law fits recover known exponents from synthetic data; intervals cover the truth."""
import numpy as np
import pytest

from ntkscaling import calibration
from ntkscaling.analysis import scaling


def test_exact_power_law():
    n = np.array([16, 32, 64, 128, 256])
    fit = scaling.fit_power_law(n, 3.0 * n ** -0.7)
    assert fit["alpha"] == pytest.approx(0.7, abs=1e-12)
    assert fit["a"] == pytest.approx(3.0, rel=1e-10)


def test_power_law_with_floor():
    n = np.geomspace(8, 8192, 11)
    fit = scaling.fit_power_law(n, 2.0 * n ** -0.5 + 0.01, floor=True)
    assert fit["alpha"] == pytest.approx(0.5, abs=1e-4)
    assert fit["c"] == pytest.approx(0.01, rel=1e-3)
    plain = scaling.fit_power_law(n, 2.0 * n ** -0.5 + 0.01)
    assert plain["alpha"] < 0.48  # ignoring the floor biases the exponent down


def test_bootstrap_recovers_exponent_from_noisy_per_point_values():
    rng = np.random.default_rng(0)
    ns = np.array([32, 64, 128, 256, 512, 1024])
    true_alpha = 0.6
    mean = 0.8 * ns ** -true_alpha
    # per-point squared errors: exponential noise around the mean, seed-level multiplicative noise
    seeds, points = 4, 400
    seed_noise = np.exp(rng.normal(0, 0.05, (len(ns), seeds, 1)))
    values = rng.exponential(1.0, (len(ns), seeds, points)) * mean[:, None, None] * seed_noise
    res = scaling.bootstrap_exponent(ns, values, n_boot=300, seed=1)
    assert abs(res["alpha"] - true_alpha) < 0.05
    assert res["alpha_lo"] < true_alpha < res["alpha_hi"]
    assert res["alpha_hi"] - res["alpha_lo"] < 0.2


def test_bootstrap_interval_coverage():
    # over repeated synthetic experiments, a 90% interval covers the true exponent most of the time
    rng = np.random.default_rng(2)
    ns = np.array([16, 32, 64, 128, 256])
    hits = 0
    for trial in range(40):
        mean = ns ** -0.5
        values = rng.exponential(1.0, (len(ns), 3, 200)) * mean[:, None, None]
        res = scaling.bootstrap_exponent(ns, values, n_boot=200, confidence=0.9, seed=trial)
        hits += res["alpha_lo"] <= 0.5 <= res["alpha_hi"]
    assert hits >= 30


def test_fit_range_and_zero_points():
    ns = np.array([8, 16, 32, 64, 128])
    vals = np.ones((5, 1, 10)) * (ns ** -1.0)[:, None, None]
    vals[0] = 5.0  # outside the fit range: must not matter
    res = scaling.bootstrap_exponent(ns, vals, n_boot=20, n_min=16)
    assert res["alpha"] == pytest.approx(1.0) and res["n_min"] == 16
    zero = scaling.fit_power_law([8, 16, 32], [0.1, 0.0, 0.025])  # zero error cannot be on a log scale
    assert zero["n_points"] == 2 and zero["alpha"] == pytest.approx(1.0)


def _curve(ns, alpha, seeds=3, points=400, noise=0.3, seed=0, a=1.0):
    """Per-point values of a known power law a n^-alpha with multiplicative noise, (len(ns), seeds, points)."""
    rng = np.random.default_rng(seed)
    ns = np.asarray(ns, dtype=float)
    return a * ns[:, None, None] ** -alpha * rng.lognormal(0, noise, (len(ns), seeds, points))


def test_paired_deficit_recovers_a_known_difference_with_a_narrower_interval_than_unpaired():
    ns = [32, 64, 128, 256, 512, 1024]
    shared = _curve(ns, 0.0, seed=1)  # noise common to both curves (the same test points and seeds)
    base = np.asarray(ns, dtype=float)[:, None, None]
    net, kernel = shared * base ** -0.6, shared * base ** -0.4 * 1.2
    fits = scaling.bootstrap_exponents(ns, {"net": net, "kernel": kernel}, n_boot=300)
    d = scaling.paired_deficit(fits["net"], fits["kernel"])
    assert d["alpha_deficit"] == pytest.approx(0.2, abs=1e-9)
    assert d["deficit_lo"] <= 0.2 <= d["deficit_hi"]
    # shared noise cancels in the difference: the paired interval is much narrower than either exponent's
    width = d["deficit_hi"] - d["deficit_lo"]
    assert width < 0.1 * (fits["net"]["alpha_hi"] - fits["net"]["alpha_lo"])
    # no difference: the interval holds 0
    same = scaling.bootstrap_exponents(ns, {"a": _curve(ns, 0.5, seed=2), "b": _curve(ns, 0.5, seed=3)}, n_boot=300)
    d0 = scaling.paired_deficit(same["a"], same["b"])
    assert d0["deficit_lo"] < 0 < d0["deficit_hi"]
    # the single-curve interface gives the same numbers as the shared one for that curve
    one = scaling.bootstrap_exponent(ns, net, n_boot=300)
    assert one["alpha_lo"] == pytest.approx(fits["net"]["alpha_lo"]) and "boot" not in one


def _write_pointwise(folder, values, ns, method, width, seed, k=0):
    """One seed's per-point file of a curve (values (len(ns), points)), as the workflow's jobs write them."""
    meta = {"dataset": "d", "arch": "mlp", "width": width, "seed": seed, "method": method, "k": k, "n": np.array(ns)}
    if method.startswith("network"):
        meta["k"] = np.array(ns)
    else:
        meta.update(kind="mean", ridge=np.array(["tuned"] * len(ns)))
    np.savez(folder / f"{method}_{seed}.npz", error=values, mse=values, **meta)


def test_fit_curves_pairs_every_kernel_with_the_reference_network(tmp_path):
    ns, seeds = [32, 64, 128, 256], [0, 1]
    truth = {("network_best", 64): 0.7, ("network", 64): 0.65, ("entk_init", 64): 0.4, ("infinite_ntk", "inf"): 0.3}
    for (method, width), alpha in truth.items():
        for seed in seeds:
            _write_pointwise(tmp_path, _curve(ns, alpha, seeds=1, points=100, noise=0.1, seed=seed)[:, 0], ns,
                             method, float("inf") if width == "inf" else width, seed)
    cfg = {"metrics": ["test_mse"], "floor": False, "bootstrap": 100, "confidence": 0.9, "n_min": None,
           "n_max": None, "reference": "network_best"}
    rows = {r["method"]: r for r in scaling.fit_curves(sorted(tmp_path.glob("*.npz")), cfg)}
    assert rows["entk_init"]["ridge"] == "tuned" and rows["entk_init"]["network_width"] == 64
    assert rows["entk_init"]["alpha_deficit"] == pytest.approx(rows["network_best"]["alpha"] - rows["entk_init"]["alpha"])
    assert rows["entk_init"]["deficit_lo"] < 0.3 < rows["entk_init"]["deficit_hi"]
    assert rows["infinite_ntk"]["network_width"] == 64 and rows["infinite_ntk"]["deficit_lo"] > 0
    assert rows["network_best"]["alpha_deficit"] == 0
    for row in rows.values():  # each seed's exponent is shown; their mean is the reported one
        per_seed = [float(a) for a in row["seed_alphas"].split(";")]
        assert len(per_seed) == 2 and np.mean(per_seed) == pytest.approx(row["alpha"], abs=1e-3)


def test_an_after_kernel_is_compared_with_its_init_kernel_over_its_own_range(tmp_path):
    # claim 2 read over matched ranges: the eNTK at init bends (0.1 below n = 128, 0.3 above), so over the
    # after-kernel's range (n >= k = 128) its exponent is 0.3 and the after-kernel's gain over it 0.45 - 0.3
    ns, seeds = [32, 64, 128, 256, 512, 1024], [0, 1, 2]
    nsf = np.asarray(ns, dtype=float)
    init = np.where(nsf < 128, 128 ** -0.3 * (nsf / 128) ** -0.1, nsf ** -0.3)
    truth = {("network_best", 0): nsf ** -0.6, ("entk_init", 0): init, ("entk_after", 128): nsf ** -0.45}
    for (method, k), mean in truth.items():
        for seed in seeds:
            vals = mean[:, None] * np.random.default_rng(seed).lognormal(0, 0.05, (len(ns), 200))
            _write_pointwise(tmp_path, vals, ns, method, 64, seed, k=k)
    cfg = {"metrics": ["test_mse"], "floor": False, "bootstrap": 200, "confidence": 0.95, "n_min": None,
           "n_max": None, "reference": "network_best", "after_kernel_from_k": True}
    rows = {r["method"]: r for r in scaling.fit_curves(sorted(tmp_path.glob("*.npz")), cfg)}
    after, init_row = rows["entk_after"], rows["entk_init"]
    assert after["n_min"] == 128 and init_row["n_min"] == 32
    assert after["init_alpha"] == pytest.approx(0.3, abs=0.01)      # refitted over n >= 128
    assert init_row["alpha"] < 0.25                                  # over the whole range it reads lower
    assert after["init_gain"] == pytest.approx(0.15, abs=0.01)
    assert after["init_gain_lo"] <= 0.15 <= after["init_gain_hi"] and after["init_gain_lo"] > 0.1
    assert after["alpha_deficit"] == pytest.approx(0.15, abs=0.01)  # and still short of the network
    assert "init_gain" not in init_row and "init_gain" not in rows["network_best"]


def test_summary_keeps_one_ridge_and_both_network_curves():
    import pandas as pd
    rows = []
    for width, method, alpha, ridge in [(64, "network", 0.5, ""), (64, "network_best", 0.55, ""),
                                        (64, "entk_init", 0.3, "tuned"), (64, "entk_init", 0.2, "0.0"),
                                        (float("inf"), "infinite_ntk", 0.25, "tuned")]:
        rows.append({"dataset": "d", "arch": "mlp", "width": width, "method": method, "kind": "mean",
                     "ridge": ridge, "k": "" if method.startswith("network") else 0, "metric": "test_error",
                     "alpha": alpha, "alpha_lo": alpha - 0.1, "alpha_hi": alpha + 0.1, "n_min": 32, "n_max": 1024,
                     "n_seeds": 3, "n_test": 500, "network_method": "network_best", "network_width": 64,
                     "network_alpha": 0.55, "network_alpha_lo": 0.45, "network_alpha_hi": 0.65,
                     "alpha_deficit": 0.55 - alpha, "deficit_lo": 0.0, "deficit_hi": 0.5})
    out = scaling.summarize(pd.DataFrame(rows), ridge="tuned")
    assert list(out.columns) == list(scaling.SUMMARY_COLUMNS)
    assert list(out["method"]) == ["network", "network_best", "entk_init", "infinite_ntk"]
    assert out.loc[out["method"] == "entk_init", "alpha_deficit"].item() == pytest.approx(0.25)
    assert out.loc[out["method"] == "infinite_ntk", "width"].item() == "inf"
    fixed = scaling.summarize(pd.DataFrame(rows), ridge=0.0)
    assert fixed.loc[fixed["method"] == "entk_init", "alpha"].item() == 0.2


def test_summary_puts_the_theorys_exponents_beside_the_kernels():
    """alpha_predicted is the slope of the seed-mean predicted test MSE over the fit range; networks and the
    test error get none."""
    import pandas as pd
    exponents = pd.DataFrame([
        dict(dataset="d", arch="mlp", width=8.0, method=m, kind=kind, ridge=ridge, k=0, metric=metric, alpha=0.3,
             alpha_lo=0.2, alpha_hi=0.4, n_min=16.0, n_max=64.0, n_seeds=2, n_test=100, network_method="",
             network_width="", network_alpha=np.nan, network_alpha_lo=np.nan, network_alpha_hi=np.nan,
             alpha_deficit=np.nan, deficit_lo=np.nan, deficit_hi=np.nan)
        for m, kind, ridge in (("network", "", ""), ("entk_init", "mean", "tuned"))
        for metric in ("test_error", "test_mse")])
    rows = []
    for seed, scale in ((0, 1.0), (1, 3.0)):
        for n in (8, 16, 32, 64, 128):  # 8 and 128 lie outside the fit range and would bend the slope
            value = scale * n ** -0.7 * (10 if n in (8, 128) else 1)
            rows.append(dict(method="entk_init", width="8", kind="mean", ridge="tuned", k=0, seed=seed, n=n,
                             metric="predicted_test_mse", value=value))
        rows.append(dict(method="entk_init", width="8", kind="mean", ridge="", k=0, seed=seed, n=140,
                         metric="alpha_powerlaw", value=0.5 + seed))
    summary = scaling.summarize(exponents, "tuned", pd.DataFrame(rows))
    kernel = summary[(summary["method"] == "entk_init") & (summary["metric"] == "test_mse")].iloc[0]
    assert kernel["alpha_predicted"] == pytest.approx(0.7, rel=1e-9)
    assert kernel["alpha_gap"] == pytest.approx(0.3 - 0.7) and kernel["alpha_powerlaw"] == pytest.approx(1.0)
    assert kernel["spectrum_rows"] == 140
    # the fit reaches n = 64 on a spectrum of M = 140 rows, past M/10: the prediction is flagged
    assert kernel["prediction_trusted"] == "no"
    rows += [dict(r, metric="alpha_powerlaw", n=640) for r in rows if r["metric"] == "alpha_powerlaw"]
    trusted = scaling.summarize(exponents, "tuned", pd.DataFrame(rows))
    assert trusted.loc[(trusted["method"] == "entk_init") & (trusted["metric"] == "test_mse"),
                       "prediction_trusted"].item() == "yes"  # 64 <= 640 / 10
    others = summary[(summary["method"] == "network") | (summary["metric"] == "test_error")]
    assert others["alpha_predicted"].isna().all() and len(others) == 3
    assert (others["prediction_trusted"] == "").all()


# --- Coverage of the intervals, by simulation with a known truth, at the seed counts users run -------------
@pytest.mark.parametrize("seeds", [2, 3, 5])
@pytest.mark.parametrize("scenario", list(calibration.SCENARIOS))
def test_nominal_95_percent_intervals_cover_the_true_exponents_and_deficit_at_least_90_percent(scenario, seeds):
    cov = calibration.coverage(scenario, seeds, trials=200, reference_trials=60 if seeds == 2 else 0)
    assert cov["alpha_coverage"] >= 0.90 and cov["deficit_coverage"] >= 0.90
    if scenario == "seed-dominated" or (scenario == "point-noise-dominated" and seeds >= 3):
        # calibrated where the seeds or each run's own per-point noise dominate, not merely wide (counting that
        # noise in the test-point term too covered 99.5-100% here)
        assert cov["deficit_coverage"] <= 0.99
        if seeds == 2:  # the simulation faults the percentile bootstrap this project reported before
            assert cov["percentile_deficit_coverage"] < 0.8
    if scenario == "mixed" and seeds == 5:  # and the intervals stay useful: a deficit of 0.2 is resolved
        assert cov["deficit_width_median"] < 0.25


def test_the_test_point_term_counts_only_what_the_seeds_share():
    # replicates (n_boot, S) = shared part + each seed's own part: the term is the shared part's variance
    rng = np.random.default_rng(0)
    shared, own = rng.normal(0, 0.3, (20000, 1)), rng.normal(0, 0.5, (20000, 4))
    assert scaling.shared_test_variance(shared + own) == pytest.approx(0.09, rel=0.05)
    assert scaling.shared_test_variance(own) == pytest.approx(0.0, abs=0.005)  # all in the seed spread
    assert scaling.shared_test_variance(np.repeat(shared, 4, axis=1)) == pytest.approx(0.09, rel=0.05)
    # one seed, or replicates of the seed mean: the whole variance
    assert scaling.shared_test_variance((shared + own)[:, :1]) == pytest.approx(0.34, rel=0.05)
    assert scaling.shared_test_variance((shared + own[:, :1])[:, 0]) == pytest.approx(0.34, rel=0.05)


def test_the_simulated_experiments_have_the_stated_truth():
    # averaged over many seeds and test points, each curve's exponent is the planted one
    rng = np.random.default_rng(0)
    curves = calibration.simulated_experiment(rng, seeds=400, points=400, **calibration.SCENARIOS["mixed"])
    for key, alpha in calibration.TRUTH.items():
        assert scaling.fit_power_law(calibration.NS, curves[key].mean(axis=(1, 2)))["alpha"] == pytest.approx(
            alpha, abs=0.01)


def _write_curve(path, method, ns, seed, values, k=0, width=64, val=None):
    """A per-point file of one curve and seed; `val`: a network's (val_mse, val_error) per n."""
    meta = {"dataset": "d", "arch": "mlp", "width": width, "seed": seed, "method": method, "n": np.array(ns)}
    if method.startswith("network"):
        meta["k"] = np.array(ns)
    else:
        meta.update(kind="mean", ridge=np.array(["tuned"] * len(ns)), k=k)
    if val is not None:
        meta.update(val_mse=np.array([v[0] for v in val]), val_error=np.array([v[1] for v in val]))
    np.savez(path, error=values, mse=values, **meta)


FIT_CFG = {"metrics": ["test_mse"], "floor": False, "bootstrap": 200, "confidence": 0.95, "n_min": None,
           "n_max": None, "reference": "network_best"}


def test_a_network_reported_at_step_0_for_small_n_cannot_steepen_the_fit(tmp_path):
    # A centred network stopped at step 0 predicts 0: its test MSE is exactly 1/C at every point. Planted: the
    # trained network scales as n^-0.5, the kernel as n^-0.3; the "network" at n = 64 and 128 is the zero
    # function, which alone would make the network's exponent steeper.
    ns, C = [64, 128, 256, 512, 1024, 2048], 2
    for seed in (0, 1, 2):
        net = _curve(ns, 0.5, seeds=1, points=300, noise=0.1, seed=seed, a=2.0)[:, 0]
        net[:2] = 1.0 / C
        _write_curve(tmp_path / f"net{seed}.npz", "network_best", ns, seed, net)
        ker = _curve(ns, 0.3, seeds=1, points=300, noise=0.1, seed=10 + seed, a=0.9)[:, 0]
        _write_curve(tmp_path / f"ker{seed}.npz", "entk_init", ns, seed, ker)
    paths = sorted(tmp_path.glob("*.npz"))
    naive = {r["method"]: r for r in scaling.fit_curves(paths, FIT_CFG)}  # no class count: nothing flagged
    assert naive["network_best"]["alpha"] > 0.6 and naive["entk_init"]["alpha_deficit"] > 0.3
    rows = {r["method"]: r for r in scaling.fit_curves(paths, FIT_CFG, n_classes=C)}
    net, ker = rows["network_best"], rows["entk_init"]
    assert net["unlearned_n"] == "64;128" and ker["unlearned_n"] == ""
    assert net["n_min"] == 256 and ker["n_min"] == 256  # both from where the reference has learned
    assert net["alpha"] == pytest.approx(0.5, abs=0.03)
    assert ker["alpha_deficit"] == pytest.approx(0.2, abs=0.04) and ker["deficit_lo"] < 0.2 < ker["deficit_hi"]


@pytest.mark.parametrize("stopped", ["one seed", "every seed"])
def test_an_untrained_seed_is_judged_on_its_own_validation_scores_and_left_out(tmp_path, stopped):
    """Known truth: network and kernel both scale as n^-0.4 (deficit 0). A network stopped at its first steps
    at the smallest n is a near-zero function: test MSE a hair below 1/C (so the mean rule cannot see it) and
    validation MSE within 1% of 1/C. Judged per (n, seed) on validation data it is flagged, named, and the
    fit starts after it; counted, it would fake a steeper network (a positive deficit)."""
    ns, C = [64, 128, 256, 512, 1024, 2048], 2
    seeds = (0, 1, 2, 3, 4)
    rng = np.random.default_rng(7)
    for seed in seeds:
        net = _curve(ns, 0.4, seeds=1, points=400, noise=0.05, seed=seed, a=1.5)[:, 0]
        val = [(float(v.mean()), 0.2) for v in net]
        if stopped == "every seed" or seed == 2:
            net[0] = 1.0 / C - 1e-4 + 1e-6 * rng.standard_normal(net.shape[1])
            val[0] = (0.995 / C, 0.49)
        _write_curve(tmp_path / f"net{seed}.npz", "network_best", ns, seed, net, val=val)
        ker = _curve(ns, 0.4, seeds=1, points=400, noise=0.05, seed=10 + seed, a=1.2)[:, 0]
        _write_curve(tmp_path / f"ker{seed}.npz", "entk_init", ns, seed, ker)
    rows = {r["method"]: r for r in scaling.fit_curves(sorted(tmp_path.glob("*.npz")), FIT_CFG, n_classes=C)}
    net, ker = rows["network_best"], rows["entk_init"]
    assert net["untrained_seeds"] == ("64:2" if stopped == "one seed" else "64:0,1,2,3,4")
    assert net["unlearned_n"] == "64" and net["n_min"] == 128 and ker["n_min"] == 128
    assert ker["deficit_lo"] < 0 < ker["deficit_hi"]  # the truth, 0, inside
    assert net["alpha"] == pytest.approx(0.4, abs=0.03)


def test_the_local_exponent_says_where_in_n_the_deficit_lives(tmp_path):
    """Known truth: the network scales as n^-0.6 up to n = 512 and as n^-0.3 beyond; the kernel as n^-0.3
    throughout. The full-range deficit is positive; over the upper half of the range (512..4096) it is 0."""
    ns = [64, 128, 256, 512, 1024, 2048, 4096]
    bend = np.array([(512 / n) ** 0.3 if n < 512 else 1.0 for n in ns])[:, None]
    for seed in (0, 1, 2):
        net = _curve(ns, 0.3, seeds=1, points=300, noise=0.03, seed=seed)[:, 0] * bend
        _write_curve(tmp_path / f"net{seed}.npz", "network_best", ns, seed, net)
        ker = _curve(ns, 0.3, seeds=1, points=300, noise=0.03, seed=10 + seed)[:, 0]
        _write_curve(tmp_path / f"ker{seed}.npz", "entk_init", ns, seed, ker)
    assert scaling.upper_half_start(ns, 64, None) == 512 and scaling.upper_half_start([64, 128], 64, None) is None
    rows = {r["method"]: r for r in scaling.fit_curves(sorted(tmp_path.glob("*.npz")), FIT_CFG)}
    ker = rows["entk_init"]
    assert ker["alpha_deficit"] > 0.1 and ker["deficit_lo"] > 0
    assert ker["n_min_upper"] == 512 and ker["alpha_upper"] == pytest.approx(0.3, abs=0.03)
    assert ker["deficit_upper_lo"] < 0 < ker["deficit_upper_hi"] and abs(ker["alpha_deficit_upper"]) < 0.03
    assert rows["network_best"]["alpha_upper"] == pytest.approx(0.3, abs=0.03)


def test_after_kernels_are_fitted_over_n_at_least_k_against_the_reference_over_the_same_range(tmp_path):
    ns = [64, 128, 256, 512, 1024]
    for seed in (0, 1):
        # the network bends: steep below 256, alpha 0.4 from 256 on
        net = _curve(ns, 0.4, seeds=1, points=200, noise=0.05, seed=seed)[:, 0]
        net[:2] *= np.array([4.0, 2.0])[:, None]
        _write_curve(tmp_path / f"net{seed}.npz", "network_best", ns, seed, net)
        after = _curve(ns, 0.25, seeds=1, points=200, noise=0.05, seed=20 + seed)[:, 0]
        after[:2] *= 0.2  # below k its kernel has seen more labels than the regression: flattering values
        _write_curve(tmp_path / f"after{seed}.npz", "entk_after", ns, seed, after, k=256)
    paths = sorted(tmp_path.glob("*.npz"))
    rows = {r["method"]: r for r in scaling.fit_curves(paths, FIT_CFG)}
    after, net = rows["entk_after"], rows["network_best"]
    assert after["n_min"] == 256 and net["n_min"] == 64
    assert after["alpha"] == pytest.approx(0.25, abs=0.03)
    assert after["network_alpha"] == pytest.approx(0.4, abs=0.03)  # the reference over n >= 256, not its own row
    assert after["alpha_deficit"] == pytest.approx(0.15, abs=0.04)
    whole = {r["method"]: r for r in scaling.fit_curves(paths, {**FIT_CFG, "after_kernel_from_k": False})}
    assert whole["entk_after"]["n_min"] == 64 and whole["entk_after"]["alpha_deficit"] > 0.5


def test_calibration_command_writes_its_table(tmp_path):
    """docs/results.md's `python -m ntkscaling.calibration docs/results/calibration/coverage.csv`, with fewer
    trials: one row per scenario and seed count, in the committed table's columns."""
    import csv
    import os
    import subprocess
    import sys
    from conftest import ROOT
    out = tmp_path / "docs" / "results" / "calibration" / "coverage.csv"
    out.parent.mkdir(parents=True)
    res = subprocess.run([sys.executable, "-m", "ntkscaling.calibration", str(out.relative_to(tmp_path)),
                          "--trials", "8"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(out)))
    committed = list(csv.DictReader(open(ROOT / "docs" / "results" / "calibration" / "coverage.csv")))
    assert list(rows[0]) == list(committed[0])
    assert [(r["scenario"], r["seeds"]) for r in rows] == [(r["scenario"], r["seeds"]) for r in committed]
    assert {r["trials"] for r in rows} == {"8"} and all(0 <= float(r["alpha_coverage"]) <= 1 for r in rows)


def test_flagged_sizes_read_back_from_a_table_whatever_pandas_made_of_them(tmp_path):
    # a column whose only flag is one n is read as floats (64.0), an empty one as NaN: the figures read both
    import pandas as pd
    from ntkscaling import plotting
    path = tmp_path / "exponents.csv"
    path.write_text("method,unlearned_n\nnetwork,64\nentk_init,\n")
    column = pd.read_csv(path)["unlearned_n"]
    assert column.dtype == float
    assert [plotting.flagged_sizes(v) for v in column] == [[64], []]
    assert plotting.flagged_sizes("64;128") == [64, 128] and plotting.flagged_sizes("") == []


def test_local_slopes_are_the_exponent_of_each_doubling():
    from ntkscaling import plotting
    n = np.array([64, 128, 256, 512])
    y = np.array([1.0, 0.5, 0.25 * 2 ** -0.5, 0.25 * 2 ** -0.5 * 0.8])  # exponents 1, 1.5, log2(1/0.8)
    mid, slope = plotting.local_slopes(n, y)
    np.testing.assert_allclose(mid, np.sqrt(n[1:] * n[:-1]))
    np.testing.assert_allclose(slope, [1.0, 1.5, np.log2(1 / 0.8)])
