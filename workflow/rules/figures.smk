# Stage 5: figures (seaborn; PDF and PNG) for the report.


rule figure_data_scaling:
    input:
        metrics=rules.collect_metrics.output[0],
        exponents=rules.fit_exponents.output[0],
        code=src("plotting"),
    output:
        pdf=report(
            f"{RESULTS}/figures/data_scaling.pdf",
            caption="../report/data_scaling.rst",
            category="Data scaling",
        ),
        png=f"{RESULTS}/figures/data_scaling.png",
    params:
        metrics=config["fit"]["metrics"],
        title=figure_title(),
        ridge=config["fit"]["figure_ridge"]
        if config["fit"]["figure_ridge"] is not None
        else min(config["kernel"]["ridges"]),
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/figure_data_scaling.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/plot_data_scaling.py"
