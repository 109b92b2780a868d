#!/usr/bin/env bash
# Install samrefiner into .venv, then refine the bundled example with SAM ViT-B.
# The official checkpoint is downloaded once into $SAMREFINER_HOME (~/.cache/samrefiner).
# Without network access the pipeline still runs, with random weights, to prove the
# installation works; its masks are then meaningless (the script says so).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
OUT=out/example
args=(examples/chelsea.png examples/chelsea_coarse.png -o "$OUT" --model sam_vit_b)
if .venv/bin/samrefiner refine "${args[@]}"; then
    echo "Refined mask: $OUT/chelsea_coarse.png (details in $OUT/chelsea.samrefiner.json)"
else
    echo
    echo "WARNING: the sam_vit_b checkpoint could not be loaded (see the message above)."
    echo "Running the same pipeline with RANDOM weights to check the installation;"
    echo "the refined mask will be meaningless. Place the checkpoint as described above"
    echo "and run this script again for a real result."
    .venv/bin/samrefiner refine "${args[@]}" --random-weights
    echo "Smoke-run output (random weights): $OUT/"
fi
