"""Planted datasets: tasks with a known answer, generated from their parameters and a seed (no file, no download).

The stripe model (Paccolat, Petrini, Geiger, Tyloo and Wyart 2021, "Geometric compression of invariant manifolds
in neural networks"; Geiger, Spigler, Jacot and Wyart 2020, "Disentangling feature and lazy training in deep
neural networks"): inputs x ~ N(0, I_d), label 1[|<x, u>| > t] for a unit direction u, with t the median of
|N(0, 1)| so that the two classes are balanced. The label depends on one direction only: a network that learns
that direction faces a 1-D problem, whereas a rotation-invariant kernel (an MLP's infinite-width NTK, its eNTK at
initialization in the lazy limit) sees a d-dimensional one, so networks out-scale their kernels on it (the
workflow's positive control; large model.output_scale is its off-switch). Torch-free.
"""
from __future__ import annotations

import numpy as np

# The median of |N(0, 1)|: Phi^-1(3/4); with it P(|<x, u>| > t) = 1/2, balanced classes.
STRIPE_MEDIAN = 0.6744897501960817
STRIPE_TEST_FACTOR = 2  # the test split holds this many times dataset.test_size points (a balanced draw follows)


def stripe_direction(dim: int, direction, seed: int) -> np.ndarray:
    """The unit direction u: `direction` normalized (a list of dim numbers, or an int: that coordinate axis),
    or, when None, a uniformly random direction drawn from `seed`."""
    if direction is None:
        u = np.random.default_rng([int(seed), 271828]).standard_normal(int(dim))
    elif isinstance(direction, int) and not isinstance(direction, bool):
        if not 0 <= direction < dim:
            raise ValueError(f"config key 'dataset.planted.direction': got axis {direction}; expected 0..{dim - 1}")
        u = np.eye(int(dim))[direction]
    else:
        u = np.asarray(direction, dtype=np.float64)
        if u.shape != (int(dim),) or not np.all(np.isfinite(u)) or not np.any(u):
            raise ValueError(f"config key 'dataset.planted.direction': got {list(direction)}; expected {dim} "
                             f"finite numbers, not all 0, an axis 0..{dim - 1}, or null (random)")
    return u / np.linalg.norm(u)


def stripe(test_size: int, dim: int = 16, train_size: int = 8192, direction=None, seed: int = 0, threshold=None):
    """(x_train, y_train, x_test, y_test) of the stripe model (the config's dataset.planted keys are its
    keyword arguments, with these defaults): float32 (N, dim) Gaussian inputs, int64 labels
    1[|<x, u>| > threshold] (threshold None: the median of |N(0, 1)|, balanced classes). Train and test points
    come from separate streams of `seed`, so the train split does not change with test_size.

    Example:
        >>> x, y, xt, yt = stripe(100, dim=4, train_size=1000, direction=0, seed=1)
        >>> bool(np.all(y == (np.abs(x[:, 0]) > STRIPE_MEDIAN)))
        True
    """
    u = stripe_direction(dim, direction, seed)
    t = STRIPE_MEDIAN if threshold is None else float(threshold)

    def draw(n, stream):
        x = np.random.default_rng([int(seed), stream]).standard_normal((int(n), int(dim))).astype(np.float32)
        return x, (np.abs(x.astype(np.float64) @ u) > t).astype(np.int64)  # labels of the stored inputs

    return (*draw(train_size, 1), *draw(test_size, 2))


MAX_GB = 2.0  # a planted task's float32 inputs, train and test: drawn by the start-up check and every job


def size_problem(test_size: int, planted: dict) -> str | None:
    """Why a planted task of these sizes is refused before anything is drawn, or None."""
    rows = int(planted.get("train_size", 8192)) + int(test_size)
    gb = rows * int(planted.get("dim", 16)) * 4 / 1e9
    if gb <= MAX_GB:
        return None
    return (f"config keys 'dataset.planted.train_size'/'dataset.planted.dim': {rows} inputs of dimension "
            f"{planted.get('dim', 16)} take {gb:.3g} GB as float32; expected at most {MAX_GB:g} GB (every job "
            f"loads them)")


TASKS = {"stripe": stripe}  # dataset.name -> generator
PLANTED = tuple(TASKS)
