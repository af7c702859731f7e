# Robustness sweeps (config key `sweep`, ntkscaling.sweep): every grid point is workflow/run.smk as a module
# with the point's config, its rules prefixed with the point's name and its outputs under
# results/<run_name>/sweep/<point>/. It reads what it shares from the base run's results, whose rules make
# them once: the data and subsets and the infinite kernels always, the initial networks (and their eNTKs and
# regressions) when the point changes only training settings; a point's own rules for these are left out.
# A checkpoint records each point's training outcome; points whose networks diverged are reported in the
# sweep's table and figure, and nothing else of them runs.
import csv
import re

from ntkscaling import sweep

SWEEP = sweep.grid_points(config)
SWEEP_NAMES = [sweep.point_name(point) for point in SWEEP]
SWEEP_DIR = f"{SHARED}/sweep"
SWEEP_OUTCOMES = [f"{SWEEP_DIR}/{name}/outcome.csv" for name in SWEEP_NAMES]  # every point's training, at once
# the base run's kernels the points share, regressed once whatever the points' training does
SWEEP_SHARED = (expand(f"{SHARED}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/metrics.csv",
                       method=[t for t in ENTK_TAGS if parse_tag(t)["method"] == "entk_init"], width=WIDTHS,
                       seed=SEEDS, kind=KINDS) if any(sweep.shares_init(p) for p in SWEEP) else [])
SWEEP_SHARED += expand(f"{SHARED}/regression/{{method}}/winf/s{{seed}}/mean/metrics.csv", method=INFINITE_TAGS,
                       seed=SEEDS)
RUN_SNAKEFILE = str(REPO / "workflow" / "run.smk")

for _point in SWEEP:
    _module = "sweep_" + re.sub(r"\W", "_", sweep.point_name(_point))  # rule names: identifiers
    _rules_of = _module + "_"
    module:
        name:
            _module
        snakefile:
            RUN_SNAKEFILE
        config:
            sweep.point_config(config, _point)
    if sweep.shares_init(_point):
        use rule * from _module exclude prepare_data, subset_order, infinite_kernel, init_checkpoint as _rules_of*
    else:
        use rule * from _module exclude prepare_data, subset_order, infinite_kernel as _rules_of*


wildcard_constraints:
    point="|".join(re.escape(name) for name in SWEEP_NAMES) or "none",


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
    return ([f"{SWEEP_DIR}/summary.csv", f"{SWEEP_DIR}/sweep.pdf", f"{SWEEP_DIR}/sweep.png"]
            + [path for name in trained_points() for path in all_targets(f"{SWEEP_DIR}/{name}")])


localrules:
    sweep_outcome,
    sweep_summary,
    figure_sweep,


checkpoint sweep_outcome:
    input:
        metrics=point_networks,
        code=code("sweep_outcome"),
    output:
        f"{SWEEP_DIR}/{{point}}/outcome.csv",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/sweep/{{point}}/outcome.log",
    threads: 1
    script:
        "../scripts/sweep_outcome.py"


rule sweep_summary:
    input:
        outcomes=SWEEP_OUTCOMES,
        summaries=trained_summaries,
        code=code("sweep_summary"),
    output:
        report(f"{SWEEP_DIR}/summary.csv", caption="../report/sweep.rst", category="Sweep"),
    params:
        points=SWEEP,
        names=SWEEP_NAMES,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/sweep/summary.log",
    threads: 1
    script:
        "../scripts/sweep_summary.py"


rule figure_sweep:
    input:
        table=rules.sweep_summary.output[0],
        code=code("plot_sweep"),
    output:
        pdf=report(f"{SWEEP_DIR}/sweep.pdf", caption="../report/sweep.rst", category="Sweep"),
        png=f"{SWEEP_DIR}/sweep.png",
    params:
        swept=sweep.swept_keys(config),
        metrics=config["fit"]["metrics"],
        title=figure_title(FIGURE_WIDTH, parameterization="model.parameterization" not in sweep.swept_keys(config)),
        ridge=FIGURE_RIDGE,
        width=FIGURE_WIDTH,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_sweep.log",
    threads: 1
    script:
        "../scripts/plot_sweep.py"
