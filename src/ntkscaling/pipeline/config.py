"""Configuration checking: the schema (schema.yaml, shipped inside the package) plus the cross-key rules a schema cannot say.

`validate` fills defaults in place, puts keys in a canonical (sorted) order, and raises `ConfigError` naming every bad key, its value and what is
allowed, so a bad config stops the Snakefile before any job starts.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import jsonschema
import yaml

from ..data import BUILTIN, label_problem
from ..planted import PLANTED

SCHEMA_PATH = Path(__file__).resolve().with_name("schema.yaml")  # package data: found installed or not


# What the compute environment offers each job (set by profiles); they change no number the workflow writes.
JOB_KEYS = ("gpus_per_job", "max_job_mem_mb", "max_job_runtime")


class ConfigError(ValueError):
    """The configuration has a bad key or value."""


def _is_integer(checker, value) -> bool:
    """Integers only: JSON Schema counts 16.0 as an integer, but a float where a count or an index is meant
    fails later inside a job (range(16.0)); true and false are not numbers either."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(checker, value) -> bool:
    """Finite numbers only: NaN and infinity (.nan, .inf in YAML; nan, inf through --config) pass every
    bound check, since every comparison with NaN is false."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (isinstance(value, int) or math.isfinite(value)))


def _numeric_text(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _with_defaults(cls):
    check_properties = cls.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, properties, instance, schema)

    types = cls.TYPE_CHECKER.redefine("integer", _is_integer).redefine("number", _is_number)
    return jsonschema.validators.extend(cls, {"properties": set_defaults}, type_checker=types)


def _schema_at(schema: dict, path) -> dict:
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _describe(err: jsonschema.ValidationError, schema: dict) -> str:
    path = ".".join(str(p) for p in err.absolute_path)
    key = f"config key '{path}'" if path else "config (top level)"
    node = _schema_at(schema, [p for p in err.absolute_path])
    if err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        where = f"config section '{path}'" if path else "config (top level)"
        return f"{where}: unknown key(s) {extra}; allowed keys are {allowed}"
    if err.validator == "enum":
        what = f"one of {err.validator_value}"
    elif err.validator == "type":
        wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        if isinstance(err.instance, float) and not math.isfinite(err.instance):
            what = "a finite number"
        elif isinstance(err.instance, float) and "integer" in wanted and "number" not in wanted:
            what = f"a whole number written without a decimal point ({int(err.instance)})" \
                if err.instance.is_integer() else "a whole number"
        elif isinstance(err.instance, str) and {"integer", "number"} & set(wanted) and _numeric_text(err.instance):
            what = (f"a value of type {err.validator_value}, not text (--config passes values inside lists and "
                    f"mappings as text: put them in a --configfile)")
        else:
            what = f"a value of type {err.validator_value}"
    elif err.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        sym = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[err.validator]
        what = f"a number {sym} {err.validator_value}"
    elif err.validator == "minItems":
        what = f"a list with at least {err.validator_value} item(s)"
    elif err.validator == "uniqueItems":
        what = "a list without repeated items"
    elif err.validator == "pattern":
        what = f"a string matching {err.validator_value}"
    else:
        what = err.message
    desc = node.get("description", "").strip()
    return f"{key}: got {err.instance!r}; expected {what}" + (f" ({desc})" if desc else "")


def load_schema(path=SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate(config: dict, schema_path=SCHEMA_PATH, check_data: bool = True) -> dict:
    """Fill defaults into `config` (in place) and check it; raise ConfigError listing every problem.

    check_data: also read the user's dataset where that is cheap (npz, an image folder's listing and file
    hashes) to check that the test set repeats no training input (dataset.test_overlap). The
    workflow passes False inside cluster jobs, which re-read the Snakefile."""
    schema = load_schema(schema_path)
    validator = _with_defaults(jsonschema.Draft7Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [_describe(e, schema) for e in errors]
    if not problems:
        problems += _cross_checks(config)
    if not problems and check_data:
        problems += _overlap_checks(config["dataset"]) + _factory_checks(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    config["sample_sizes"] = sorted(config["sample_sizes"])
    _sort_keys(config)
    return config


def _sort_keys(d: dict):
    """Sort mappings in place, recursively: Snakemake compares dict-valued params by their text, so the same
    values in another key order (a reordered YAML file, defaults filled in) must not look like a change."""
    for key in sorted(d):
        value = d.pop(key)
        if isinstance(value, dict):
            _sort_keys(value)
        d[key] = value


def _class_counts(ds: dict):
    """(per-class training counts, per-class test counts or None) before any job, where cheap; else None."""
    if ds["name"] == "npz":
        return _npz_class_counts(ds)
    if ds["name"] in PLANTED:  # generated in milliseconds
        import numpy as np

        from .. import data
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


def _overlap_checks(ds: dict) -> list[str]:
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


def kernel_row_count(config: dict, n_max: int, pool: int = 0) -> int:
    """Rows of a kernel whose training block has n_max rows: training, validation, test, then `pool` pool rows
    (data.kernel_rows; an upper bound: a small training pool holds fewer)."""
    return n_max + config["dataset"]["val_size"] + config["dataset"]["test_size"] + pool


def kernel_sizes(config: dict, n_classes: int) -> list[tuple[str, float]]:
    """(what, GB) of every kernel file the run writes (the largest of each kind)."""
    n_max = max(config["sample_sizes"])
    pool = config["theory"]["pool"]  # mean and sum kinds only
    out = [(f"eNTK ({kind} kind)", kernel_row_count(config, n_max, 0 if kind == "full" else pool) ** 2 * 4
            * (n_classes ** 2 if kind == "full" else 1) / 1e9)
           for kind in sorted(set(config["kernel"]["kinds"]) | {config["evolution"]["kind"]})]
    rows = kernel_row_count(config, n_max, pool)
    if config["kernel"]["infinite"]:
        out.append(("infinite NTK (float64)", rows ** 2 * 8 / 1e9))
    return out


def _cross_checks(config: dict) -> list[str]:
    """Checks between keys: the run's design (fits, figures, k, tracked n), then the dataset against it, then
    every grid point of a sweep."""
    problems = _name_checks(config) + _design_checks(config) + _dataset_checks(config)
    return problems or _sweep_checks(config)


def _name_checks(config: dict) -> list[str]:
    """run_name's pattern ends in `$`, which also matches before a final line break ('tiny\\n' would pass)."""
    name = config["run_name"]
    if name != name.rstrip("\n"):
        return [f"config key 'run_name': got {name!r}; expected a plain folder name without a line break"]
    return []


