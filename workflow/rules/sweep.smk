# Robustness sweeps (config key `sweep`, ntkscaling.sweep): every grid point is workflow/run.smk as a module
# with the point's config, its rules prefixed with the point's name and its outputs under
# results/<run_name>/sweep/<point>/. It reads what it shares from the base run's results, whose rules make
# them once: the data and subsets and the infinite kernels always, the initial networks (and their eNTKs and
# regressions) when the point changes only training settings; a point's own rules for these are left out.
# A checkpoint records each point's training outcome; points whose networks diverged are reported in the
# sweep's table and figure, and nothing else of them runs.
for _point in SWEEP:
    _module = sweep.module_name(_point)
    _rules_of = f"{_module}_"
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
    point=sweep.names_pattern(SWEEP),


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
