#!/usr/bin/env bash
# Renders a report.html in headless Chromium and checks that a non-trivial screenshot comes out.
# Usage: check_report.sh TRAIN_BINARY WORKDIR     (exit 77 = skipped when Chromium is not installed)
set -euo pipefail
train=$1
work=$2
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "chromium not installed (apt-get install chromium): report rendering check skipped"
  exit 77
fi
rm -rf "$work" && mkdir -p "$work"
"$train" --synthetic-count 300 --epochs 2 --size 48x64 --report-images 8 --out "$work/run" > "$work/train.log"
test -s "$work/run/report.html"
grep -q "<svg" "$work/run/report.html"
grep -q "data:image/jpeg;base64," "$work/run/report.html"
if grep -Eq "(src|href)=['\"]https?:" "$work/run/report.html"; then
  echo "report.html refers to the network"; exit 1
fi
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync --user-data-dir="$work/profile" \
  --window-size=1100,2400 --screenshot="$work/report.png" "file://$work/run/report.html" > "$work/chromium.log" 2>&1
size=$(stat -c %s "$work/report.png")
# A blank 1100x2400 page compresses to a few KB; the charts and image grid make it far larger.
if [ "$size" -lt 100000 ]; then
  echo "screenshot is only $size bytes: the report did not render"; exit 1
fi
echo "report rendered: $work/report.png ($size bytes)"
