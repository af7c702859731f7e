"""The rows every kernel is computed on, once: [first n_max of a seed's order | validation set | test set |
pool] (`kernel_rows`; the pool is the next points of the order, which only the spectrum of
analysis/theory.py uses); `row_blocks` says where each block lies."""
from __future__ import annotations

import numpy as np

from .facts import DatasetError


def kernel_rows(prepared: dict, order: np.ndarray, n_max: int, pool: int = 0):
    """Inputs and labels of the rows of every kernel: the first n_max points of a seed's nested order, the
    validation set, the test set, then up to `pool` further points of the order (`pool_size`: rows no
    regression trains on, which the spectrum of analysis/theory.py adds to stand in for the data distribution; see
    `row_blocks`). Kernels on these rows are sliced for every n <= n_max."""
    if n_max > len(order):
        raise DatasetError(f"config key 'sample_sizes': n={n_max} exceeds the training pool of {len(order)} "
                           f"examples")
    train, extra = order[:n_max], order[n_max:n_max + pool_size(order, n_max, pool)]
    x = np.concatenate([prepared["x_train"][train], prepared["x_val"], prepared["x_test"], prepared["x_train"][extra]])
    y = np.concatenate([prepared["y_train"][train], prepared["y_val"], prepared["y_test"], prepared["y_train"][extra]])
    return x, y


# What a kernel sidecar says its rows are (`kernel_rows`).
KERNEL_ROWS_DESCRIPTION = ("first n_train entries of the seed's nested order, the validation set, the test set, "
                           "the next n_pool entries of the order")


def pool_size(order: np.ndarray, n_max: int, pool: int) -> int:
    """Pool rows a kernel gets: `pool` (config key theory.pool), or fewer when the training pool holds fewer
    points beyond the first n_max of the order."""
    return max(0, min(pool, len(order) - n_max))


def row_blocks(n_max: int, prepared: dict, n_pool: int = 0) -> dict:
    """Slices of the `kernel_rows` blocks: 'train' (the n_max nested rows), 'val', 'test' and 'pool' (n_pool
    rows, `pool_size`)."""
    n_val, n_test = len(prepared["y_val"]), len(prepared["y_test"])
    end = n_max + n_val + n_test
    return {"train": slice(0, n_max), "val": slice(n_max, n_max + n_val), "test": slice(n_max + n_val, end),
            "pool": slice(end, end + n_pool)}


def labelled_rows(prepared: dict, order: np.ndarray, n_max: int, pool: int = 0):
    """(labels of the kernel rows, their `row_blocks`): what a job that regresses or trains on a kernel's rows
    needs beside the kernel."""
    y = kernel_rows(prepared, order, n_max, pool)[1]
    return y, row_blocks(n_max, prepared, pool_size(order, n_max, pool))


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[y]
