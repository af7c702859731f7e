"""Datasets, standardization and nested subsets: the first stage of the pipeline.

`load_raw` reads one of the supported formats into (x_train, y_train, x_test, y_test) with images as NCHW
float arrays and integer labels:

- ``digits``: scikit-learn's bundled 8x8 digits (no download; no official split, so a fixed seeded split);
- ``cifar10``: the official ``cifar-10-python.tar.gz`` (md5-checked, read with a restricted unpickler);
- ``mnist``: the four IDX files, gzipped or not;
- ``imagefolder``: ``train/<class>/*.png|jpg`` and ``test/<class>/...``;
- ``npz``: one file with ``x_train, y_train, x_test, y_test`` (images NHWC, or (N, D) vectors);
- ``stripe``: the planted stripe model of planted.py, vectors generated from ``dataset.planted`` (no file).

`prepare` applies the class subset, draws the fixed test set, refuses (or counts) test inputs identical to
training inputs (`find_overlap`, policy `dataset.test_overlap`), sets aside a fixed validation set drawn from
the training pool (every model choice of either side, ridges and early stopping, is made on it; the test
set is only reported) and standardizes per channel with the statistics of the remaining training pool, so
every subset sees the same inputs. `nested_order` gives one permutation of the pool (validation excluded)
per seed: subset n is its first n indices, so n1 < n2 implies S(n1) in S(n2).

Kernels are computed once on the rows [first n_max of a seed's order | validation set | test set | pool]
(`kernel_rows`; the pool is the next points of the order, which only the spectrum of analysis/theory.py uses);
`row_blocks` says where each block lies.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import planted as planted_tasks
from .files import InputError, load_npz

DATASETS = ("digits", "cifar10", "mnist", "imagefolder", "npz") + planted_tasks.PLANTED
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TARBALL = "cifar-10-python.tar.gz"
MNIST_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
               "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
WIDE_IMAGE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes beyond 8 bits per channel
DIGITS_SPLIT_SEED = 20220610  # fixed: the digits train pool / test split never depends on run seeds
VAL_SPLIT_SEED = 31337  # fixed: the validation set never depends on run seeds


class BuiltinFacts(NamedTuple):
    """What is known about a built-in dataset without reading it: its image (channels, H, W) and its examples
    per class in the training pool and the test split (None: ntkscaling draws the test set itself)."""
    shape: tuple[int, int, int]
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...] | None

    @property
    def classes(self) -> int:  # labels lie in 0..classes-1
        return len(self.train_counts)


# The one table of built-in dataset facts: the loaders check labels against it, the config check sizes
# subsets, checks classes and downsampling and shapes networks from it before any job.
BUILTIN = {
    # digits is split by ntkscaling itself (the test set is drawn from all 1797 images)
    "digits": BuiltinFacts((1, 8, 8), (178, 182, 177, 183, 181, 182, 181, 179, 174, 180), None),
    "cifar10": BuiltinFacts((3, 32, 32), (5000,) * 10, (1000,) * 10),
    "mnist": BuiltinFacts((1, 28, 28), (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
                          (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)),
}


class DatasetError(InputError):
    """A dataset file is missing, corrupt or not of the expected shape, or the config asks for what it does
    not hold."""


# ----------------------------------------------------------------------------------------------- formats
def load_digits_raw(test_size: int, classes=None):
    from sklearn.datasets import load_digits
    d = load_digits()
    x, y = select_classes(d.images.astype(np.float32)[:, None, :, :], d.target.astype(np.int64), classes)
    if not 0 < test_size < len(y):
        raise DatasetError(f"dataset.test_size={test_size}: digits has {len(y)} images; "
                           f"expected 0 < test_size < {len(y)}")
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(y))
    te, tr = perm[:test_size], perm[test_size:]
    return x[tr], y[tr], x[te], y[te]


def md5sum(path, chunk=1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class RestrictedUnpickler(pickle.Unpickler):
    """Accept only what the CIFAR-10 batches contain: dicts, lists, bytes, str and numpy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how Python 3 writes bytes in protocol-2 pickles; pure data

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not an expected CIFAR-10 type")


def restricted_load(data: bytes, source: str):
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise DatasetError(f"{source}: {e}") from e
    except Exception as e:  # truncated or garbage pickle
        raise DatasetError(f"{source}: not a readable CIFAR-10 batch ({type(e).__name__}: {e})") from e


def fetch_cifar10(root: Path) -> Path:
    """Download the official tarball into root (only when asked to: dataset.download: true)."""
    root.mkdir(parents=True, exist_ok=True)
    dest = root / CIFAR10_TARBALL
    tmp = dest.with_suffix(".part")
    urllib.request.urlretrieve(CIFAR10_URL, tmp)
    tmp.replace(dest)
    return dest


