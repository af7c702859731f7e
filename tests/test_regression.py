"""Kernel ridge regression against scikit-learn's KernelRidge and scipy solves on the same kernels."""
import numpy as np
import pytest
import scipy.linalg
from sklearn.kernel_ridge import KernelRidge

from ntkscaling.analysis import regression


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
    with pytest.raises(ValueError, match="K_test_train: 1 of its 150 values are NaN or infinite"):
        regression.kernel_regression(K, bad_test_rows, y[:30], y[30:], 2, ridges=[0.0])


def test_full_kernel_with_identity_blocks_equals_scalar_kernel():
    K, y, n, C = _problem()
    full = np.einsum("ab,cd->abcd", K, np.eye(C))
    a = regression.kernel_regression(full[:n, :n], full[n:, :n], y[:n], y[n:], C, ridges=[0.01])[0]
    b = regression.kernel_regression(K[:n, :n], K[n:, :n], y[:n], y[n:], C, ridges=[0.01])[0]
    np.testing.assert_allclose(a["pred"], b["pred"], rtol=1e-9)


def _blocks(n_max, m_val, m_test):
    return {"train": slice(0, n_max), "val": slice(n_max, n_max + m_val),
            "test": slice(n_max + m_val, n_max + m_val + m_test)}


def test_nested_slices_equal_direct_solves():
    K, y, n_max, C = _problem(n=32, m=10)
    blocks = _blocks(n_max, 4, 6)
    out = list(regression.nested_regression(K, y, blocks, [8, 16, 32], C, ridges=[0.01]))
    assert [n for n, _ in out] == [8, 16, 32]
    for n, r in out:
        direct = regression.kernel_regression(K[:n, :n], K[36:, :n], y[:n], y[36:], C, [0.01])[0]
        np.testing.assert_allclose(r["pred"], direct["pred"])
        val = regression.kernel_regression(K[:n, :n], K[32:36, :n], y[:n], y[32:36], C, [0.01])[0]
        np.testing.assert_allclose(r["val"]["mse"], val["mse"])
        assert not r["tuned"]


def test_linearized_predictor_is_f0_plus_kernel_regression_on_the_residual():
    K, y, n, C = _problem()
    rng = np.random.default_rng(3)
    f0 = rng.normal(size=(len(y), C))
    r = regression.kernel_regression(K[:n, :n], K[n:, :n], y[:n], y[n:], C, [0.0],
                                     prior_train=f0[:n], prior_test=f0[n:])[0]
    expected = f0[n:] + K[n:, :n] @ np.linalg.solve(K[:n, :n], np.eye(C)[y[:n]] - f0[:n])
    np.testing.assert_allclose(r["pred"], expected, rtol=1e-6, atol=1e-8)
    # ridge 0 interpolates the labels, whatever f0
    train = regression.kernel_regression(K[:n, :n], K[:n, :n], y[:n], y[:n], C, [0.0], prior_train=f0[:n],
                                         prior_test=f0[:n])[0]
    np.testing.assert_allclose(train["pred"], np.eye(C)[y[:n]], atol=1e-6)


def test_select_ridge_matches_sklearn_on_the_validation_set():
    K, y, n, C = _problem(n=40, m=30)
    grid = [0.0, 1e-4, 1e-2, 0.1, 1.0, 10.0]
    best, scores = regression.select_ridge(K[:n, :n], K[n:, :n], y[:n], y[n:], C, grid)
    scale = np.mean(np.diag(K[:n, :n]))
    reference = []
    for lam in grid:
        skl = KernelRidge(alpha=max(lam, 1e-12) * scale, kernel="precomputed").fit(K[:n, :n], np.eye(C)[y[:n]])
        reference.append(((skl.predict(K[n:, :n]) - np.eye(C)[y[n:]]) ** 2).mean())
    np.testing.assert_allclose([v for _, v in scores], reference, rtol=1e-6)
    assert best == grid[int(np.argmin(reference))]
    err_best, err_scores = regression.select_ridge(K[:n, :n], K[n:, :n], y[:n], y[n:], C, grid, metric="error")
    assert all(0 <= v <= 1 for _, v in err_scores)


def test_tuned_ridge_never_reads_the_test_block():
    K, y, n_max, C = _problem(n=32, m=40)
    blocks = _blocks(n_max, 20, 20)
    grid = [0.0, 1e-3, 0.1, 1.0, 10.0]
    tuned = lambda K_, y_: {n: r["ridge"] for n, r in regression.nested_regression(  # noqa: E731
        K_, y_, blocks, [8, 16, 32], C, ridges=[], grid=grid) if r["tuned"]}
    before = tuned(K, y)
    rng = np.random.default_rng(7)
    K2, y2 = K.copy(), y.copy()
    K2[52:, :] = rng.normal(size=K2[52:, :].shape)  # test rows: anything finite
    y2[52:] = rng.integers(0, C, 20)
    assert tuned(K2, y2) == before
    assert set(before.values()) <= set(grid)


def test_validation_copies_of_the_training_points_select_interpolation():
    K, y, n, C = _problem(n=30, m=10)
    best, scores = regression.select_ridge(K[:n, :n], K[:n, :n], y[:n], y[:n], C, [10.0, 1.0, 0.0, 0.1])
    assert best == 0.0 and dict(scores)[0.0] < 1e-8 < dict(scores)[0.1]


def test_select_ridge_scores_each_ridge_as_the_solve_applies_it_on_a_singular_float32_kernel():
    # A rank-6 kernel stored in float32 (round-off eigenvalues around 0) whose labels are a function of its
    # features: the Cholesky path regularizes ridge 0 with its jitter, and that predictor is the best on
    # validation. Every ridge's validation score must be the one of the Cholesky solve (an independent path).
    rng = np.random.default_rng(11)
    n, m, C = 60, 40, 2
    F = rng.standard_normal((n + m, 6))
    K = (F @ F.T).astype(np.float32)
    y = (F[:, 0] > 0).astype(int)
    grid = [0.0, 1e-4, 1e-2, 0.1, 1.0]
    best, scores = regression.select_ridge(K[:n, :n], K[n:, :n], y[:n], y[n:], C, grid)
    solved = regression.kernel_regression(K[:n, :n], K[n:, :n], y[:n], y[n:], C, grid)
    assert solved[0]["jitter"] > 0  # singular: the solve needed a jitter at ridge 0
    np.testing.assert_allclose([v for _, v in scores], [r["mse"].mean() for r in solved], rtol=1e-4)
    assert best == grid[int(np.argmin([r["mse"].mean() for r in solved]))]
