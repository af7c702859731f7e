# ntkscaling: does the Neural Tangent Kernel explain how my network scales?
# The DAG: data -> train -> scaling fits -> figures. See README.md and ../shared/DESIGN.md.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.current_basedir, "config", "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/kernels.smk"
include: "workflow/rules/scaling.smk"
include: "workflow/rules/figures.smk"


rule all:
    input:
        all_targets(),
    default_target: True