def load_cifar10_raw(root: Path, download: bool = False, check_md5: bool = True):
    tarball = root / CIFAR10_TARBALL
    if not tarball.exists():
        if not download:
            raise DatasetError(f"{tarball}: missing. Put the official CIFAR-10 python tarball there "
                               f"(from {CIFAR10_URL}) or set dataset.download: true")
        tarball = fetch_cifar10(root)
    if check_md5:
        got = md5sum(tarball)
        if got != CIFAR10_MD5:
            raise DatasetError(f"{tarball}: md5 {got} does not match the official {CIFAR10_MD5}; "
                               f"the file is corrupt or not the official tarball")
    wanted = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    batches = {}
    try:
        with tarfile.open(tarball, "r:gz") as tf:
            for m in tf.getmembers():
                base = m.name.rsplit("/", 1)[-1]
                if base in wanted and m.isfile():
                    batches[base] = restricted_load(tf.extractfile(m).read(), f"{tarball}:{m.name}")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DatasetError(f"{tarball}: not a readable gzip tar archive ({e})") from e
    missing = [w for w in wanted if w not in batches]
    if missing:
        raise DatasetError(f"{tarball}: missing batches {missing}")

    def unpack(names):
        xs, ys = [], []
        for nm in names:
            b = batches[nm]
            if not isinstance(b, dict) or b"data" not in b or b"labels" not in b:
                raise DatasetError(f"{tarball}:{nm}: expected a dict with b'data' and b'labels'")
            x = np.asarray(b[b"data"])
            y = np.asarray(b[b"labels"], dtype=np.int64)
            if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != len(x):
                raise DatasetError(f"{tarball}:{nm}: data {x.dtype}{x.shape} / labels {y.shape}; "
                                   f"expected uint8 (N, 3072) and N labels")
            xs.append(x.reshape(-1, 3, 32, 32))
            ys.append(y)
        return np.concatenate(xs).astype(np.float32), np.concatenate(ys)

    x_tr, y_tr = unpack(wanted[:5])
    x_te, y_te = unpack(wanted[5:])
    return x_tr, y_tr, x_te, y_te


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DatasetError(f"{path}: cannot read ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetError(f"{path}: IDX header says {dims} ({expected} bytes) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def find_file(root: Path, stem: str) -> Path:
    for cand in (root / stem, root / f"{stem}.gz"):
        if cand.exists():
            return cand
    raise DatasetError(f"{root / stem}: missing (also looked for {stem}.gz)")


def load_mnist_raw(root: Path):
    arrs = {k: read_idx(find_file(root, stem)) for k, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        x, y = arrs[f"x_{split}"], arrs[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{root}: MNIST {split} images {x.shape} and labels {y.shape} do not match; "
                               f"expected (N, H, W) and (N,)")
    return (arrs["x_train"][:, None].astype(np.float32), arrs["y_train"].astype(np.int64),
            arrs["x_test"][:, None].astype(np.float32), arrs["y_test"].astype(np.int64))


def load_imagefolder_raw(root: Path):
    from PIL import Image, UnidentifiedImageError
    listing = imagefolder_listing(root)
    if listing is None:
        raise DatasetError(f"{root / 'train'}: expected one sub-folder per class holding images")
    for cls in listing["classes"]:
        if not (root / "test" / cls).is_dir():
            raise DatasetError(f"{root / 'test' / cls}: missing; test/ must have the same class folders as train/")
    extra = sorted(p.name for p in (root / "test").iterdir() if p.is_dir() and p.name not in listing["classes"])
    if extra:
        raise DatasetError(f"{root / 'test'}: class folder(s) {extra} have no counterpart in train/; their images "
                           f"would be dropped from the test set. test/ must have the same class folders as train/")
    out = []
    for split in ("train", "test"):
        xs, ys, shape = [], [], None
        for label, files in enumerate(listing[split]):
            for f in files:
                try:
                    with Image.open(f) as im:
                        if im.mode in WIDE_IMAGE_MODES:  # converting to 8 bits would clip them silently
                            raise DatasetError(f"{f}: a {im.mode} image (16-bit or floating point); imagefolder "
                                               f"reads 8-bit images: convert it, or use an npz (any precision)")
                        a = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im, dtype=np.float32)
                except (UnidentifiedImageError, OSError) as e:
                    raise DatasetError(f"{f}: not a readable image ({e})") from e
                a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
                if shape is None:
                    shape = a.shape
                elif a.shape != shape:
                    raise DatasetError(f"{f}: image of shape {a.shape}, the others are {shape}")
                xs.append(a)
                ys.append(label)
        if not xs:
            raise DatasetError(f"{root / split}: no .png/.jpg images found")
        out += [np.stack(xs), np.asarray(ys, dtype=np.int64)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DatasetError(f"{root}: train images {out[0].shape[1:]} and test images {out[2].shape[1:]} differ")
    return tuple(out)


def load_npz_raw(path: Path):
    if not path.exists():
        raise DatasetError(f"{path}: missing; expected an .npz with x_train, y_train, x_test, y_test")
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        arrs = load_npz(path, hint="", keys=keys, what="an .npz with x_train, y_train, x_test, y_test")
    except InputError as e:
        raise DatasetError(str(e)) from None
    out = []
    for split in ("train", "test"):
        x, y = arrs[f"x_{split}"], arrs[f"y_{split}"]
        if not (np.issubdtype(x.dtype, np.number) and np.issubdtype(y.dtype, np.integer)) or np.iscomplexobj(x):
            raise DatasetError(f"{path}: x_{split} must be real numbers and y_{split} integers, "
                               f"got {x.dtype} and {y.dtype}")
        if x.ndim not in (2, 3, 4) or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{path}: x_{split} {x.shape} / y_{split} {y.shape}; expected (N, D), (N, H, W) "
                               f"or NHWC (N, H, W, C) images and N labels")
        if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] not in (1, 3, 4):
            raise DatasetError(f"{path}: x_{split} {x.shape} looks channel-first (N, C, H, W); images are stored "
                               f"NHWC (N, H, W, C): save x.transpose(0, 2, 3, 1)")
        x = x.astype(np.float32)
        if x.ndim == 3:
            x = x[:, None]
        elif x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        out += [x, y.astype(np.int64)]
    if out[0].shape[1:] != out[2].shape[1:]:
        raise DatasetError(f"{path}: x_train {out[0].shape[1:]} and x_test {out[2].shape[1:]} differ in shape")
    return tuple(out)


