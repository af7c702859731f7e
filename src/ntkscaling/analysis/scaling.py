"""Data-scaling fits: metric(n) = a * n^-alpha (optionally + c), with calibrated intervals.

Each seed's curve (its per-point values averaged over the test points) is fitted on its own; the exponent is
the mean of the per-seed exponents. Without a floor the fit is least squares on log metric vs log n; with a
floor it is least squares in log space on log(a n^-alpha + c), c >= 0.

The interval (`t_interval`) combines in quadrature Student's t over the per-seed exponents (S - 1 degrees of
freedom) and a normal interval from a bootstrap over test points (the same draw at every n, for every seed and
every curve): the seed term is what a new initialization and subset order would change, the test-point term
what a new test set would. The test-point term counts only what the seeds share (the covariance of different
seeds' replicates): a point's own noise in one seed's run already varies from seed to seed, so it is in the
seed term and would be counted twice in the full bootstrap variance. Its coverage at 2, 3 and 5 seeds is
measured by simulation (ntkscaling.calibration, tests/test_scaling.py). Every curve of a
dataset and architecture shares the seeds and the test-point draws (`bootstrap_exponents`), so the difference
of two exponents has its own paired interval (`paired_deficit`): `fit_curves` reports, for every curve, the
deficit alpha_network - alpha_curve against the reference network of the same width (the widest network for
infinite-width kernels), over the same range of n.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import least_squares

from .. import arguments
from ..files import load_npz
from ..pipeline.tags import K_EQUALS_N, METHODS, RIDGELESS_METHODS, ridge_label


def fit_power_law(n, y, floor: bool = False) -> dict:
    """Least-squares fit of y = a * n^-alpha (+ c with `floor`) in log space.

    Args:
        n, y: sizes and the metric at each; points with y <= 0 cannot be on a log scale and are dropped.
        floor: also fit an irreducible floor c >= 0 (needs 3 points).

    Returns:
        {'a', 'alpha', 'c', 'n_points'} (NaN where fewer than 2 distinct sizes, 3 with `floor`, remain: a
        repeated n is one point of the curve, whatever the values there).

    Example:
        >>> round(fit_power_law([10, 100, 1000], [1.0, 0.5, 0.25])["alpha"], 3)
        0.301
    """
    n, y = arguments.array("n", n, ndim=1), arguments.array("y", y, ndim=1, finite=False).astype(np.float64)
    if len(n) != len(y):
        raise arguments.ArgumentError(f"n and y: {len(n)} sizes but {len(y)} values; expected one value per size")
    if np.any(n <= 0):
        raise arguments.ArgumentError(f"n: training-set sizes must be > 0, got {n.tolist()}")
    n = n.astype(np.float64)
    ok = (y > 0) & np.isfinite(y)
    n, y = n[ok], y[ok]
    nan = {"a": np.nan, "alpha": np.nan, "c": np.nan if floor else 0.0, "n_points": int(ok.sum())}
    if len(np.unique(n)) < (3 if floor else 2):
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


def _loglog_slopes(ns: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """-slope of least squares of log(curve) on log(n), for many curves at once (..., len(ns)): the same
    numbers as fit_power_law's alpha for positive curves, without a Python loop (bootstrap replicates)."""
    x = np.log(ns) - np.log(ns).mean()
    ly = np.log(curves)
    return -(ly - ly.mean(axis=-1, keepdims=True)) @ x / (x @ x)


def _exponents(ns: np.ndarray, curves: np.ndarray, floor: bool) -> np.ndarray:
    """alpha of every curve (..., len(ns)) (fit_power_law; vectorized where the plain log-log fit applies)."""
    if not floor and len(ns) >= 2 and np.all(np.isfinite(curves)) and np.all(curves > 0):
        return _loglog_slopes(ns, curves)
    if curves.shape[-1] < 2:  # an empty fit range (no n where the curve has learned)
        return np.full(curves.shape[:-1], np.nan)
    flat = curves.reshape(-1, curves.shape[-1])
    return np.array([fit_power_law(ns, c, floor=floor)["alpha"] for c in flat]).reshape(curves.shape[:-1])


