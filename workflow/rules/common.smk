# Shared by every stage file - config validation, paths, wildcard constraints, target lists, named input
# functions and the narrow params of each job. Kept small; logic lives in src/ntkscaling.
#
# Only what a change makes stale re-runs: every rule gets exactly the config values it uses (never a whole
# section: Snakemake re-runs a job whose params changed), its code inputs are the library files its script
# really imports, and its resources are sized from the job itself.
import csv
import os
import sys
from pathlib import Path

# The checkout this file belongs to, found from this file (not from the main Snakefile), so the workflow
# also works as a Snakemake `module` of another workflow.
REPO = Path(workflow.current_basedir).parents[1]
# Scripts import this checkout's library even where it is not pip-installed (e.g. a conda env on a cluster).
SRC = str(REPO / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))
from ntkscaling import data  # noqa: E402
from ntkscaling.nets import archs  # noqa: E402
from ntkscaling.pipeline import code_inputs, jobsize, sweep, tags as methods  # noqa: E402
from ntkscaling.pipeline.config import ConfigError, validate as validate_config  # noqa: E402
from ntkscaling.pipeline.jobsize import kernel_row_count  # noqa: E402
from ntkscaling.pipeline.tags import ENTK_TAG_PATTERN, TAG_PATTERN, TUNED, entk_tags, parse_tag  # noqa: E402
from ntkscaling.training.settings import linearized_problem, step_budget  # noqa: E402

SWEEP_POINT = config.pop("_sweep", None)  # set for a sweep's grid point (ntkscaling.sweep.point_config)
try:
    validate_config(config, check_data=workflow.is_main_process and not SWEEP_POINT)  # points: checked with the base
except ConfigError as err:
    raise WorkflowError(str(err)) from None

# A sweep's grid point runs under its base run's results and shares jobs with it, whose outputs it reads from
# there (SHARED): the data and the infinite kernels always, the initial networks and their eNTKs (INIT_ROOT)
# when it changes only training settings.
SHARED = f"results/{config['run_name']}"
RESULTS = f"{SHARED}/sweep/{SWEEP_POINT['name']}" if SWEEP_POINT else SHARED
INIT_ROOT = SHARED if SWEEP_POINT and SWEEP_POINT["shares_init"] else RESULTS
DATA = f"{SHARED}/data/prepared.npz"
ORDER = f"{SHARED}/data/order_s{{seed}}.npy"
LOGS = f"logs/{config['run_name']}/sweep/{SWEEP_POINT['name']}" if SWEEP_POINT else f"logs/{config['run_name']}"
WIDTHS = config["model"]["widths"]
SEEDS = config["seeds"]
NS = config["sample_sizes"]
TRAIN_DIR = f"{RESULTS}/train/w{{width}}/s{{seed}}/n{{n}}"
TRACK_DIR = f"{RESULTS}/evolution/w{{width}}/s{{seed}}/n{{n}}"
AFTER = config["after_kernel"]
EVOLUTION = config["evolution"]
EVOLUTION_NS = EVOLUTION["sample_sizes"] or [max(NS)]
ENTK_TAGS = entk_tags(AFTER["ks"], AFTER["at_n"], NS)  # kernel tags: see ntkscaling.methods
INFINITE_TAGS = list(methods.INFINITE_TAGS) if config["kernel"]["infinite"] else []
KINDS = config["kernel"]["kinds"]
# the kinds whose eNTK trains the linearized network (none where the optimizer is not a kernel flow)
LINEARIZED_KINDS = [] if linearized_problem(config["train"]["optimizer"], config["train"]["weight_decay"]) else [k for k in KINDS if k in ("mean", "full")]
FIGURE_WIDTH = config["fit"]["figure_width"] or max(WIDTHS)
WIDTH_N = config["width_scaling"]["n"] or max(NS)
FIGURE_RIDGE = config["fit"]["figure_ridge"] if config["fit"]["figure_ridge"] is not None else TUNED
CONDA_ENV = str(REPO / "envs" / "ntkscaling.yaml")


def only(section: dict, *keys, drop=()) -> dict:
    """The named keys of a config section (all but `drop` when none are named): a rule's narrow params."""
    keys = keys or [k for k in section if k not in drop]
    return {k: section[k] for k in keys}


