#!/usr/bin/env bash
# Check that two revisions write the same outputs: every command (make-coarse, coco,
# instances, semantic, masks, split, refine with its sidecar, --box, eval, bench, report,
# adapt, --adapter, --resume, --engine ray, zoom / gate / elastic options, SAM 2) is run by
# each revision's code on one prepared input set cut from the shared data, with a tiny
# random model, and the files and the messages of the two runs are compared byte for byte.
# For restructures ("no behaviour change"):
#
#     bash scripts/same_outputs.sh BASE_REV [NEW_REV]     # NEW_REV defaults to HEAD
#
# Needs .venv with every extra (bash scripts/install.sh --extras) and the shared data
# (SAMREFINER_DATA, default ../shared/data). Each revision runs from its own git worktree
# under $WORK (default a temporary folder), so the checkout is not touched. Prints the
# differing files (with a diff of text files) and exits 1 if there are any; timings are
# blanked first (scripts/blank_timings.py).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=$ROOT/.venv/bin/python
DATA=$(realpath "${SAMREFINER_DATA:-../shared/data}")
BASE=${1:?usage: $0 BASE_REV [NEW_REV]}
NEW=${2:-HEAD}
WORK=${WORK:-$(mktemp -d)}
[ -x "$PY" ] || { echo "$0: no .venv (run bash scripts/install.sh --extras)" >&2; exit 2; }
[ -d "$DATA/davis2016" ] || { echo "$0: no shared data at $DATA" >&2; exit 2; }
export PYTHONHASHSEED=0 CUDA_VISIBLE_DEVICES=""