def shared_test_variance(replicates: np.ndarray) -> float:
    """The variance of a seed-averaged exponent that a new test set would bring, from test-point bootstrap
    replicates (n_boot, S) of each seed's exponent under shared weightings: the mean covariance of two
    different seeds' replicates (what the seeds share: the points' difficulty). A point's noise of its own in
    each run adds to every seed's variance but not to their covariance; it is already in the seed spread.
    One seed (or 1-D replicates, the seed mean): the whole replicate variance. Never below 0."""
    reps = np.asarray(replicates, dtype=np.float64)
    if reps.ndim == 1 or reps.shape[1] == 1:
        return float(np.var(reps.reshape(len(reps), -1).mean(axis=1), ddof=1))
    S = reps.shape[1]
    total = np.var(reps.mean(axis=1), ddof=1) * S * S  # the sum of every entry of the covariance matrix
    own = np.var(reps, axis=0, ddof=1).sum()             # its diagonal
    return float(max((total - own) / (S * (S - 1)), 0.0))


def t_interval(estimate: float, seed_values: np.ndarray, test_replicates: np.ndarray, confidence: float):
    """The calibrated interval of a seed-averaged exponent (or a paired difference of two):
    estimate -/+ hypot(t_{S-1} * sd(seed values) / sqrt(S), z * sqrt(shared test-point variance)), each part
    at the interval's own quantile (conservative where both matter; coverage in ntkscaling.calibration).

    Why: with 2-5 seeds a percentile bootstrap over seeds sees at most a handful of distinct resamples and
    under-covers (nominal 95% covered 75% of simulated truths at 2 seeds); Student's t over the per-seed
    exponents is exact for normal seed effects at any S >= 2, and the test-point bootstrap adds the noise of
    the test set that every seed shares (the seed spread cannot see it; `shared_test_variance`). With one seed
    only the test-point term remains (a normal interval): seed-to-seed variation is then not covered.
    test_replicates: (n_boot, S) per-seed replicates (or (n_boot,) of the seed mean: the whole variance).
    Returns (lo, hi); NaN where the inputs are not finite."""
    from scipy import stats
    seeds = np.asarray(seed_values, dtype=np.float64)
    reps = np.asarray(test_replicates, dtype=np.float64)
    reps = reps[np.all(np.isfinite(reps.reshape(len(reps), -1)), axis=1)]
    if not np.isfinite(estimate) or not np.all(np.isfinite(seeds)) or len(reps) < 2:
        return np.nan, np.nan
    S, q = len(seeds), 0.5 + confidence / 2
    seed_half = float(stats.t.ppf(q, S - 1)) * float(np.std(seeds, ddof=1)) / np.sqrt(S) if S > 1 else 0.0
    test_half = float(stats.norm.ppf(q)) * math.sqrt(shared_test_variance(reps))
    half = float(np.hypot(seed_half, test_half))
    return float(estimate - half), float(estimate + half)


