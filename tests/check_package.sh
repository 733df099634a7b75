#!/usr/bin/env bash
# dermis as a package for other projects: examples/mobilenet_cbam (a model of its own, registered,
# and dermis's tools around it) is built as an outside project
#   1. against an installed dermis: `meson install --destdir` of this build into a scratch root,
#      found through its dermis.pc by pkg-config;
#   2. with dermis as a Meson subproject (subprojects/dermis -> this source tree), unless
#      DERMIS_PACKAGE_SKIP_SUBPROJECT=1 (it compiles the libraries once more);
# and the installed one trains (checkpoints, report, --resume), evaluates and predicts.
# Usage: check_package.sh SOURCE_DIR BUILD_DIR WORKDIR
set -uo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
work=$3
rm -rf "$work" && mkdir -p "$work"
work=$(cd "$work" && pwd)
fail=0
source "$src/tests/expect.sh"
step() { echo "== $*"; }
die() { echo "FAIL: $*"; exit 1; }

step "install into $work/root"
DESTDIR= meson install -C "$build" --no-rebuild --destdir "$work/root" > "$work/install.log" 2>&1 ||
  { cat "$work/install.log"; die "meson install"; }
pc=$(find "$work/root" -name dermis.pc | head -1)
[ -n "$pc" ] || die "no dermis.pc installed"
libdir=$(dirname "$(dirname "$pc")")
# Every header of the source tree's libraries is installed under the one include root.
inc=$(find "$work/root" -type d -path '*/include/dermis' | head -1)
[ -n "$inc" ] || die "no include/dermis installed"
missing=0
for d in framework models datasets tools/experiment; do
  while read -r h; do
    [ -f "$inc/$d/$h" ] || { echo "FAIL: header $d/$h not installed"; missing=1; }
  done < <(cd "$src/$d" && find . -name '*.h' | sed 's|^\./||')
done
[ $missing -eq 0 ] && echo "ok: all headers installed under $inc" || fail=1

step "build examples/mobilenet_cbam against the installed dermis (pkg-config)"
export PKG_CONFIG_PATH="$(dirname "$pc")" PKG_CONFIG_SYSROOT_DIR="$work/root"
echo "pkg-config --cflags --libs dermis: $(pkg-config --cflags --libs dermis)"
meson setup "$work/installed" "$src/examples/mobilenet_cbam" > "$work/setup.log" 2>&1 ||
  { cat "$work/setup.log"; die "meson setup against the installed dermis"; }
grep -q "Run-time dependency dermis found: YES" "$work/setup.log" || { cat "$work/setup.log"; die "dermis not found by pkg-config"; }
ninja -C "$work/installed" > "$work/build.log" 2>&1 || { cat "$work/build.log"; die "building the example"; }
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
ex=$work/installed/mobilenet_cbam
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# It runs on the installed libraries, not on the build tree's.
# (ldd's output to a file first: with pipefail, grep -q leaving early can fail the pipeline by SIGPIPE)
ldd "$ex" > "$work/ldd.txt"
grep -q "$libdir/libdermis_experiment" "$work/ldd.txt" || { cat "$work/ldd.txt"; die "the example does not load the installed libraries"; }

step "the registered model through dermis's tools"
expect 0 "mobilenet_cbam" -- "$ex" train --help
expect 2 "unknown model 'nosuch'; choose one of resnet18_cbam, resnet34_cbam, resnet18, cbam_small, mobilenet_cbam" -- \
  "$ex" train --model nosuch --synthetic-count 100 --out "$work/nosuch"
run=$work/run
expect 0 "epoch 1" -- "$ex" train --model mobilenet_cbam --synthetic-count 210 --size 48x64 --epochs 3 --stop-after 2 \
  --batch 16 --report-images 2 --out "$run"
expect 0 "epoch 3" -- "$ex" train --resume "$run/last.safetensors"
for f in best.safetensors last.safetensors report.html metrics.jsonl split.csv val_predictions.csv; do
  [ -s "$run/$f" ] && echo "ok: $run/$f" || { echo "FAIL: the run wrote no $f"; fail=1; }
done
[ "$(wc -l < "$run/metrics.jsonl")" -eq 3 ] && echo "ok: 3 epochs in metrics.jsonl" ||
  { echo "FAIL: metrics.jsonl has $(wc -l < "$run/metrics.jsonl") lines, want 3"; fail=1; }
data=$(find "$work" -maxdepth 1 -type d -name 'synthetic-ham10000*' | head -1)
[ -n "$data" ] || die "no synthetic dataset beside the example's build"
expect 0 '"balanced_accuracy"' -- "$ex" evaluate --checkpoint "$run/best.safetensors" --data "$data" --split val
img=$(find "$data" -name '*.jpg' | head -1)
expect 0 "%" -- "$ex" predict --checkpoint "$run/best.safetensors" --heatmap "$work/heat" --heatmap-method attention "$img"
[ -s "$work/heat/$(basename "$img" .jpg)_heatmap.jpg" ] && echo "ok: attention heatmap written" ||
  { echo "FAIL: no heatmap"; fail=1; }
# A model of one's own exports to ONNX through the same program (where dermis has ONNX support).
if [ -x "$build/tools/export" ]; then
  expect 0 "passes the ONNX checker" -- "$ex" export --checkpoint "$run/best.safetensors" --onnx "$work/mobilenet_cbam.onnx"
  [ -s "$work/mobilenet_cbam.onnx" ] && echo "ok: mobilenet_cbam.onnx written" || { echo "FAIL: no ONNX file"; fail=1; }
fi
expect 2 "no command given" -- "$ex"
unset LD_LIBRARY_PATH

if [ "${DERMIS_PACKAGE_SKIP_SUBPROJECT:-0}" != 1 ]; then
  step "build examples/mobilenet_cbam with dermis as a subproject"
  proj=$work/subproject
  mkdir -p "$proj/subprojects"
  cp "$src/examples/mobilenet_cbam/meson.build" "$src/examples/mobilenet_cbam/main.cpp" "$proj/"
  ln -s "$src" "$proj/subprojects/dermis"
  meson setup "$work/sub-build" "$proj" --force-fallback-for=dermis -Ddermis:mpi=disabled > "$work/sub-setup.log" 2>&1 ||
    { cat "$work/sub-setup.log"; die "meson setup with the subproject"; }
  ninja -C "$work/sub-build" > "$work/sub-build.log" 2>&1 || { tail -40 "$work/sub-build.log"; die "building with the subproject"; }
  expect 0 "epoch 1" -- "$work/sub-build/mobilenet_cbam" train --model mobilenet_cbam --synthetic-count 100 \
    --size 32x32 --epochs 1 --batch 16 --report-images 0 --out "$work/sub-run"
fi
exit $fail
