# Shared by all rule files: config validation, paths, wildcard constraints, target lists and
# named input functions. Kept small: logic lives in src/ntkscaling.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))
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
TRAIN_DIR = RESULTS + "/train/w{width}/s{seed}/n{n}"


wildcard_constraints:
    width=r"\d+",
    seed=r"\d+",
    n=r"\d+",
    ext=r"pdf|png",


def src(*modules):
    """The library files a rule's script imports: editing them re-runs the rule (code-version inputs)."""
    return [f"src/ntkscaling/{m}.py" for m in modules]


def network_pointwise(wildcards=None):
    return expand(TRAIN_DIR + "/pointwise.npz", width=WIDTHS, seed=SEEDS, n=NS)


def network_metrics(wildcards=None):
    return expand(TRAIN_DIR + "/metrics.csv", width=WIDTHS, seed=SEEDS, n=NS)


def pointwise_all(wildcards=None):
    """Per-test-point results of every method, the input of the exponent fits."""
    return network_pointwise()


def metrics_all(wildcards=None):
    return network_metrics()


def all_targets():
    return [
        RESULTS + "/scaling/metrics.csv",
        RESULTS + "/scaling/exponents.csv",
        *expand(RESULTS + "/figures/data_scaling.{ext}", ext=["pdf", "png"]),
    ]
