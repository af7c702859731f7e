# Stage 4: gather every method's tidy rows and fit metric = a * n^-alpha with bootstrap intervals.


rule collect_metrics:
    input:
        tables=metrics_all,
        code=src("io"),
    output:
        f"{RESULTS}/scaling/metrics.csv",
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/collect_metrics.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/collect_metrics.py"


rule fit_exponents:
    input:
        pointwise=pointwise_all,
        code=src("scaling", "io"),
    output:
        f"{RESULTS}/scaling/exponents.csv",
    params:
        fit=config["fit"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/fit_exponents.log",
    benchmark:
        f"{LOGS}/benchmarks/fit_exponents.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/fit_exponents.py"


rule collect_evolution:
    input:
        tables=evolution_tables,
        code=src("io"),
    output:
        f"{RESULTS}/evolution/evolution.csv",
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/collect_evolution.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/collect_metrics.py"


rule collect_width_distance:
    input:
        tables=width_distance_tables,
        code=src("io"),
    output:
        f"{RESULTS}/width/distance.csv",
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/collect_width_distance.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/collect_metrics.py"


rule summarize_exponents:
    input:
        exponents=rules.fit_exponents.output[0],
        code=src("scaling", "io"),
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
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/summarize_exponents.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/summarize_exponents.py"
