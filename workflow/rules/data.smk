# Stage 1: the prepared dataset (class subset, fixed test set, standardization) and one nested-subset
# permutation per seed.


rule prepare_data:
    input:
        code=src("data", "io"),
    output:
        data=RESULTS + "/data/prepared.npz",
        meta=RESULTS + "/data/prepared.json",
    params:
        dataset=config["dataset"],
    log:
        LOGS + "/prepare_data.log",
    benchmark:
        LOGS + "/benchmarks/prepare_data.tsv"
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
        RESULTS + "/data/order_s{seed}.npy",
    params:
        balanced=config["dataset"]["balanced"],
        max_n=max(NS),
    log:
        LOGS + "/subset_order_s{seed}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/subset_order.py"
