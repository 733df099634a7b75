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
for t in train evaluate predict make_synthetic repeat compare_predictions; do expect 0 "usage:" -- "$build/tools/$t" --help; done
[ -x "$build/tools/export" ] && expect 0 "usage:" -- "$build/tools/export" --help
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
expect 0 "$img:  " -- $P --checkpoint "$ck" "$img"
# One line per image: the path, then the three most likely classes with their probabilities.
grep -qE "^$img:  (akiec|bcc|bkl|df|mel|nv|vasc) [0-9.]+%  [a-z]+ [0-9.]+%  [a-z]+ [0-9.]+%$" "$work/out" ||
  { echo "FAIL: predict's line for $img is not 'PATH:  class P%  class P%  class P%':"; cat "$work/out"; fail=1; }
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
# evaluate --predictions: one CSV row per scored image, labelled as the metadata says, whose rows give
# evaluate's own confusion matrix and loss; a bad output path stops before the work.
expect 2 "flag --predictions: the folder $work/nodir does not exist" -- $E --checkpoint "$work/flatrun/best.safetensors" \
  --data "$work/flat" --predictions "$work/nodir/p.csv"
$E --checkpoint "$work/flatrun/best.safetensors" --data "$work/flat" --split val --prior train \
  --predictions "$work/pred.csv" --out "$work/pred.json" > /dev/null 2>&1 || { echo "FAIL: evaluate --predictions"; fail=1; }
preds=$(/usr/bin/env python3 -c "
import csv, json, math, sys
rows = list(csv.DictReader(open(sys.argv[1])))
ev = json.load(open(sys.argv[2]))
dx = {r['image_id']: r['dx'] for r in csv.DictReader(open(sys.argv[3]))}
cls = ev['classes']
p = lambda r, c: float(r['p_' + c])
ids = [r['image_id'] for r in rows]
checks = {
  'one row per image': len(rows) == ev['images'] and len(set(ids)) == len(ids),
  'label = dx of image_id': all(dx[r['image_id']] == r['label'] for r in rows),
  'probabilities sum to 1': all(abs(sum(p(r, c) for c in cls) - 1) < 1e-4 for r in rows),
  'predicted is the argmax': all(r['predicted'] == max(cls, key=lambda c: p(r, c)) for r in rows),
  'confusion matrix': [[sum(r['label'] == a and r['predicted'] == b for r in rows) for b in cls] for a in cls]
                      == ev['confusion_matrix'],
  'loss from p_label': abs(-sum(math.log(max(p(r, r['label']), 1e-12)) for r in rows) / len(rows) - ev['loss'])
                       < 1e-3 * ev['loss'],
}
bad = [k for k, v in checks.items() if not v]
print('ok' if not bad else 'mismatch: ' + ', '.join(bad), len(rows), 'rows, loss', ev['loss'])" \
  "$work/pred.csv" "$work/pred.json" "$work/flat/HAM10000_metadata.csv" 2>&1)
expect 2 "name the same file" -- $E --checkpoint "$work/flatrun/best.safetensors" --data "$work/flat" \
  --out "$work/same" --predictions "$work/same"
expect 2 "is not a folder" -- $E --checkpoint "$work/flatrun/best.safetensors" --data "$work/flat" \
  --predictions "$work/pred.json/p.csv"
case "$preds" in
  ok*) echo "ok: evaluate --predictions rows give evaluate's figures: $preds" ;;
  *) echo "FAIL: evaluate --predictions: $preds"; fail=1 ;;
