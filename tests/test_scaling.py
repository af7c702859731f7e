"""Power-law fits recover known exponents from synthetic data; intervals cover the truth."""
import numpy as np
import pytest

from ntkscaling import scaling


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


def test_summary_puts_every_method_beside_the_network_of_its_width():
    import pandas as pd
    rows = []
    for width, method, alpha, ridge, k in [(64, "network", 0.5, None, None), (256, "network", 0.6, None, None),
                                           (64, "entk_init", 0.3, 0.1, 0), (64, "entk_init", 0.2, 0.0, 0),
                                           (256, "entk_after", 0.45, 0.1, 128),
                                           (float("inf"), "infinite_ntk", 0.25, 0.1, 0)]:
        rows.append({"dataset": "d", "arch": "mlp", "width": width, "method": method, "kind": "mean",
                     "ridge": ridge, "k": k, "metric": "test_error", "alpha": alpha, "alpha_lo": alpha - 0.1,
                     "alpha_hi": alpha + 0.1, "n_min": 32, "n_max": 1024, "n_seeds": 3, "n_test": 500})
    out = scaling.summarize(pd.DataFrame(rows), ridge=0.1)
    assert list(out.columns) == list(scaling.SUMMARY_COLUMNS)
    assert len(out) == 5  # the ridge-0 row is dropped
    by = {(r.method, float(r.width)): r for r in out.itertuples()}
    assert by[("entk_init", 64)].alpha_deficit == pytest.approx(0.2)
    assert by[("entk_after", 256)].alpha_deficit == pytest.approx(0.15)
    inf = by[("infinite_ntk", float("inf"))]
    assert inf.network_width == "256" and inf.alpha_deficit == pytest.approx(0.35)  # the widest network
    assert by[("network", 64)].alpha_deficit == 0 and by[("network", 64)].ridge == ""
