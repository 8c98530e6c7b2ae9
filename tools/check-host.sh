#!/bin/bash
# Set up a fresh Debian 12 machine and check what this host's own QEMU
# and firmware can boot:  tools/check-host.sh [pcie-sched check options]
set -euo pipefail

cd "$(dirname "$0")/.."
tools/install-deps.sh probe
if [ ! -x .venv-host/bin/pip ]; then
    python3 -m venv .venv-host
fi
# Reinstalled on every run so a pulled checkout is what gets checked.
.venv-host/bin/pip install -q -r requirements.txt .
if [ "$#" -eq 0 ]; then
    set -- --ports 16 --find-max
fi
exec .venv-host/bin/pcie-sched check "$@"
