# Stage 3: kernels. The empirical NTK of a checkpoint (the initialization, or a network trained on k
# examples: the after-kernel) and the infinite NTK/NNGP, computed once per (tag, width, seed, kind) on
# (largest nested train subset the kernel serves + test set), then kernel regression for every n on slices.
# Kernel tags ({method} in paths) are defined in ntkscaling.methods.


rule init_checkpoint:
    input:
        data=rules.prepare_data.output.data,
        code=src("training", "models"),
    output:
        f"{RESULTS}/init/w{{width}}/s{{seed}}.ckpt",
    params:
        model=config["model"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/init_checkpoint/w{{width}}_s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/init_checkpoint.py"


rule entk_kernel:
    wildcard_constraints:
        method=ENTK_TAG_PATTERN,
        width=r"\d+",
    input:
        ckpt=kernel_checkpoint,
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("entk", "training", "models", "data", "methods", "io"),
    output:
        kernel=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.npy",
        meta=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.json",
        outputs=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.outputs.npy",
    params:
        n_max=kernel_n_rows,
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/entk_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/entk_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: 1  # small kernels are dominated by start-up; profiles raise it for big ones
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=0,
    script:
        "../scripts/entk_kernel.py"


rule infinite_kernel:
    input:
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("infinite", "native", "pairstep.c", "models", "data"),
    output:
        ntk=f"{RESULTS}/kernels/infinite_ntk/winf/s{{seed}}/mean.npy",
        nngp=f"{RESULTS}/kernels/infinite_nngp/winf/s{{seed}}/mean.npy",
        meta=f"{RESULTS}/kernels/infinite_ntk/winf/s{{seed}}/mean.json",
    params:
        n_max=max(NS),
        model=config["model"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/infinite_kernel/s{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/infinite_kernel/s{{seed}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,
    script:
        "../scripts/infinite_kernel.py"


rule regress_kernel:
    input:
        kernel=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.npy",
        prior=kernel_prior,
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("regression", "data", "io", "methods"),
    output:
        metrics=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/metrics.csv",
        pointwise=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/pointwise.npz",
    params:
        ns=kernel_ns,
        ridges=config["kernel"]["ridges"],
        ridge_grid=config["kernel"]["ridge_grid"],
        select_by=config["select_by"],
        dataset=config["dataset"]["name"],
        arch=config["model"]["arch"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/regress_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/regress_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/regress_kernel.py"


rule kernel_evolution:
    input:
        metrics=f"{TRAIN_DIR}/metrics.csv",
        final=f"{TRAIN_DIR}/final.ckpt",
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("evolution", "entk", "regression", "training", "models", "data", "io"),
    output:
        f"{RESULTS}/evolution/w{{width}}/s{{seed}}/n{{n}}/{{kind}}.csv",
    params:
        checkpoints=f"{TRAIN_DIR}/checkpoints",
        ridges=[EVOLUTION["ridge"]],
        linearized=not config["model"]["center"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/kernel_evolution/w{{width}}_s{{seed}}_n{{n}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/kernel_evolution/w{{width}}_s{{seed}}_n{{n}}_{{kind}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=0,
    script:
        "../scripts/kernel_evolution.py"


rule width_distance:
    input:
        entk=expand(f"{RESULTS}/kernels/entk_init/w{{width}}/s{{{{seed}}}}/mean.npy", width=WIDTHS),
        prior=width_priors,
        infinite=width_infinite,
        network=expand(f"{RESULTS}/train/w{{width}}/s{{{{seed}}}}/n{WIDTH_N}/pointwise.npz", width=WIDTHS),
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("evolution", "regression", "data", "io"),
    output:
        f"{RESULTS}/width/distance_s{{seed}}.csv",
    params:
        widths=WIDTHS,
        n=WIDTH_N,
        n_max=max(NS),
        probe=config["width_scaling"]["probe"],
        dataset=config["dataset"]["name"],
        arch=config["model"]["arch"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/width_distance/s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/width_distance.py"