def _sweep_checks(config: dict) -> list[str]:
    """Every grid point's config, checked as a run of its own (without reading data again)."""
    from . import sweep
    problems, names = [], {}
    for point in sweep.grid_points(config):
        name = sweep.point_name(point)
        if name in names:  # 1 and 1.0, or 0.1 and 0.10: one folder for two points
            problems.append(f"config key 'sweep': points {names[name]} and {point} share the folder name "
                            f"{name!r}; give each value once")
            continue
        names[name] = point
        sub = sweep.point_config(config, point)
        sub.pop("_sweep")
        try:
            validate(sub, check_data=False)
        except ConfigError as err:
            problems += [f"sweep point {sweep.point_name(point)}: {line.strip()[2:]}"
                         for line in str(err).splitlines()[1:]]
    return problems


def _design_checks(config: dict) -> list[str]:
    problems = _model_checks(config["model"], config["kernel"]["infinite"])
    ns = sorted(config["sample_sizes"])
    fit = config["fit"]
    lo = fit["n_min"] if fit["n_min"] is not None else ns[0]
    hi = fit["n_max"] if fit["n_max"] is not None else ns[-1]
    inside = [n for n in ns if lo <= n <= hi]
    if len(inside) < 2:
        problems.append(f"config keys 'fit.n_min'/'fit.n_max': range [{lo}, {hi}] holds {len(inside)} of "
                        f"sample_sizes {ns}; expected at least 2 (3 with fit.floor)")
    elif fit["floor"] and len(inside) < 3:
        problems.append(f"config key 'fit.floor': true needs at least 3 sample sizes in the fit range, got {inside}")
    ridge = config["fit"]["figure_ridge"]
    if ridge is not None and ridge != "tuned" and ridge not in config["kernel"]["ridges"]:
        problems.append(f"config key 'fit.figure_ridge': got {ridge}; expected 'tuned' or one of kernel.ridges "
                        f"{config['kernel']['ridges']}")
    widths = config["model"]["widths"]
    width = config["fit"]["figure_width"]
    if width is not None and width not in widths:
        problems.append(f"config key 'fit.figure_width': got {width}; expected one of model.widths {widths}")
    too_big = [k for k in config["after_kernel"]["ks"] if k > ns[-1]]
    if too_big:
        problems.append(f"config key 'after_kernel.ks': got {too_big}; expected each k <= the largest sample "
                        f"size {ns[-1]} (the networks on k use the first k points of the nested subsets)")
    for key, values in (("evolution.sample_sizes", config["evolution"]["sample_sizes"] or []),
                        ("width_scaling.n", [config["width_scaling"]["n"]] if config["width_scaling"]["n"] else [])):
        unknown = [n for n in values if n not in ns]
        if unknown:
            problems.append(f"config key '{key}': got {unknown}; expected values from sample_sizes {ns}")
    return problems


