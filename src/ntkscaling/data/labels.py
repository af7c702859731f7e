"""The one label rule (`label_problem`, `check_labels`: classes 0..K-1, each with a training example, at least
two) and the class subset (`select_classes`), shared by the loaders and the config check."""
from __future__ import annotations

import numpy as np

from .facts import DatasetError


def select_classes(x, y, classes):
    """Keep only `classes` (in that order) and relabel them 0..K-1."""
    if classes is None:
        return x, y
    lut = {int(c): i for i, c in enumerate(classes)}
    missing = sorted(set(lut) - set(np.unique(y).tolist()))
    if missing:
        raise DatasetError(f"config key 'dataset.classes': classes {missing} do not occur in the data (its labels "
                           f"are {np.unique(y).tolist()})")
    keep = np.isin(y, list(lut))
    return x[keep], np.asarray([lut[int(v)] for v in y[keep]], dtype=np.int64)


def classes_without_examples(y_train, k: int, shown: int = 10) -> tuple[int, list]:
    """(how many of the classes 0..k-1 have no example in y_train, the first `shown` of them, '...' if more),
    in memory bounded by the labels, not by k (a stray label 10^12 must not allocate 10^12 of anything)."""
    present = np.unique(y_train)
    present = present[(present >= 0) & (present < k)]
    count = k - len(present)
    first, c, i = [], 0, 0
    while len(first) < shown and c < k:  # walk the gaps between present labels
        if i < len(present) and present[i] == c:
            i += 1
        else:
            first.append(c)
        c += 1
    return count, first + (["..."] if count > len(first) else [])


def label_problem(train_counts, where: str) -> str | None:
    """The one label rule, from the examples per class of the training split (`train_counts`, classes
    0..K-1): every class has an example (an empty class has no place in the one-hot targets) and there are at
    least two; the problem, in words, or None."""
    empty = [c for c, n in enumerate(train_counts) if n == 0]
    return _label_problem(len(train_counts), len(empty), empty[:10] + (["..."] if len(empty) > 10 else []), where)


def _label_problem(k: int, count: int, shown: list, where: str) -> str | None:
    if count:
        return (f"{where}: labels must be 0..K-1 with every class in the training split; labels go up to {k - 1} "
                f"but classes {shown} ({count}) have no training example (renumber the labels, or choose classes "
                f"with dataset.classes)")
    if k < 2:
        return f"{where}: a single class; classification needs at least two"
    return None


def check_labels(y_train, y_test, what: str) -> int:
    """The number of classes K, after checking the labels by `label_problem`'s rule (counted without a
    length-K array: labels of 10^12 stay cheap)."""
    k = int(max(y_train.max(), y_test.max())) + 1
    problem = _label_problem(k, *classes_without_examples(y_train, k), what)
    if problem:
        raise DatasetError(problem)
    return k
