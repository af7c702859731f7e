#!/usr/bin/env bash
# The main job: set up the environment if missing, then run the whole workflow on the default config
# (built-in digits dataset, no download). Extra arguments go to snakemake, e.g.
#   ./run.sh --configfile config/presets/cifar10-cpu.yaml      ./run.sh -n      ./run.sh --cores 8
set -euo pipefail
cd "$(dirname "$0")"
bash envs/setup.sh
exec .venv/bin/snakemake --cores all "$@"
