#!/usr/bin/env bash
# The main job: set up the environment if missing, then run the whole workflow on the default config
# (built-in digits dataset, no download). Extra arguments go to snakemake, e.g.
#   ./run.sh --configfile config/presets/cifar10-cpu.yaml      ./run.sh -n      ./run.sh --cores 8
# Run it again after an interruption (Ctrl-C, a kill, a crash): finished jobs are kept, interrupted ones
# re-run, and a training job resumes from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")"
bash envs/setup.sh
VENV=${NTKSCALING_VENV:-.venv}
mkdir -p .snakemake
# One ./run.sh per checkout at a time. A killed run leaves Snakemake's directory lock behind; when no other
# ./run.sh holds this checkout, that lock is stale and is lifted before running.
exec 9>.snakemake/run.sh.lock
if ! flock -n 9; then
  echo "run.sh: another ./run.sh (or a job it started) is still running in $PWD; wait for it, or stop it" >&2
  exit 1
fi
if [ -n "$(ls -A .snakemake/locks 2>/dev/null)" ]; then
  echo "run.sh: lifting the lock left by an interrupted run" >&2
  "$VENV/bin/snakemake" --unlock --cores 1 "$@" >/dev/null
fi
exec "$VENV/bin/snakemake" --cores all "$@"