# What each kind of job depends on, and nothing else.
# one network; the width comes from the wildcard (the factory keys only when set: unchanged params otherwise)
FACTORY = config["model"]["factory"]
NETWORK = only(config["model"], drop=("widths", "output_scale") + (() if FACTORY else ("factory", "factory_kwargs")))
# a trained network: the initial one and how its output is scaled in training (only when not 1: runs without
# it keep their params)
TRAINED_NETWORK = NETWORK | ({} if config["model"]["output_scale"] == 1 else only(config["model"], "output_scale"))
# the step budget, or (train.steps: null) the epoch budget: never both, so editing the unused one re-runs nothing
# (and the divergence policy only when a sweep's point records it: runs without a sweep keep their params; the
# checkpoint cap is the start-up check's alone)
TRAINING = only(config["train"], drop=("log_checkpoints", "checkpoint_epochs", "max_checkpoint_gb",
                                       "epochs" if config["train"]["steps"] else "steps",
                                       *(["on_divergence"] if config["train"]["on_divergence"] == "fail" else [])))
TRAIN_SCHEDULE = only(config["train"], "log_checkpoints", "checkpoint_epochs")  # resume points only
TRACK_SCHEDULE = only(EVOLUTION, "log_checkpoints", "checkpoint_epochs", "velocity_gap")  # the kernels evolution follows
INFINITE_ARCH = only(config["model"], "arch", "depth", "W_std", "b_std")
if FACTORY:  # a factory's layers, from the network it builds at the smallest width (widths do not matter)
    INFINITE_ARCH.update(only(config["model"], "factory", "factory_kwargs"), width=min(WIDTHS))
DATASET = only(config["dataset"], drop=("balanced",))  # the order's balance is subset_order's alone
THEORY = config["theory"]
SPECTRUM = only(THEORY, drop=("pool",))  # kernel evolution's spectra: its kernels have no pool rows
FIT = only(config["fit"], drop=("figure_ridge", "figure_width"))  # the figures' choices are not the fits'
GPUS = config["gpus_per_job"]


wildcard_constraints:
    width=r"\d+|inf",
    seed=r"\d+",
    n=r"\d+",
    method=TAG_PATTERN,
    kind=r"mean|sum|full",


def code(script):
    """The library files a workflow script imports (directly or not), as code inputs: editing one re-runs
    exactly the jobs whose scripts import it (see ntkscaling.pipeline.code_inputs). Relative to the working directory,
    so that a finished run moved or copied with its checkout to another path plans nothing."""
    files = code_inputs.library_files(REPO / "workflow" / "scripts" / f"{script}.py", REPO / "src" / "ntkscaling")
    return [os.path.relpath(f) for f in files]


def network_code(script):
    """code(script) plus the file of the user's network (model.factory), for the jobs that build a network:
    editing that file re-runs them (and what depends on them), nothing else."""
    return code(script) + [os.path.relpath(f) for f in code_inputs.factory_files(FACTORY)]


def network_pointwise(wildcards=None):
    return expand(f"{TRAIN_DIR}/pointwise.npz", width=WIDTHS, seed=SEEDS, n=NS)


def network_metrics(wildcards=None):
    return expand(f"{TRAIN_DIR}/metrics.csv", width=WIDTHS, seed=SEEDS, n=NS)


def kernel_checkpoint(wildcards):
    """The network checkpoint whose eNTK a kernel tag uses: the initialization or a trained network."""
    tag = parse_tag(wildcards.method)
    if tag["method"] == "entk_init":
        return f"{INIT_ROOT}/init/w{wildcards.width}/s{wildcards.seed}.ckpt"
    return f"{RESULTS}/train/w{wildcards.width}/s{wildcards.seed}/n{tag['k']}/final.ckpt"


def kernel_ns(wildcards):
    """The training-set sizes a kernel serves: entk_after_n<n> serves n only, every other kernel all n."""
    n = parse_tag(wildcards.method)["n"]
    return [n] if n else NS


def kernel_root(method):
    """Where a kernel tag's kernel and regression live: a sweep point's shared ones in its base run."""
    if method in methods.INFINITE_TAGS:
        return SHARED
    return INIT_ROOT if parse_tag(method)["method"] == "entk_init" else RESULTS


def kernel_prior(wildcards):
    """The f0 of the linearized predictor, for uncentred networks (model.center: false): the outputs of the
    kernel's own checkpoint network on the kernel rows. Centred networks and infinite kernels have none."""
    if config["model"]["center"] or wildcards.method in INFINITE_TAGS:
        return []
    return [f"{RESULTS}/kernels/{wildcards.method}/w{wildcards.width}/s{wildcards.seed}/{wildcards.kind}.outputs.npy"]


