#!/usr/bin/env bash
# The test suite: set up the environment if missing, then run every test (unit tests and the tiny
# end-to-end workflow). Extra arguments go to pytest, e.g. ./test.sh -k data
set -euo pipefail
cd "$(dirname "$0")"
bash envs/setup.sh
exec .venv/bin/python -m pytest -q "$@"
