#!/usr/bin/env bash
# Command-line behaviour of the tools: --help, required flags, heatmap options, and nothing left
# half-written. The table of bad inputs (images, CSVs, checkpoints, flags) is check_bad_inputs.sh.
# Usage: check_tools.sh BUILD_DIR WORKDIR
set -uo pipefail
build=$1
work=$2
rm -rf "$work" && mkdir -p "$work"
fail=0
source "$(dirname "$0")/expect.sh"
for t in train evaluate predict make_synthetic; do expect 0 "usage:" -- "$build/tools/$t" --help; done
for b in cbam model_cost loader_throughput pipeline train_throughput ops; do expect 0 "usage:" -- "$build/bench/$b" --help; done
T=$build/tools/train
expect 2 "flag --class-weights" -- $T --class-weights heavy
expect 2 "HAM10000_metadata" -- $T --data "$work/nowhere" --out "$work/r1"
expect 2 "cannot open" -- $T --resume "$work/none.safetensors"
# A tiny real run to get a checkpoint, then damage it.
$T --synthetic-count 80 --epochs 1 --size 32x32 --report-images 2 --out "$work/run" > "$work/train.log" 2>&1 || { echo "FAIL: tiny run"; cat "$work/train.log"; fail=1; }
ck=$work/run/best.safetensors
head -c 2000 "$ck" > "$work/trunc.safetensors"
echo "not a checkpoint" > "$work/text.safetensors"
E=$build/tools/evaluate
P=$build/tools/predict
data=$build/synthetic-ham10000-80
expect 2 "flag --checkpoint is required" -- $E --data "$data"
expect 2 "text.safetensors" -- $E --checkpoint "$work/text.safetensors" --data "$data"
expect 2 "flag --split" -- $E --checkpoint "$ck" --data "$data" --split test
img=$(ls "$data"/HAM10000_images_part_1/*.jpg | head -1)
printf 'GIF89a' > "$work/fake.jpg"
expect 0 "%" -- $P --checkpoint "$ck" "$img"
expect 2 "fake.jpg" -- $P --checkpoint "$ck" "$work/fake.jpg"
expect 2 "no images given" -- $P --checkpoint "$ck"
expect 2 "missing.jpg" -- $P --checkpoint "$ck" "$work/missing.jpg"
expect 2 "flag --heatmap-method" -- $P --checkpoint "$ck" --heatmap "$work/h" --heatmap-method magic "$img"
expect 0 "heatmap" -- $P --checkpoint "$ck" --heatmap "$work/h" --heatmap-method attention "$img"
expect 0 "heatmap" -- $P --checkpoint "$ck" --heatmap "$work/h" --heatmap-method grad_cam "$img"
# evaluate without --images finds the flat image folder the checkpoint was trained on.
mkdir -p "$work/flat/imgs" && cp "$data"/HAM10000_metadata.csv "$work/flat/" && cp "$data"/HAM10000_images_part_*/*.jpg "$work/flat/imgs/"
$T --data "$work/flat" --images imgs --epochs 1 --size 32x32 --report-images 0 --out "$work/flatrun" > "$work/flat.log" 2>&1 || { echo "FAIL: flat-layout run"; cat "$work/flat.log"; fail=1; }
expect 0 "balanced_accuracy" -- $E --checkpoint "$work/flatrun/best.safetensors" --data "$work/flat" --split val
# Nothing half-written: no temporary files left in the run folder.
if ls "$work/run" | grep -q "\.tmp\."; then echo "FAIL: temporary files left behind"; fail=1; fi
exit $fail
