"""Data-scaling fits: metric(n) = a * n^-alpha (optionally + c), with bootstrap intervals.

The point estimate fits the curve of means (over seeds and test points) at each n; the interval resamples
seeds and test points with replacement (the same draw at every n, so the curves stay paired) and refits.
Without a floor the fit is least squares on log metric vs log n; with a floor it is least squares in log
space on log(a n^-alpha + c), c >= 0.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from .methods import K_EQUALS_N


def fit_power_law(n, y, floor: bool = False) -> dict:
    """Fit y = a * n^-alpha (+ c). Points with y <= 0 cannot be on a log scale and are dropped."""
    n, y = np.asarray(n, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = (y > 0) & np.isfinite(y) & (n > 0)
    n, y = n[ok], y[ok]
    nan = {"a": np.nan, "alpha": np.nan, "c": np.nan if floor else 0.0, "n_points": int(ok.sum())}
    if len(n) < (3 if floor else 2):
        return nan
    ln, ly = np.log(n), np.log(y)
    slope, intercept = np.polyfit(ln, ly, 1)
    out = {"a": float(np.exp(intercept)), "alpha": float(-slope), "c": 0.0, "n_points": int(len(n))}
    if not floor:
        return out

    def resid(p):
        log_a, alpha, c = p
        return np.log(np.exp(log_a - alpha * ln) + c) - ly

    x0 = [intercept, max(-slope, 1e-3), 0.5 * y.min()]  # the floor c lies below the smallest value
    res = least_squares(resid, x0, bounds=([-np.inf, 0.0, 0.0], [np.inf, 10.0, y.min()]))
    return {"a": float(np.exp(res.x[0])), "alpha": float(res.x[1]), "c": float(res.x[2]), "n_points": int(len(n))}


def bootstrap_exponent(ns, values, floor: bool = False, n_boot: int = 1000, confidence: float = 0.95,
                       seed: int = 0, n_min=None, n_max=None) -> dict:
    """Exponent with a percentile bootstrap interval over seeds and test points.

    values: array (len(ns), n_seeds, n_points) of per-point metric values (e.g. 0/1 errors or squared errors).
    """
    ns = np.asarray(ns, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[0] != len(ns):
        raise ValueError(f"values must be (len(ns)={len(ns)}, seeds, points), got {values.shape}")
    keep = np.ones(len(ns), dtype=bool)
    if n_min is not None:
        keep &= ns >= n_min
    if n_max is not None:
        keep &= ns <= n_max
    ns, values = ns[keep], values[keep]
    est = fit_power_law(ns, values.mean(axis=(1, 2)), floor=floor)
    S, P = values.shape[1:]
    rng = np.random.default_rng(seed)
    alphas = np.full(n_boot, np.nan)
    for b in range(n_boot):
        ws = np.bincount(rng.integers(0, S, S), minlength=S) / S
        wp = np.bincount(rng.integers(0, P, P), minlength=P) / P
        curve = (values @ wp) @ ws
        alphas[b] = fit_power_law(ns, curve, floor=floor)["alpha"]
    tail = (1 - confidence) / 2
    finite = alphas[np.isfinite(alphas)]
    lo, hi = (np.quantile(finite, [tail, 1 - tail]) if len(finite) else (np.nan, np.nan))
    return {**est, "alpha_lo": float(lo), "alpha_hi": float(hi), "n_min": float(ns.min()) if len(ns) else np.nan,
            "n_max": float(ns.max()) if len(ns) else np.nan, "n_seeds": int(S), "n_test": int(P),
            "n_boot": int(n_boot), "confidence": confidence}


EXPONENT_COLUMNS = ("dataset", "arch", "width", "method", "kind", "ridge", "k", "metric", "alpha", "alpha_lo",
                    "alpha_hi", "a", "c", "n_min", "n_max", "n_points", "n_seeds", "n_test", "n_boot", "confidence")
# which per-point array of a pointwise file each fitted metric uses
POINTWISE_KEY = {"test_error": "error", "test_mse": "mse"}


META_FIELDS = ("dataset", "arch", "width", "seed", "method", "kind", "ridge", "n", "k")


def curve_id(meta: dict) -> tuple:
    """Points of one scaling curve: methods whose k moves with n (the network, the after-kernel at k = n)
    are one curve over n whatever k is."""
    k = "" if meta["method"] in K_EQUALS_N else int(meta["k"])
    width = float(meta["width"])  # inf for infinite-width kernels
    return (str(meta["dataset"]), str(meta["arch"]), int(width) if math.isfinite(width) else width, str(meta["method"]),
            str(meta.get("kind", "")), meta.get("ridge", ""), k)


def read_pointwise(path):
    """Records of a per-point results file: meta fields are scalars or 1-D arrays (one entry per record),
    per-point arrays are (points,) or (records, points)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {m: np.atleast_2d(z[key]) for m, key in POINTWISE_KEY.items()}
        meta = {f: np.atleast_1d(z[f]) for f in META_FIELDS if f in z.files}
    R = len(next(iter(arrays.values())))
    for r in range(R):
        rec = {f: (v[r] if len(v) == R else v[0]).item() for f, v in meta.items()}
        yield rec, {m: a[r] for m, a in arrays.items()}


