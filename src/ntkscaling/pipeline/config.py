"""Configuration checking: the schema (pipeline/schema.py) plus the cross-key rules a schema cannot say (the run's
design, the models, a user's network factory, every sweep point; the dataset's in pipeline/dataset_checks.py).

`validate` fills defaults in place, puts keys in a canonical (sorted) order, and raises `ConfigError` naming every bad key, its value and what is
allowed, so a bad config stops the Snakefile before any job starts.
"""
from __future__ import annotations

from .dataset_checks import dataset_checks, input_shape, overlap_checks
from .schema import SCHEMA_PATH, ConfigError, load_schema, schema_problems, sort_keys  # noqa: F401 (load_schema: public)


# What the compute environment offers each job (set by profiles); they change no number the workflow writes.
JOB_KEYS = ("gpus_per_job", "max_job_mem_mb", "max_job_runtime")


def validate(config: dict, schema_path=SCHEMA_PATH, check_data: bool = True) -> dict:
    """Fill defaults into `config` (in place) and check it; raise ConfigError listing every problem.

    check_data: also read the user's dataset where that is cheap (npz, an image folder's listing and file
    hashes) to check that the test set repeats no training input (dataset.test_overlap). The
    workflow passes False inside cluster jobs, which re-read the Snakefile."""
    problems = schema_problems(config, schema_path)
    if not problems:
        problems += _cross_checks(config)
    if not problems and check_data:
        problems += overlap_checks(config["dataset"]) + _factory_checks(config)
    if not problems:
        problems += _checkpoint_checks(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))
    config["sample_sizes"] = sorted(config["sample_sizes"])
    sort_keys(config)
    return config


def _cross_checks(config: dict) -> list[str]:
    """Checks between keys: the run's design (fits, figures, k, tracked n), then the dataset against it, then
    every grid point of a sweep."""
    problems = _name_checks(config) + _design_checks(config) + dataset_checks(config)
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
    theory = config["theory"]
    if theory["mode_max"] is not None and theory["mode_max"] < theory["mode_min"] + 1:
        problems.append(f"config keys 'theory.mode_min'/'theory.mode_max': got {theory['mode_min']} and "
                        f"{theory['mode_max']}; expected mode_max >= mode_min + 1 (a fit needs two modes)")
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


def _factory_checks(config: dict) -> list[str]:
    """A factory network before any job: its function is found and called at every width of model.widths, on
    the dataset's input shape (an image folder's from its first image's header), with the config's arguments,
    and with kernel.infinite it must have an infinite-width kernel: the message names the width and the layer."""
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
        return []  # unknown without reading the data (an unreadable dataset: the dataset checks say so)
    n_out = _output_count(config["dataset"])
    for width in sorted(model["widths"]):
        try:
            net = models.seeded_module(function, f"model.factory={factory!r}", shape, n_out, width, 0,
                                       **model["factory_kwargs"])
        except Exception as e:
            why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
            return [f"config key 'model.factory': building {factory!r} with width {width}, in_shape {shape}, "
                    f"out_dim {n_out} and factory_kwargs {model['factory_kwargs']} failed: {why}"]
        if config["kernel"]["infinite"]:
            try:
                models.infinite_layers(net)
            except ValueError as e:
                return [f"config key 'kernel.infinite': true, but model.factory={factory!r} has {e} (at width "
                        f"{width}); set kernel.infinite: false"]
        del net
    return []


def _checkpoint_checks(config: dict) -> list[str]:
    """The checkpoints one training job writes, estimated before any job, against train.max_checkpoint_gb
    (`checkpoint_gb`). Counted without torch for the layered networks; a factory's or the ResNet's parameters
    are counted by building it (torch imported only then)."""
    model, limit = config["model"], config["train"]["max_checkpoint_gb"]
    shape = input_shape(config["dataset"])
    if shape is None:
        return []
    n_out = _output_count(config["dataset"])
    for width in sorted(model["widths"], reverse=True):
        try:
            params = _param_count(model, shape, n_out, width)
        except Exception:  # a network that does not build: its own check names it
            return []
        saves, gb = checkpoint_gb(config, params)
        if gb > limit:
            return [f"config key 'train.max_checkpoint_gb': a training job at width {width} would write {saves} "
                    f"checkpoints of {params} parameters, about {gb:.3g} GB > train.max_checkpoint_gb={limit:g}; "
                    f"lower train.log_checkpoints, evolution.log_checkpoints or the checkpoint epochs, or raise "
                    f"the limit if the disk holds it"]
    return []


def checkpoint_gb(config: dict, params: int) -> tuple[int, float]:
    """(checkpoints, GB) of the training job that writes the most checkpoints, for a network of `params`."""
    train, evolution, model = config["train"], config["evolution"], config["model"]
    saves = 2 + max(train["log_checkpoints"] + len(train["checkpoint_epochs"]),
                    evolution["log_checkpoints"] + len(evolution["checkpoint_epochs"]))
    buffers = 2 if train["optimizer"] == "adam" else (1 if train["momentum"] > 0 else 0)
    copies = 1 + (1 if model["center"] else 0) + buffers
    return saves, saves * params * 4 * copies / 1e9


def _param_count(model: dict, shape, n_out: int, width: int) -> int:
    from ..nets import archs
    if model["factory"] is None and model["arch"] in archs.LAYERED:
        return archs.param_count(archs.layer_specs(model["arch"], width, shape, n_out, depth=model["depth"]))
    from ..nets import models  # imports torch: a factory or the ResNet only
    net = models.build_network({**model, "width": width}, shape, n_out, seed=0)
    return sum(p.numel() for p in net.parameters())


def _output_count(ds: dict) -> int:
    """The network's outputs: the classes the run uses (the config's, else the dataset's)."""
    if ds["classes"]:
        return len(ds["classes"])
    from ..data.facts import BUILTIN
    from ..planted import PLANTED
    if ds["name"] in BUILTIN:
        return BUILTIN[ds["name"]].classes
    if ds["name"] in PLANTED:
        return 2
    from .dataset_checks import class_count
    return class_count(ds) or 10
