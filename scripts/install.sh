#!/usr/bin/env bash
# Create .venv (if missing) and install samrefiner with the pinned, tested dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-ci.txt
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -c "import samrefiner; print('samrefiner', samrefiner.__version__, 'installed in .venv')"