def fit_curves(pointwise_paths, fit_cfg: dict) -> list[dict]:
    """Read per-point result files (network runs, kernel regressions) and fit every curve and metric."""
    curves: dict = {}
    for path in pointwise_paths:
        for meta, arrays in read_pointwise(path):
            curves.setdefault(curve_id(meta), {})[(int(meta["n"]), int(meta["seed"]))] = arrays
    rows = []
    for cid, points in sorted(curves.items(), key=lambda kv: str(kv[0])):
        ns = sorted({n for n, _ in points})
        seeds = sorted({s for _, s in points})
        missing = [(n, s) for n in ns for s in seeds if (n, s) not in points]
        if missing:
            raise ValueError(f"curve {cid}: missing results for (n, seed) {missing}")
        for metric in fit_cfg["metrics"]:
            values = np.stack([np.stack([points[(n, s)][metric] for s in seeds]) for n in ns])
            res = bootstrap_exponent(ns, values, floor=fit_cfg["floor"], n_boot=fit_cfg["bootstrap"],
                                     confidence=fit_cfg["confidence"], n_min=fit_cfg["n_min"],
                                     n_max=fit_cfg["n_max"])
            dataset, arch, width, method, kind, ridge, k = cid
            rows.append({"dataset": dataset, "arch": arch, "width": width, "method": method, "kind": kind,
                         "ridge": ridge, "k": k, "metric": metric,
                         **{c: res[c] for c in EXPONENT_COLUMNS if c in res}})
    return rows


SUMMARY_COLUMNS = ("dataset", "arch", "width", "method", "kind", "k", "ridge", "metric", "alpha", "alpha_lo",
                   "alpha_hi", "n_min", "n_max", "n_seeds", "n_test", "network_width", "network_alpha",
                   "network_alpha_lo", "network_alpha_hi", "alpha_deficit")


def summarize(exponents, ridge):
    """The answer table: one row per (dataset, arch, width, method, kind, k, metric) at one ridge, beside
    the exponent of the network of the same width (for infinite-width kernels: the widest network).
    alpha_deficit = network alpha - method alpha: positive when the method scales worse than the network.
    Exponents are seed aggregates: fitted to the mean over seeds, intervals bootstrapped over seeds."""
    import pandas as pd

    df = exponents.copy()
    df["width"] = df["width"].astype(float)
    is_net = df["method"] == "network"
    df = df[is_net | np.isclose(df["ridge"].astype(float), float(ridge))]
    net = df[df["method"] == "network"].set_index(["dataset", "arch", "width", "metric"])
    finite = net.index.get_level_values("width")
    widest = float(finite.max()) if len(finite) else np.nan
    df["network_width"] = np.where(np.isfinite(df["width"]), df["width"], widest)
    ref = net[["alpha", "alpha_lo", "alpha_hi"]].add_prefix("network_")
    df = df.merge(ref, how="left", left_on=["dataset", "arch", "network_width", "metric"], right_index=True)
    df["alpha_deficit"] = df["network_alpha"] - df["alpha"]
    df["ridge"] = df["ridge"].astype(object).where(df["method"] != "network", "")
    order = pd.Categorical(df["method"], ["network", "entk_init", "entk_after", "entk_after_n", "infinite_ntk",
                                          "infinite_nngp"], ordered=True)
    df = df.assign(_o=order).sort_values(["dataset", "arch", "metric", "width", "_o", "k"]).drop(columns="_o")
    for col in ("width", "network_width"):  # integers, or inf for infinite-width kernels
        df[col] = [str(int(w)) if np.isfinite(w) else "inf" for w in df[col]]
    df["k"] = pd.to_numeric(df["k"], errors="coerce").astype("Int64")  # empty where k moves with n
    return df[list(SUMMARY_COLUMNS)].reset_index(drop=True)
