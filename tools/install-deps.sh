#!/bin/bash
# Install the Debian packages bindep.txt lists for the given profiles
# (default: test), plus what is needed to run bindep itself.
#
#   tools/install-deps.sh [PROFILE...]     e.g. tools/install-deps.sh probe
set -euo pipefail

cd "$(dirname "$0")/.."
profiles=("${@:-test}")

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

apt_install() {
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "$@"
}

if [ ! -e /var/lib/apt/lists/lock ] || \
        [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -print -quit)" ]; then
    "${SUDO[@]}" apt-get update -q
fi

# bindep runs from a private virtualenv; Debian's python3 needs
# python3-venv for that.
if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv python3-pip
fi
tools_venv=.venv-tools
if [ ! -x "$tools_venv/bin/bindep" ]; then
    python3 -m venv "$tools_venv"
    "$tools_venv/bin/pip" install -q bindep
fi

missing=$("$tools_venv/bin/bindep" -b "${profiles[@]}" || true)
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086  # one package name per word
    apt_install $missing
fi
"$tools_venv/bin/bindep" "${profiles[@]}"
