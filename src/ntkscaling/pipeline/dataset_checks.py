"""The dataset against the config, before any job: class counts where cheap (the built-in table, an npz's
label arrays, an image folder's listing), the one label rule, split sizes against sample_sizes and the
validation and test sets, downsampling against image sizes, the kernels' size limit, and (reading the user's
files where cheap) test inputs identical to training inputs (`overlap_checks`)."""
from __future__ import annotations

from pathlib import Path

from ..data import BUILTIN, label_problem
from ..planted import PLANTED
from .jobsize import IMPORTS_MB, kernel_sizes

def _class_counts(ds: dict):
    """(per-class training counts, per-class test counts or None) before any job, where cheap; else None."""
    if ds["name"] == "npz":
        return _npz_class_counts(ds)
    if ds["name"] in PLANTED:  # generated in milliseconds, once its size is known to be bounded
        import numpy as np

        from .. import data
        from ..files import InputError
        from ..planted import size_problem
        problem = size_problem(ds["test_size"], ds["planted"])
        if problem:
            raise InputError(problem)
        _, y_train, _, y_test = data.load_planted_raw(ds["name"], ds["test_size"], ds["planted"])
        return np.bincount(y_train, minlength=2).tolist(), np.bincount(y_test, minlength=2).tolist()
    if ds["name"] == "imagefolder":
        from ..data import imagefolder_listing  # file names only: cheap even inside cluster jobs
        from ..files import InputError
        listing = imagefolder_listing(Path(ds["root"]))
        if not listing:
            raise InputError(f"config key 'dataset.root': {Path(ds['root']) / 'train'} has no class folders; "
                             f"expected train/<class>/ and test/<class>/ folders of images")
        return [[len(files) for files in listing[s]] for s in ("train", "test")]
    facts = BUILTIN.get(ds["name"])
    return None if facts is None else (facts.train_counts, facts.test_counts)


def _class_checks(ds: dict, counts) -> list[str]:
    """Requested classes exist; without a selection, labels are 0..K-1 with every class in the training split.
    counts: `_class_counts(ds)`."""
    if counts is None:
        return []  # the data job reads the data and checks it
    train = counts[0]
    where = f"{Path(ds['root']) / ds['file']}" if ds["name"] == "npz" else ds["name"]
    if ds["classes"] is not None:
        bad = [c for c in ds["classes"] if c >= len(train) or train[c] == 0]
        if bad:
            have = [c for c, n in enumerate(train) if n]
            return [f"config key 'dataset.classes': classes {bad} do not occur in {where} (its classes are {have})"]
        return []
    problem = label_problem(train, f"dataset {where}")
    return [problem] if problem else []


def class_count(ds: dict):
    """The number of classes of a dataset read where cheap (npz labels, an image folder's class folders),
    or None."""
    from ..files import InputError
    try:
        counts = _class_counts(ds)
    except InputError:
        return None
    return len(counts[0]) if counts else None


def _npz_class_counts(ds: dict):
    """Per-class counts of an npz dataset from its label arrays alone (the images are not read); InputError
    naming the file when it is missing, unreadable or its labels are not non-negative integers."""
    import numpy as np

    from ..files import InputError, load_npz
    path = Path(ds["root"]) / ds["file"]
    z = load_npz(path, hint="", keys=("y_train", "y_test"), what="an .npz with x_train, y_train, x_test, y_test")
    y_train, y_test = z["y_train"], z["y_test"]
    for name, y in (("y_train", y_train), ("y_test", y_test)):
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or not len(y) or y.min() < 0:
            raise InputError(f"{path}: {name} must be a non-empty 1-D array of labels 0..K-1 "
                             f"(got {y.dtype} {y.shape}{f', minimum {y.min()}' if y.size else ''})")
    size = int(max(y_train.max(), y_test.max())) + 1
    if size > len(y_train):  # more classes than training examples: some class has none (and counts would not fit)
        from ..data import classes_without_examples
        count, shown = classes_without_examples(y_train, size)
        raise InputError(f"dataset {path}: labels must be 0..K-1 with every class in the training split; labels go "
                         f"up to {size - 1} but classes {shown} ({count}) have no training example (renumber the "
                         f"labels, or choose classes with dataset.classes)")
    return np.bincount(y_train, minlength=size).tolist(), np.bincount(y_test, minlength=size).tolist()