esac
# compare_predictions: a file against itself differs by nothing; against a copy with rows changed, by what a
# direct count of those rows gives; images missing on one side, given twice, or files that are
# not evaluate --predictions output are errors naming the file or image.
C=$build/tools/compare_predictions
expect 0 "balanced accuracy +0.0000  SE 0.0000" -- $C --a "$work/pred.csv" --b "$work/pred.csv"
cmp=$(/usr/bin/env python3 -c "
import csv, json, subprocess, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cls = [h[2:] for h in rows[0] if h.startswith('p_')]
b = [dict(r) for r in rows]
for i, r in enumerate(b[::3]):  # every third row: right -> wrong, wrong -> right
    r['predicted'] = cls[(cls.index(r['label']) + 1) % len(cls)] if r['predicted'] == r['label'] else r['label']
with open(sys.argv[2], 'w', newline='') as f:  # in another order: rows are matched by image_id
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader(); w.writerows(reversed(b))
def bal(rs):
    rec = [sum(r['predicted'] == c for r in rs if r['label'] == c) / n for c in cls for n in [sum(r['label'] == c for r in rs)] if n]
    return sum(rec) / len(rec)
subprocess.run([sys.argv[3], '--a', sys.argv[1], '--b', sys.argv[2], '--draws', '500', '--out', sys.argv[4]], check=True, capture_output=True)
o = json.load(open(sys.argv[4]))
oa = sum(x['predicted'] == x['label'] and y['predicted'] != y['label'] for x, y in zip(rows, b))
ob = sum(y['predicted'] == y['label'] and x['predicted'] != x['label'] for x, y in zip(rows, b))
d = o['balanced_accuracy']
ok = abs(d['difference'] - (bal(rows) - bal(b))) < 1e-9 and o['only_a_right'] == oa and o['only_b_right'] == ob
ok = ok and oa + ob > 0 and d['se'] > 0 and d['low_95'] <= d['difference'] <= d['high_95'] and o['images'] == len(rows)
print('ok' if ok else 'mismatch', d, bal(rows) - bal(b), oa, ob)" "$work/pred.csv" "$work/pred_b.csv" "$C" "$work/cmp.json" 2>&1)
case "$cmp" in
  ok*) echo "ok: compare_predictions' paired difference is the rows' own: $cmp" ;;
  *) echo "FAIL: compare_predictions: $cmp"; fail=1 ;;
esac
head -n -1 "$work/pred.csv" > "$work/pred_short.csv"
expect 2 "has no row in --a" -- $C --a "$work/pred_short.csv" --b "$work/pred.csv"
expect 2 "is also at" -- $C --a "$work/pred.csv,$work/pred.csv" --b "$work/pred.csv"
/usr/bin/env python3 -c "
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
L = rows[0].index('label')
rows[1][L] = next(r[L] for r in rows[2:] if r[L] != rows[1][L])  # another class's label
with open(sys.argv[2], 'w', newline='') as f: csv.writer(f).writerows(rows)" "$work/pred.csv" "$work/pred_relabel.csv"
expect 2 "$(sed -n 2p "$work/pred.csv" | cut -d, -f1): label" -- $C --a "$work/pred.csv" --b "$work/pred_relabel.csv"
expect 2 "HAM10000_metadata.csv:1: not a file of evaluate --predictions" -- $C --a "$work/flat/HAM10000_metadata.csv" --b "$work/pred.csv"
expect 2 "flag --draws" -- $C --a "$work/pred.csv" --b "$work/pred.csv" --draws 5
expect 2 "missing.csv" -- $C --a "$work/missing.csv" --b "$work/pred.csv"
# An --ema run's last.safetensors holds the main weights and the weight average; evaluate and predict
# use the average (what the run validated) unless --weights model, and evaluate --split val on it
# reproduces the run's last validation loss (the main weights give another).
$T --synthetic-count 80 --epochs 2 --size 32x32 --ema 0.9 --report-images 0 --out "$work/emarun" > "$work/ema.log" 2>&1 || { echo "FAIL: --ema run"; cat "$work/ema.log"; fail=1; }
val_loss() { grep -o '"loss":[-0-9.e]*' "$1" | tail -1 | cut -d: -f2; }
tail -1 "$work/emarun/metrics.jsonl" > "$work/last_epoch.json"
run_loss=$(val_loss "$work/last_epoch.json")
expect 0 '"weights":"ema"' -- $E --checkpoint "$work/emarun/last.safetensors" --data "$data" --split val
ema_loss=$(val_loss "$work/out")
expect 0 '"weights":"model"' -- $E --checkpoint "$work/emarun/last.safetensors" --data "$data" --split val --weights model
model_loss=$(val_loss "$work/out")
if ! awk -v r="$run_loss" -v e="$ema_loss" -v m="$model_loss" 'BEGIN { d = r - e; if (d < 0) d = -d; g = r - m; if (g < 0) g = -g; exit !(r != "" && d < 1e-5 && g > 1e-5) }'; then
  echo "FAIL: validation loss of the run's last epoch $run_loss, evaluate on the weight average $ema_loss (should match), on the main weights $model_loss (should differ)"
  fail=1
