"""Reading each supported format into (x_train, y_train, x_test, y_test), images NCHW float arrays and integer
labels (`load_raw`):

- ``digits``: scikit-learn's bundled 8x8 digits (no download; no official split, so a fixed seeded split);
- ``cifar10``: the official ``cifar-10-python.tar.gz`` (md5-checked, read with a restricted unpickler);
- ``mnist``: the four IDX files, gzipped or not;
- ``imagefolder``: ``train/<class>/*.png|jpg`` and ``test/<class>/...`` (`imagefolder_listing` lists it
  without reading an image);
- ``npz``: one file with ``x_train, y_train, x_test, y_test`` (images NHWC, or (N, D) vectors);
- ``stripe``: the planted stripe model of planted.py, vectors generated from ``dataset.planted`` (no file).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from .. import planted as planted_tasks
from ..files import InputError, load_npz, require_regular_file
from . import facts
from .facts import (BUILTIN, CIFAR10_TARBALL, CIFAR10_URL, DATASETS, DIGITS_SPLIT_SEED, IMAGE_SUFFIXES, MNIST_FILES,
                    WIDE_IMAGE_MODES, DatasetError)
from .labels import check_labels, select_classes


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
    require_regular_file(tarball, "the official CIFAR-10 python tarball", DatasetError)
    if check_md5:
        got = md5sum(tarball)
        if got != facts.CIFAR10_MD5:  # read at call time (tests set a tarball of their own)
            raise DatasetError(f"{tarball}: md5 {got} does not match the official {facts.CIFAR10_MD5}; "
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
    require_regular_file(path, "an MNIST IDX file", DatasetError)
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
            images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
            for f in images:  # a FIFO or a link to a device named .png would hang or never end a read
                require_regular_file(f, "an image file", DatasetError)
            listing[split_name].append(images)
    return listing


def identical_files(listing: dict) -> list[tuple[Path, Path]]:
    """(test file, train file) pairs of an `imagefolder_listing` whose bytes are identical (md5)."""
    train = {}
    for files in listing["train"]:
        for f in files:
            train.setdefault(hashlib.md5(f.read_bytes()).hexdigest(), f)
    return [(f, train[d]) for files in listing["test"] for f in files
            if (d := hashlib.md5(f.read_bytes()).hexdigest()) in train]