def kernel_train_rows(wildcards):
    """Training rows of a kernel (the first ones of the seed's nested order); the test set follows."""
    return max(kernel_ns(wildcards))


def kernel_results(name):
    """Regression outputs of every kernel: eNTKs per tag, width and kind; infinite kernels (width 'inf',
    one scalar kernel per pair, regressed as the mean kind)."""
    pattern = f"{{root}}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/{name}"
    return ([path for tag in ENTK_TAGS
             for path in expand(pattern, root=kernel_root(tag), method=tag, width=WIDTHS, seed=SEEDS, kind=KINDS)]
            + expand(pattern, root=SHARED, method=INFINITE_TAGS, width="inf", seed=SEEDS, kind="mean"))


def linearized_results(name):
    """Outputs of the linearized network of every width, seed and kind it is defined for (LINEARIZED_KINDS)."""
    return expand(f"{RESULTS}/linearized/w{{width}}/s{{seed}}/{{kind}}/{name}", width=WIDTHS, seed=SEEDS,
                  kind=LINEARIZED_KINDS)


def linearized_kernel(wildcards):
    """The eNTK at initialization the linearized network trains with."""
    return f"{kernel_root('entk_init')}/kernels/entk_init/w{wildcards.width}/s{wildcards.seed}/{wildcards.kind}.npy"


def linearized_prior(wildcards):
    """f0 on the kernel rows for an uncentred network (its linearization starts there), else nothing."""
    if config["model"]["center"]:
        return []
    return [f"{kernel_root('entk_init')}/kernels/entk_init/w{wildcards.width}/s{wildcards.seed}/"
            f"{wildcards.kind}.outputs.npy"]


def width_linearized(wildcards):
    """The linearized networks (mean kind) of every width for the lazy-limit diagnostic, where defined."""
    if "mean" not in LINEARIZED_KINDS:
        return []
    return expand(f"{RESULTS}/linearized/w{{width}}/s{wildcards.seed}/mean/pointwise.npz", width=WIDTHS)


def pointwise_all(wildcards=None):
    """Per-test-point results of every method, the input of the exponent fits."""
    return network_pointwise() + kernel_results("pointwise.npz") + linearized_results("pointwise.npz")


def metrics_all(wildcards=None):
    return network_metrics() + kernel_results("metrics.csv") + linearized_results("metrics.csv")


def evolution_tables(wildcards=None):
    return expand(f"{RESULTS}/evolution/w{{width}}/s{{seed}}/n{{n}}/{EVOLUTION['kind']}.csv",
                  width=WIDTHS, seed=SEEDS, n=EVOLUTION_NS)


def width_distance_tables(wildcards=None):
    """Per seed: eNTK at init vs infinite NTK, and the lazy-limit consistency of the networks at n = WIDTH_N."""
    return expand(f"{RESULTS}/width/distance_s{{seed}}.csv", seed=SEEDS)


def width_infinite(wildcards):
    """The infinite NTK of a seed, when the run computes it."""
    return [f"{SHARED}/kernels/infinite_ntk/winf/s{wildcards.seed}/mean.npy"] if INFINITE_TAGS else []


def width_priors(wildcards):
    """The f0 of every width's eNTK at init, for the linearized predictor of uncentred networks."""
    if config["model"]["center"]:
        return []
    return expand(f"{INIT_ROOT}/kernels/entk_init/w{{width}}/s{wildcards.seed}/mean.outputs.npy", width=WIDTHS)


def figure_title(width=None, parameterization=True):
    m = config["model"]
    depth = f" depth {m['depth']}" if m["arch"] in ("mlp", "resnet") and not FACTORY else ""
    shown = f", width {width}" if width is not None else ""
    layered = m["arch"] in archs.LAYERED and not FACTORY and parameterization  # applies to these only
    return (f"{config['dataset']['name']}, {m['arch']}{depth}{shown}"
            + (f", {m['parameterization']} parameterization" if layered else ""))


FIGURES = ("data_scaling", "after_kernel", "kernel_evolution", "width_scaling", "theory")


def all_targets(results=RESULTS):
    """What a run produces: its tables and figures (under `results`: a sweep's grid points have their own)."""
    return [
        f"{results}/scaling/metrics.csv",
        f"{results}/scaling/exponents.csv",
        f"{results}/summary/exponents.csv",
        *expand(f"{results}/figures/{{figure}}.{{ext}}", figure=FIGURES, ext=("pdf", "png")),
    ]


