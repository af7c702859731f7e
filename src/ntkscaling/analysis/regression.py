"""Kernel ridge regression on one-hot targets: the kernel predictors' test error and MSE for every n.

Solve (K_train + lambda * mean(diag K_train) * I) alpha = Y - f0_train in float64 by Cholesky and predict
f0_test + K_test,train alpha. f0 is the prior function: zero for plain kernel regression (the predictor a
centred network converges to in the lazy limit), the network's own initial outputs for the *linearized*
predictor that an uncentred network is compared with. lambda = 0 interpolates; when K_train is numerically
singular a jitter is escalated (1e-12, 1e-11, ... times mean(diag)) and recorded. `full` kernels
(n, n, C, C) regress the n*C outputs jointly.

Ridge selection (`select_ridge`) is made on the validation block only: one eigendecomposition of K_train
serves every ridge of the grid; the chosen ridge is then solved by the same Cholesky path as every other
ridge. Kernels computed once on (largest train subset + validation + test set) are sliced for every nested
n (`nested_regression`).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from .. import arguments

JITTERS = tuple(10.0 ** e for e in range(-12, -1))
SELECTION_METRICS = ("mse", "error")


class SingularKernelError(np.linalg.LinAlgError):
    """The kernel could not be factorized even with the largest jitter."""


def _flatten_full(K: np.ndarray) -> np.ndarray:
    """(n1, n2, C, C) -> (n1*C, n2*C) with row index a*C + c."""
    n1, n2, C, _ = K.shape
    return K.transpose(0, 2, 1, 3).reshape(n1 * C, n2 * C)


def cholesky_with_jitter(K: np.ndarray, rel_ridge: float):
    """Cholesky factor of K + (rel_ridge + jitter) * mean(diag K) * I; returns (factor, jitter used)."""
    scale = float(np.mean(np.diag(K), dtype=np.float64))
    if not np.isfinite(scale) or scale <= 0:
        raise SingularKernelError(f"kernel has mean diagonal {scale}; expected a positive finite value")
    for jitter in (0.0,) + JITTERS:
        A = np.array(K, dtype=np.float64, order="F")  # one copy, factorized in place
        A.flat[:: len(A) + 1] += (rel_ridge + jitter) * scale
        try:
            return scipy.linalg.cho_factor(A, lower=True, overwrite_a=True, check_finite=False), jitter
        except np.linalg.LinAlgError:
            continue
    raise SingularKernelError(f"kernel is not positive definite even with jitter {JITTERS[-1]} * mean(diag)")


def _checked(K_train, K_other_train, y_train, y_other, n_classes, prior_train, prior_other, ridges, other: str,
             ridges_name: str = "ridges"):
    """The arguments of one regression, checked (`arguments`): kernels of real finite numbers, K_train square
    and symmetric, one label in 0..C-1 per row on each side, priors (rows, C), ridges >= 0. Names `other`
    the held-out side (K_test_train or K_val_train)."""
    C = arguments.n_classes(n_classes)
    K_train = arguments.array("K_train", K_train, ndim=(2, 4))
    K_other_train = arguments.array(other, K_other_train, ndim=K_train.ndim)
    arguments.symmetric_kernel("K_train", K_train)
    n, m = K_train.shape[0], K_other_train.shape[0]
    if K_train.ndim == 4 and K_train.shape[2:] != (C, C):
        raise arguments.ArgumentError(f"K_train: a full kernel (n, n, C, C) with C = n_classes = {C}, got "
                                      f"shape {K_train.shape}")
    if K_other_train.shape[1:] != K_train.shape[1:]:
        raise arguments.ArgumentError(f"{other}: shape {K_other_train.shape}, expected (m,) + "
                                      f"{K_train.shape[1:]} (its columns are the {n} training points)")
    y_train = arguments.labels("y_train", y_train, C, length=n)
    y_other = arguments.labels(f"y_{other.split('_')[1]}", y_other, C, length=m)
    priors = []
    for name, prior, rows in (("prior_train", prior_train, n), (f"prior_{other.split('_')[1]}", prior_other, m)):
        if prior is not None:
            prior = arguments.array(name, prior, ndim=2)
            if prior.shape != (rows, C):
                raise arguments.ArgumentError(f"{name}: shape {prior.shape}, expected ({rows}, {C})")
        priors.append(prior)
    return K_train, K_other_train, y_train, y_other, C, *priors, arguments.ridges(ridges_name, ridges)


def _problem(K_train, K_other_train, y_train, n_classes: int, center: bool, prior_train):
    """The float64 matrices and the residual target of one regression: (K_train, K_other_train, target,
    offset added back to predictions). Full kernels are flattened to (n*C, n*C)."""
    K_other_train = np.asarray(K_other_train, dtype=np.float64)
    offset = 1.0 / n_classes if center else 0.0
    target = np.eye(n_classes)[y_train] - offset
    if prior_train is not None:
        target = target - np.asarray(prior_train, dtype=np.float64)
    if np.ndim(K_train) == 4:
        K_train, K_other_train = _flatten_full(K_train), _flatten_full(K_other_train)
        target = target.reshape(-1)
    return K_train, K_other_train, target, offset


def _scores(pred: np.ndarray, y: np.ndarray, n_classes: int) -> dict:
    """Per-point 0/1 error and MSE (mean over the C outputs) of predictions (m, C)."""
    return {"error": (pred.argmax(1) != y).astype(np.float64),
            "mse": ((pred - np.eye(n_classes)[y]) ** 2).mean(1)}


def kernel_regression(K_train, K_test_train, y_train, y_test, n_classes: int, ridges, center: bool = False,
                      prior_train=None, prior_test=None):
    """Kernel ridge regression on one-hot targets, for each ridge.

    Args:
        K_train: (n, n) kernel of the training points; K_test_train: (m, n) between test and training points
            (for the full kind, (n*C, n*C) and (m*C, n*C)).
        y_train, y_test: integer labels; n_classes: C.
        ridges: each relative to mean(diag K_train); a singular kernel gets the smallest jitter that
            factorizes (recorded as `jitter`).
        center: regress on targets minus their mean. prior_train, prior_test: the f0 of the linearized
            predictor ((n, C), (m, C)): the kernel fits Y - f0_train and f0_test is added back.

    Returns:
        A list, one dict per ridge: `ridge`, `jitter`, `pred` (m, C), and per test point `error` (0/1) and
        `mse` (mean over the C outputs).

    Example:
        >>> x = np.random.default_rng(0).normal(size=(40, 3)); y = (x[:, 0] > 0).astype(int); K = x @ x.T + 1
        >>> bool(kernel_regression(K[:30, :30], K[30:, :30], y[:30], y[30:], 2, [1e-3])[0]["error"].mean() < 0.5)
        True
    """
    K_train, K_test_train, y_train, y_test, n_classes, prior_train, prior_test, ridges = _checked(
        K_train, K_test_train, y_train, y_test, n_classes, prior_train, prior_test, ridges, "K_test_train")
    K_train, K_test_train, target, offset = _problem(K_train, K_test_train, y_train, n_classes, center,
                                                     prior_train)
    base = offset + (0.0 if prior_test is None else np.asarray(prior_test, dtype=np.float64))
    results = []
    for ridge in ridges:
        factor, jitter = cholesky_with_jitter(K_train, float(ridge))
        alpha = scipy.linalg.cho_solve(factor, target)
        pred = (K_test_train @ alpha).reshape(len(y_test), n_classes) + base
        results.append({"ridge": float(ridge), "jitter": jitter, "pred": pred, **_scores(pred, y_test, n_classes)})
    return results


def select_ridge(K_train, K_val_train, y_train, y_val, n_classes: int, grid, metric: str = "mse",
                 center: bool = False, prior_train=None, prior_val=None):
    """The ridge of `grid` with the lowest mean validation `metric` (ties: the larger ridge).

    Args:
        K_train (n, n), K_val_train (v, n), y_train, y_val, n_classes, center and the priors as in
        `kernel_regression`; grid: the candidate ridges; metric: 'mse' or 'error'.

    Returns:
        (best ridge, [(ridge, mean validation metric), ...] for every ridge of the grid).

    One eigendecomposition K_train = V diag(e) V^T serves the whole grid:
    predictions are K_val V diag(1 / (e + (ridge + jitter) * mean(diag))) V^T Y, with the jitter the Cholesky
    path (`kernel_regression`) adds to that ridge: each ridge is scored as the predictor it would choose. A
    ridge that leaves K_train + ridge numerically singular (a float32 kernel's round-off eigenvalues near or
    below 0) gets its jitter from the Cholesky path itself; eigenvalues are not clipped, which would score
    ridge 0 with a shift the solve never applies and so never choose it."""
    if metric not in SELECTION_METRICS:
        raise ValueError(f"selection metric {metric!r} is unknown; expected one of {SELECTION_METRICS}")
    K_train, K_val_train, y_train, y_val, n_classes, prior_train, prior_val, grid = _checked(
        K_train, K_val_train, y_train, y_val, n_classes, prior_train, prior_val, grid, "K_val_train", "grid")
    K_train, K_val_train, target, offset = _problem(K_train, K_val_train, y_train, n_classes, center, prior_train)
    base = offset + (0.0 if prior_val is None else np.asarray(prior_val, dtype=np.float64))
    scale = float(np.mean(np.diag(K_train)))
    e, V = scipy.linalg.eigh(np.asarray(K_train, dtype=np.float64), check_finite=False)
    KV, VtY = K_val_train @ V, V.T @ target
    scores = []
    for ridge in grid:
        near_singular = e.min() + float(ridge) * scale <= 1e-6 * scale
        jitter = cholesky_with_jitter(K_train, float(ridge))[1] if near_singular else 0.0
        shift = (float(ridge) + jitter) * scale
        denominator = np.maximum(e + shift, np.finfo(np.float64).eps * len(e) * scale)  # round-off level only
        pred = (KV @ (VtY.T / denominator).T).reshape(len(y_val), n_classes) + base
        value = float(_scores(pred, y_val, n_classes)[metric].mean())
        scores.append((float(ridge), value if np.isfinite(value) else np.inf))
    best = min(scores, key=lambda rs: (rs[1], -rs[0]))[0]
    return best, scores


def nested_regression(K, y_all, blocks: dict, ns, n_classes: int, ridges, grid=(), metric: str = "mse",
                      center: bool = False, prior=None):
    """Kernel regression for every nested training-set size n from one kernel on all rows.

    Args:
        K: the kernel on the rows [first n_max training points | validation | test] (`data.kernel_rows`).
        y_all: the labels of those rows; blocks: their slices 'train', 'val', 'test' (`data.row_blocks`).
        ns: training-set sizes (each n uses the first n training rows: nested subsets).
        ridges: fixed ridges; grid: candidates for the ridge chosen on the validation rows (empty: none).
        metric: the validation metric of the choice; prior: f0 on every row (linearized predictor) or None.

    Yields:
        (n, result) per n and ridge: `kernel_regression`'s dict for the test rows, the same for the
        validation rows under 'val', and `tuned` (True for the validation-selected ridge).
    """
    tr, va, te = blocks["train"], blocks["val"], blocks["test"]
    n_train_max = tr.stop
    if va.stop != te.start:
        raise ValueError(f"validation rows {va} must be followed by the test rows {te}")
    p = (lambda rows: None) if prior is None else (lambda rows: prior[rows])
    for n in ns:
        if n > n_train_max:
            raise ValueError(f"n={n} exceeds the {n_train_max} training points the kernel was computed on")
        K_tr, y_tr, p_tr = K[:n, :n], y_all[:n], p(slice(0, n))
        chosen = []
        if len(grid):
            best, _ = select_ridge(K_tr, K[va, :n], y_tr, y_all[va], n_classes, grid, metric, center, p_tr, p(va))
            chosen = [best]
        # validation and test rows are contiguous: one solve per ridge predicts both
        held_out = slice(va.start, te.stop)
        m = va.stop - va.start
        results = kernel_regression(K_tr, K[held_out, :n], y_tr, y_all[held_out], n_classes,
                                    list(ridges) + chosen, center, p_tr, p(held_out))
        for i, res in enumerate(results):
            split = {key: (res[key][:m], res[key][m:]) for key in ("pred", "error", "mse")}
            yield n, {**res, **{key: t for key, (_, t) in split.items()},
                      "val": {key: v for key, (v, _) in split.items()}, "tuned": i >= len(ridges)}
