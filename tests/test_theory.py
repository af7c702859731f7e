"""The eigenlearning predictions against closed forms and against simulated kernel regression."""
import numpy as np
import pytest

from ntkscaling.analysis import theory


@pytest.mark.parametrize("lam,n,ridge", [(1.0, 1, 0.5), (2.0, 3, 0.1), (0.3, 10, 2.0), (5.0, 1, 1e-8)])
def test_kappa_of_one_eigenvalue_is_the_quadratics_root(lam, n, ridge):
    # lam / (lam + k) + d / k = n  <=>  n k^2 + (n lam - lam - d) k - d lam = 0
    p = n * lam - lam - ridge
    closed = (-p + np.sqrt(p ** 2 + 4 * n * ridge * lam)) / (2 * n)
    assert theory.solve_kappa([lam], n, ridge) == pytest.approx(closed, rel=1e-10)


def test_kappa_limits():
    lam = np.full(50, 0.2)
    # no ridge, fewer samples than P equal modes: P lam / (lam + k) = n
    assert theory.solve_kappa(lam, 20, 0.0) == pytest.approx(0.2 * (50 - 20) / 20, rel=1e-10)
    assert theory.solve_kappa(lam, 50, 0.0) == 0.0 and theory.solve_kappa(lam, 80, 0.0) == 0.0
    # ridge only (negligible eigenvalues): kappa = delta / n; ridge dominating: (sum lam + delta) / n
    assert theory.solve_kappa(np.full(10, 1e-12), 7, 0.3) == pytest.approx(0.3 / 7, rel=1e-9)
    assert theory.solve_kappa(lam, 5, 1e6) == pytest.approx((10 + 1e6) / 5, rel=1e-5)


def test_prediction_of_one_mode_and_the_train_error_relation():
    spec = theory.Spectrum(np.array([1.0]), np.array([0.7]))
    pred = theory.predict(spec, 1, 0.5)
    kappa = theory.solve_kappa([1.0], 1, 0.5)
    L = 1 / (1 + kappa)
    assert pred.test_mse == pytest.approx((1 / (1 - L ** 2)) * (1 - L) ** 2 * 0.7, rel=1e-12)
    assert pred.train_mse == pytest.approx((0.5 / kappa) ** 2 * pred.test_mse, rel=1e-12)


def _gaussian_design(P, b, a, M, rng):
    """Gaussian features phi (M, P) with unit variance: K = phi diag(lam) phi^T has operator eigenvalues lam
    (k^-b) and the target y = phi v has power v_k^2 = k^-a on mode k."""
    k = np.arange(1, P + 1)
    lam, v = k ** -b, k ** (-a / 2)
    phi = rng.standard_normal((M, P))
    return lam, v, phi


@pytest.mark.parametrize("ridge", [1e-3, 0.0])
def test_predicted_curve_matches_simulated_kernel_regression(ridge):
    """Gaussian design, P = 400 power-law modes (b = 1.5, a = 2.5): the mean test MSE of kernel regression
    over 150 draws of n points is the prediction within 10% at every n (n >= 16: at n = 8 the theory, an
    asymptotic one, is 15-25% low)."""
    rng = np.random.default_rng(0)
    P, b, a = 400, 1.5, 2.5
    k = np.arange(1, P + 1)
    lam, v = k ** -b, k ** (-a / 2)
    spec = theory.Spectrum(lam, v ** 2)
    for n in (16, 64, 256):
        errors = []
        for _ in range(150):
            phi = rng.standard_normal((n, P))
            K = (phi * lam) @ phi.T
            y = phi @ v
            alpha = np.linalg.solve(K + ridge * lam.sum() * np.eye(n), y)
            beta = lam * (phi.T @ alpha)  # the predictor's coefficients on the modes
            errors.append(np.sum((beta - v) ** 2))  # test MSE over fresh Gaussian inputs, exactly
        predicted = theory.predict(spec, n, ridge * lam.sum()).test_mse
        assert np.mean(errors) == pytest.approx(predicted, rel=0.10), n