fi
expect 0 '"weights":"model"' -- $E --checkpoint "$work/emarun/best.safetensors" --data "$data" --split val
expect 2 "no weight average" -- $E --checkpoint "$work/emarun/best.safetensors" --data "$data" --weights ema
expect 2 "flag --weights" -- $E --checkpoint "$work/emarun/last.safetensors" --data "$data" --weights mean
expect 0 '"input_size":"40x48"' -- $E --checkpoint "$work/emarun/last.safetensors" --data "$data" --size 40x48
expect 2 "flag --size" -- $E --checkpoint "$work/emarun/last.safetensors" --data "$data" --size 20x20
expect 0 "%" -- $P --checkpoint "$work/emarun/last.safetensors" --weights ema "$img"
expect 2 "no weight average" -- $P --checkpoint "$ck" --weights ema "$img"
# repeat: two seeds of a tiny recipe with a held-out test set. Both tables print; the test set's
# figures of each run are what evaluate --split test computes for its handed-out checkpoint.
R=$build/tools/repeat
expect 0 "held-out test set" -- $R --seeds 0,1 --out "$work/rep" -- --synthetic-count 80 --epochs 3 --size 32x32 \
  --report-images 0 --test-fraction 0.25 --lr 0.02
expect 0 "mean +- sd over 2 runs" -- $R --summarize "$work/rep/seed-0" "$work/rep/seed-1"
rep_test=$(/usr/bin/env python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['test']; print(t['balanced_accuracy']['count'], t['balanced_accuracy']['mean'], t['accuracy']['mean'])" "$work/rep/summary.json" 2>&1)
ev=$(for s in 0 1; do $E --checkpoint "$work/rep/seed-$s/model.safetensors" --data "$data" --split test --prior none --decode fast | /usr/bin/env python3 -c "import json,sys; d=json.load(sys.stdin); print(d['balanced_accuracy'], d['accuracy'])"; done 2>/dev/null)
if ! awk -v r="$rep_test" -v e="$(echo $ev)" 'BEGIN { split(r, a, " "); split(e, b, " "); db = a[2] - (b[1] + b[3]) / 2; da = a[3] - (b[2] + b[4]) / 2;
      if (db < 0) db = -db; if (da < 0) da = -da; exit !(a[1] == 2 && db < 1e-6 && da < 1e-6) }'; then
  echo "FAIL: repeat's test means '$rep_test' (count, balanced accuracy, accuracy) are not those of evaluate --split test over the runs: $ev"
  fail=1
else
  echo "ok: repeat's test means $rep_test = those of evaluate --split test ($(echo $ev))"
fi
# The two seeds share the test set but not the validation split: an ensemble of both is scored on
# the test set, and refused on a validation split that is the first run's alone.
pair="$work/rep/seed-0/model.safetensors,$work/rep/seed-1/model.safetensors"
expect 0 '"split":"test"' -- $E --checkpoint "$pair" --data "$data" --split test
expect 2 "trained on different splits" -- $E --checkpoint "$pair" --data "$data" --split val
expect 2 "give either --seeds" -- $R --out "$work/rep2" -- --epochs 1
# repeat --folds: the pooled out-of-fold figure is the balanced accuracy of the folds' validation
# confusion matrices (evaluate --split val of each handed-out checkpoint) added up.
expect 0 "pooled over the 2 folds" -- $R --folds 2 --out "$work/cv" -- --synthetic-count 80 --epochs 2 --size 32x32 \
  --report-images 0 --lr 0.02
