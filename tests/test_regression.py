"""Kernel ridge regression against scikit-learn's KernelRidge and scipy solves on the same kernels."""
import numpy as np
import pytest
import scipy.linalg
from sklearn.kernel_ridge import KernelRidge

from ntkscaling import regression


def _problem(n=40, m=15, d=6, C=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n + m, d))
    K = np.exp(-0.5 * ((X[:, None] - X[None]) ** 2).sum(-1) / d)
    y = rng.integers(0, C, n + m)
    return K, y, n, C


def test_matches_sklearn_kernel_ridge():
    K, y, n, C = _problem()
    res = regression.kernel_regression(K[:n, :n], K[n:, :n], y[:n], y[n:], C, ridges=[0.1, 1e-3])
    for r in res:
        lam = r["ridge"] * np.mean(np.diag(K[:n, :n]))
        skl = KernelRidge(alpha=lam, kernel="precomputed").fit(K[:n, :n], np.eye(C)[y[:n]])
        pred = skl.predict(K[n:, :n])
        np.testing.assert_allclose(r["pred"], pred, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(r["mse"], ((pred - np.eye(C)[y[n:]]) ** 2).mean(1), rtol=1e-8)
        np.testing.assert_array_equal(r["error"], pred.argmax(1) != y[n:])
        assert r["jitter"] == 0.0


def test_interpolation_and_centering():
    K, y, n, C = _problem()
    r = regression.kernel_regression(K[:n, :n], K[:n, :n], y[:n], y[:n], C, ridges=[0.0])[0]
    np.testing.assert_allclose(r["pred"], np.eye(C)[y[:n]], atol=1e-6)  # ridge 0 interpolates
    c = regression.kernel_regression(K[:n, :n], K[n:, :n], y[:n], y[n:], C, ridges=[0.0], center=True)[0]
    expected = K[n:, :n] @ scipy.linalg.solve(K[:n, :n], np.eye(C)[y[:n]] - 1 / C, assume_a="pos") + 1 / C
    np.testing.assert_allclose(c["pred"], expected, rtol=1e-6, atol=1e-8)


def test_singular_kernel_gets_recorded_jitter():
    rng = np.random.default_rng(1)
    F = rng.normal(size=(30, 3))  # rank 3 kernel on 30 points
    K = F @ F.T
    y = rng.integers(0, 2, 35)
    r = regression.kernel_regression(K, K[:5], y[:30], y[30:], 2, ridges=[0.0])[0]
    assert r["jitter"] > 0 and np.all(np.isfinite(r["pred"]))
    with pytest.raises(ValueError, match="NaN"):
        regression.kernel_regression(K * np.nan, K[:5], y[:30], y[30:], 2, ridges=[0.0])
    bad_test_rows = K[:5].copy()
    bad_test_rows[2, 3] = np.inf  # only the test block: no solve would notice, the predictions would be NaN
    with pytest.raises(ValueError, match="kernel contains NaN or inf"):
        regression.kernel_regression(K, bad_test_rows, y[:30], y[30:], 2, ridges=[0.0])


def test_full_kernel_with_identity_blocks_equals_scalar_kernel():
    K, y, n, C = _problem()
    full = np.einsum("ab,cd->abcd", K, np.eye(C))
    a = regression.kernel_regression(full[:n, :n], full[n:, :n], y[:n], y[n:], C, ridges=[0.01])[0]
    b = regression.kernel_regression(K[:n, :n], K[n:, :n], y[:n], y[n:], C, ridges=[0.01])[0]
    np.testing.assert_allclose(a["pred"], b["pred"], rtol=1e-9)


def test_nested_slices_equal_direct_solves():
    K, y, n_max, C = _problem(n=32, m=10)
    out = list(regression.nested_regression(K, y, n_max, [8, 16, 32], C, ridges=[0.01]))
    assert [n for n, _ in out] == [8, 16, 32]
    for n, r in out:
        direct = regression.kernel_regression(K[:n, :n], K[n_max:, :n], y[:n], y[n_max:], C, [0.01])[0]
        np.testing.assert_allclose(r["pred"], direct["pred"])