def test_spectrum_of_a_sampled_gram_recovers_the_planted_exponents():
    rng = np.random.default_rng(1)
    b, a = 1.4, 2.2
    lam, v, phi = _gaussian_design(3000, b, a, 1500, rng)
    K = (phi * lam) @ phi.T
    spec = theory.spectrum(K, phi @ v)
    fits = theory.spectrum_exponents(spec, 3, 60)
    assert fits["b"].exponent == pytest.approx(b, abs=0.1) and fits["b"].lo < fits["b"].exponent < fits["b"].hi
    assert fits["a"].exponent == pytest.approx(a, abs=0.15)
    assert theory.powerlaw_exponent(fits["a"].exponent, fits["b"].exponent) == pytest.approx(a - 1, abs=0.15)
    assert spec.tail[0] == pytest.approx(np.mean((phi @ v) ** 2), rel=1e-10)  # Parseval: all the power
    assert 0 < theory.top_k_alignment(spec, 10) < theory.top_k_alignment(spec, 100) <= 1


def test_spectrum_of_several_outputs_averages_their_power():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 5))
    K = X @ X.T + 0.1
    Y = rng.standard_normal((30, 3))
    spec = theory.spectrum(K, Y)
    singles = [theory.spectrum(K, Y[:, c]).target_power for c in range(3)]
    np.testing.assert_allclose(spec.target_power, np.mean(singles, axis=0), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(np.sort(spec.eigenvalues)[::-1], np.linalg.eigvalsh(K)[::-1].clip(0) / 30,
                               rtol=1e-10, atol=1e-12)


def test_kernel_theory_of_a_low_rank_kernel_predicts_without_fitting_a_power_law():
    """A rank-2 kernel on 40 rows: no power law to fit (NaN), yet its predictions are those of its two
    modes: at ridge 0 and n = 5 above the rank, both are learned and the rest is left, times
    E0 = n / (n - rank); at n = 2 = the rank, the interpolation threshold, the variance diverges."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 2))
    K, Y = X @ X.T, np.eye(3)[rng.integers(0, 3, 40)]
    spec, fits, predictions = theory.kernel_theory(K, Y, np.arange(40), [(1, 0.0), (5, 0.0), (2, 0.0)],
                                                   modes=(2, None))
    assert np.isnan(fits["b"].exponent) and np.isnan(fits["a"].exponent)
    assert (spec.eigenvalues[2:] == 0).all() and (spec.eigenvalues[:2] > 0).all()
    left = spec.target_power[2:].sum()
    assert predictions[1].test_mse == pytest.approx(5 / 3 * left, rel=1e-12) and predictions[1].kappa == 0
    assert predictions[0].test_mse > left and predictions[2].test_mse == np.inf


def test_spectrum_rows_take_validation_and_pool_rows_and_never_test_rows():
    blocks = {"train": slice(0, 50), "val": slice(50, 70), "test": slice(70, 100), "pool": slice(100, 130)}
    rows = theory.spectrum_rows(blocks, 4096)
    np.testing.assert_array_equal(rows, np.r_[0:50, 50:70, 100:130])
    capped = theory.spectrum_rows(blocks, 60)  # held-out rows first, then training rows up to the cap
    np.testing.assert_array_equal(capped, np.r_[0:10, 50:70, 100:130])
    assert len(theory.spectrum_rows(blocks, 16)) == 16
    no_pool = {k: v for k, v in blocks.items() if k != "pool"}
    np.testing.assert_array_equal(theory.spectrum_rows(no_pool, 4096), np.r_[0:70])
    # an after-kernel's network trained on the first k = 20 rows: they are left out of its spectrum
    np.testing.assert_array_equal(theory.spectrum_rows(blocks, 4096, trained_on=20), np.r_[20:50, 50:70, 100:130])
    np.testing.assert_array_equal(theory.spectrum_rows(blocks, 60, trained_on=20), np.r_[20:30, 50:70, 100:130])
    np.testing.assert_array_equal(theory.spectrum_rows(blocks, 4096, trained_on=50), np.r_[50:70, 100:130])