# Resource requests, sized from each job (ntkscaling.jobsize) and capped at what the profile says one job
# may have (config keys max_job_mem_mb, max_job_runtime; threads by Snakemake's --max-threads / --cores).
N_OUTPUTS = len(config["dataset"]["classes"] or range(10))  # an upper bound before the data is read


def kernel_row_total(n_max, pool=0):
    """Rows of a kernel whose training block has n_max rows (see ntkscaling.pipeline.jobsize.kernel_row_count)."""
    return kernel_row_count(config, n_max, pool)


def kernel_pool(wildcards):
    """Pool rows asked of a kernel (theory.pool): mean and sum kinds only, the full kind has no spectrum."""
    return 0 if wildcards.kind == "full" else THEORY["pool"]


def entk_rows(wildcards):
    """Rows of an eNTK job's kernel (training, validation, test, pool)."""
    return kernel_row_total(kernel_train_rows(wildcards), kernel_pool(wildcards))


def train_steps(n):
    t = config["train"]
    return step_budget(int(n), min(t["batch_size"], int(n)), t["steps"], t["epochs"])


def mem_mb(size):
    """A memory request: size(wildcards, input) MB, grown with the attempt, capped."""
    return lambda wildcards, input, attempt: jobsize.capped(size(wildcards, input), attempt, config["max_job_mem_mb"])


def runtime(minutes):
    """A runtime request: minutes(wildcards), grown with the attempt, capped."""
    return lambda wildcards, attempt: jobsize.capped(minutes(wildcards), attempt, config["max_job_runtime"])


def entk_outputs(wildcards):
    return N_OUTPUTS if wildcards.kind == "full" else 1


def tracked_checkpoints():
    """How many checkpoints a tracked run saves (an upper bound, partners for the fixed-gap velocity
    included): the kernels kernel_evolution computes."""
    return 2 * (EVOLUTION["log_checkpoints"] + len(EVOLUTION["checkpoint_epochs"]) + 2)


# A sweep (workflow/rules/sweep.smk): its grid points, the jobs they share, and what of them is asked for
# once their networks' training outcome is known (none inside a grid point, whose config has no sweep).
SWEEP = sweep.grid_points(config)
SWEEP_NAMES = [sweep.point_name(point) for point in SWEEP]
SWEEP_DIR = f"{SHARED}/sweep"
SWEEP_OUTCOMES = [f"{SWEEP_DIR}/{name}/outcome.csv" for name in SWEEP_NAMES]  # every point's training, at once
# the base run's kernels the points share, regressed once whatever the points' training does
SWEEP_SHARED = [
    *(expand(f"{SHARED}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/metrics.csv",
             method=[t for t in ENTK_TAGS if parse_tag(t)["method"] == "entk_init"], width=WIDTHS, seed=SEEDS,
             kind=KINDS) if any(sweep.shares_init(p) for p in SWEEP) else []),
    *expand(f"{SHARED}/regression/{{method}}/winf/s{{seed}}/mean/metrics.csv", method=INFINITE_TAGS, seed=SEEDS),
]
RUN_SNAKEFILE = str(REPO / "workflow" / "run.smk")  # one run: a grid point's module


def point_networks(wildcards):
    """The training metrics of every network a grid point trains (the scaling curves' and the after-kernels')."""
    ns = sorted(set(NS) | set(AFTER["ks"]))
    return expand(f"{SWEEP_DIR}/{wildcards.point}/train/w{{width}}/s{{seed}}/n{{n}}/metrics.csv",
                  width=WIDTHS, seed=SEEDS, n=ns)


def trained_points(wildcards=None):
    """The grid points none of whose networks diverged (read from their training outcome)."""
    ok = []
    for name in SWEEP_NAMES:
        with open(checkpoints.sweep_outcome.get(point=name).output[0], newline="") as f:
            if sweep.point_status(list(csv.DictReader(f)))["status"] == "ok":
                ok.append(name)
    return ok


def trained_summaries(wildcards):
    return [f"{SWEEP_DIR}/{name}/summary/exponents.csv" for name in trained_points()]


def sweep_targets(wildcards):
    """The sweep's table and figure, and every trained point's own tables and figures."""
    return [f"{SWEEP_DIR}/summary.csv", f"{SWEEP_DIR}/sweep.pdf", f"{SWEEP_DIR}/sweep.png",
            *(path for name in trained_points() for path in all_targets(f"{SWEEP_DIR}/{name}"))]
