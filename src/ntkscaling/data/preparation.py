"""From a format's raw arrays to the prepared dataset every job reads (`prepare`): the class subset, the fixed
test set, test inputs identical to training inputs refused or counted (`find_overlap`, policy
`dataset.test_overlap`), a fixed validation set drawn from the training pool (every model choice of either
side, ridges and early stopping, is made on it; the test set is only reported), and per-channel
standardization with the statistics of the remaining training pool, so every subset sees the same inputs.
`nested_order` gives one permutation of the pool (validation excluded) per seed: subset n is its first n
indices, so n1 < n2 implies S(n1) in S(n2)."""
from __future__ import annotations

import hashlib

import numpy as np

from ..files import load_npz
from .facts import VAL_SPLIT_SEED, DatasetError
from .formats import load_raw


def balanced_order(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A permutation whose every prefix is as class-balanced as possible (round-robin over classes)."""
    classes = np.unique(y)
    rank = np.empty(len(y), dtype=np.int64)
    for c in classes:
        idx = np.flatnonzero(y == c)
        rank[rng.permutation(idx)] = np.arange(len(idx))
    # random class order within each round, so no class is always first
    tiebreak = rng.random(len(y))
    return np.lexsort((tiebreak, rank))


def nested_order(y_train: np.ndarray, seed: int, balanced: bool = True) -> np.ndarray:
    """One permutation of the training pool per seed; subset n = its first n indices."""
    rng = np.random.default_rng([int(seed), 7919])
    return balanced_order(y_train, rng) if balanced else rng.permutation(len(y_train))


def downsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Average-pool NCHW images by `factor` in height and width (e.g. 32x32 -> 8x8 with factor 4)."""
    if factor == 1:
        return x
    if x.ndim != 4:
        raise DatasetError(f"dataset.downsample={factor} needs images (N, C, H, W); got inputs of shape {x.shape}")
    N, C, H, W = x.shape
    if H % factor or W % factor:
        raise DatasetError(f"dataset.downsample={factor} must divide the image height and width ({H}x{W})")
    return x.reshape(N, C, H // factor, factor, W // factor, factor).mean(axis=(3, 5), dtype=np.float64
                                                                         ).astype(x.dtype)


OVERLAP_POLICIES = ("error", "warn")


def find_overlap(x_train: np.ndarray, x_test: np.ndarray) -> list[tuple[int, int]]:
    """(test index, train index) of every test input identical, value for value, to a training input."""
    def digest(row):
        return hashlib.blake2b(np.ascontiguousarray(row, dtype=np.float32).tobytes(), digest_size=16).digest()
    seen = {}
    for i, row in enumerate(x_train):
        seen.setdefault(digest(row), i)
    return [(j, seen[d]) for j, d in ((j, digest(row)) for j, row in enumerate(x_test)) if d in seen]


def check_overlap(pairs, policy: str, what: str) -> None:
    """Act on `find_overlap`'s pairs: policy 'error' raises, 'warn' prints (the count is recorded)."""
    if policy not in OVERLAP_POLICIES:
        raise DatasetError(f"config key 'dataset.test_overlap': got {policy!r}; expected one of {OVERLAP_POLICIES}")
    if not pairs:
        return
    shown = ", ".join(f"test #{t} = train #{r}" for t, r in pairs[:3]) + (", ..." if len(pairs) > 3 else "")
    msg = (f"config key 'dataset.test_overlap': {len(pairs)} test input(s) of {what} are identical to "
           f"training inputs ({shown}); with test_overlap 'error' none are allowed. Remove them from the "
           f"test split, or set dataset.test_overlap: warn to keep the split as published (the count is "
           f"recorded in data/prepared.json)")
    if policy == "error":
        raise DatasetError(msg)
    print(f"WARNING: {msg}")


def split(name: str, root="data", test_size: int = 1000, classes=None, download: bool = False,
          file: str | None = None, split_seed: int = 0, downsample_factor: int = 1, planted: dict | None = None):
    """(x_pool, y_pool, x_test, y_test): the training pool and the fixed test set (a class-balanced draw
    of test_size from the test split), downsampled, not yet standardized."""
    x_tr, y_tr, x_te, y_te = load_raw(name, root, test_size=test_size, download=download, file=file,
                                      classes=classes, planted=planted)
    x_tr, x_te = downsample(x_tr, downsample_factor), downsample(x_te, downsample_factor)
    if test_size > len(y_te):
        raise DatasetError(f"dataset.test_size={test_size}: the {name} test split has only {len(y_te)} examples")
    te = np.sort(balanced_order(y_te, np.random.default_rng([int(split_seed), 104729]))[:test_size])
    return x_tr, y_tr, x_te[te], y_te[te]


def validation_split(y_pool: np.ndarray, val_size: int):
    """(pool indices, validation indices): a class-balanced draw of val_size from the training pool with a
    fixed seed, disjoint from what remains (from which every nested subset is drawn)."""
    if not 0 < val_size < len(y_pool):
        raise DatasetError(f"dataset.val_size={val_size}: the training pool has {len(y_pool)} examples; "
                           f"expected 0 < val_size < {len(y_pool)}")
    val = np.sort(balanced_order(y_pool, np.random.default_rng([VAL_SPLIT_SEED, 15485863]))[:val_size])
    keep = np.ones(len(y_pool), dtype=bool)
    keep[val] = False
    lost = sorted(set(np.unique(y_pool).tolist()) - set(np.unique(y_pool[keep]).tolist()))
    if lost:
        raise DatasetError(f"dataset.val_size={val_size}: the validation draw takes every training example of "
                           f"class(es) {lost}, so no network would train on them; lower val_size or add examples")
    return np.flatnonzero(keep), val


def prepare(name: str, root="data", test_size: int = 1000, classes=None, download: bool = False,
            file: str | None = None, split_seed: int = 0, downsample_factor: int = 1,
            test_overlap: str = "error", val_size: int = 500, planted: dict | None = None):
    """Load, select classes, (optionally) average-pool the images, draw the fixed test set, check it does
    not repeat training inputs (`test_overlap` policy), set aside the validation set (`validation_split`)
    and standardize with the statistics of the remaining training pool."""
    x_tr, y_tr, x_te, y_te = split(name, root, test_size, classes, download, file, split_seed, downsample_factor,
                                   planted)
    overlap = find_overlap(x_tr, x_te)
    check_overlap(overlap, test_overlap, f"dataset {name!r}")
    pool_idx, val_idx = validation_split(y_tr, val_size)
    x_val, y_val = x_tr[val_idx], y_tr[val_idx]
    x_tr, y_tr = x_tr[pool_idx], y_tr[pool_idx]
    axes = (0, 2, 3) if x_tr.ndim == 4 else (0,)
    mean = x_tr.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_tr.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)  # constant pixels (e.g. digits' borders) stay at 0
    x_tr, x_val, x_te = (((x - mean) / std).astype(np.float32) for x in (x_tr, x_val, x_te))
    n_classes = int(max(y_tr.max(), y_val.max(), y_te.max()) + 1)
    return {"x_train": x_tr, "y_train": y_tr, "x_val": x_val, "y_val": y_val, "x_test": x_te, "y_test": y_te,
            "val_index": val_idx, "n_classes": np.int64(n_classes), "mean": mean.reshape(-1),
            "std": std.reshape(-1), "test_overlap": np.int64(len(overlap))}


def load_prepared(path):
    """The arrays written by the data rule (see `prepare`)."""
    return load_npz(path)
