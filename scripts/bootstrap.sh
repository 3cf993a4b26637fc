#!/usr/bin/env bash
# Prepare everything the demo and the tests need on a fresh Linux machine with Python 3.11:
# the virtualenv with the project and its extras, and the real kubectl and helm binaries.
# Idempotent and cheap when nothing changed: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
EXTRAS=${EXTRAS:-dev,worker}

stamp_of() { cat pyproject.toml scripts/bootstrap.sh scripts/install_tools.py | sha256sum | cut -c1-16; echo "$EXTRAS"; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
want=$(stamp_of)
if [ "$(cat .venv/.modelops-stamp 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing modelops[$EXTRAS] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  echo "$want" > .venv/.modelops-stamp
fi

if [ ! -x .tools/bin/kubectl ] || [ ! -x .tools/bin/helm ]; then
  echo "bootstrap: installing kubectl and helm into .tools/bin"
  .venv/bin/python scripts/install_tools.py .tools/bin
fi
