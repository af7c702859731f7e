# Stage 5: figures (seaborn; PDF and PNG, the PDF in the report with its caption). One rule per figure
# family, so deleting or changing one figure's inputs re-creates just that figure. Figures take seconds:
# local rules, never queued on a cluster.


localrules:
    figure_data_scaling,
    figure_after_kernel,
    figure_kernel_evolution,
    figure_width_scaling,
    figure_theory,


rule figure_data_scaling:
    input:
        metrics=rules.collect_metrics.output[0],
        exponents=rules.fit_exponents.output[0],
        code=code("plot_data_scaling"),
    output:
        pdf=report(
            f"{RESULTS}/figures/data_scaling.pdf",
            caption="../report/data_scaling.rst",
            category="Data scaling",
        ),
        png=f"{RESULTS}/figures/data_scaling.png",
    params:
        metrics=config["fit"]["metrics"],
        title=figure_title(FIGURE_WIDTH),
        ridge=FIGURE_RIDGE,
        width=FIGURE_WIDTH,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_data_scaling.log",
    threads: 1
    script:
        "../scripts/plot_data_scaling.py"


rule figure_after_kernel:
    input:
        metrics=rules.collect_metrics.output[0],
        exponents=rules.fit_exponents.output[0],
        code=code("plot_after_kernel"),
    output:
        pdf=report(
            f"{RESULTS}/figures/after_kernel.pdf",
            caption="../report/after_kernel.rst",
            category="After-kernels",
        ),
        png=f"{RESULTS}/figures/after_kernel.png",
    params:
        metrics=config["fit"]["metrics"],
        title=figure_title(FIGURE_WIDTH),
        ridge=FIGURE_RIDGE,
        width=FIGURE_WIDTH,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_after_kernel.log",
    threads: 1
    script:
        "../scripts/plot_after_kernel.py"


rule figure_kernel_evolution:
    input:
        evolution=rules.collect_evolution.output[0],
        code=code("plot_kernel_evolution"),
    output:
        pdf=report(
            f"{RESULTS}/figures/kernel_evolution.pdf",
            caption="../report/kernel_evolution.rst",
            category="Kernel evolution",
        ),
        png=f"{RESULTS}/figures/kernel_evolution.png",
    params:
        metric=config["fit"]["metrics"][0],
        title=figure_title(),
        ridge=EVOLUTION["ridge"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_kernel_evolution.log",
    threads: 1
    script:
        "../scripts/plot_kernel_evolution.py"


rule figure_width_scaling:
    input:
        metrics=rules.collect_metrics.output[0],
        exponents=rules.fit_exponents.output[0],
        distance=rules.collect_width_distance.output[0],
        code=code("plot_width_scaling"),
    output:
        pdf=report(
            f"{RESULTS}/figures/width_scaling.pdf",
            caption="../report/width_scaling.rst",
            category="Width scaling",
        ),
        png=f"{RESULTS}/figures/width_scaling.png",
    params:
        metrics=config["fit"]["metrics"],
        title=figure_title(),
        ridge=FIGURE_RIDGE,
        n=WIDTH_N,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_width_scaling.log",
    threads: 1
    script:
        "../scripts/plot_width_scaling.py"


rule figure_theory:
    input:
        metrics=rules.collect_metrics.output[0],
        summary=rules.summarize_exponents.output.table,
        code=code("plot_theory"),
    output:
        pdf=report(
            f"{RESULTS}/figures/theory.pdf",
            caption="../report/theory.rst",
            category="Theory",
        ),
        png=f"{RESULTS}/figures/theory.png",
    params:
        title=figure_title(FIGURE_WIDTH),
        ridge=FIGURE_RIDGE,
        width=FIGURE_WIDTH,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/figure_theory.log",
    threads: 1
    script:
        "../scripts/plot_theory.py"
