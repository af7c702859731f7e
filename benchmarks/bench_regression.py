"""Kernel regression cost against one float64 Cholesky of the same size, measured in one run.

    python benchmarks/bench_regression.py [--n 8192] [--test 1000] [--classes 10]
Target (issue 3): one ridge of `kernel_regression` at n=8192 within 1.3x of one scipy Cholesky.
"""
import argparse
import time

import numpy as np
import scipy.linalg

from ntkscaling.analysis import regression


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8192)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--classes", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    F = rng.normal(size=(args.n + args.test, 64)).astype(np.float32)
    K = np.exp(-((F[:, None, :8] - F[None, :, :8]) ** 2).sum(-1) / 16).astype(np.float32)  # PD kernel, float32 as stored
    y = rng.integers(0, args.classes, args.n + args.test)
    Ktr, Kte = K[: args.n, : args.n], K[args.n:, : args.n]
    A = Ktr.astype(np.float64) + 1e-3 * np.eye(args.n)
    t0 = time.perf_counter()
    scipy.linalg.cho_factor(A, lower=True, overwrite_a=True, check_finite=False)
    t_chol = time.perf_counter() - t0
    t0 = time.perf_counter()
    regression.kernel_regression(Ktr, Kte, y[: args.n], y[args.n:], args.classes, ridges=[1e-3])
    t_reg = time.perf_counter() - t0
    print(f"n={args.n}: one float64 Cholesky {t_chol:.2f}s, kernel_regression (1 ridge) {t_reg:.2f}s, "
          f"ratio {t_reg / t_chol:.2f}")


if __name__ == "__main__":
    main()
