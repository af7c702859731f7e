#!/usr/bin/env bash
# The test suite: set up the environment if missing, then run every test (unit tests and the tiny
# end-to-end workflow). Extra arguments go to pytest, e.g. ./test.sh -k data
set -euo pipefail
cd "$(dirname "$0")"
bash envs/setup.sh
# Two workers, each test file on one worker (a file's run of the workflow is shared by its tests): the
# suite's subprocesses and single-threaded tests leave a core idle on their own. -n 0 runs it in one process.
exec .venv/bin/python -m pytest -q -n 2 --dist loadfile "$@"