# --- one input set for both revisions --------------------------------------------------
IN=$WORK/in
mkdir -p "$IN"/{imgs,gt_inst,gt_bin,gt_sem,img_bin}
for f in "$DATA"/davis2017_val/images/*.jpg "$DATA"/labelme_voc2011/images/*.jpg; do
    cp "$f" "$IN/imgs/"
done
cp "$DATA"/davis2017_val/masks/*.png "$DATA"/labelme_voc2011/masks/*.png "$IN/gt_inst/"
cp "$DATA"/labelme_voc2011/masks_class/*.png "$IN/gt_sem/"
for stem in bear_00000 blackswan_00000 blackswan_00025; do
    cp "$DATA/davis2016/images/$stem.jpg" "$IN/img_bin/"
    cp "$DATA/davis2016/masks/$stem.png" "$IN/gt_bin/"
done
"$PY" - "$IN" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
root = Path(sys.argv[1])
images, annotations = [], []
for image_id, path in enumerate(sorted((root / "gt_inst").glob("*.png")), 1):
    ids = np.asarray(Image.open(path))
    images.append({"id": image_id, "file_name": path.stem + ".jpg",
                   "height": int(ids.shape[0]), "width": int(ids.shape[1])})
    for obj in sorted(int(v) for v in np.unique(ids) if v not in (0, 255)):
        rle = mask_utils.encode(np.asfortranarray(ids == obj))
        rle["counts"] = rle["counts"].decode()
        annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                            "category_id": 1 + obj % 2, "segmentation": rle, "iscrowd": 0,
                            "area": float(mask_utils.area(rle)),
                            "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
categories = [{"id": 1, "name": "odd"}, {"id": 2, "name": "even"}]
(root / "gt.json").write_text(json.dumps(
    {"images": images, "annotations": annotations, "categories": categories}))
EOF

# --- the commands ------------------------------------------------------------------------
TINY=(--model samrefiner.testing:tiny_sam --random-weights --device cpu)
steps() {
    local s="samrefiner"
    step coarse_inst  $s make-coarse "$IN/gt_inst" -o coarse_inst --seed 0 --no-progress
    step coarse_bin   $s make-coarse "$IN/gt_bin" -o coarse_bin --seed 1 --no-progress
    step coarse_sem   $s make-coarse "$IN/gt_sem" -o coarse_sem --seed 2 --ignore 255 --no-progress
    step coarse_coco  $s make-coarse "$IN/gt.json" -o coarse.json --seed 3 --no-progress
    step coco         $s coco coarse.json --images "$IN/imgs" -o coco.json "${TINY[@]}" --no-progress --summary coco.summary.json
    step coco_resume  $s coco coarse.json --images "$IN/imgs" -o coco.json "${TINY[@]}" --no-progress --resume
    step coco_opts    $s coco coarse.json --images "$IN/imgs" -o coco_opts.json "${TINY[@]}" --no-progress --iterations 3 --margin 0.3 --zoom-below 200 --gate-min-score 0.5 --gate-max-area-ratio 2 --selection stability
    step coco_boxes   $s coco coarse.json --images "$IN/imgs" -o coco_boxes.json "${TINY[@]}" --no-progress --from-boxes
    step coco_sam2    $s coco coarse.json --images "$IN/imgs" -o coco_sam2.json --model samrefiner.testing:tiny_sam2 --random-weights --device cpu --no-progress
    step coco_ray     $s coco coarse.json --images "$IN/imgs" -o coco_ray.json "${TINY[@]}" --no-progress --engine ray --workers 1 --cpus-per-worker 1
    step instances    $s instances --images "$IN/imgs" --labels coarse_inst -o inst "${TINY[@]}" --no-progress --summary inst.summary.json
    step semantic     $s semantic --images "$IN/imgs" --labels coarse_sem -o sem "${TINY[@]}" --no-progress --ignore 255
    step masks        $s masks --images "$IN/img_bin" --masks coarse_bin -o bin "${TINY[@]}" --no-progress
    step split        $s split --labels coarse_sem -o split --ignore 255 --no-progress
    step refine       $s refine "$IN/img_bin/bear_00000.jpg" coarse_bin/bear_00000.png -o refine "${TINY[@]}"
    step refine_box   $s refine "$IN/img_bin/bear_00000.jpg" --box 100 50 400 300 -o refine_box "${TINY[@]}"
    step eval_coco    $s eval coco.json "$IN/gt.json" --json eval_coco.json --csv eval_coco.csv --no-progress
    step eval_inst    $s eval inst "$IN/gt_inst" --json eval_inst.json --no-progress
    step eval_gate    $s eval coco_opts.json "$IN/gt.json" --gate coco.json coarse.json --json eval_gate.json --no-progress
    step bench        $s bench "$DATA" --include 'davis2017_val/*' --include 'labelme_voc2011/*' -o bench "${TINY[@]}" --no-progress --no-warmup --baselines coarse
    step report_bench $s report bench -o report_bench --no-progress
    step report_ref   $s report refine -o report_refine --no-progress
    step report_coco  $s report coco.json -o report_coco --no-progress
    step adapt        $s adapt masks --images "$IN/img_bin" --masks coarse_bin -o adapter "${TINY[@]}" --no-progress --epochs 1 --seed 0
    step adapted      $s coco coarse.json --images "$IN/imgs" -o coco_adapted.json "${TINY[@]}" --adapter adapter --no-progress
    step bad_model    $s coco coarse.json --images "$IN/imgs" -o coco_bad.json --model no_such_model --no-progress
    step bad_input    $s instances --images "$IN/imgs" --labels "$IN/gt_sem" -o inst_bad --ignore 7 "${TINY[@]}" --no-progress --strict
}

run_rev() {  # REV NAME
    local tree=$WORK/$2/tree out=$WORK/$2/out home=$WORK/$2/home
    mkdir -p "$home"  # its own embedding cache: neither revision reads the other's
    git worktree add --quiet --detach "$tree" "$1" || exit 2
    mkdir -p "$out"
    step() {
        local name=$1; shift
        (cd "$out" && SAMREFINER_HOME="$home" PYTHONPATH="$tree/src" \
            "$PY" -m "$@" >"$out/$name.stdout" 2>"$out/$name.stderr")
        echo "$?" >"$out/$name.rc"
        echo "  $2 -> $name (rc $(cat "$out/$name.rc"))"
    }
    echo "== $1 ($2)"
    (cd "$out" && PYTHONPATH="$tree/src" "$PY" -c 'import samrefiner; print("  code:", samrefiner.__file__)')
    steps
    git worktree remove --force "$tree"
}
run_rev "$BASE" base
run_rev "$NEW" new

# --- compare -----------------------------------------------------------------------------
# Timings (seconds, rates, dates, Ray's own log lines) differ from run to run: they are
# blanked in a copy of each output (scripts/blank_timings.py); every other byte is compared.
for side in base new; do
    rm -rf "${WORK:?}/$side/cmp" && cp -r "$WORK/$side/out" "$WORK/$side/cmp"
done
"$PY" "$ROOT/scripts/blank_timings.py" "$WORK/base/cmp" "$WORK/new/cmp"
cd "$WORK" || exit 2
diff -rq base/cmp new/cmp >"$WORK/differ.txt"
n=$(find base/cmp -type f | wc -l)
if [ ! -s "$WORK/differ.txt" ]; then
    echo "identical: $n files, timings blanked ($WORK/base/out vs $WORK/new/out)"
    exit 0
fi
cat "$WORK/differ.txt"
grep '^Files' "$WORK/differ.txt" | awk '{print $2, $4}' | while read -r a b; do
    if file "$a" | grep -q text; then diff "$a" "$b" | head -20; fi
done
echo "DIFFERENT: $(wc -l <"$WORK/differ.txt") of $n files differ"
exit 1
