#!/bin/bash
# Set up a fresh Debian 12 machine and run the test suite:
# system packages from bindep.txt, tox from PyPI, then `tox -e py3`.
#
#   tools/run-tests.sh [TOX_ENV] [-- STESTR ARGS]
set -euo pipefail

cd "$(dirname "$0")/.."
env=${1:-py3}
shift || true

tools/install-deps.sh test
if [ ! -x .venv-tools/bin/tox ]; then
    .venv-tools/bin/pip install -q 'tox>=4'
fi
exec .venv-tools/bin/tox -e "$env" "$@"
