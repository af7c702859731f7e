# Stage 4: gather every method's tidy rows and fit metric = a * n^-alpha with bootstrap intervals. All
# quick: local rules, never queued on a cluster.


localrules:
    collect_metrics,
    fit_exponents,
    collect_evolution,
    collect_width_distance,
    summarize_exponents,


rule collect_metrics:
    input:
        tables=metrics_all,
        code=code("collect_metrics"),
    output:
        f"{RESULTS}/scaling/metrics.csv",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/collect_metrics.log",
    threads: 1
    script:
        "../scripts/collect_metrics.py"


rule fit_exponents:
    input:
        pointwise=pointwise_all,
        data_meta=f"{SHARED}/data/prepared.json",
        code=code("fit_exponents"),
    output:
        f"{RESULTS}/scaling/exponents.csv",
    params:
        fit=FIT,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/fit_exponents.log",
    benchmark:
        f"{LOGS}/benchmarks/fit_exponents.tsv"
    threads: 1
    script:
        "../scripts/fit_exponents.py"


rule collect_evolution:
    input:
        tables=evolution_tables,
        code=code("collect_metrics"),
    output:
        f"{RESULTS}/evolution/evolution.csv",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/collect_evolution.log",
    threads: 1
    script:
        "../scripts/collect_metrics.py"


rule collect_width_distance:
    input:
        tables=width_distance_tables,
        code=code("collect_metrics"),
    output:
        f"{RESULTS}/width/distance.csv",
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/collect_width_distance.log",
    threads: 1
    script:
        "../scripts/collect_metrics.py"


rule summarize_exponents:
    input:
        exponents=rules.fit_exponents.output[0],
        metrics=rules.collect_metrics.output[0],
        code=code("summarize_exponents"),
    output:
        table=report(
            f"{RESULTS}/summary/exponents.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        provenance=f"{RESULTS}/summary/provenance.json",
    params:
        ridge=FIGURE_RIDGE,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/summarize_exponents.log",
    threads: 1
    script:
        "../scripts/summarize_exponents.py"
