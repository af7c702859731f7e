"""Kernel ridge regression on one-hot targets: the kernel predictors' test error and MSE for every n.

Solve (K_train + lambda * mean(diag K_train) * I) alpha = Y in float64 by Cholesky, predict
K_test,train alpha. lambda = 0 interpolates; when K_train is numerically singular a jitter is escalated
(1e-12, 1e-11, ... times mean(diag)) and recorded. `full` kernels (n, n, C, C) regress the n*C outputs
jointly. Kernels computed once on (largest train subset + test set) are sliced for every nested n.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

JITTERS = tuple(10.0 ** e for e in range(-12, -1))


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


def kernel_regression(K_train, K_test_train, y_train, y_test, n_classes: int, ridges, center: bool = False):
    """Ridge regression for each relative ridge; returns a list of dicts with per-point `error` and `mse`,
    `ridge`, `jitter`, and `pred` (m, C)."""
    full = np.ndim(K_train) == 4
    K_train, K_test_train = np.asarray(K_train), np.asarray(K_test_train, dtype=np.float64)
    if not (np.all(np.isfinite(K_train)) and np.all(np.isfinite(K_test_train))):
        raise ValueError("kernel contains NaN or inf; it cannot be used for regression")
    Y = np.eye(n_classes)[y_train]
    offset = 1.0 / n_classes if center else 0.0
    target = Y - offset
    if full:
        K_train, K_test_train = _flatten_full(K_train), _flatten_full(K_test_train)
        target = target.reshape(-1)
    results = []
    for ridge in ridges:
        factor, jitter = cholesky_with_jitter(K_train, float(ridge))
        alpha = scipy.linalg.cho_solve(factor, target)
        pred = K_test_train @ alpha
        pred = pred.reshape(len(y_test), n_classes) + offset
        onehot = np.eye(n_classes)[y_test]
        results.append({"ridge": float(ridge), "jitter": jitter, "pred": pred,
                        "error": (pred.argmax(1) != y_test).astype(np.float64),
                        "mse": ((pred - onehot) ** 2).mean(1)})
    return results


def nested_regression(K, y_all, n_train_max: int, ns, n_classes: int, ridges, center: bool = False):
    """K over (first n_train_max nested train points + test points); regress on every nested n.

    Yields (n, result) for each n in `ns` and each ridge.
    """
    y_train, y_test = y_all[:n_train_max], y_all[n_train_max:]
    for n in ns:
        if n > n_train_max:
            raise ValueError(f"n={n} exceeds the {n_train_max} training points the kernel was computed on")
        K_tr = K[:n, :n]
        K_te = K[n_train_max:, :n]
        for res in kernel_regression(K_tr, K_te, y_train[:n], y_test, n_classes, ridges, center=center):
            yield n, res
