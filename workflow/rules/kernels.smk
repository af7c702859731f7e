# Stage 3: kernels. The empirical NTK of a checkpoint (the initialization, or a network trained on k
# examples: the after-kernel) and the infinite NTK/NNGP, computed once per (tag, width, seed, kind) on
# (largest nested train subset the kernel serves + test set), then kernel regression for every n on slices.
# Kernel tags ({method} in paths) are defined in ntkscaling.methods.


rule init_checkpoint:
    input:
        data=DATA,
        code=network_code("init_checkpoint"),
    output:
        f"{INIT_ROOT}/init/w{{width}}/s{{seed}}.ckpt",
    params:
        network=NETWORK,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/init_checkpoint/w{{width}}_s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: 3000),
        runtime=runtime(lambda wc: 10),
    script:
        "../scripts/init_checkpoint.py"


rule entk_kernel:
    wildcard_constraints:
        method=ENTK_TAG_PATTERN,
        width=r"\d+",
    input:
        ckpt=kernel_checkpoint,
        data=DATA,
        order=ORDER,
        code=network_code("entk_kernel"),
    output:
        kernel=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.npy",
        meta=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.json",
        outputs=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.outputs.npy",
    params:
        n_max=kernel_train_rows,
        pool=kernel_pool,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/entk_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/entk_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: lambda wc: jobsize.kernel_threads(entk_rows(wc))
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.entk_mem_mb(entk_rows(wc), entk_outputs(wc))),
        runtime=runtime(lambda wc: jobsize.entk_minutes(entk_rows(wc), entk_outputs(wc))),
        gpu=GPUS,
    script:
        "../scripts/entk_kernel.py"


rule infinite_kernel:
    input:
        data=DATA,
        order=ORDER,
        code=network_code("infinite_kernel"),
    output:
        ntk=f"{SHARED}/kernels/infinite_ntk/winf/s{{seed}}/mean.npy",
        nngp=f"{SHARED}/kernels/infinite_nngp/winf/s{{seed}}/mean.npy",
        meta=f"{SHARED}/kernels/infinite_ntk/winf/s{{seed}}/mean.json",
    params:
        n_max=max(NS),
        pool=THEORY["pool"],
        arch=INFINITE_ARCH,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/infinite_kernel/s{{seed}}.log",
    benchmark:
        f"{LOGS}/benchmarks/infinite_kernel/s{{seed}}.tsv"
    threads: jobsize.kernel_threads(kernel_row_total(max(NS), THEORY["pool"]), small=2)  # per-pair steps even for few rows
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.infinite_mem_mb(kernel_row_total(max(NS), THEORY["pool"]))),
        runtime=runtime(lambda wc: jobsize.infinite_minutes(kernel_row_total(max(NS), THEORY["pool"]))),
        gpu=GPUS,
    script:
        "../scripts/infinite_kernel.py"


rule regress_kernel:
    input:
        kernel=f"{RESULTS}/kernels/{{method}}/w{{width}}/s{{seed}}/{{kind}}.npy",
        prior=kernel_prior,
        data=DATA,
        order=ORDER,
        code=code("regress_kernel"),
    output:
        metrics=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/metrics.csv",
        pointwise=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/pointwise.npz",
        spectrum=f"{RESULTS}/regression/{{method}}/w{{width}}/s{{seed}}/{{kind}}/spectrum.csv",
    params:
        ns=kernel_ns,
        ridges=config["kernel"]["ridges"],
        ridge_grid=config["kernel"]["ridge_grid"],
        select_by=config["select_by"],
        dataset=config["dataset"]["name"],
        arch=config["model"]["arch"],
        pool=kernel_pool,
        theory=SPECTRUM,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/regress_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/regress_kernel/{{method}}_w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.regression_mem_mb(
            entk_rows(wc) * entk_outputs(wc), kernel_train_rows(wc) * entk_outputs(wc))),
        runtime=runtime(lambda wc: jobsize.regression_minutes(kernel_train_rows(wc) * entk_outputs(wc),
                                                              len(kernel_ns(wc)))),
    script:
        "../scripts/regress_kernel.py"


rule linearize:
    input:
        kernel=linearized_kernel,
        prior=linearized_prior,
        data=DATA,
        order=ORDER,
        code=code("linearize"),
    output:
        metrics=f"{RESULTS}/linearized/w{{width}}/s{{seed}}/{{kind}}/metrics.csv",
        pointwise=f"{RESULTS}/linearized/w{{width}}/s{{seed}}/{{kind}}/pointwise.npz",
    params:
        ns=NS,
        train=TRAINING,
        select_by=config["select_by"],
        dataset=config["dataset"]["name"],
        arch=config["model"]["arch"],
        pool=kernel_pool,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/linearize/w{{width}}_s{{seed}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/linearize/w{{width}}_s{{seed}}_{{kind}}.tsv"
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.regression_mem_mb(
            kernel_row_total(max(NS), kernel_pool(wc)) * entk_outputs(wc), max(NS) * entk_outputs(wc))),
        runtime=runtime(lambda wc: jobsize.train_minutes(max(train_steps(n) for n in NS))),
    script:
        "../scripts/linearize.py"


rule kernel_evolution:
    input:
        metrics=rules.track_network.output.metrics,
        final=rules.track_network.output.final,
        data=DATA,
        order=ORDER,
        code=network_code("kernel_evolution"),
    output:
        f"{TRACK_DIR}/{{kind}}.csv",
    params:
        checkpoints=f"{TRACK_DIR}/checkpoints",
        ridges=[EVOLUTION["ridge"]],
        velocity_gap=EVOLUTION["velocity_gap"],
        linearized=not config["model"]["center"],
        theory=SPECTRUM,
    conda:
        CONDA_ENV
    log:
        f"{LOGS}/kernel_evolution/w{{width}}_s{{seed}}_n{{n}}_{{kind}}.log",
    benchmark:
        f"{LOGS}/benchmarks/kernel_evolution/w{{width}}_s{{seed}}_n{{n}}_{{kind}}.tsv"
    threads: lambda wc: jobsize.kernel_threads(kernel_row_total(int(wc.n)))
    # the longest chain (train again, then one eNTK per checkpoint): started first, not left to the end
    priority: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.evolution_mem_mb(kernel_row_total(int(wc.n)) * entk_outputs(wc))),
        runtime=runtime(lambda wc: jobsize.entk_minutes(kernel_row_total(int(wc.n)), entk_outputs(wc),
                                                        kernels=tracked_checkpoints())),
        gpu=GPUS,
    script:
        "../scripts/kernel_evolution.py"


rule width_distance:
    input:
        entk=expand(f"{INIT_ROOT}/kernels/entk_init/w{{width}}/s{{{{seed}}}}/mean.npy", width=WIDTHS),
        prior=width_priors,
        infinite=width_infinite,
        network=expand(f"{RESULTS}/train/w{{width}}/s{{{{seed}}}}/n{WIDTH_N}/pointwise.npz", width=WIDTHS),
        linearized=width_linearized,
        data=DATA,
        order=ORDER,
        code=code("width_distance"),
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
        CONDA_ENV
    log:
        f"{LOGS}/width_distance/s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=mem_mb(lambda wc, input: jobsize.regression_mem_mb(kernel_row_total(max(NS), THEORY["pool"]), WIDTH_N)),
        runtime=runtime(lambda wc: jobsize.regression_minutes(WIDTH_N, 2 * len(WIDTHS))),
    script:
        "../scripts/width_distance.py"
