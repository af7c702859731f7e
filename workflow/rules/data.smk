# Stage 1: the prepared dataset (class subset, fixed validation and test sets, standardization) and one
# nested-subset permutation per seed. Both are small, quick and read by almost every job: local rules.


localrules:
    prepare_data,
    subset_order,


rule prepare_data:
    input:
        code=code("prepare_data"),
    output:
        data=DATA,
        meta=f"{SHARED}/data/prepared.json",
    params:
        dataset=DATASET,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/prepare_data.log",
    benchmark:
        f"{LOGS}/benchmarks/prepare_data.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: 4000),
        runtime=runtime(lambda wc: 30),
    script:
        "../scripts/prepare_data.py"


rule subset_order:
    input:
        data=DATA,
        code=code("subset_order"),
    output:
        ORDER,
    params:
        balanced=config["dataset"]["balanced"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/subset_order_s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: 1000),
        runtime=runtime(lambda wc: 5),
    script:
        "../scripts/subset_order.py"
