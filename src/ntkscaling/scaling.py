"""Data-scaling fits: metric(n) = a * n^-alpha (optionally + c), with bootstrap intervals.

The point estimate fits the curve of means (over seeds and test points) at each n; the interval resamples
seeds and test points with replacement (the same draw at every n, so the curves stay paired) and refits.
Without a floor the fit is least squares on log metric vs log n; with a floor it is least squares in log
space on log(a n^-alpha + c), c >= 0.

Every curve of a dataset and architecture is refitted on the *same* bootstrap draws (`bootstrap_exponents`),
so the difference of two exponents has its own paired interval: `fit_curves` reports, for every curve, the
deficit alpha_network - alpha_curve against the reference network of the same width (the widest network
for infinite-width kernels) with its percentile interval.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from .io import load_npz
from .methods import K_EQUALS_N, METHODS, NETWORK_METHODS, ridge_label


def fit_power_law(n, y, floor: bool = False) -> dict:
    """Least-squares fit of y = a * n^-alpha (+ c with `floor`) in log space.

    Args:
        n, y: sizes and the metric at each; points with y <= 0 cannot be on a log scale and are dropped.
        floor: also fit an irreducible floor c >= 0 (needs 3 points).

    Returns:
        {'a', 'alpha', 'c', 'n_points'} (NaN where too few points remain).

    Example:
        >>> round(fit_power_law([10, 100, 1000], [1.0, 0.5, 0.25])["alpha"], 3)
        0.301
    """
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


def _fit_range(ns, n_min=None, n_max=None) -> np.ndarray:
    keep = np.ones(len(ns), dtype=bool)
    if n_min is not None:
        keep &= ns >= n_min
    if n_max is not None:
        keep &= ns <= n_max
    return keep


def _interval(samples: np.ndarray, confidence: float):
    tail = (1 - confidence) / 2
    finite = samples[np.isfinite(samples)]
    return tuple(float(q) for q in np.quantile(finite, [tail, 1 - tail])) if len(finite) else (np.nan, np.nan)


def bootstrap_exponents(ns, curves: dict, floor: bool = False, n_boot: int = 1000, confidence: float = 0.95,
                        seed: int = 0, n_min=None, n_max=None) -> dict:
    """Exponents of several curves with percentile bootstrap intervals from shared draws.

    Args:
        ns: the training-set sizes.
        curves: {key: array (len(ns), n_seeds, n_points)} of per-point metric values (0/1 errors, squared
            errors), all over the same seeds and test points.
        floor, n_boot, confidence, seed: the fit, the replicates, the interval's coverage, their seed.
        n_min, n_max: the fitted range of n (None: all).

    Returns:
        {key: {'alpha', 'alpha_lo', 'alpha_hi', 'a', 'c', ..., 'boot'}} with `boot` the n_boot refitted
        exponents. Each replicate draws one weighting of seeds and of test points and refits every curve
        with it, so differences of exponents are paired (`paired_deficit`).
    """
    ns = np.asarray(ns, dtype=np.float64)
    values = {key: np.asarray(v, dtype=np.float64) for key, v in curves.items()}
    shapes = {v.shape for v in values.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[0] != len(ns):
        raise ValueError(f"values must all be (len(ns)={len(ns)}, seeds, points), got {sorted(shapes)}")
    keep = _fit_range(ns, n_min, n_max)
    ns = ns[keep]
    values = {key: v[keep] for key, v in values.items()}
    S, P = next(iter(values.values())).shape[1:]
    rng = np.random.default_rng(seed)
    boot = {key: np.full(n_boot, np.nan) for key in values}
    for b in range(n_boot):
        ws = np.bincount(rng.integers(0, S, S), minlength=S) / S
        wp = np.bincount(rng.integers(0, P, P), minlength=P) / P
        for key, v in values.items():
            boot[key][b] = fit_power_law(ns, (v @ wp) @ ws, floor=floor)["alpha"]
    out = {}
    for key, v in values.items():
        lo, hi = _interval(boot[key], confidence)
        out[key] = {**fit_power_law(ns, v.mean(axis=(1, 2)), floor=floor), "alpha_lo": lo, "alpha_hi": hi,
                    "n_min": float(ns.min()) if len(ns) else np.nan, "n_max": float(ns.max()) if len(ns) else np.nan,
                    "n_seeds": int(S), "n_test": int(P), "n_boot": int(n_boot), "confidence": confidence,
                    "boot": boot[key]}
    return out


def bootstrap_exponent(ns, values, floor: bool = False, n_boot: int = 1000, confidence: float = 0.95,
                       seed: int = 0, n_min=None, n_max=None) -> dict:
    """Exponent of one curve with a percentile bootstrap interval over seeds and test points.

    values: array (len(ns), n_seeds, n_points) of per-point metric values (e.g. 0/1 errors or squared errors).
    """
    res = bootstrap_exponents(ns, {0: values}, floor, n_boot, confidence, seed, n_min, n_max)[0]
    res.pop("boot")
    return res


def paired_deficit(reference: dict, other: dict, confidence: float = 0.95) -> dict:
    """The difference of two exponents with its interval from the paired replicates.

    Args:
        reference, other: two results of one `bootstrap_exponents` call (the same draws).

    Returns:
        {'alpha_deficit': alpha_reference - alpha_other, 'deficit_lo', 'deficit_hi'}: positive when the other
        curve scales worse than the reference.
    """
    lo, hi = _interval(reference["boot"] - other["boot"], confidence)
    return {"alpha_deficit": reference["alpha"] - other["alpha"], "deficit_lo": lo, "deficit_hi": hi}


EXPONENT_COLUMNS = ("dataset", "arch", "width", "method", "kind", "ridge", "k", "metric", "alpha", "alpha_lo",
                    "alpha_hi", "a", "c", "n_min", "n_max", "n_points", "n_seeds", "n_test", "n_boot", "confidence",
                    "network_method", "network_width", "network_alpha", "network_alpha_lo", "network_alpha_hi",
                    "alpha_deficit", "deficit_lo", "deficit_hi")
# which per-point array of a pointwise file each fitted metric uses
POINTWISE_KEY = {"test_error": "error", "test_mse": "mse"}


META_FIELDS = ("dataset", "arch", "width", "seed", "method", "kind", "ridge", "n", "k")


def curve_id(meta: dict) -> tuple:
    """Points of one scaling curve: methods whose k moves with n (the network, the after-kernel at k = n)
    are one curve over n whatever k is."""
    k = "" if meta["method"] in K_EQUALS_N else int(meta["k"])
    width = float(meta["width"])  # inf for infinite-width kernels
    return (str(meta["dataset"]), str(meta["arch"]), int(width) if math.isfinite(width) else width, str(meta["method"]),
            str(meta.get("kind", "")), ridge_label(meta.get("ridge", "")), k)


def read_pointwise(path):
    """Records of a per-point results file: meta fields are scalars or 1-D arrays (one entry per record),
    per-point arrays are (points,) or (records, points)."""
    z = load_npz(path)
    arrays = {m: np.atleast_2d(z[key]) for m, key in POINTWISE_KEY.items()}
    meta = {f: np.atleast_1d(z[f]) for f in META_FIELDS if f in z}
    R = len(next(iter(arrays.values())))
    for r in range(R):
        rec = {f: (v[r] if len(v) == R else v[0]).item() for f, v in meta.items()}
        yield rec, {m: a[r] for m, a in arrays.items()}


def _reference_id(cid: tuple, network_widths: list, reference: str):
    """The curve id of the network a curve is compared with: the same width, or the widest network for
    infinite-width kernels."""
    dataset, arch, width, *_ = cid
    if not math.isfinite(width):
        if not network_widths:
            return None
        width = max(network_widths)
    return (dataset, arch, width, reference, "", "", "")


def fit_curves(pointwise_paths, fit_cfg: dict) -> list[dict]:
    """Read per-point result files (network runs, kernel regressions) and fit every curve and metric, each
    with its paired deficit against the reference network (`fit.reference`, default the network at its
    best-validation step)."""
    curves: dict = {}
    for path in pointwise_paths:
        for meta, arrays in read_pointwise(path):
            curves.setdefault(curve_id(meta), {})[(int(meta["n"]), int(meta["seed"]))] = arrays
    reference = fit_cfg.get("reference", "network_best")
    grids = {}
    for cid, points in curves.items():
        ns = tuple(sorted({n for n, _ in points}))
        seeds = tuple(sorted({s for _, s in points}))
        missing = [(n, s) for n in ns for s in seeds if (n, s) not in points]
        if missing:
            raise ValueError(f"curve {cid}: missing results for (n, seed) {missing}")
        grids[cid] = (ns, seeds)
    rows = []
    for metric in fit_cfg["metrics"]:
        # curves on the same (dataset, arch, n, seeds, test points) share their bootstrap draws
        groups: dict = {}
        for cid, points in curves.items():
            ns, seeds = grids[cid]
            values = np.stack([np.stack([points[(n, s)][metric] for s in seeds]) for n in ns])
            groups.setdefault((cid[0], cid[1], ns, seeds, values.shape[2]), {})[cid] = values
        fits = {}
        for (_, _, ns, _, _), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
            fits.update(bootstrap_exponents(ns, group, floor=fit_cfg["floor"], n_boot=fit_cfg["bootstrap"],
                                            confidence=fit_cfg["confidence"], n_min=fit_cfg["n_min"],
                                            n_max=fit_cfg["n_max"]))
        paired = {cid: key for key, group in groups.items() for cid in group}
        network_widths = sorted({c[2] for c in fits if c[3] == reference})
        for cid in sorted(fits, key=str):
            res = fits[cid]
            dataset, arch, width, method, kind, ridge, k = cid
            row = {"dataset": dataset, "arch": arch, "width": width, "method": method, "kind": kind,
                   "ridge": ridge, "k": k, "metric": metric,
                   **{c: res[c] for c in EXPONENT_COLUMNS if c in res}}
            ref_id = _reference_id(cid, network_widths, reference)
            if ref_id in fits:
                ref = fits[ref_id]
                row.update(network_method=reference, network_width=ref_id[2], network_alpha=ref["alpha"],
                           network_alpha_lo=ref["alpha_lo"], network_alpha_hi=ref["alpha_hi"])
                if paired[ref_id] == paired[cid]:
                    row.update(paired_deficit(ref, res, fit_cfg["confidence"]))
            rows.append(row)
    return rows


SUMMARY_COLUMNS = ("dataset", "arch", "width", "method", "kind", "k", "ridge", "metric", "alpha", "alpha_lo",
                   "alpha_hi", "n_min", "n_max", "n_seeds", "n_test", "network_method", "network_width",
                   "network_alpha", "network_alpha_lo", "network_alpha_hi", "alpha_deficit", "deficit_lo",
                   "deficit_hi", "alpha_predicted", "alpha_gap", "alpha_powerlaw", "spectrum_rows")
METHOD_ORDER = METHODS


def read_exponents(path):
    """exponents.csv as written by the fit stage, ridges kept as their labels (`tuned`, '0.001')."""
    import pandas as pd
    return pd.read_csv(path, dtype={"ridge": str, "kind": str, "network_method": str}, keep_default_na=False,
                       na_values={c: ["", "nan"] for c in ("alpha", "alpha_lo", "alpha_hi", "network_alpha",
                                                              "network_alpha_lo", "network_alpha_hi",
                                                              "alpha_deficit", "deficit_lo", "deficit_hi",
                                                              "alpha_predicted", "alpha_gap", "alpha_powerlaw",
                                                              "spectrum_rows")})


def read_metrics(path):
    """scaling/metrics.csv (the tidy rows of every method), ridges and kinds as their labels."""
    import pandas as pd
    return pd.read_csv(path, dtype={"ridge": str, "kind": str, "width": str}, keep_default_na=False,
                       na_values={"value": [""]})


def summarize(exponents, ridge, metrics=None):
    """The answer table: one row per (dataset, arch, width, method, kind, k, metric) at one ridge (`tuned`:
    chosen on validation data per kernel, n and seed), beside the exponent of the reference network of the
    same width (for infinite-width kernels: the widest network). alpha_deficit = network alpha - method
    alpha with its paired bootstrap interval [deficit_lo, deficit_hi]: positive when the method scales worse
    than the network. Exponents are seed aggregates: fitted to the mean over seeds, intervals bootstrapped
    over seeds and test points. With `metrics` (scaling/metrics.csv), the theory's predictions beside them
    (`with_predictions`)."""
    import pandas as pd

    df = exponents.copy()
    df["width"] = df["width"].astype(float)
    df["ridge"] = df["ridge"].map(ridge_label)
    df = df[df["method"].isin(NETWORK_METHODS) | (df["ridge"] == ridge_label(ridge))]
    order = pd.Categorical(df["method"], METHOD_ORDER, ordered=True)
    df = df.assign(_o=order).sort_values(["dataset", "arch", "metric", "width", "_o", "k"]).drop(columns="_o")
    df["width"] = [str(int(w)) if np.isfinite(w) else "inf" for w in df["width"]]
    df["network_width"] = [str(int(float(w))) if str(w) not in ("", "nan") else "" for w in df["network_width"]]
    df["k"] = pd.to_numeric(df["k"], errors="coerce").astype("Int64")  # empty where k moves with n
    df = with_predictions(df, metrics) if metrics is not None else df.assign(
        alpha_predicted=np.nan, alpha_gap=np.nan, alpha_powerlaw=np.nan, spectrum_rows=np.nan)
    return df[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def with_predictions(summary, metrics):
    """The theory's exponents beside each kernel's measured test-MSE exponent (ntkscaling.theory):
    alpha_predicted, the slope of the seed-mean predicted test MSE over the same n range (least squares in
    log-log space, the predictions being smooth); alpha_gap = alpha - alpha_predicted; alpha_powerlaw =
    min(a - 1, 2b) of the fitted spectrum, mean over seeds; spectrum_rows, the rows M of the spectrum (the
    prediction is to be trusted for n well below M). Empty for networks and the test error."""
    import pandas as pd
    m = metrics.assign(width=metrics["width"].astype(str), ridge=metrics["ridge"].astype(str),
                       k=pd.to_numeric(metrics["k"], errors="coerce"))
    predicted, powerlaw, gap, rows = [], [], [], []
    for row in summary.itertuples(index=False):
        same = ((m["method"] == row.method) & (m["width"] == str(row.width)) & (m["kind"] == row.kind)
                & (True if pd.isna(row.k) else m["k"] == int(row.k)))  # no k: one per n (entk_after_n)
        alpha = np.nan
        if row.metric == "test_mse" and row.method not in NETWORK_METHODS:
            curve = m[same & (m["metric"] == "predicted_test_mse") & (m["ridge"] == ridge_label(row.ridge))
                      & m["n"].between(row.n_min, row.n_max)].groupby("n")["value"].mean()
            if len(curve) >= 2 and (curve > 0).all():
                alpha = -np.polyfit(np.log(curve.index.to_numpy(float)), np.log(curve.to_numpy()), 1)[0]
        law = m[same & (m["metric"] == "alpha_powerlaw")]
        rows.append(float(law["n"].max()) if len(law) and row.method not in NETWORK_METHODS else np.nan)
        law = law["value"]
        predicted.append(alpha)
        powerlaw.append(float(law.mean()) if len(law) and row.method not in NETWORK_METHODS else np.nan)
        gap.append(row.alpha - alpha)
    return summary.assign(alpha_predicted=predicted, alpha_gap=gap, alpha_powerlaw=powerlaw, spectrum_rows=rows)