def overlap_checks(ds: dict) -> list[str]:
    """dataset.test_overlap before any job, where the data is local and cheap to read; the data job checks
    every dataset again after preparing it (the authoritative check: downsampled, decoded images)."""
    from .. import data
    if ds["test_overlap"] != "error":
        return []
    try:
        if ds["name"] == "imagefolder":
            listing = data.imagefolder_listing(Path(ds["root"]))
            same = data.identical_files(listing) if listing else []
            if same:
                return [f"config key 'dataset.test_overlap': {len(same)} test image file(s) of {ds['root']} are "
                        f"byte-identical to training files (e.g. {same[0][0]} = {same[0][1]}); with test_overlap "
                        f"'error' none are allowed. Remove them, or set dataset.test_overlap: warn"]
            return []
        if ds["name"] != "npz":
            # digits holds no duplicate images (its split is disjoint); CIFAR-10 and MNIST are read (and
            # downloaded) by the data job, which checks them
            return []
        x_tr, _, x_te, _ = data.split(ds["name"], ds["root"], ds["test_size"], ds["classes"], file=ds["file"],
                                      downsample_factor=ds["downsample"])
        data.check_overlap(data.find_overlap(x_tr, x_te), "error", f"dataset {ds['name']!r}")
    except data.DatasetError as err:
        return [str(err)]
    return []


def _dataset_sizes(ds: dict, counts):
    """(training pool, test split, classes) where known before any job runs (without loading images),
    else None. counts: `_class_counts(ds)`."""
    if counts is None:
        return None
    train, test = counts
    keep = ds["classes"] if ds["classes"] is not None else range(len(train))
    if any(c >= len(train) for c in keep):
        return None  # reported by the class check
    pool = sum(train[c] for c in keep)
    if test is None:
        return pool - ds["test_size"], pool, len(keep)
    return pool, sum(test[c] for c in keep), len(keep)


