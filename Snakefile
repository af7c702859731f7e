# ntkscaling: does the Neural Tangent Kernel explain how my network scales?
# The DAG: data -> train -> kernels -> scaling fits -> figures (workflow/run.smk), once for the config, or once
# per grid point of its sweep (workflow/rules/sweep.smk). See README.md and docs/development.md.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.current_basedir, "config", "config.yaml")


include: "workflow/run.smk"
include: "workflow/rules/sweep.smk"


rule all:
    input:
        *([SWEEP_SHARED, SWEEP_OUTCOMES, sweep_targets] if SWEEP else [all_targets()]),
    default_target: True


onstart:
    from ntkscaling import jobs

    jobs.claim_run(SHARED)  # one writer per run, however it is reached or started (ntkscaling.jobs)


onsuccess:
    from ntkscaling import console

    print(console.closing_summary(SHARED, config["fit"]["figure_width"]), flush=True)
