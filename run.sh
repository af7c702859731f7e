#!/usr/bin/env bash
# The main job: set up the environment if missing, then run the whole workflow on the default config
# (built-in digits dataset, no download). Extra arguments go to snakemake, e.g.
#   ./run.sh --configfile config/presets/cifar10-cpu.yaml      ./run.sh -n      ./run.sh --cores 8
# It prints one line per finished job and, at the end, the headline exponents and deficits.
# Run it again after an interruption (Ctrl-C, a kill, a crash): finished jobs are kept, interrupted ones
# re-run, and a training job resumes from its last checkpoint.
set -euo pipefail
cd -P "$(dirname "$0")"  # the physical path: a checkout reached through a link is the same checkout
bash envs/setup.sh
VENV=${NTKSCALING_VENV:-.venv}
mkdir -p .snakemake
# One ./run.sh per checkout at a time. A killed run leaves Snakemake's directory lock behind; when no other
# ./run.sh holds this checkout, that lock is stale and is lifted before running.
exec 9>.snakemake/run.sh.lock
# -w 10: the processes of a run killed a moment ago (its jobs, its console) may still be exiting
if ! flock -w 10 9; then
  echo "run.sh: another ./run.sh (or a job it started) is still running in $PWD; wait for it, or stop it" >&2
  exit 1
fi
# A Snakemake started another way (plain `snakemake`, `python -m snakemake`, a cluster submission) holds the lock
# while it is alive: it is never lifted then. Snakemake's lock files name no process, so live ones are found by
# what they run and where: a process running snakemake (as its program or as `-m snakemake`) whose physical
# working directory is this checkout, or whose results/ is this checkout's results/ (two checkouts sharing
# results/ through a link). The run itself also takes a lock inside results/<run_name>/ (ntkscaling.jobs).
is_snakemake() {  # the first arguments of the process /proc/$1
  local a prev="" i=0
  while IFS= read -r -d '' a && [ $i -lt 4 ]; do
    i=$((i + 1))
    [ "$(basename -- "$a")" = snakemake ] && return 0
    [ "$prev" = -m ] && [ "${a%%.*}" = snakemake ] && return 0
    prev=$a
  done < "$1/cmdline" 2>/dev/null
  return 1
}
live_snakemake() {
  [ -d /proc/self ] || { echo unknown; return 0; }  # no process table to read: the user decides
  local d cwd ours
  ours=$(readlink -f results 2>/dev/null || true)
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = "$$" ] && continue
    cwd=$(readlink "$d/cwd" 2>/dev/null) || continue
    if [ "$cwd" = "$PWD" ] || { [ -d results ] && [ "$(readlink -f "$cwd/results" 2>/dev/null)" = "$ours" ]; }; then
      is_snakemake "$d" && { echo "${d#/proc/}"; return 0; }
    fi
  done
  return 1
}
if [ -n "$(ls -A .snakemake/locks 2>/dev/null)" ]; then
  if pid=$(live_snakemake); then
    if [ "$pid" = unknown ]; then
      echo "run.sh: $PWD/.snakemake/locks holds a lock and this system has no /proc to tell whether a" \
           "Snakemake is still running here; if none is, lift it with: snakemake --unlock" >&2
    else
      echo "run.sh: a Snakemake (process $pid) is running in $PWD and holds its lock; wait for it to" \
           "finish or stop it (a lock is lifted only when no Snakemake is alive here)" >&2
    fi
    exit 1
  fi
  echo "run.sh: lifting the lock left by an interrupted run" >&2
  "$VENV/bin/snakemake" --unlock --cores 1 "$@" >/dev/null
fi
# A quiet console: one line per finished job and a closing summary (ntkscaling.console); Snakemake's full
# console is kept in .snakemake/log/. NTKSCALING_CONSOLE=full shows it live; dry runs and other
# non-running invocations always print in full.
full=${NTKSCALING_CONSOLE:-quiet}
for arg in "$@"; do
  case "$arg" in
    -n|--dry-run|--dryrun|--unlock|--report*|--list*|--summary|--detailed-summary|--dag|--rulegraph|-h|--help) full=full ;;
  esac
done
if [ "$full" = full ]; then
  exec "$VENV/bin/snakemake" --cores all "$@"
fi
"$VENV/bin/snakemake" --cores all "$@" 2>&1 | "$VENV/bin/python" -m ntkscaling.console