def load_planted_raw(name: str, test_size: int, planted: dict | None):
    """A planted task (planted.py) from the config's `dataset.planted` keys: its test split holds
    STRIPE_TEST_FACTOR * test_size points, from which `split` draws the balanced test set."""
    try:
        return planted_tasks.TASKS[name](planted_tasks.STRIPE_TEST_FACTOR * test_size, **(planted or {}))
    except ValueError as e:
        raise DatasetError(str(e)) from None


def load_raw(name: str, root="data", test_size: int = 1000, download: bool = False, file: str | None = None,
             classes=None, planted: dict | None = None):
    """(x_train, y_train, x_test, y_test) of dataset `name`, images NCHW float32 (vectors (N, D)), labels int64.

    With `classes`, only those labels are kept and relabelled 0..K-1 in the given order. `planted`: the
    parameters of a planted task (config key dataset.planted)."""
    root = Path(root)
    if name in planted_tasks.PLANTED:
        out = load_planted_raw(name, test_size, planted)
    elif name == "digits":
        out = load_digits_raw(test_size, classes)
    elif name == "cifar10":
        out = load_cifar10_raw(root, download=download)
    elif name == "mnist":
        out = load_mnist_raw(root)
    elif name == "imagefolder":
        out = load_imagefolder_raw(root)
    elif name == "npz":
        out = load_npz_raw(root / (file or "dataset.npz"))
    else:
        raise DatasetError(f"dataset.name={name!r} is unknown; expected one of {DATASETS}")
    if name != "digits":
        out = (*select_classes(out[0], out[1], classes), *select_classes(out[2], out[3], classes))
    for split, x, y in (("train", out[0], out[1]), ("test", out[2], out[3])):
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"dataset {name!r} ({root}): {split} inputs contain NaN or inf")
        if len(y) and y.min() < 0:
            raise DatasetError(f"dataset {name!r} ({root}): {split} labels must be >= 0, found {y.min()}")
        if len(y) and name in BUILTIN and y.max() >= BUILTIN[name].classes:
            raise DatasetError(f"dataset {name!r} ({root}): {split} labels must be in 0..{BUILTIN[name].classes - 1}, "
                               f"found {y.max()} (a corrupt or foreign file)")
    check_labels(out[1], out[3], f"dataset {name!r} ({root / (file or 'dataset.npz') if name == 'npz' else root})")
    return out


# ------------------------------------------------------------------------------------------- preparation
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


def imagefolder_listing(root: Path):
    """{split: [image files per class]} of an image folder, classes sorted by name and listed under
    "classes" (nothing read; a missing class folder lists no files); None when train/ has no class folders."""
    root = Path(root)
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir()) if (root / "train").is_dir() else []
    if not classes:
        return None
    listing = {"classes": classes}
    for split_name in ("train", "test"):
        listing[split_name] = []
        for cls in classes:
            folder = root / split_name / cls
            listing[split_name].append(
                sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else [])
    return listing


def identical_files(listing: dict) -> list[tuple[Path, Path]]:
    """(test file, train file) pairs of an `imagefolder_listing` whose bytes are identical (md5)."""
    train = {}
    for files in listing["train"]:
        for f in files:
            train.setdefault(hashlib.md5(f.read_bytes()).hexdigest(), f)
    return [(f, train[d]) for files in listing["test"] for f in files
            if (d := hashlib.md5(f.read_bytes()).hexdigest()) in train]


def load_prepared(path):
    """The arrays written by the data rule (see `prepare`)."""
    return load_npz(path)


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


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    return np.eye(n_classes, dtype=np.float32)[y]
