# Shared by every stage file - config validation, paths, wildcard constraints, target lists and
# named input functions. Kept small: logic lives in src/ntkscaling.
import os
import sys
from pathlib import Path

# Scripts import this checkout's library even where it is not pip-installed (e.g. a conda env on a cluster).
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
from ntkscaling.config import ConfigError, validate as validate_config  # noqa: E402
from ntkscaling.methods import ENTK_TAG_PATTERN, TAG_PATTERN, TUNED, entk_tags, parse_tag  # noqa: E402

try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml", check_data=workflow.is_main_process)
except ConfigError as err:
    raise WorkflowError(str(err)) from None

RESULTS = f"results/{config['run_name']}"
LOGS = f"logs/{config['run_name']}"
WIDTHS = config["model"]["widths"]
SEEDS = config["seeds"]
NS = config["sample_sizes"]
TRAIN_DIR = f"{RESULTS}/train/w{{width}}/s{{seed}}/n{{n}}"
AFTER = config["after_kernel"]
EVOLUTION = config["evolution"]
EVOLUTION_NS = EVOLUTION["sample_sizes"] or [max(NS)]
ENTK_TAGS = entk_tags(AFTER["ks"], AFTER["at_n"], NS)  # kernel tags: see ntkscaling.methods
INFINITE_TAGS = ["infinite_ntk", "infinite_nngp"] if config["kernel"]["infinite"] else []
KINDS = config["kernel"]["kinds"]
FIGURE_WIDTH = config["fit"]["figure_width"] or max(WIDTHS)
WIDTH_N = config["width_scaling"]["n"] or max(NS)
FIGURE_RIDGE = config["fit"]["figure_ridge"] if config["fit"]["figure_ridge"] is not None else TUNED


wildcard_constraints:
    width=r"\d+|inf",
    seed=r"\d+",
    n=r"\d+",
    method=TAG_PATTERN,
    kind=r"mean|sum|full",


def src(*modules):
    """Library files used by a script, as code-version inputs (editing them re-runs the job); a name without
    an extension is a Python module."""
    return [os.path.join(workflow.basedir, "src", "ntkscaling", m if "." in m else f"{m}.py") for m in modules]


def network_pointwise(wildcards=None):
    return expand(f"{TRAIN_DIR}/pointwise.npz", width=WIDTHS, seed=SEEDS, n=NS)


def network_metrics(wildcards=None):
    return expand(f"{TRAIN_DIR}/metrics.csv", width=WIDTHS, seed=SEEDS, n=NS)


def train_schedule(wildcards):
    """Checkpoint schedule of a training run: the evolution schedule for the n whose kernel evolution is
    tracked, train.* for the others."""
    src_cfg = EVOLUTION if int(wildcards.n) in EVOLUTION_NS else config["train"]
    return {"log_points": src_cfg["log_checkpoints"], "epochs": src_cfg["checkpoint_epochs"]}


def kernel_checkpoint(wildcards):
    """The network checkpoint whose eNTK a kernel tag uses: the initialization or a trained network."""
    tag = parse_tag(wildcards.method)
    if tag["method"] == "entk_init":
        return f"{RESULTS}/init/w{wildcards.width}/s{wildcards.seed}.ckpt"
    return f"{RESULTS}/train/w{wildcards.width}/s{wildcards.seed}/n{tag['k']}/final.ckpt"


def kernel_ns(wildcards):
    """The training-set sizes a kernel serves: entk_after_n<n> serves n only, every other kernel all n."""
    n = parse_tag(wildcards.method)["n"]
    return [n] if n else NS


def kernel_prior(wildcards):
    """The f0 of the linearized predictor, for uncentred networks (model.center: false): the outputs of the
    kernel's own checkpoint network on the kernel rows. Centred networks and infinite kernels have none."""
    if config["model"]["center"] or wildcards.method in INFINITE_TAGS:
        return []
    return [f"{RESULTS}/kernels/{wildcards.method}/w{wildcards.width}/s{wildcards.seed}/{wildcards.kind}.outputs.npy"]


def kernel_n_rows(wildcards):
    """Training rows of a kernel (the first ones of the seed's nested order); the test set follows."""
    return max(kernel_ns(wildcards))


def kernel_results(name):
    """Regression outputs of every kernel: eNTKs per tag, width and kind; infinite kernels (width 'inf',
    one scalar kernel per pair, regressed as the mean kind)."""
    pattern = f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/{name}"
    return (expand(pattern, method=ENTK_TAGS, width=WIDTHS, seed=SEEDS, kind=KINDS)
            + expand(pattern, method=INFINITE_TAGS, width="inf", seed=SEEDS, kind="mean"))


def pointwise_all(wildcards=None):
    """Per-test-point results of every method, the input of the exponent fits."""
    return network_pointwise() + kernel_results("pointwise.npz")


def metrics_all(wildcards=None):
    return network_metrics() + kernel_results("metrics.csv")


def evolution_tables(wildcards=None):
    return expand(f"{RESULTS}/evolution/w{{width}}/s{{seed}}/n{{n}}/{EVOLUTION['kind']}.csv",
                  width=WIDTHS, seed=SEEDS, n=EVOLUTION_NS)


def width_distance_tables(wildcards=None):
    """Per seed: eNTK at init vs infinite NTK, and the lazy-limit consistency of the networks at n = WIDTH_N."""
    return expand(f"{RESULTS}/width/distance_s{{seed}}.csv", seed=SEEDS)


def width_infinite(wildcards):
    """The infinite NTK of a seed, when the run computes it."""
    return [f"{RESULTS}/kernels/infinite_ntk/winf/s{wildcards.seed}/mean.npy"] if INFINITE_TAGS else []


def width_priors(wildcards):
    """The f0 of every width's eNTK at init, for the linearized predictor of uncentred networks."""
    if config["model"]["center"]:
        return []
    return expand(f"{RESULTS}/kernels/entk_init/w{{width}}/s{wildcards.seed}/mean.outputs.npy", width=WIDTHS)


def figure_title(width=None):
    m = config["model"]
    depth = f" depth {m['depth']}" if m["arch"] == "mlp" else ""
    shown = f", width {width}" if width is not None else ""
    return f"{config['dataset']['name']}, {m['arch']}{depth}{shown}, {m['parameterization']} parameterization"


FIGURES = ("data_scaling", "after_kernel", "kernel_evolution", "width_scaling")


def all_targets():
    return [
        f"{RESULTS}/scaling/metrics.csv",
        f"{RESULTS}/scaling/exponents.csv",
        f"{RESULTS}/summary/exponents.csv",
        *expand(f"{RESULTS}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=("pdf", "png")),
    ]
