#!/usr/bin/env bash
# report_screenshot.sh HOKUSAI SOURCE_DIR WORKDIR
# Two short runs (configs/tiny.yaml: gpt2, configs/llama-tiny.yaml: llama), one `hokusai report`
# of both overlaid, rendered by headless Chromium; the screenshot (WORKDIR/report.png, kept for
# a look) must not be blank, and both runs' curves and the phase bars must be drawn across their
# charts (tests/cli/png_check.py). Skipped (77) when Chromium is not installed
# (scripts/install-deps.sh --chromium).
set -euo pipefail
hokusai=$1; src=$2; work=$3
fail() { echo "report_screenshot.sh: FAIL: $*" >&2; exit 1; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "report_screenshot.sh: SKIP: chromium not installed (scripts/install-deps.sh --chromium)"; exit 77; }
rm -rf "$work"; mkdir -p "$work"
common=(--set train.steps=60 --set logging.interval=5 --set logging.eval_interval=20 --set logging.eval_batches=2
        --set data.cache_dir="$work/cache")
for run in tiny llama-tiny; do
  "$hokusai" train "$src/configs/$run.yaml" "${common[@]}" --set logging.run_dir="$work/$run" > "$work/$run.log" 2>&1 ||
    fail "training $run failed: $(tail -3 "$work/$run.log")"
done
"$hokusai" report "$work/tiny" "$work/llama-tiny" -o "$work/report.html" || fail "hokusai report failed"
grep -q "<script" "$work/report.html" && fail "the report contains a script"
grep -q "http://\|https://" <(grep -v 'xmlns="http://www.w3.org/2000/svg"' "$work/report.html") && fail "the report refers to the network"
# Chromium: no sandbox (the suite runs as root in CI), its own profile, bounded.
timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/profile" \
  --window-size=1280,1500 --screenshot="$work/report.png" "file://$work/report.html" > "$work/chromium.log" 2>&1 ||
  fail "chromium failed: $(tail -3 "$work/chromium.log")"
[ -s "$work/report.png" ] || fail "no screenshot written: $(tail -3 "$work/chromium.log")"
# Run 1's and run 2's line colours (src/app/report.cpp), which only the curves and two 14x10
# swatches per run use (280 pixels at the left): >= 800 pixels spanning >= 900 columns means curves across the charts of
# both columns (each plot box is 524 px wide); the compute and optimizer colours of the bars.
python3 "$src/tests/cli/png_check.py" "$work/report.png" "#1f77b4:800:900" "#d62728:800:900" "#4c78a8:2000" "#b279a2:50" ||
  fail "the screenshot $work/report.png does not show the report (see above)"
echo "report_screenshot.sh: PASS ($work/report.png)"
