# Stage 2: train one network per (width, seed, n) on nested subset n; tidy metric rows at each evaluation,
# per-test-point values of the final and best-validation network. Checkpoints (step 0 = init) are resume
# points under <dir>/checkpoints. A network whose eNTK evolution is tracked is trained again, identically,
# by track_network with the evolution's checkpoint schedule: evolution settings never touch train_network,
# so changing them (or tracking one more n) re-trains no network of the scaling curves.


rule train_network:
    input:
        data=DATA,
        order=ORDER,
        code=network_code("train_network"),
    output:
        metrics=f"{TRAIN_DIR}/metrics.csv",
        pointwise=f"{TRAIN_DIR}/pointwise.npz",
        final=f"{TRAIN_DIR}/final.ckpt",
    params:
        network=TRAINED_NETWORK,
        train=TRAINING,
        schedule=TRAIN_SCHEDULE,
        dataset=config["dataset"]["name"],
        checkpoints=f"{TRAIN_DIR}/checkpoints",
        select_by=config["select_by"],
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/train/w{{width}}_s{{seed}}_n{{n}}.log",
        live=f"{LOGS}/train/w{{width}}_s{{seed}}_n{{n}}.csv",  # one line per evaluation, as it goes
    benchmark:
        f"{LOGS}/benchmarks/train/w{{width}}_s{{seed}}_n{{n}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.train_mem_mb(input.size_mb)),
        runtime=runtime(lambda wc: jobsize.train_minutes(train_steps(wc.n))),
        gpu=GPUS,
    script:
        "../scripts/train_network.py"


use rule train_network as track_network with:
    output:
        metrics=f"{TRACK_DIR}/trajectory.csv",
        pointwise=f"{TRACK_DIR}/pointwise.npz",
        final=f"{TRACK_DIR}/final.ckpt",
    params:
        network=TRAINED_NETWORK,
        train=TRAINING,
        schedule=TRACK_SCHEDULE,
        dataset=config["dataset"]["name"],
        checkpoints=f"{TRACK_DIR}/checkpoints",
        select_by=config["select_by"],
    log:
        f"{LOGS}/track/w{{width}}_s{{seed}}_n{{n}}.log",
        live=f"{LOGS}/track/w{{width}}_s{{seed}}_n{{n}}.csv",  # one line per evaluation, as it goes
    benchmark:
        f"{LOGS}/benchmarks/track/w{{width}}_s{{seed}}_n{{n}}.tsv"
    priority: 1  # the kernel evolution waits for it (kernels.smk)
