# Stage 2: train one network per (width, seed, n) on nested subset n; checkpoints (step 0 = init) and
# tidy metric rows at each checkpoint, per-test-point values of the final network.


rule train_network:
    input:
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("training", "models", "metrics", "data", "io"),
    output:
        metrics=f"{TRAIN_DIR}/metrics.csv",
        pointwise=f"{TRAIN_DIR}/pointwise.npz",
        final=f"{TRAIN_DIR}/final.ckpt",
    params:
        model=config["model"],
        train=config["train"],
        dataset=config["dataset"]["name"],
        checkpoints=f"{TRAIN_DIR}/checkpoints",
        schedule=train_schedule,
        select_by=config["select_by"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/train/w{{width}}_s{{seed}}_n{{n}}.log",
    benchmark:
        f"{LOGS}/benchmarks/train/w{{width}}_s{{seed}}_n{{n}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=0,
    script:
        "../scripts/train_network.py"
