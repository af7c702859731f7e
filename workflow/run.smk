# One run of the workflow: the stage files, for the config in scope. The Snakefile includes it for the run
# its config describes, and workflow/rules/sweep.smk uses it as a module once per grid point of a sweep.


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/kernels.smk"
include: "rules/scaling.smk"
include: "rules/figures.smk"