def bootstrap_exponents(ns, curves: dict, floor: bool = False, n_boot: int = 1000, confidence: float = 0.95,
                        seed: int = 0, n_min=None, n_max=None) -> dict:
    """Exponents of several curves, each the mean of its per-seed exponents, with calibrated intervals whose
    test-point part comes from draws shared by all curves (so differences are paired: `paired_deficit`).

    Args:
        ns: the training-set sizes.
        curves: {key: array (len(ns), n_seeds, n_points)} of per-point metric values (0/1 errors, squared
            errors), all over the same seeds and test points.
        floor, n_boot, confidence, seed: the fit, the test-point replicates, the interval's coverage, their seed.
        n_min, n_max: the fitted range of n (None: all).

    Returns:
        {key: {'alpha', 'alpha_lo', 'alpha_hi', 'a', 'c', ..., 'seed_alphas', 'boot'}}: alpha is the mean over
        seeds of each seed's exponent (the seed's curve averaged over test points, fitted in log-log space);
        `seed_alphas` those exponents; `boot` the (n_boot, S) replicates of each seed's alpha under one
        weighting of the test points each (the same weightings for every seed and curve); [alpha_lo, alpha_hi] the `t_interval` of both.
        'a' and 'c' belong to the fit of the seed-mean curve, drawn as its line.

    Example:
        >>> ns = np.array([16, 32, 64, 128]); v = np.ones((4, 2, 5)) * (2.0 * ns ** -0.5)[:, None, None]
        >>> round(bootstrap_exponents(ns, {"net": v}, n_boot=20)["net"]["alpha"], 6)
        0.5
    """
    ns = arguments.array("ns", ns, ndim=1).astype(np.float64)
    if not curves:
        raise arguments.ArgumentError("curves: expected at least one curve")
    # NaN is allowed: a diverged network's points (its fit is NaN, reported as such)
    values = {key: arguments.array(f"curves[{key!r}]", v, ndim=3, finite=False).astype(np.float64)
              for key, v in curves.items()}
    shapes = {v.shape for v in values.values()}
    if len(shapes) != 1 or next(iter(shapes))[0] != len(ns):
        raise arguments.ArgumentError(f"curves: every curve must be (len(ns)={len(ns)}, seeds, points) with the "
                                      f"same seeds and test points, got shapes {sorted(shapes)}")
    if not 0 < confidence < 1:
        raise arguments.ArgumentError(f"confidence: expected a number between 0 and 1, got {confidence!r}")
    keep = _fit_range(ns, n_min, n_max)
    ns = ns[keep]
    values = {key: v[keep] for key, v in values.items()}
    S, P = next(iter(values.values())).shape[1:]
    weights = np.random.default_rng(seed).multinomial(P, np.full(P, 1.0 / P), size=n_boot) / P  # (n_boot, P)
    out = {}
    for key, v in values.items():
        seed_alphas = _exponents(ns, v.mean(axis=2).T, floor)  # (S,)
        boot = _exponents(ns, np.einsum("nsp,bp->bsn", v, weights), floor)  # (n_boot, S)
        alpha = float(seed_alphas.mean())
        lo, hi = t_interval(alpha, seed_alphas, boot, confidence)
        line = fit_power_law(ns, v.mean(axis=(1, 2)), floor=floor)
        out[key] = {**line, "alpha": alpha, "alpha_lo": lo, "alpha_hi": hi,
                    "n_min": float(ns.min()) if len(ns) else np.nan, "n_max": float(ns.max()) if len(ns) else np.nan,
                    "n_seeds": int(S), "n_test": int(P), "n_boot": int(n_boot), "confidence": confidence,
                    "seed_alphas": seed_alphas, "boot": boot}
    return out


def bootstrap_exponent(ns, values, floor: bool = False, n_boot: int = 1000, confidence: float = 0.95,
                       seed: int = 0, n_min=None, n_max=None) -> dict:
    """Exponent of one curve with its calibrated interval (`bootstrap_exponents`).

    values: array (len(ns), n_seeds, n_points) of per-point metric values (e.g. 0/1 errors or squared errors).
    """
    res = bootstrap_exponents(ns, {0: values}, floor, n_boot, confidence, seed, n_min, n_max)[0]
    res.pop("boot")
    res.pop("seed_alphas")
    return res


def paired_deficit(reference: dict, other: dict, confidence: float = 0.95) -> dict:
    """The difference of two exponents with its calibrated interval from the paired seeds and replicates.

    Args:
        reference, other: two results of one `bootstrap_exponents` call (the same seeds and test-point draws).

    Returns:
        {'alpha_deficit': alpha_reference - alpha_other, 'deficit_lo', 'deficit_hi'}: positive when the other
        curve scales worse than the reference. The interval is `t_interval` of the per-seed differences and
        the replicates' differences: noise common to both curves (the same seeds, the same test points) cancels.
    """
    for name, res in (("reference", reference), ("other", other)):
        if not {"alpha", "seed_alphas", "boot"} <= set(res):
            raise arguments.ArgumentError(f"{name}: expected one curve's result of bootstrap_exponents (with "
                                          f"'alpha', 'seed_alphas' and 'boot'), got keys {sorted(res)}")
    if np.shape(reference["seed_alphas"]) != np.shape(other["seed_alphas"]) or \
            np.shape(reference["boot"]) != np.shape(other["boot"]):
        raise arguments.ArgumentError("reference and other: not paired (different seeds or replicates); take both "
                                      "from one bootstrap_exponents call")
    deficit = reference["alpha"] - other["alpha"]
    lo, hi = t_interval(deficit, reference["seed_alphas"] - other["seed_alphas"], reference["boot"] - other["boot"],
                        confidence)
    return {"alpha_deficit": deficit, "deficit_lo": lo, "deficit_hi": hi}


