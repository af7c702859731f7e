# Stage 3: kernels. The empirical NTK of a checkpoint, computed once per (method, width, seed, kind) on
# (largest nested train subset + test set), then kernel regression for every n on slices of it.


rule init_checkpoint:
    input:
        data=rules.prepare_data.output.data,
        code=src("training", "models"),
    output:
        f"{RESULTS}/init/w{{width}}/s{{seed}}.ckpt",
    params:
        model=config["model"],
        train=config["train"],
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
        method="entk_init",
        width=r"\d+",
    input:
        ckpt=kernel_checkpoint,
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("entk", "training", "models", "data"),
    output:
        kernel=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.npy",
        meta=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.json",
    params:
        n_max=max(NS),
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/entk_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/entk_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: 2
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
        code=src("infinite", "models", "data"),
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
        data=rules.prepare_data.output.data,
        order=f"{RESULTS}/data/order_s{{seed}}.npy",
        code=src("regression", "data", "io"),
    output:
        metrics=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/metrics.csv",
        pointwise=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/pointwise.npz",
    params:
        ns=NS,
        ridges=config["kernel"]["ridges"],
        dataset=config["dataset"]["name"],
        arch=config["model"]["arch"],
    conda:
        "../../envs/ntkscaling.yaml"
    log:
        f"{LOGS}/regress_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/regress_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/regress_kernel.py"
