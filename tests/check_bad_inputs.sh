#!/usr/bin/env bash
# Every kind of bad input, tried for real on the tools: damaged images, metadata and ground-truth
# CSVs in odd dialects or wrong, damaged and mismatched checkpoints, nonsense flags. Each case
# states the exit code and a phrase the message must contain; the table of what each produced is
# written to WORKDIR/bad_inputs.md.
# Usage: check_bad_inputs.sh BUILD_DIR WORKDIR
set -uo pipefail
build=$1
work=$2
src=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
T=$build/tools/train
E=$build/tools/evaluate
P=$build/tools/predict
fail=0
table=$work/bad_inputs.md
printf '| input | tool | exit | message (first line) |\n| --- | --- | --- | --- |\n' > "$table"

source "$src/expect.sh"

# case DESCRIPTION EXIT NEEDLE -- command...: expect, plus a row of the table.
case_() {
  local what=$1
  shift
  echo "case: $what"
  expect "$@"
  local msg
  msg=$(grep -a -m1 -E "error|warning" "$work/err" || head -1 "$work/err")
  [ -z "$msg" ] && msg=$(head -c 150 "$work/out" | tr '\n' ' ')
  printf '| %s | %s | %s | %s |\n' "$what" "$(basename "$4")" "$got" "$(echo "$msg" | sed "s|$work/||g; s/|/\\\\|/g" | cut -c1-220)" >> "$table"
}

# A tiny run for a checkpoint, and a small HAM10000-layout dataset built from its synthetic images.
"$T" --synthetic-count 80 --epochs 1 --size 32x32 --report-images 0 --out "$work/run" > "$work/train.log" 2>&1 ||
  { echo "FAIL: tiny run"; cat "$work/train.log"; exit 1; }