EXPONENT_COLUMNS = ("dataset", "arch", "width", "method", "kind", "ridge", "k", "metric", "alpha", "alpha_lo",
                    "alpha_hi", "a", "c", "n_min", "n_max", "n_points", "n_seeds", "n_test", "n_boot", "confidence",
                    "unlearned_n", "untrained_seeds", "network_method", "network_width", "network_alpha", "network_alpha_lo",
                    "network_alpha_hi", "alpha_deficit", "deficit_lo", "deficit_hi", "n_min_upper", "alpha_upper",
                    "alpha_upper_lo", "alpha_upper_hi", "alpha_deficit_upper", "deficit_upper_lo", "deficit_upper_hi",
                    "init_alpha", "init_gain", "init_gain_lo", "init_gain_hi", "seed_alphas")
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


# a network's validation scores at its reported state, one per record (training jobs write them)
VALIDATION_KEYS = ("val_mse", "val_error")


def read_pointwise(path):
    """Records of a per-point results file: meta fields are scalars or 1-D arrays (one entry per record),
    per-point arrays are (points,) or (records, points); a network's validation scores (VALIDATION_KEYS) are
    one value per record."""
    z = load_npz(path)
    arrays = {m: np.atleast_2d(z[key]) for m, key in POINTWISE_KEY.items()}
    arrays.update({key: np.atleast_1d(z[key])[:, None] for key in VALIDATION_KEYS if key in z})
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


def _init_kernel_id(cid: tuple):
    """The curve id of the eNTK at initialization an after-kernel is compared with: the same width, kind and
    ridge (None for every other method)."""
    if cid[3] != "entk_after":
        return None
    return (*cid[:3], "entk_init", cid[4], cid[5], 0)


def zero_function_score(metric: str, n_classes: int) -> float:
    """The test score of the zero function f = 0 (a centred network at step 0, or chance): MSE 1/C against
    one-hot labels, and error 1 - 1/C (its argmax is one fixed class; the test set is class-balanced)."""
    return 1.0 / n_classes if metric == "test_mse" else 1.0 - 1.0 / n_classes


def unlearned(ns, values: np.ndarray, zero_score: float) -> list:
    """The n at which a curve has not learned: its mean over seeds and test points is not below the zero
    function's score by two standard errors (a network reported at step 0, a kernel or network at chance).
    values: (len(ns), seeds, points)."""
    flat = values.reshape(len(ns), -1)
    se = flat.std(axis=1, ddof=1) / np.sqrt(flat.shape[1]) if flat.shape[1] > 1 else np.zeros(len(ns))
    return [int(n) for n, m, e in zip(ns, flat.mean(axis=1), se) if m + 2 * e >= zero_score]


# A network state whose validation score is within this fraction of the zero function's has not learned
# (relative: a near-zero function's score sits a hair below the zero function's, never by a margin).
UNLEARNED_MARGIN = 0.02


def untrained_seeds(ns, seeds, points: dict, n_classes: int) -> dict:
    """{n: [seeds]} at which a network's reported state is no better than the zero function on the
    validation data (by UNLEARNED_MARGIN, relative, in MSE or in error): each (n, seed) judged on its own, so
    one seed stopped at its first steps is never averaged in with trained ones. `points`: {(n, seed): arrays
    of read_pointwise}; curves without validation scores (kernels) give {}."""
    out = {}
    for n in ns:
        for seed in seeds:
            arrays = points[(n, seed)]
            if not all(key in arrays for key in VALIDATION_KEYS):
                return {}
            mse, error = (float(np.ravel(arrays[key])[0]) for key in VALIDATION_KEYS)
            if mse >= (1 - UNLEARNED_MARGIN) * zero_function_score("test_mse", n_classes) or \
                    error >= (1 - UNLEARNED_MARGIN) * zero_function_score("test_error", n_classes):
                out.setdefault(int(n), []).append(int(seed))
    return out


