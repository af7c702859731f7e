# Stage 1: the prepared dataset (class subset, fixed test set, standardization) and one nested-subset
# permutation per seed.


rule prepare_data:
    input:
        code=src("data", "io"),
    output:
        data=f"{RESULTS}/data/prepared.npz",
        meta=f"{RESULTS}/data/prepared.json",
    params:
        dataset=config["dataset"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/prepare_data.log",
    benchmark:
        f"{LOGS}/benchmarks/prepare_data.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/prepare_data.py"


rule subset_order:
    input:
        data=rules.prepare_data.output.data,
        code=src("data", "io"),
    output:
        f"{RESULTS}/data/order_s{{seed}}.npy",
    params:
        balanced=config["dataset"]["balanced"],
        max_n=max(NS),
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/subset_order_s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/subset_order.py"