cp "$work/out" "$work/cv.out"
pooled=$(for k in 0 1; do $E --checkpoint "$work/cv/fold-$k/model.safetensors" --data "$data" --split val --prior none --decode fast; done 2>/dev/null |
  /usr/bin/env python3 -c "
import json, sys
cms = [json.loads(l)['confusion_matrix'] for l in sys.stdin if l.strip()]
s = [[sum(c[i][j] for c in cms) for j in range(len(cms[0]))] for i in range(len(cms[0]))]
r = [row[i] / sum(row) for i, row in enumerate(s) if sum(row)]
rep = json.load(open(sys.argv[1]))['pooled']
ok = len(cms) == 2 and abs(rep['balanced_accuracy'] - sum(r) / len(r)) < 1e-9 and rep['images'] == sum(map(sum, s))
print('ok' if ok else 'mismatch', rep, sum(r) / len(r), sum(map(sum, s)))" "$work/cv/summary.json" 2>&1)
case "$pooled" in
  ok*) echo "ok: repeat --folds 2 pooled figure = evaluate --split val of the folds added up: $pooled" ;;
  *) echo "FAIL: repeat --folds 2 pooled figure: $pooled"; fail=1 ;;
esac
# Each fold's val_predictions.csv is evaluate --predictions of its handed-out checkpoint (same
# images, same probabilities), and the pooled error over lesions is the cluster-robust formula of
# metrics.h computed here from those files (and compare_predictions' bootstrap of each side's own
# error agrees with it).
for k in 0 1; do
  $E --checkpoint "$work/cv/fold-$k/model.safetensors" --data "$data" --split val --prior none --decode fast \
    --predictions "$work/cv-ev-$k.csv" > /dev/null 2>&1 || { echo "FAIL: evaluate --predictions of fold $k"; fail=1; }
done
lesion_check=$(/usr/bin/env python3 -c "
import csv, json, math, subprocess, sys
w = sys.argv[1]
rows = []
for k in (0, 1):
    mine = list(csv.DictReader(open(f'{w}/cv/fold-{k}/val_predictions.csv')))
    ev = {r['image_id']: r for r in csv.DictReader(open(f'{w}/cv-ev-{k}.csv'))}
    assert len(mine) == len(ev) and len(mine) > 0, (k, len(mine), len(ev))
    for r in mine:
        e = ev[r['image_id']]
        assert (r['lesion_id'], r['label'], r['predicted']) == (e['lesion_id'], e['label'], e['predicted']), (r, e)
        assert all(abs(float(r[c]) - float(e[c])) < 1e-5 for c in r if c.startswith('p_')), (r, e)
    rows += mine
by = {}
for r in rows:
    g = by.setdefault(r['label'], {}).setdefault(r['lesion_id'], [0, 0])
    g[0] += 1; g[1] += r['label'] == r['predicted']
var = 0
for groups in by.values():
    n = sum(g[0] for g in groups.values()); c = sum(g[1] for g in groups.values()); r = c / n; m = len(groups)
    var += r * (1 - r) / n if m == 1 else m / (m - 1) * sum((g[1] - r * g[0]) ** 2 for g in groups.values()) / n ** 2
se = math.sqrt(var) / len(by)
rep = json.load(open(f'{w}/cv/summary.json'))['pooled']['balanced_accuracy_se_lesions']
# compare_predictions' bootstrap over the same lesions gives each side's own error near it.
files = f'{w}/cv/fold-0/val_predictions.csv,{w}/cv/fold-1/val_predictions.csv'
subprocess.run([sys.argv[2], '--a', files, '--b', files, '--out', f'{w}/cv-cmp.json'], check=True, capture_output=True)
boot = json.load(open(f'{w}/cv-cmp.json'))['a_balanced_accuracy_se']
ok = abs(rep - se) < 1e-9 and se > 0 and abs(boot - se) < 0.25 * se
# result.json's own error over lesions is evaluate's for the same checkpoint and images.
for k in (0, 1):
    ev = json.loads(subprocess.run([sys.argv[3], '--checkpoint', f'{w}/cv/fold-{k}/model.safetensors', '--data', sys.argv[4],
                                    '--split', 'val', '--prior', 'none', '--decode', 'fast'], check=True, capture_output=True, text=True).stdout)
    mine = json.load(open(f'{w}/cv/fold-{k}/result.json'))['val']['balanced_accuracy_se_lesions']
    ok = ok and abs(mine - ev['balanced_accuracy_se_lesions']) < 1e-9
print('ok' if ok else 'mismatch', rep, se, boot, len(rows))" "$work" "$C" "$E" "$data" 2>&1)
case "$lesion_check" in
  ok*) echo "ok: val_predictions.csv = evaluate --predictions per fold; pooled error over lesions: $lesion_check" ;;
  *) echo "FAIL: val_predictions.csv or the pooled error over lesions: $lesion_check"; fail=1 ;;
