#!/usr/bin/env bash
# The GPU checks as one short run, for a session that is lent a GPU machine, where `python3` holds a CUDA
# build of torch (with pytest, Lightning, psutil) and nothing can be installed or fetched. Once, here:
#     mkdir -p .device && cp -r ../shared/testdata/ntk-reference .device/     (.device/ is git-ignored)
# then on the GPU machine, from the repository root, carrying .device:
#     bash benchmarks/device_check.sh
# It runs the CUDA tests (tests/test_cuda.py: eNTK against neural-tangents in float64 and full float32
# under torch's default TF32 settings, infinite kernels eager and compiled against the CPU, deterministic
# training) and the eNTK tests, then the eNTK and infinite-kernel benchmarks on CUDA, each log also under
# $OUT (or ./device-check). A failing step does not stop the later ones; the exit status is the first
# failure's.
set -uo pipefail
out=${OUT:-device-check}
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .device/ntk-reference ] && export NTKSCALING_REFERENCE_DIR="$PWD/.device/ntk-reference"
status=0
step() {  # step NAME COMMAND...: run, log to $out/NAME.log, remember the first failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$out/$name.log"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc
    echo "== $name: exit $rc"
}
step device python3 -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())"
step tests python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_entk.py tests/test_layers.py
step bench_entk python3 benchmarks/bench_entk.py --device cuda --n 1024 --tutorial-n 1024
step bench_infinite python3 benchmarks/bench_infinite.py --device cuda
exit $status
