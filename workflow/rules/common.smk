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

try:
    validate_config(config, Path(workflow.basedir) / "config" / "schema.yaml")
except ConfigError as err:
    raise WorkflowError(str(err)) from None

RESULTS = f"results/{config['run_name']}"
LOGS = f"logs/{config['run_name']}"
WIDTHS = config["model"]["widths"]
SEEDS = config["seeds"]
NS = config["sample_sizes"]
TRAIN_DIR = f"{RESULTS}/train/w{{width}}/s{{seed}}/n{{n}}"
ENTK_METHODS = ["entk_init"]
INFINITE_METHODS = ["infinite_ntk", "infinite_nngp"] if config["kernel"]["infinite"] else []
KINDS = config["kernel"]["kinds"]


wildcard_constraints:
    width=r"\d+|inf",
    seed=r"\d+",
    n=r"\d+",
    method="entk_init|infinite_ntk|infinite_nngp",
    kind=r"mean|sum|full",


def src(*modules):
    """Library files imported by a script, as code-version inputs (editing them re-runs the job)."""
    return [os.path.join(workflow.basedir, "src", "ntkscaling", f"{m}.py") for m in modules]


def network_pointwise(wildcards=None):
    return expand(f"{TRAIN_DIR}/pointwise.npz", width=WIDTHS, seed=SEEDS, n=NS)


def network_metrics(wildcards=None):
    return expand(f"{TRAIN_DIR}/metrics.csv", width=WIDTHS, seed=SEEDS, n=NS)


def kernel_checkpoint(wildcards):
    """The network checkpoint whose eNTK a kernel method uses."""
    if wildcards.method == "entk_init":
        return f"{RESULTS}/init/w{wildcards.width}/s{wildcards.seed}.ckpt"
    raise ValueError(f"unknown kernel method {wildcards.method!r}")


def kernel_results(name):
    """Regression outputs of every kernel: eNTKs per width and kind; infinite kernels (width 'inf',
    one scalar kernel per pair, regressed as the mean kind)."""
    pattern = f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/{name}"
    return (expand(pattern, method=ENTK_METHODS, width=WIDTHS, seed=SEEDS, kind=KINDS)
            + expand(pattern, method=INFINITE_METHODS, width="inf", seed=SEEDS, kind="mean"))


def pointwise_all(wildcards=None):
    """Per-test-point results of every method, the input of the exponent fits."""
    return network_pointwise() + kernel_results("pointwise.npz")


def metrics_all(wildcards=None):
    return network_metrics() + kernel_results("metrics.csv")


def figure_title():
    m = config["model"]
    depth = f" depth {m['depth']}" if m["arch"] == "mlp" else ""
    return f"{config['dataset']['name']}, {m['arch']}{depth}, {m['parameterization']} parameterization"


def all_targets():
    return [
        f"{RESULTS}/scaling/metrics.csv",
        f"{RESULTS}/scaling/exponents.csv",
        f"{RESULTS}/figures/data_scaling.pdf",
        f"{RESULTS}/figures/data_scaling.png",
    ]