def upper_half_start(ns, n_min, n_max) -> int | None:
    """The first n of the upper half (in log n) of the fit range [n_min, n_max] of `ns`, or None when that half
    holds fewer than 2 sizes: where the local exponent is fitted (`alpha_upper`)."""
    inside = [n for n in ns if n >= n_min and (n_max is None or n <= n_max)]
    if len(inside) < 3:
        return None
    mid = math.sqrt(inside[0] * inside[-1])
    upper = [n for n in inside if n >= mid * (1 - 1e-9)]
    return int(upper[0]) if len(upper) >= 2 else None


def learned_from(ns, unlearned_ns) -> int:
    """The first n of the fit range after which no point is unlearned."""
    later = [n for n in ns if n > max(unlearned_ns)] if unlearned_ns else list(ns)
    return int(later[0]) if later else int(max(ns)) + 1


def fit_curves(pointwise_paths, fit_cfg: dict, n_classes: int | None = None) -> list[dict]:
    """Read per-point result files (network runs, kernel regressions) and fit every curve and metric, each
    with its paired deficit against the reference network (`fit.reference`, default the network at its
    best-validation step) over the same range of n.

    The range of a curve starts at the largest of fit.n_min, the first n from which both it and its reference
    network have learned (`unlearned`, with n_classes; every point is flagged in `unlearned_n`) and, for an
    after-kernel with fit.after_kernel_from_k, its k (below k its kernel has seen more labels than the
    regression); the reference is refitted over each range its curves use, on the same draws, and so is an
    after-kernel's eNTK at init (`init_alpha`, and the paired `init_gain` of the after-kernel over it)."""
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
    network_widths = sorted({c[2] for c in curves if c[3] == reference})
    untrained = {cid: untrained_seeds(*grids[cid], curves[cid], n_classes) if n_classes else {} for cid in curves}
    rows = []
    for metric in fit_cfg["metrics"]:
        # curves on the same (dataset, arch, n, seeds, test points) share their seeds and test-point draws
        groups: dict = {}
        for cid, points in curves.items():
            ns, seeds = grids[cid]
            values = np.stack([np.stack([points[(n, s)][metric] for s in seeds]) for n in ns])
            groups.setdefault((cid[0], cid[1], ns, seeds, values.shape[2]), {})[cid] = values
        fits, upper_fits, ref_fits, flagged, fit_start = {}, {}, {}, {}, {}
        for (_, _, ns, _, _), group in sorted(groups.items(), key=lambda kv: str(kv[0])):
            zero = zero_function_score(metric, n_classes) if n_classes else np.inf
            flagged.update({cid: sorted(set(unlearned(ns, v, zero)) | set(untrained[cid])) for cid, v in group.items()})
            starts = {}
            for cid in group:
                ref_id = _reference_id(cid, network_widths, reference)
                start = max(learned_from(ns, flagged[cid] + flagged.get(ref_id, [])) if ref_id in group
                            else learned_from(ns, flagged[cid]), fit_cfg["n_min"] or 0)
                if cid[3] == "entk_after" and fit_cfg.get("after_kernel_from_k", True):
                    start = max(start, int(cid[6]))
                starts[cid] = start
            fit_start.update(starts)
            for start in sorted(set(starts.values())):
                members = {cid: v for cid, v in group.items() if starts[cid] == start}
                # the reference networks, and for after-kernels their eNTK at init, refitted over this range
                inits = {_init_kernel_id(m) for m in members}
                refs = {cid: v for cid, v in group.items() if cid[3] == reference or cid in inits}
                res = bootstrap_exponents(ns, {**members, **refs}, floor=fit_cfg["floor"], n_boot=fit_cfg["bootstrap"],
                                          confidence=fit_cfg["confidence"], n_min=start, n_max=fit_cfg["n_max"])
                fits.update({cid: res[cid] for cid in members})
                ref_fits.update({(cid, start): res[cid] for cid in refs})
                upper = upper_half_start(ns, start, fit_cfg["n_max"])
                if upper is not None:  # the local exponent: the upper half of the same range, paired alike
                    res = bootstrap_exponents(ns, {**members, **refs}, floor=False, n_boot=fit_cfg["bootstrap"],
                                              confidence=fit_cfg["confidence"], n_min=upper, n_max=fit_cfg["n_max"])
                    upper_fits.update({cid: res[cid] for cid in members})
                    ref_fits.update({(cid, start, "upper"): res[cid] for cid in refs})
        for cid in sorted(fits, key=str):
            res = fits[cid]
            dataset, arch, width, method, kind, ridge, k = cid
            row = {"dataset": dataset, "arch": arch, "width": width, "method": method, "kind": kind,
                   "ridge": ridge, "k": k, "metric": metric, "unlearned_n": ";".join(map(str, flagged[cid])),
                   "untrained_seeds": ";".join(f"{n}:{','.join(map(str, s))}" for n, s in sorted(untrained[cid].items())),
                   **{c: res[c] for c in EXPONENT_COLUMNS if c in res},
                   # each seed's own exponent: a seed in another mode is shown, not only averaged in
                   "seed_alphas": ";".join(f"{a:.4g}" for a in res["seed_alphas"])}
            ref_id = _reference_id(cid, network_widths, reference)
            ref = ref_fits.get((ref_id, fit_start[cid]))
            if ref is not None:
                row.update(network_method=reference, network_width=ref_id[2],
                           network_alpha=ref["alpha"], network_alpha_lo=ref["alpha_lo"],
                           network_alpha_hi=ref["alpha_hi"], **paired_deficit(ref, res, fit_cfg["confidence"]))
            init = ref_fits.get((_init_kernel_id(cid), fit_start[cid]))
            if init is not None:  # claim 2: the after-kernel's gain over the kernel it started from, same range
                gain = paired_deficit(res, init, fit_cfg["confidence"])
                row.update(init_alpha=init["alpha"], init_gain=gain["alpha_deficit"], init_gain_lo=gain["deficit_lo"],
                           init_gain_hi=gain["deficit_hi"])
            if cid in upper_fits:
                up = upper_fits[cid]
                row.update(n_min_upper=up["n_min"], alpha_upper=up["alpha"], alpha_upper_lo=up["alpha_lo"],
                           alpha_upper_hi=up["alpha_hi"])
                ref_up = ref_fits.get((ref_id, fit_start[cid], "upper"))
                if ref_up is not None:
                    d = paired_deficit(ref_up, up, fit_cfg["confidence"])
                    row.update(alpha_deficit_upper=d["alpha_deficit"], deficit_upper_lo=d["deficit_lo"],
                               deficit_upper_hi=d["deficit_hi"])
            rows.append(row)
    return rows


