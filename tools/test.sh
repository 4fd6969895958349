#!/usr/bin/env bash
# Install mnemolog with its test dependencies into .venv-test and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-test
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
# pytest exits 5 when it collected no test: set -e turns that into a failure too.
"$venv/bin/python" -m pytest "$@"
