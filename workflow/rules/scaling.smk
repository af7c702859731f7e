# Stage 4: gather every method's tidy rows and fit metric = a * n^-alpha with bootstrap intervals.


rule collect_metrics:
    input:
        tables=metrics_all,
        code=src("io"),
    output:
        RESULTS + "/scaling/metrics.csv",
    log:
        LOGS + "/collect_metrics.log",
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
        RESULTS + "/scaling/exponents.csv",
    params:
        fit=config["fit"],
    log:
        LOGS + "/fit_exponents.log",
    benchmark:
        LOGS + "/benchmarks/fit_exponents.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/fit_exponents.py"
