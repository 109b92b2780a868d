#!/usr/bin/env bash
# Create .venv (if missing) and install samrefiner with the pinned, tested dependencies.
# --extras also installs every optional extra (model families, adaption, Ray, integrations)
# at the pins of requirements-extras.txt, as CI does.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS=0
for arg in "$@"; do
    case "$arg" in
        --extras) EXTRAS=1 ;;
        *) echo "usage: $0 [--extras]" >&2; exit 2 ;;
    esac
done
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements-ci.txt
if [ "$EXTRAS" = 1 ]; then
    .venv/bin/python -m pip install --quiet -r requirements-ci.txt -r requirements-extras.txt
    # SAM 2's CUDA extension only speeds up video post-processing; build without it so
    # the package installs on CPU-only machines (and against the torch installed above).
    SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install --quiet --no-build-isolation sam2==1.1.0
    # Ultralytics (the yolo command's tests read its output with it) requires opencv-python,
    # which would replace opencv-python-headless: installed without its dependencies.
    .venv/bin/python -m pip install --quiet --no-deps ultralytics==8.4.190
    # Test-only: the brush RLE tests compare with the SDK's (see requirements-extras.txt).
    .venv/bin/python -m pip install --quiet --no-deps label-studio-sdk==2.1.2
fi
.venv/bin/python -m pip install --quiet --no-deps -e .
.venv/bin/python -c "import samrefiner; print('samrefiner', samrefiner.__version__, 'installed in .venv')"
