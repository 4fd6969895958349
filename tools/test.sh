#!/usr/bin/env bash
# Install mnemolog with its test dependencies into .venv-test and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Redis backend's tests start a real redis-server: install it from the system packages
# if it is missing (as root, else through sudo when it needs no password). In CI (CI=true)
# those tests fail rather than skip when it is still missing.
if ! command -v redis-server >/dev/null 2>&1; then
    install=(apt-get install -y -qq --no-install-recommends redis-server)
    if [ "$(id -u)" -eq 0 ]; then
        sudo=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        sudo=(false)
    fi
    if command -v apt-get >/dev/null 2>&1 && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
        && "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null; then
        echo "tools/test.sh: installed redis-server from the system packages" >&2
    else
        echo "tools/test.sh: could not install redis-server (not root, no sudo, or no apt-get)" >&2
    fi
fi
venv=.venv-test
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
# pytest exits 5 when it collected no test: set -e turns that into a failure too.
"$venv/bin/python" -m pytest "$@"