esac
grep -q "over the [0-9]* lesions" "$work/cv.out" || { echo "FAIL: repeat --folds printed no error over lesions"; fail=1; }
# A fold's file that is not its run's (a row gone; one image's decision changed) or no file: a
# warning naming it, and the pooled figure with the binomial error alone.
rm -rf "$work/cv-cut" && cp -r "$work/cv" "$work/cv-cut"
sed -i '$d' "$work/cv-cut/fold-1/val_predictions.csv"
expect 0 "fold-1/val_predictions.csv: its decisions are not those of the run's result.json" -- \
  $R --summarize "$work/cv-cut/fold-0" "$work/cv-cut/fold-1"
grep -q "no error over lesions (see the warning)" "$work/out" || { echo "FAIL: a foreign val_predictions.csv still gave an error over lesions"; fail=1; }
cp "$work/cv/fold-1/val_predictions.csv" "$work/cv-cut/fold-1/"
/usr/bin/env python3 -c "
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
p = [i for i, h in enumerate(rows[0]) if h.startswith('p_')]
top = max(p, key=lambda i: float(rows[1][i]))
rows[1][top] = '0'  # the first image's top class is no longer its argmax
csv.writer(open(sys.argv[1], 'w', newline='')).writerows(rows)" "$work/cv-cut/fold-1/val_predictions.csv"
expect 0 "its decisions are not those of the run's result.json" -- $R --summarize "$work/cv-cut/fold-0" "$work/cv-cut/fold-1"
rm "$work/cv-cut/fold-1/val_predictions.csv"
expect 0 "warning: no standard error over lesions: $work/cv-cut/fold-1 has no val_predictions.csv" -- \
  $R --summarize "$work/cv-cut/fold-0" "$work/cv-cut/fold-1"
grep -q "^pooled over the 2 folds" "$work/out" || { echo "FAIL: no pooled figure without a fold's val_predictions.csv"; fail=1; }
# repeat --summarize pools the folds when their validation sides split one set of images with each
# image once (checked in their split.csv files), and says why not otherwise: a fold missing or given
# twice, a fold of another fold seed, a fold trained on other images.
pooled_line=$(grep "^pooled over" "$work/cv.out")
[ -n "$pooled_line" ] || { echo "FAIL: repeat --folds 2 printed no 'pooled over' line"; fail=1; }
expect 0 "$pooled_line" -- $R --summarize "$work/cv/fold-1" "$work/cv/fold-0"
expect 0 "images are in no run's validation fold" -- $R --summarize "$work/cv/fold-0"
rm -rf "$work/cv/fold-0-copy" && cp -r "$work/cv/fold-0" "$work/cv/fold-0-copy"  # one fold in two folders
expect 0 "is validated by both" -- $R --summarize "$work/cv/fold-0" "$work/cv/fold-0-copy"
expect 2 "are the same run folder" -- $R --summarize "$work/cv/fold-0" "$work/cv/./fold-0"
for v in "1 80" "0 120"; do read -r fs n <<< "$v"
  $R --folds 2 --seed $fs --out "$work/cv-$fs-$n" -- --synthetic-count $n --epochs 1 --size 32x32 --report-images 0 \
    > "$work/cv-$fs-$n.log" 2>&1 || { echo "FAIL: repeat --folds 2 --seed $fs (--synthetic-count $n)"; cat "$work/cv-$fs-$n.log"; fail=1; }
done
expect 0 "not pooled over folds: " -- $R --summarize "$work/cv/fold-0" "$work/cv-1-80/fold-1"
expect 0 "trained on different images" -- $R --summarize "$work/cv/fold-0" "$work/cv-0-120/fold-1"
# Nothing half-written: no temporary files left in the run folder.
if compgen -G "$work/run/*.tmp.*" > /dev/null; then echo "FAIL: temporary files left behind"; fail=1; fi
exit $fail