def _model_checks(model: dict, infinite: bool) -> list[str]:
    """The network: a built-in arch, or a factory with its own label; a network with an infinite-width kernel
    when kernel.infinite is set (a factory's is checked by `_factory_checks`)."""
    from ..nets.archs import BUILT_IN, MODULES
    arch, factory = model["arch"], model["factory"]
    if factory is None and arch not in BUILT_IN:
        return [f"config key 'model.arch': got {arch!r}; expected one of {list(BUILT_IN)}, or set "
                f"model.factory to train your own network under that label"]
    if factory is not None and arch in BUILT_IN:
        return [f"config key 'model.arch': got {arch!r} with model.factory={factory!r}; {arch!r} names a "
                f"built-in network: give yours a label of its own"]
    if factory is None and model["factory_kwargs"]:
        return [f"config key 'model.factory_kwargs': got {model['factory_kwargs']!r} without model.factory; "
                f"expected {{}} (they are the arguments of your factory)"]
    if model["output_scale"] != 1 and not model["center"]:
        return [f"config key 'model.output_scale': got {model['output_scale']} with model.center: false; expected 1 "
                f"(lazy training scales the centred network f - f0: an uncentred alpha * f starts at alpha * f0, "
                f"unbounded as alpha grows), or set model.center: true"]
    if infinite and arch in MODULES:
        return [f"config key 'kernel.infinite': true, but model.arch {arch!r} is made of torch layers (Conv2d, "
                f"BatchNorm2d) that have no infinite-width rule; set kernel.infinite: false"]
    return []


def input_shape(ds: dict):
    """One input's shape (C, H, W) after downsampling, where known without reading the images (built-in
    datasets, an npz's array header); None for an image folder."""
    if ds["name"] in PLANTED:
        return (int(ds["planted"]["dim"]),)
    if ds["name"] in BUILTIN:
        c, h, w = BUILTIN[ds["name"]].shape
        return c, h // ds["downsample"], w // ds["downsample"]
    if ds["name"] != "npz":
        return None
    import zipfile

    import numpy as np
    with zipfile.ZipFile(Path(ds["root"]) / ds["file"]) as z, z.open("x_train.npy") as f:
        version = np.lib.format.read_magic(f)
        shape = np.lib.format._read_array_header(f, version)[0]
    shape = shape[1:] if len(shape) == 2 else (1, *shape[1:]) if len(shape) == 3 else (shape[3], *shape[1:3])
    if len(shape) == 3:
        shape = (shape[0], shape[1] // ds["downsample"], shape[2] // ds["downsample"])
    return tuple(int(s) for s in shape)


def _factory_checks(config: dict) -> list[str]:
    """A factory network before any job: its function is found and called (at the smallest width, where the
    input shape is known without reading images) with the config's arguments, and with kernel.infinite it
    must have an infinite-width kernel: the message names the layer that has none."""
    model, factory = config["model"], config["model"]["factory"]
    if factory is None:
        return []
    from ..nets import models  # imports torch: only for a factory
    try:
        function = models.resolve_factory(factory)
    except ValueError as e:  # not found, or its file does not load (the message names the file and line)
        return [f"config key 'model.factory': {e}"]
    try:
        shape = input_shape(config["dataset"])
    except Exception:  # an unreadable npz: the dataset checks say so
        shape = None
    if shape is None:
        return []  # an image folder: the jobs build the network
    n_out = len(config["dataset"]["classes"] or range(10))
    try:
        net = models.seeded_module(function, f"model.factory={factory!r}", shape, n_out, min(model["widths"]),
                                    0, **model["factory_kwargs"])
    except Exception as e:
        why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
        return [f"config key 'model.factory': building {factory!r} with width {min(model['widths'])}, "
                f"in_shape {shape} and factory_kwargs {model['factory_kwargs']} failed: {why}"]
    if config["kernel"]["infinite"]:
        try:
            models.infinite_layers(net)
        except ValueError as e:
            return [f"config key 'kernel.infinite': true, but model.factory={factory!r} has {e}; "
                    f"set kernel.infinite: false"]
    return []


def _dataset_checks(config: dict) -> list[str]:
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
    return problems