ck=$work/run/best.safetensors
syn=$build/synthetic-ham10000-80
mkdir -p "$work/ds/imgs"
ids=()
for f in $(ls "$syn"/HAM10000_images_part_1/*.jpg | head -6); do
  cp "$f" "$work/ds/imgs/"
  ids+=("$(basename "$f" .jpg)")
done
write_meta() {  # the six images as nv, mel, bkl, nv, bcc, df, one lesion each
  local dx=(nv mel bkl nv bcc df)
  echo "lesion_id,image_id,dx,dx_type,age,sex,localization"
  for i in 0 1 2 3 4 5; do echo "HAM_$((1000 + i)),${ids[$i]},${dx[$i]},histo,50.0,male,back"; done
}
write_meta > "$work/ds/HAM10000_metadata.csv"
cp -r "$work/ds" "$work/clean"
ev() { "$E" --checkpoint "$ck" --data "$work/ds" --images imgs "$@"; }

# ---- images --------------------------------------------------------------------------------------
victim=$work/ds/imgs/${ids[2]}.jpg
keep=$work/victim.jpg
cp "$victim" "$keep"
image_case() {  # DESCRIPTION MAKER
  local what=$1
  cp "$keep" "$victim"
  eval "$2"
  case_ "image: $what" 2 "${ids[2]}" -- "$E" --checkpoint "$ck" --data "$work/ds" --images imgs
  case_ "image: $what, --skip-bad-images" 0 "balanced_accuracy" -- "$E" --checkpoint "$ck" --data "$work/ds" --images imgs --skip-bad-images
}
image_case "empty file" ': > "$victim"'
image_case "truncated (first half)" 'head -c $(( $(stat -c %s "$keep") / 2 )) "$keep" > "$victim"'
image_case "corrupt scan data" 'python3 -c "
import sys; b = bytearray(open(sys.argv[1], \"rb\").read()); n = len(b)
for i in range(n // 2, n // 2 + 64): b[i] ^= 0x5A
open(sys.argv[1], \"wb\").write(b)" "$victim"'
image_case "PNG saved as .jpg" 'printf "\x89PNG\r\n\x1a\n0000000000000000" > "$victim"'
image_case "text file" 'echo "not an image" > "$victim"'
image_case "header claims 65000x65000" 'python3 -c "
import sys, struct; b = bytearray(open(sys.argv[1], \"rb\").read()); i = b.find(b\"\xff\xc0\")
struct.pack_into(\">HH\", b, i + 5, 65000, 65000); open(sys.argv[1], \"wb\").write(b)" "$victim"'
image_case "missing file" 'rm -f "$victim"'
image_case "a folder named like the image" 'rm -f "$victim"; mkdir -p "$victim"'
rm -rf "$victim"
cp "$keep" "$victim"
cp "$src/fuzz/corpus/jpeg/gray_48x40.jpg" "$work/gray.jpg"
cp "$src/fuzz/corpus/jpeg/cmyk_40x32.jpg" "$work/cmyk.jpg"
cp "$src/fuzz/corpus/jpeg/progressive_64x48.jpg" "$work/progressive.jpg"
case_ "image: grayscale JPEG (accepted)" 0 "probabilities" -- "$P" --checkpoint "$ck" --json "$work/gray.jpg"
case_ "image: CMYK JPEG (accepted)" 0 "probabilities" -- "$P" --checkpoint "$ck" --json "$work/cmyk.jpg"
case_ "image: progressive JPEG (accepted)" 0 "probabilities" -- "$P" --checkpoint "$ck" --json "$work/progressive.jpg"
: > "$work/empty.jpg"
case_ "image: empty file to predict" 2 "empty.jpg" -- "$P" --checkpoint "$ck" "$work/empty.jpg"
case_ "image: empty file to predict, --skip-bad-images (others predicted)" 0 "1 of 3 images skipped" -- "$P" --checkpoint "$ck" --json --skip-bad-images "$work/gray.jpg" "$work/empty.jpg" "$work/cmyk.jpg"
[ "$(grep -c '"prediction"' "$work/out")" -eq 2 ] && grep -q 'gray.jpg' "$work/out" && grep -q 'cmyk.jpg' "$work/out" &&
  [ "$(grep -c 'empty.jpg' "$work/err")" -eq 1 ] || { echo "FAIL: predict --skip-bad-images: want the two good images predicted and one warning"; fail=1; }
case_ "image: a missing and an empty file, ensemble, --skip-bad-images" 0 "2 of 3 images skipped" -- "$P" --checkpoint "$ck,$ck" --skip-bad-images "$work/nosuch.jpg" "$work/empty.jpg" "$work/gray.jpg"
[ "$(grep -c 'empty.jpg' "$work/err")" -eq 1 ] && grep -q 'gray.jpg:' "$work/out" || { echo "FAIL: predict ensemble --skip-bad-images: want one warning per bad image and the good one predicted"; fail=1; }
# Heatmaps stay with their images when a missing one comes first; an ensemble in evaluate warns once.
case_ "image: a missing file before two with heatmaps, --skip-bad-images" 0 "1 of 3 images skipped" -- "$P" --checkpoint "$ck" --json --skip-bad-images --heatmap "$work/hmskip" "$work/nosuch.jpg" "$work/gray.jpg" "$work/cmyk.jpg"
grep -q '"heatmap":"'"$work"'/hmskip/gray_heatmap.jpg".*"image":"'"$work"'/gray.jpg"' "$work/out" &&
  grep -q '"heatmap":"'"$work"'/hmskip/cmyk_heatmap.jpg".*"image":"'"$work"'/cmyk.jpg"' "$work/out" &&
  [ "$(ls "$work/hmskip" | wc -l)" -eq 2 ] || { echo "FAIL: predict --skip-bad-images --heatmap: heatmaps not with their images"; cat "$work/out"; fail=1; }
case_ "image: only bad files with --heatmap, --skip-bad-images (no folder left)" 2 "none of the 1 image(s) given could be read" -- "$P" --checkpoint "$ck" --skip-bad-images --heatmap "$work/hmnone" "$work/empty.jpg"
[ ! -e "$work/hmnone" ] || { echo "FAIL: predict left an empty --heatmap folder when no image was read"; fail=1; }
echo "not an image" > "$victim"
case_ "image: text file, ensemble in evaluate, --skip-bad-images" 0 '"skipped_images":1' -- "$E" --checkpoint "$ck,$ck" --data "$work/ds" --images imgs --skip-bad-images
[ "$(grep -c "${ids[2]}" "$work/err")" -eq 1 ] || { echo "FAIL: evaluate's ensemble warned more than once about one bad image"; cat "$work/err"; fail=1; }
cp "$keep" "$victim"
case_ "image: only bad files, --skip-bad-images" 2 "none of the 2 image(s) given could be read" -- "$P" --checkpoint "$ck" --skip-bad-images "$work/empty.jpg" "$work/empty.jpg"
case_ "image: a missing file to predict" 2 "or --skip-bad-images to go on without it" -- "$P" --checkpoint "$ck" "$work/gray.jpg" "$work/nosuch.jpg"

# ---- metadata CSV --------------------------------------------------------------------------------
meta=$work/ds/HAM10000_metadata.csv
meta_case() {  # DESCRIPTION EXIT NEEDLE TRANSFORM(sed/python on the clean CSV)
  write_meta > "$meta"
  eval "$4"
  case_ "metadata: $1" "$2" "$3" -- "$E" --checkpoint "$ck" --data "$work/ds" --images imgs
}
meta_case "UTF-8 byte-order mark (accepted)" 0 '"images":6' 'printf "\xef\xbb\xbf" | cat - "$meta" > "$work/m" && mv "$work/m" "$meta"'
meta_case "CRLF line ends (accepted)" 0 '"images":6' 'sed -i "s/\$/\r/" "$meta"'
meta_case "quoted fields with commas (accepted)" 0 '"images":6' 'sed -i "s/,back\$/,\"back, upper\"/; 2s/^HAM_1000/\"HAM_1000\"/" "$meta"'
meta_case "extra columns (accepted)" 0 '"images":6' 'sed -i "1s/\$/,note/; 2,\$s/\$/,x/" "$meta"'
meta_case "columns in another order (accepted)" 0 '"images":6' 'awk -F, -v OFS=, "{print \$3,\$2,\$1,\$4,\$5,\$6,\$7}" "$meta" > "$work/m" && mv "$work/m" "$meta"'
meta_case "missing dx value" 2 "line 3" 'sed -i "3s/,mel,/,,/" "$meta"'
meta_case "unknown dx code" 2 "melanoma" 'sed -i "3s/,mel,/,melanoma,/" "$meta"'
meta_case "row with a missing field" 2 "line 4" 'sed -i "4s/,back\$//" "$meta"'
meta_case "no dx column" 2 "dx" 'sed -i "1s/,dx,/,diagnosis,/" "$meta"'
meta_case "duplicate image id" 2 "${ids[0]}" 'sed -i "3s/${ids[1]}/${ids[0]}/" "$meta"'
meta_case "header only" 2 "no images" 'head -1 "$meta" > "$work/m" && mv "$work/m" "$meta"'
meta_case "binary garbage" 2 "got: \\xff\\xd8\\xff" 'head -c 300 "$keep" > "$meta"'
write_meta > "$meta"

# ---- ground-truth CSV (ISIC 2018 Task 3) ---------------------------------------------------------
gt=$work/gt.csv
gt_case() {  # DESCRIPTION EXIT NEEDLE ROW-FOR-THE-THIRD-IMAGE
  {
    echo "image,MEL,NV,BCC,AKIEC,BKL,DF,VASC"
    echo "${ids[0]},0.0,1.0,0.0,0.0,0.0,0.0,0.0"
    echo "${ids[1]},1.0,0.0,0.0,0.0,0.0,0.0,0.0"
    echo "${ids[2]},$4"
  } > "$gt"
  case_ "ground truth: $1" "$2" "$3" -- "$E" --checkpoint "$ck" --data "$work/ds/imgs" --ground-truth "$gt"
}
gt_case "one-hot rows (accepted)" 0 '"images":3' "0.0,0.0,0.0,0.0,1.0,0.0,0.0"
gt_case "two classes set in a row" 2 "line 4" "1.0,0.0,0.0,0.0,1.0,0.0,0.0"
gt_case "no class set in a row" 2 "line 4" "0.0,0.0,0.0,0.0,0.0,0.0,0.0"
gt_case "a value of 0.5" 2 "line 4" "0.5,0.5,0.0,0.0,0.0,0.0,0.0"
gt_case "a value that is not a number" 2 "line 4" "yes,0.0,0.0,0.0,0.0,0.0,0.0"
gt_case "a missing field" 2 "line 4" "0.0,0.0,0.0,0.0,1.0,0.0"

# ---- checkpoints ---------------------------------------------------------------------------------
craft() {  # OUT PYTHON-EXPRESSION on (header dict h, data bytes d) -> writes a modified copy of $ck
  python3 - "$ck" "$1" "$2" <<'PY'
import json, struct, sys
src, out, expr = sys.argv[1:4]
b = open(src, "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n]); d = b[8 + n:]
hlen = None
exec(expr)
hj = json.dumps(h).encode()
open(out, "wb").write(struct.pack("<Q", hlen if hlen is not None else len(hj)) + hj + d)
PY
}
ck_case() {  # DESCRIPTION NEEDLE FILE
  case_ "checkpoint: $1" 2 "$2" -- "$E" --checkpoint "$3" --data "$work/ds" --images imgs
}
ck_case "a safetensors file from PyTorch, not dermis" "not a dermis checkpoint" "$src/golden/cbam_torch.safetensors"
head -c 5000 "$ck" > "$work/truncated.safetensors"
ck_case "truncated" "truncated" "$work/truncated.safetensors"
craft "$work/lying.safetensors" 'k = [x for x in h if x != "__metadata__"][0]; h[k]["data_offsets"][1] += 4096; h[k]["shape"][0] += 1024'
ck_case "header lying about tensor sizes" "damaged" "$work/lying.safetensors"
craft "$work/hugelen.safetensors" 'hlen = 4 << 30'
ck_case "4 GB header length" "header length" "$work/hugelen.safetensors"
craft "$work/othermodel.safetensors" 'h["__metadata__"]["model"] = "resnet18_cbam"'
ck_case "weights of another model (metadata says resnet18_cbam)" "do not fit a resnet18_cbam" "$work/othermodel.safetensors"
craft "$work/badmeta.safetensors" 'h["__metadata__"]["schedule"] = "{\"best\": 1}"'
ck_case "damaged metadata (schedule)" "damaged checkpoint metadata" "$work/badmeta.safetensors"
craft "$work/nodtype.safetensors" 'k = [x for x in h if x != "__metadata__"][0]; h[k]["dtype"] = "C64"'
ck_case "a tensor stored as C64 (complex)" "dtype C64 is not supported" "$work/nodtype.safetensors"
printf 'garbage' > "$work/tiny.safetensors"
ck_case "7-byte file" "tiny.safetensors" "$work/tiny.safetensors"
case_ "checkpoint: resume from a damaged file" 2 "truncated" -- "$T" --resume "$work/truncated.safetensors"
case_ "checkpoint: resume with another model's weights" 2 "do not fit" -- "$T" --resume "$work/othermodel.safetensors"
setting() {  # OUT KEY JSON-VALUE: a copy of $ck whose stored training settings have KEY = VALUE
  craft "$1" "c = json.loads(h['__metadata__']['config']); c['$2'] = json.loads('$3'); h['__metadata__']['config'] = json.dumps(c)"
}
setting "$work/badlr.safetensors" lr 100
ck_case "a stored setting out of range (lr 100)" "setting lr: 100 is out of range" "$work/badlr.safetensors"
case_ "checkpoint: resume with a stored setting out of range" 2 "badlr.safetensors: the training settings stored in it are invalid" -- "$T" --resume "$work/badlr.safetensors"
setting "$work/badsched.safetensors" schedule '"linear"'
ck_case "an unknown stored schedule" "setting schedule: expected step" "$work/badsched.safetensors"

# ---- published weights (train --init) -------------------------------------------------------------
# torchvision's resnet18 as PyTorch saved it (tests/golden/torchvision), cut short, of another
# architecture, not a weights file; none of them may leave a run folder behind.
gzip -dc "$src/golden/torchvision/resnet18.pth.gz" > "$work/resnet18.pth"
head -c 2000000 "$work/resnet18.pth" > "$work/cut.pth"
printf 'not weights at all\n' > "$work/notes.pth"
init_case() {  # DESCRIPTION NEEDLE FILE [train flags]
  local what=$1 needle=$2 file=$3
  shift 3
  rm -rf "$work/initrun"
  case_ "init: $what" 2 "$needle" -- "$T" --init "$file" --synthetic-count 80 --epochs 1 --size 32x32 --out "$work/initrun" "$@"
  [ -e "$work/initrun" ] && { echo "FAIL: init: $what left $work/initrun behind"; fail=1; }
  return 0
}
init_case "missing file" "cannot open $work/nosuch.pth" "$work/nosuch.pth"
init_case "truncated .pth" "cut.pth is damaged: no zip end-of-archive record" "$work/cut.pth"
init_case "not a weights file" "notes.pth is neither a torch.save file" "$work/notes.pth"
init_case "resnet18 weights for cbam_small" "tensor 'conv1.weight' has no counterpart in the model" "$work/resnet18.pth" --model cbam_small
init_case "resnet18 weights for resnet34_cbam" "has no tensor 'layer1.2.conv1.weight'" "$work/resnet18.pth" --model resnet34_cbam
case_ "flag: --init-lr-scale without --init" 2 "--init-lr-scale" -- "$T" --init-lr-scale 0.1 --synthetic-count 80 --epochs 1
rm -f "$work/resnet18.pth"

# ---- flags ---------------------------------------------------------------------------------------
case_ "flag: --size 0x0" 2 "flag --size" -- "$T" --size 0x0
case_ "flag: --batch -1" 2 "flag --batch" -- "$T" --batch -1
case_ "flag: --lr nan" 2 "flag --lr" -- "$T" --lr nan
case_ "flag: --schedule linear" 2 "flag --schedule: expected step, multistep, cosine, plateau or constant, got 'linear'" -- "$T" --schedule linear
case_ "flag: --epochs 1.5" 2 "flag --epochs" -- "$T" --epochs 1.5
case_ "flag: --val-fraction 2" 2 "flag --val-fraction" -- "$T" --val-fraction 2
case_ "flag: --precision fp8" 2 "flag --precision" -- "$T" --precision fp8
case_ "flag: --ema 1" 2 "flag --ema" -- "$T" --ema 1
case_ "flag: --logit-adjust -1" 2 "flag --logit-adjust" -- "$T" --logit-adjust -1
case_ "flag: --logit-adjust with --balanced-sampling" 2 "flag --logit-adjust" -- "$T" --logit-adjust 1 --balanced-sampling
case_ "flag: --logit-adjust with --class-sampling balanced" 2 "flag --logit-adjust" -- "$T" --logit-adjust 1 --class-sampling balanced
case_ "flag: --logit-adjust with class weights" 2 "add --class-weights none" -- "$T" --logit-adjust 1 --class-sampling natural --class-weights sqrt
case_ "flag: --logit-adjust with the recommended recipe's balanced sampling" 2 "add --class-sampling natural or sqrt" -- "$T" --logit-adjust 1
case_ "flag: --recipe fast" 2 "flag --recipe: expected recommended or reference, got 'fast'" -- "$T" --recipe fast
case_ "flag: --class-sampling cube" 2 "flag --class-sampling" -- "$T" --class-sampling cube
case_ "flag: --balanced-sampling with --class-sampling sqrt" 2 "contradicts --class-sampling sqrt" -- "$T" --balanced-sampling --class-sampling sqrt
case_ "flag: --early-size larger than --size" 2 "flag --early-size" -- "$T" --early-size 150x200 --size 112x150
case_ "flag: --early-size larger than the default size" 2 "flag --early-size" -- "$T" --early-size 300x400 --synthetic-count 80 --out "$work/early"
[ ! -e "$work/early" ] || { echo "FAIL: --early-size larger than the default size created $work/early"; exit 1; }
case_ "flag: --early-fraction 1" 2 "flag --early-fraction" -- "$T" --early-size 64 --early-fraction 1
case_ "flag: --nonfinite ignore" 2 "flag --nonfinite" -- "$T" --nonfinite ignore

# bf16 where the CPU has no bf16 kernels (ONEDNN_MAX_CPU_ISA=AVX2 makes any CPU such a one): one
# line naming the instruction set and the way out, exit 2, and no run folder.
noisa() { ONEDNN_MAX_CPU_ISA=AVX2 "$@"; }
case_ "flag: --precision bf16 without bf16 kernels" 2 "--precision f32 works on every CPU" -- noisa "$T" --precision bf16 --synthetic-count 80 --out "$work/bf16"
[ ! -e "$work/bf16" ] || { echo "FAIL: --precision bf16 without bf16 kernels created $work/bf16"; fail=1; }
[ "$(wc -l < "$work/err")" -eq 1 ] || { echo "FAIL: --precision bf16 without bf16 kernels printed more than one line"; fail=1; }
grep -q "need AVX-512" "$work/err" || { echo "FAIL: the bf16 message does not name the instruction set"; fail=1; }
case_ "flag: bench/train_throughput --dtype bf16 without bf16 kernels" 2 "--dtype f32 works on every CPU" -- noisa "$build/bench/train_throughput" --dtype bf16
case_ "flag: bench/compare --dtypes bf16 without bf16 kernels" 2 "--dtypes f32 works on every CPU" -- noisa "$src/../bench/compare" --build "$build" --dtypes f32,bf16
if [ "$("$build/bench/train_throughput" --cpu-info | grep -c '"bf16":true')" -eq 1 ]; then
  "$T" --precision bf16 --synthetic-count 80 --epochs 1 --size 32x32 --report-images 0 --stop-after 1 --out "$work/bf16run" > "$work/bf16run.log" 2>&1 ||
    { echo "FAIL: tiny bf16 run"; cat "$work/bf16run.log"; fail=1; }
  cp "$work/bf16run/last.safetensors" "$work/bf16run.keep"
  case_ "checkpoint: resume a bf16 run without bf16 kernels" 2 "a --precision bf16 run" -- noisa "$T" --resume "$work/bf16run/last.safetensors"
  cmp -s "$work/bf16run/last.safetensors" "$work/bf16run.keep" || { echo "FAIL: the rejected resume changed the checkpoint"; fail=1; }
else
  echo "note: this CPU has no bf16 kernels, so no bf16 checkpoint to resume without them"
fi
case_ "flag: --model resnet50" 2 "unknown model 'resnet50'" -- "$T" --model resnet50 --synthetic-count 80 --out "$work/r50"
case_ "flag: --bogus" 2 "unknown flag --bogus" -- "$T" --bogus
case_ "flag: --gamma with --schedule cosine (ignored)" 2 "flag --gamma applies only with --schedule step or multistep" -- "$T" --gamma 0.5
case_ "flag: --images without --data (ignored)" 2 "flag --images applies only with --data" -- "$T" --images imgs
case_ "flag: --resume with --lr (ignored)" 2 "flag --lr cannot be given with --resume" -- "$T" --resume "$ck" --lr 0.1
case_ "flag: --resume with --recipe (ignored)" 2 "flag --recipe cannot be given with --resume" -- "$T" --resume "$ck" --recipe reference
case_ "flag: evaluate --ground-truth with --images (ignored)" 2 "flag --images does not apply with --ground-truth" -- "$E" --checkpoint "$ck" --data "$work/ds/imgs" --ground-truth "$work/gt.csv" --images imgs
case_ "flag: predict --heatmap-method without --heatmap (ignored)" 2 "flag --heatmap-method applies only with --heatmap" -- "$P" --checkpoint "$ck" --heatmap-method attention "$keep"
case_ "flag: predict --top with --json (ignored)" 2 "flag --top does not apply with --json" -- "$P" --checkpoint "$ck" --json --top 2 "$keep"
case_ "flag: --lr without a value" 2 "flag --lr" -- "$T" --lr
case_ "flag: evaluate --split test of a run without a test set" 2 "was trained without a held-out test set (train --test-fraction)" -- "$E" --checkpoint "$ck" --data "$work/ds" --images imgs --split test
case_ "flag: --test-seed without --test-fraction (ignored)" 2 "flag --test-seed applies only with --test-fraction" -- "$T" --test-seed 3
case_ "flag: --test-fraction 0.6" 2 "flag --test-fraction" -- "$T" --test-fraction 0.6
case_ "flag: evaluate --batch 0" 2 "flag --batch" -- "$E" --checkpoint "$ck" --data "$work/ds" --images imgs --batch 0
case_ "flag: predict --top 0" 2 "flag --top" -- "$P" --checkpoint "$ck" --top 0 "$keep"

# ---- run folders, resuming, outputs ---------------------------------------------------------------
run=$work/run
cp "$run/metrics.jsonl" "$work/metrics.keep"
case_ "train: --out of a finished run" 2 "already holds a run; continue it with --resume" -- "$T" --synthetic-count 80 --epochs 1 --size 32x32 --report-images 0 --out "$run"
cmp -s "$run/metrics.jsonl" "$work/metrics.keep" || { echo "FAIL: a refused --out changed the run's metrics.jsonl"; fail=1; }
mkdir -p "$work/handed" && cp "$run/model.safetensors" "$work/handed/" && cp "$run/model.safetensors" "$work/handed.keep"
case_ "train: --out of a folder holding a model.safetensors" 2 "already holds a finished run or a model (model.safetensors)" -- "$T" --synthetic-count 80 --epochs 1 --size 32x32 --report-images 0 --out "$work/handed"
cmp -s "$work/handed/model.safetensors" "$work/handed.keep" || { echo "FAIL: a refused --out changed model.safetensors"; fail=1; }
# Bad data stops a new run before its folder exists (no empty run folder left behind).
mkdir -p "$work/nometa"
case_ "train: --data without a metadata CSV" 2 "HAM10000_metadata.csv" -- "$T" --data "$work/nometa" --epochs 1 --size 32x32 --out "$work/nometa-run"
[ ! -e "$work/nometa-run" ] || { echo "FAIL: train on bad data left its run folder behind"; fail=1; }
case_ "train: --resume from best.safetensors" 2 "holds no optimiser state" -- "$T" --resume "$run/best.safetensors"
case_ "train: --resume from model.safetensors" 2 "holds no optimiser state" -- "$T" --resume "$run/model.safetensors"
mkdir -p "$work/lonely" && cp "$run/last.safetensors" "$work/lonely/"
case_ "train: --resume of a last.safetensors copied alone" 2 "is not beside $work/lonely/last.safetensors" -- "$T" --resume "$work/lonely/last.safetensors"
# A run killed while saving its first epoch leaves metrics.jsonl without last.safetensors: started again.
mkdir -p "$work/half" && echo '{"epoch":1}' > "$work/half/metrics.jsonl"
case_ "train: --out of a run killed in its first save (accepted)" 0 "checkpoint:" -- "$T" --synthetic-count 80 --epochs 1 --size 32x32 --report-images 0 --out "$work/half"
[ "$(grep -c epoch "$work/half/metrics.jsonl")" -eq 1 ] && ! grep -q '^{"epoch":1}$' "$work/half/metrics.jsonl" ||
  { echo "FAIL: the restarted run kept the killed run's metrics.jsonl line"; fail=1; }
cp -r "$run" "$work/moved"
cp "$run/result.json" "$work/result.keep"
case_ "train: --resume of a copied run folder writes there (accepted)" 0 "writing to $work/moved" -- "$T" --resume "$work/moved/last.safetensors"
cmp -s "$run/result.json" "$work/result.keep" || { echo "FAIL: resuming a copy rewrote the original run's result.json"; fail=1; }
[ "$work/moved/result.json" -nt "$work/result.keep" ] || { echo "FAIL: resuming a copy did not write the copy's result.json"; fail=1; }
# A run on its own copy of the synthetic images, stopped after one epoch, then its metadata's rows
# reversed: the same settings split other images, which resuming and evaluate --split must refuse.
cp -r "$syn" "$work/syn"
"$T" --data "$work/syn" --epochs 2 --stop-after 1 --size 32x32 --report-images 0 --out "$work/synrun" > "$work/synrun.log" 2>&1 ||
  { echo "FAIL: tiny run on a copied dataset"; cat "$work/synrun.log"; fail=1; }
m=$work/syn/HAM10000_metadata.csv
cp "$m" "$work/meta.keep"
{ head -1 "$work/meta.keep"; tail -n +2 "$work/meta.keep" | tac; } > "$m"
case_ "train: --resume after the metadata's rows were reordered" 2 "split into other" -- "$T" --resume "$work/synrun/last.safetensors"
case_ "evaluate: --split val after the metadata's rows were reordered" 2 "is not the run's" -- "$E" --checkpoint "$work/synrun/best.safetensors" --data "$work/syn" --split val
# Checkpoints of older versions record no split: they are checked against the run's split.csv.
old_style='del h["__metadata__"]["split"]; del h["__metadata__"]["resumable"]'
ck=$work/synrun/best.safetensors craft "$work/synrun/old-best.safetensors" "$old_style"
ck=$work/synrun/last.safetensors craft "$work/synrun/old-last.safetensors" "$old_style"
case_ "evaluate: --split val of an older checkpoint, reordered" 2 "according to $work/synrun/split.csv" -- "$E" --checkpoint "$work/synrun/old-best.safetensors" --data "$work/syn" --split val
case_ "train: --resume of an older checkpoint, reordered" 2 "in $work/synrun/split.csv" -- "$T" --resume "$work/synrun/old-last.safetensors"
rm "$work/synrun/old-best.safetensors" "$work/synrun/old-last.safetensors"
rm "$work/synrun/split.csv"  # the checkpoint's own record suffices
case_ "evaluate: --split val, reordered, without split.csv" 2 "is not the run's" -- "$E" --checkpoint "$work/synrun/best.safetensors" --data "$work/syn" --split val
mv "$work/syn" "$work/syn-moved"
case_ "train: --resume after the run's data moved" 2 "the run's data folder $work/syn does not exist here" -- "$T" --resume "$work/synrun/last.safetensors"
case_ "train: --resume --data with the moved data, rows reordered" 2 "split into other" -- "$T" --resume "$work/synrun/last.safetensors" --data "$work/syn-moved"
cp "$work/meta.keep" "$work/syn-moved/HAM10000_metadata.csv"
case_ "train: --resume --data with where the data is now (accepted)" 0 "epoch 2" -- "$T" --resume "$work/synrun/last.safetensors" --data "$work/syn-moved"
mv "$work/syn-moved" "$work/syn"
case_ "evaluate: --split val on the run's data (accepted)" 0 '"split":"val"' -- "$E" --checkpoint "$work/synrun/best.safetensors" --data "$work/syn" --split val
craft "$work/nan.safetensors" 'd = bytearray(d); d[0:4] = struct.pack("<f", float("nan")); d = bytes(d)'
case_ "checkpoint: a NaN weight" 2 "holds a non-finite value" -- "$P" --checkpoint "$work/nan.safetensors" "$keep"
case_ "checkpoint: a folder" 2 "is a folder, not a checkpoint file" -- "$E" --checkpoint "$run" --data "$work/ds" --images imgs
case_ "evaluate: --out and --predictions one file by two names" 2 "name the same file" -- "$E" --checkpoint "$ck" --data "$work/ds" --images imgs --out "$work/./same.csv" --predictions "$work/same.csv"
case_ "predict: a folder as the image" 2 "is a folder, not an image file" -- "$P" --checkpoint "$ck" "$work/ds/imgs"
mkdir -p "$work/other" && cp "$keep" "$work/other/"
case_ "predict: two heatmaps on one file" 2 "would both write" -- "$P" --checkpoint "$ck" --heatmap "$work/hm" "$keep" "$work/other/victim.jpg"
[ -z "$(ls -A "$work/hm" 2>/dev/null)" ] || { echo "FAIL: a refused predict wrote heatmaps"; fail=1; }
R=$build/tools/repeat
case_ "repeat: a seed listed twice" 2 "0 is listed twice" -- "$R" --seeds 0,0 --out "$work/rep" -- --synthetic-count 80 --epochs 1
[ ! -e "$work/rep" ] || { echo "FAIL: a refused repeat created $work/rep"; fail=1; }
case_ "repeat: --summarize of one run twice" 2 "are the same run folder" -- "$R" --summarize "$run" "$work/./run"

# ---- ONNX export ---------------------------------------------------------------------------------
X=$build/tools/export
if [ -x "$X" ]; then
  case_ "export: no --checkpoint" 2 "flag --checkpoint is required" -- "$X" --onnx "$work/x.onnx"
  case_ "export: no --onnx" 2 "flag --onnx is required" -- "$X" --checkpoint "$ck"
  case_ "export: missing checkpoint file" 2 "nothere.safetensors" -- "$X" --checkpoint "$work/nothere.safetensors" --onnx "$work/x.onnx"
  case_ "export: truncated checkpoint" 2 "truncated" -- "$X" --checkpoint "$work/truncated.safetensors" --onnx "$work/x.onnx"
  case_ "export: a PyTorch safetensors file, not dermis" 2 "not a dermis checkpoint" -- "$X" --checkpoint "$src/golden/cbam_torch.safetensors" --onnx "$work/x.onnx"
  case_ "export: weights of another model" 2 "do not fit" -- "$X" --checkpoint "$work/othermodel.safetensors" --onnx "$work/x.onnx"
  case_ "export: two checkpoints (an ensemble)" 2 "export takes one checkpoint" -- "$X" --checkpoint "$ck,$ck" --onnx "$work/x.onnx"
  case_ "export: --prior nonsense" 2 "flag --prior: expected auto, none, train or uniform" -- "$X" --checkpoint "$ck" --onnx "$work/x.onnx" --prior sometimes
  case_ "export: output folder missing" 2 "nofolder" -- "$X" --checkpoint "$ck" --onnx "$work/nofolder/x.onnx"
  case_ "export: --onnx a folder" 2 "is a folder; give a file name" -- "$X" --checkpoint "$ck" --onnx "$work"
  cp "$ck" "$work/ck.keep"
  case_ "export: --onnx naming the checkpoint" 2 "is the checkpoint itself" -- "$X" --checkpoint "$ck" --onnx "$work/run/../run/best.safetensors"
  cmp -s "$ck" "$work/ck.keep" || { echo "FAIL: a refused export changed the checkpoint"; fail=1; }
  [ -e "$work/x.onnx" ] && { echo "FAIL: a failed export left $work/x.onnx"; fail=1; }
  printf 'keep' > "$work/keep.onnx"
  case_ "export: a damaged checkpoint over an existing file" 2 "truncated" -- "$X" --checkpoint "$work/truncated.safetensors" --onnx "$work/keep.onnx"
  [ "$(cat "$work/keep.onnx")" = keep ] || { echo "FAIL: a failed export changed the existing output file"; fail=1; }
fi

echo
cat "$table"
exit $fail
