"""What a kernel's spectrum predicts: the eigenlearning theory of kernel ridge regression's learning curves.

For kernel regression with operator eigenvalues lambda_i on the data distribution and target coefficients
v_i on its eigenfunctions (Simon et al. 2021/2023, "eigenlearning"; equivalently Bordelon, Canatar and
Pehlevan 2020), n samples and ridge delta:

    kappa solves  sum_i lambda_i / (lambda_i + kappa) + delta / kappa = n
    L_i = lambda_i / (lambda_i + kappa)            (the learnability of mode i)
    E0  = n / (n - sum_i L_i^2)
    test MSE  = E0 * (sum_i (1 - L_i)^2 v_i^2 + noise)
    train MSE = (delta / (n kappa))^2 * test MSE

`spectrum` estimates lambda_i and v_i from a Gram matrix on M points that stand in for the distribution
(eigenvalues of K / M; v_i = u_i . y / sqrt(M) for the eigenvectors u_i and targets y), so the prediction
is trusted for n well below M and for modes well resolved by M points. The ridge of analysis/regression.py is
relative to mean(diag K_train), which estimates sum_i lambda_i: delta = ridge * sum_i lambda_i.
With power laws lambda_k ~ k^-b and target power per mode v_k^2 ~ k^-a the data-limited exponent of the
test MSE is min(a - 1, 2 b) (Bordelon, Atanasov and Pehlevan 2024): `powerlaw_exponent`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.stats

# The prediction of a spectrum on M rows is trusted for n <= M / TRUSTED_ROWS_PER_N: measured within 25% up to
# M/4 on digits, but only to about M/10 on CPU CIFAR-10 (README, theory): the conservative limit is drawn.
TRUSTED_ROWS_PER_N = 10


@dataclass(frozen=True)
class Spectrum:
    """Operator eigenvalues (descending) and the target's power per eigenmode (summed over outputs' mean)."""
    eigenvalues: np.ndarray   # lambda_i, float64, descending, >= 0
    target_power: np.ndarray  # v_i^2, averaged over the target's columns (outputs)

    @property
    def tail(self) -> np.ndarray:
        """Target power beyond mode k: sum_{i >= k} v_i^2 (tail[0] is the whole target's power)."""
        return np.cumsum(self.target_power[::-1])[::-1]


def spectrum(K: np.ndarray, y: np.ndarray) -> Spectrum:
    """The spectrum of a Gram matrix K (M, M) of M sample points and the power of targets y (M,) or (M, C)
    on its eigenvectors. Eigenvalues within round-off of zero (below M * eps * the largest) are set to 0."""
    K = np.asarray(K, dtype=np.float64)
    M = len(K)
    y = np.asarray(y, dtype=np.float64).reshape(M, -1)
    s, U = np.linalg.eigh((K + K.T) / 2)
    order = np.argsort(s)[::-1]
    s, U = s[order], U[:, order]
    s = np.where(s > M * np.finfo(np.float64).eps * max(s[0], 0.0), s, 0.0)
    coefficients = U.T @ y / np.sqrt(M)  # (M modes, C outputs)
    return Spectrum(s / M, (coefficients ** 2).mean(axis=1))


def solve_kappa(eigenvalues, n: float, ridge: float) -> float:
    """The effective regularization kappa of n samples at ridge delta (float64). With delta = 0 and n at or
    above the number of positive eigenvalues every mode is learned: kappa = 0."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    lam = lam[lam > 0]
    if n <= 0:
        raise ValueError(f"n={n}: expected a positive number of samples")
    if ridge < 0:
        raise ValueError(f"ridge={ridge}: expected >= 0")

    def excess(log_kappa):
        kappa = np.exp(log_kappa)
        return np.sum(lam / (lam + kappa)) + ridge / kappa - n

    hi = np.log((lam.sum() + ridge) / n) + 1e-9  # there, sum lambda/(lambda+kappa) + delta/kappa <= n
    lo = hi - 80.0  # kappa 1e-35 times smaller
    if excess(lo) <= 0:
        if ridge > 0:
            raise ValueError(f"cannot bracket kappa for n={n}, ridge={ridge}")
        return 0.0
    return float(np.exp(scipy.optimize.brentq(excess, lo, hi, xtol=1e-14, rtol=1e-13, maxiter=500)))


@dataclass(frozen=True)
class Prediction:
    kappa: float
    test_mse: float
    train_mse: float
    learnability: np.ndarray


def predict(spec: Spectrum, n: int, ridge: float, noise: float = 0.0) -> Prediction:
    """Predicted test and train MSE of kernel ridge regression with `n` samples and absolute ridge delta."""
    kappa = solve_kappa(spec.eigenvalues, n, ridge)
    lam = spec.eigenvalues
    # kappa = 0 (no ridge, n at or above the rank): every mode with a positive eigenvalue is learned
    L = lam / (lam + kappa) if kappa > 0 else (lam > 0).astype(np.float64)
    learned = np.sum(L ** 2)
    if n <= learned:  # the interpolation threshold n = rank at ridge 0: the variance diverges
        return Prediction(kappa, float("inf"), 0.0, L)
    e0 = n / (n - learned)
    test = e0 * (np.sum((1 - L) ** 2 * spec.target_power) + noise)
    train = (ridge / (n * kappa)) ** 2 * test if kappa > 0 else 0.0  # ridge 0 interpolates
    return Prediction(kappa, float(test), float(train), L)


@dataclass(frozen=True)
class PowerFit:
    exponent: float
    lo: float
    hi: float
    k_min: int
    k_max: int


def fit_decay(values, k_min: int, k_max: int, confidence: float = 0.95) -> PowerFit:
    """values[k-1] ~ c k^-exponent over modes k_min..k_max (1-based), least squares in log-log space, with a
    t interval on the slope. Non-positive values are left out."""
    k = np.arange(k_min, k_max + 1)
    v = np.asarray(values, dtype=np.float64)[k_min - 1:k_max]
    keep = v > 0
    if keep.sum() < 3:
        raise ValueError(f"fewer than 3 positive values between modes {k_min} and {k_max}")
    res = scipy.stats.linregress(np.log(k[keep]), np.log(v[keep]))
    t = scipy.stats.t.ppf(0.5 + confidence / 2, keep.sum() - 2)
    return PowerFit(-res.slope, -res.slope - t * res.stderr, -res.slope + t * res.stderr, k_min, k_max)


def spectrum_exponents(spec: Spectrum, k_min: int, k_max: int, confidence: float = 0.95) -> dict:
    """b (eigenvalue decay) and a (target power decay, from its cumulative tail: tail(k) ~ k^-(a-1)) fitted
    over modes k_min..k_max."""
    b = fit_decay(spec.eigenvalues, k_min, k_max, confidence)
    tail = fit_decay(spec.tail, k_min, k_max, confidence)
    a = PowerFit(tail.exponent + 1, tail.lo + 1, tail.hi + 1, k_min, k_max)
    return {"b": b, "a": a}


def powerlaw_exponent(a: float, b: float) -> float:
    """The data-limited test-MSE exponent min(a - 1, 2 b) of power-law spectra and targets."""
    return min(a - 1.0, 2.0 * b)


def top_k_alignment(spec: Spectrum, k: int) -> float:
    """Share of the target's power in the k leading eigenmodes."""
    return float(spec.target_power[:k].sum() / spec.target_power.sum())


SPECTRUM_COLUMNS = ("mode", "eigenvalue", "target_power", "tail")


def spectrum_table(spec: Spectrum) -> list[dict]:
    """One row per eigenmode (1-based), for a kernel's spectrum.csv."""
    return [{"mode": i + 1, "eigenvalue": float(lam), "target_power": float(v2), "tail": float(t)}
            for i, (lam, v2, t) in enumerate(zip(spec.eigenvalues, spec.target_power, spec.tail))]


def spectrum_rows(blocks: dict, max_rows: int, trained_on: int = 0) -> np.ndarray:
    """The kernel rows whose spectrum stands in for the data distribution, never the test rows nor the rows the
    kernel's network was trained on: the validation and pool rows (blocks: data.row_blocks), then training rows
    from `trained_on` on (the network of an after-kernel or a tracked checkpoint trained on the first k rows of
    the nested order: its kernel is fitted to their labels), up to max_rows in all."""
    held = np.r_[blocks["val"], blocks.get("pool", slice(0, 0))][:max_rows]
    start = min(int(trained_on), blocks["train"].stop)
    keep = min(blocks["train"].stop - start, max(max_rows - len(held), 0))
    return np.r_[start:start + keep, held]


def kernel_theory(K: np.ndarray, targets: np.ndarray, rows, regressions, modes=(2, None), top_k: int = 10,
                  confidence: float = 0.95):
    """The spectrum of kernel K on `rows` (spectrum_rows), its fitted exponents, and the predicted test and
    train MSE of each regression actually run.

    Args:
        K: the kernel (mean or sum kind) on every row; targets: the regression targets of those rows (one-hot
            labels, less the prior f0 for the linearized predictor), (rows, C).
        regressions: (n, absolute ridge) pairs: the ridge as analysis/regression.py applied it, (ridge + jitter) *
            mean(diag K_train).
        modes: (first, last) eigenmode of the power-law fits; last None = a quarter of the rows.

    Returns:
        (Spectrum, {"b": PowerFit, "a": PowerFit}, [Prediction per regression]); the fits are NaN where the
        modes hold fewer than 3 positive values (a low-rank kernel).
    """
    spec = spectrum(np.asarray(K[np.ix_(rows, rows)], dtype=np.float64), targets[rows])
    k_max = min(modes[1] or max(len(rows) // 4, modes[0] + 2), len(rows))
    try:
        fits = spectrum_exponents(spec, modes[0], k_max, confidence)
    except ValueError:  # a low-rank kernel: too few positive eigenvalues in the range to fit a power law
        nothing = PowerFit(np.nan, np.nan, np.nan, modes[0], k_max)
        fits = {"b": nothing, "a": nothing}
    return spec, fits, [predict(spec, n, ridge) for n, ridge in regressions]


def spectral_summary(K: np.ndarray, targets: np.ndarray, rows, modes=(2, None), top_k: int = 10) -> dict:
    """The spectrum's shape in three numbers, as tidy metrics: eigenvalue decay b (`spectrum_b`), target
    decay a (`target_a`) and the share of the target's power in the top_k modes (`alignment_top<k>`)."""
    spec, fits, _ = kernel_theory(K, targets, rows, [], modes, top_k)
    return {"spectrum_b": fits["b"].exponent, "target_a": fits["a"].exponent,
            f"alignment_top{top_k}": top_k_alignment(spec, top_k)}


def regression_theory(K: np.ndarray, targets: np.ndarray, blocks: dict, records, settings: dict, ident: dict):
    """What a kernel regression job adds beside its measurements: the spectrum table (spectrum_table) and
    tidy rows (io.tidy_row, fields `ident`): predicted_test_mse / predicted_train_mse of each regression,
    and at n = the spectrum's rows spectrum_b, target_a (with _lo, _hi), alpha_powerlaw, alignment_top<k>.

    Args:
        K: the kernel on data.kernel_rows' rows; targets: the regression's targets on them (rows, C);
        blocks: data.row_blocks; records: (n, ridge label, regression.nested_regression result) per
            regression; settings: the config's theory section; ident's k: the rows the kernel's network
            trained on (0 at init and for infinite kernels), left out of the spectrum.
    """
    from ..files import tidy_row
    rows = spectrum_rows(blocks, settings["max_rows"], trained_on=int(ident.get("k") or 0))
    applied = [(n, (res["ridge"] + res["jitter"]) * float(np.mean(np.diag(K[:n, :n]), dtype=np.float64)))
               for n, _, res in records]  # the ridge as analysis/regression.py applied it
    spec, fits, predictions = kernel_theory(K, targets, rows, applied, (settings["mode_min"], settings["mode_max"]),
                                            settings["top_k"])
    out = []
    for (n, label, _), pred in zip(records, predictions):
        at = {**ident, "ridge": label, "n": n}
        out += [tidy_row(**at, metric="predicted_test_mse", value=pred.test_mse),
                tidy_row(**at, metric="predicted_train_mse", value=pred.train_mse)]
    at = {**ident, "n": len(rows)}
    for name, fit in (("spectrum_b", fits["b"]), ("target_a", fits["a"])):
        out += [tidy_row(**at, metric=name, value=fit.exponent), tidy_row(**at, metric=f"{name}_lo", value=fit.lo),
                tidy_row(**at, metric=f"{name}_hi", value=fit.hi)]
    out += [tidy_row(**at, metric="alpha_powerlaw", value=powerlaw_exponent(fits["a"].exponent, fits["b"].exponent)),
            tidy_row(**at, metric=f"alignment_top{settings['top_k']}", value=top_k_alignment(spec, settings["top_k"]))]
    print(f"theory: spectrum of {len(rows)} rows, b = {fits['b'].exponent:.2f} [{fits['b'].lo:.2f}, "
          f"{fits['b'].hi:.2f}], a = {fits['a'].exponent:.2f} [{fits['a'].lo:.2f}, {fits['a'].hi:.2f}]", flush=True)
    return spectrum_table(spec), out