def input_shape(ds: dict):
    """One input's shape (C, H, W) after downsampling, where known without reading the data (built-in
    datasets, an npz's array header, an image folder's first training image's header); None where unknown."""
    if ds["name"] in PLANTED:
        return (int(ds["planted"]["dim"]),)
    if ds["name"] in BUILTIN:
        c, h, w = BUILTIN[ds["name"]].shape
        return c, h // ds["downsample"], w // ds["downsample"]
    if ds["name"] == "imagefolder":
        return _imagefolder_shape(Path(ds["root"]), ds["downsample"])
    if ds["name"] != "npz":
        return None
    import zipfile

    from ..files import npy_header
    try:
        with zipfile.ZipFile(Path(ds["root"]) / ds["file"]) as z, z.open("x_train.npy") as f:
            shape = npy_header(f)[0]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None  # an unreadable npz: the dataset checks name it
    shape = shape[1:] if len(shape) == 2 else (1, *shape[1:]) if len(shape) == 3 else (shape[3], *shape[1:3])
    if len(shape) == 3:
        shape = (shape[0], shape[1] // ds["downsample"], shape[2] // ds["downsample"])
    return tuple(int(s) for s in shape)


def _imagefolder_shape(root: Path, downsample: int):
    """(C, H, W) of an image folder's first training image as the loader reads it (grey stays one channel,
    everything else becomes RGB), from its header alone; None when there is none or it does not open (the
    data job says why)."""
    from ..data import imagefolder_listing
    from ..files import InputError
    try:
        listing = imagefolder_listing(root)
    except InputError:
        return None
    first = next((f for files in (listing or {}).get("train", []) for f in files), None)
    if first is None:
        return None
    from PIL import Image
    try:
        with Image.open(first) as im:
            w, h = im.size
            channels = 1 if im.mode == "L" else 3
    except OSError:
        return None
    return channels, h // downsample, w // downsample


def dataset_checks(config: dict) -> list[str]:
    """The dataset's classes, image size and split sizes against the config, and the kernels' size."""
    problems, ns, ds = [], sorted(config["sample_sizes"]), config["dataset"]
    from ..files import InputError
    try:
        counts = _class_counts(ds)  # read once: npz label arrays, an image folder's listing
    except InputError as e:
        counts = None
        problems.append(str(e))
    problems += _class_checks(ds, counts)
    if ds["name"] in BUILTIN and any(side % ds["downsample"] for side in BUILTIN[ds["name"]].shape[1:]):
        _, h, w = BUILTIN[ds["name"]].shape
        problems.append(f"config key 'dataset.downsample': got {ds['downsample']}; it must divide the {ds['name']} "
                        f"image size {h}x{w}")
    if ds["name"] in PLANTED and ds["downsample"] != 1:
        problems.append(f"config key 'dataset.downsample': got {ds['downsample']}; expected 1 (the {ds['name']} "
                        f"task has vector inputs, not images)")
    sizes = _dataset_sizes(ds, counts)
    n_classes = 10
    if sizes is not None:
        pool, test, n_classes = sizes
        what = f"{ds['name']}" + (f" classes {ds['classes']}" if ds["classes"] is not None else "")
        if ds["name"] == "digits" and pool < 1:
            problems.append(f"config key 'dataset.test_size': got {ds['test_size']}; {what} has {test} images, "
                            f"expected fewer so that a training pool remains")
        elif ds["val_size"] >= pool:
            problems.append(f"config key 'dataset.val_size': got {ds['val_size']}; the training split of {what} "
                            f"has {pool} examples{' after the test set' if ds['name'] == 'digits' else ''}, "
                            f"expected fewer so that a training pool remains")
        elif ns[-1] > pool - ds["val_size"]:
            problems.append(f"config key 'sample_sizes': largest n={ns[-1]} exceeds the training pool of {what} "
                            f"({pool - ds['val_size']} examples after the {ds['val_size']} of the validation set"
                            f"{' and the test set' if ds['name'] == 'digits' else ''})")
        if ds["test_size"] > test:
            problems.append(f"config key 'dataset.test_size': got {ds['test_size']}; the test split of {what} has "
                            f"{test} examples")
    elif ds["classes"] is not None:
        n_classes = len(ds["classes"])
    limit = config["kernel"]["max_gb"]
    for what, gb in kernel_sizes(config, n_classes):
        if gb > limit:
            problems.append(f"config key 'kernel.max_gb': the {what} on {ns[-1]} + {ds['val_size']} + "
                            f"{ds['test_size']} rows would "
                            f"take {gb:.1f} GB > kernel.max_gb={limit}; lower sample_sizes or dataset.test_size, "
                            f"use the mean kind, or raise kernel.max_gb if the disk has room")
    cap = config["max_job_mem_mb"]
    if cap is not None:
        for what, gb in kernel_sizes(config, n_classes):
            need = held_mb(what, gb)
            if need > cap:
                problems.append(f"config key 'max_job_mem_mb': got {cap:g}; the job of the {what} holds the kernel "
                                f"in memory ({gb * 1000:.0f} MB, and its copy; twice for the infinite NTK and NNGP) "
                                f"beside the {IMPORTS_MB} MB of a job's imports: at least {need:.0f} MB; raise the cap, or lower "
                                f"sample_sizes or dataset.test_size")
    return problems


def held_mb(what: str, gb: float) -> float:
    """What a kernel job must hold whatever its request (a cap below a job's estimate lowers the request: an
    eNTK job then works out of core within it; below this it cannot run): the imports and the kernel, with its
    copy on the way to disk (both NTK and NNGP for the infinite kernel)."""
    kernels = 2 if what.startswith("infinite") else 1
    return IMPORTS_MB + 2 * kernels * gb * 1000