UPPER_COLUMNS = ("n_min_upper", "alpha_upper", "alpha_upper_lo", "alpha_upper_hi", "alpha_deficit_upper",
                 "deficit_upper_lo", "deficit_upper_hi")  # the local exponent: the upper half of the fit range
INIT_GAIN_COLUMNS = ("init_alpha", "init_gain", "init_gain_lo", "init_gain_hi")  # after-kernels: alpha - alpha_init
SUMMARY_COLUMNS = ("dataset", "arch", "width", "method", "kind", "k", "ridge", "metric", "alpha", "alpha_lo",
                   "alpha_hi", "n_min", "n_max", "unlearned_n", "untrained_seeds", "n_seeds", "n_test", "network_method", "network_width",
                   "network_alpha", "network_alpha_lo", "network_alpha_hi", "alpha_deficit", "deficit_lo",
                   "deficit_hi", "n_min_upper", "alpha_upper", "alpha_upper_lo", "alpha_upper_hi", "alpha_deficit_upper",
                   "deficit_upper_lo", "deficit_upper_hi", *INIT_GAIN_COLUMNS,
                   "alpha_predicted", "alpha_gap", "alpha_powerlaw", "spectrum_rows", "prediction_trusted")
METHOD_ORDER = METHODS


def read_exponents(path):
    """exponents.csv as written by the fit stage, ridges kept as their labels (`tuned`, '0.001')."""
    import pandas as pd
    return pd.read_csv(path, dtype={"ridge": str, "kind": str, "network_method": str, "unlearned_n": str,
                                    "untrained_seeds": str, "seed_alphas": str},
                       keep_default_na=False,
                       na_values={c: ["", "nan"] for c in ("alpha", "alpha_lo", "alpha_hi", "n_min", "n_max",
                                                              "network_alpha",
                                                              "network_alpha_lo", "network_alpha_hi",
                                                              "alpha_deficit", "deficit_lo", "deficit_hi",
                                                              *UPPER_COLUMNS, *INIT_GAIN_COLUMNS, "alpha_predicted", "alpha_gap", "alpha_powerlaw",
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
    for column in ("unlearned_n", "untrained_seeds"):  # exponents written before points or seeds were flagged
        if column not in df:
            df[column] = ""
    for column in (*UPPER_COLUMNS, *INIT_GAIN_COLUMNS):  # exponents written before these columns
        if column not in df:
            df[column] = np.nan
    df["width"] = df["width"].astype(float)
    df["ridge"] = df["ridge"].map(ridge_label)
    df = df[df["method"].isin(RIDGELESS_METHODS) | (df["ridge"] == ridge_label(ridge))]
    order = pd.Categorical(df["method"], METHOD_ORDER, ordered=True)
    df = df.assign(_o=order).sort_values(["dataset", "arch", "metric", "width", "_o", "k"]).drop(columns="_o")
    df["width"] = [str(int(w)) if np.isfinite(w) else "inf" for w in df["width"]]
    df["network_width"] = [str(int(float(w))) if str(w) not in ("", "nan") else "" for w in df["network_width"]]
    df["k"] = pd.to_numeric(df["k"], errors="coerce").astype("Int64")  # empty where k moves with n
    df = with_predictions(df, metrics) if metrics is not None else df.assign(
        alpha_predicted=np.nan, alpha_gap=np.nan, alpha_powerlaw=np.nan, spectrum_rows=np.nan,
        prediction_trusted="")
    return df[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def with_predictions(summary, metrics):
    """The theory's exponents beside each kernel's measured test-MSE exponent (ntkscaling.theory):
    alpha_predicted, the slope of the seed-mean predicted test MSE over the same n range (least squares in
    log-log space, the predictions being smooth); alpha_gap = alpha - alpha_predicted; alpha_powerlaw =
    min(a - 1, 2b) of the fitted spectrum, mean over seeds; spectrum_rows, the rows M of the spectrum;
    prediction_trusted, "yes" when the fit range stays within n <= M / theory.TRUSTED_ROWS_PER_N, "no" when it
    reaches past it (the prediction is then biased: docs/method.md). Empty for networks and the test error."""
    from .theory import TRUSTED_ROWS_PER_N
    import pandas as pd
    m = metrics.assign(width=metrics["width"].astype(str), ridge=metrics["ridge"].astype(str),
                       k=pd.to_numeric(metrics["k"], errors="coerce"))
    predicted, powerlaw, gap, rows = [], [], [], []
    for row in summary.itertuples(index=False):
        same = ((m["method"] == row.method) & (m["width"] == str(row.width)) & (m["kind"] == row.kind)
                & (True if pd.isna(row.k) else m["k"] == int(row.k)))  # no k: one per n (entk_after_n)
        alpha = np.nan
        if row.metric == "test_mse" and row.method not in RIDGELESS_METHODS and np.isfinite(row.n_min):
            curve = m[same & (m["metric"] == "predicted_test_mse") & (m["ridge"] == ridge_label(row.ridge))
                      & m["n"].between(row.n_min, row.n_max)].groupby("n")["value"].mean()
            if len(curve) >= 2 and (curve > 0).all():
                alpha = -np.polyfit(np.log(curve.index.to_numpy(float)), np.log(curve.to_numpy()), 1)[0]
        law = m[same & (m["metric"] == "alpha_powerlaw")]
        rows.append(float(law["n"].max()) if len(law) and row.method not in RIDGELESS_METHODS else np.nan)
        law = law["value"]
        predicted.append(alpha)
        powerlaw.append(float(law.mean()) if len(law) and row.method not in RIDGELESS_METHODS else np.nan)
        gap.append(row.alpha - alpha)
    trusted = ["" if not np.isfinite(a) or not np.isfinite(r) else ("yes" if n_max <= r / TRUSTED_ROWS_PER_N else "no")
               for a, r, n_max in zip(predicted, rows, summary["n_max"])]
    return summary.assign(alpha_predicted=predicted, alpha_gap=gap, alpha_powerlaw=powerlaw, spectrum_rows=rows,
                          prediction_trusted=trusted)

