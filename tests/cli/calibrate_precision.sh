#!/usr/bin/env bash
# calibrate_precision.sh HOKUSAI CONFIG WORKDIR
# `hokusai calibrate` with a 16-bit train.precision times its GEMM table in fp32 and in that
# precision (every shape in both) and its attention in both, and `hokusai plan` of a run in that
# precision reads the measured table and attention points ("measured bf16 table", "measured bf16
# points") where an fp32 plan of the same file reads the fp32 ones.
set -euo pipefail
hk=$1; config=$2; work=$3
rm -rf "$work"; mkdir -p "$work"; cd "$work"
"$hk" calibrate "$config" --set train.precision=bf16 --threads 1 --tp 1 --seconds 0.02 -o machine.yaml > calibrate.log 2>&1 ||
  { cat calibrate.log; echo "calibrate_precision: FAIL: calibrate exited non-zero"; exit 1; }
all=$(grep -c '^  - {ops: ' machine.yaml || true)
bf16=$(grep -c '^  - {ops: .*, precision: bf16}$' machine.yaml || true)
echo "calibrate_precision: $all GEMM entries, $bf16 of them bf16"
if [ "$bf16" -lt 1 ] || [ "$all" -ne $((2 * bf16)) ]; then
  echo "calibrate_precision: FAIL: expected every shape in fp32 and bf16"; exit 1
fi
attn=$(grep -c '^  - {kind: ' machine.yaml || true)
attn16=$(grep -c '^  - {kind: .*, precision: bf16}$' machine.yaml || true)
echo "calibrate_precision: $attn attention entries, $attn16 of them bf16"
if [ "$attn16" -lt 1 ] || [ "$attn" -ne $((2 * attn16)) ]; then
  echo "calibrate_precision: FAIL: expected both attention kinds in fp32 and bf16"; exit 1
fi
"$hk" plan "$config" --machine machine.yaml --set train.precision=bf16 > plan-bf16.txt
"$hk" plan "$config" --machine machine.yaml > plan-fp32.txt
grep -q "precision: bf16 products from the machine file's measured bf16 table; attention from its measured bf16 points" plan-bf16.txt ||
  { cat plan-bf16.txt; echo "calibrate_precision: FAIL: the bf16 plan does not read the bf16 table"; exit 1; }
if grep -q "^precision:" plan-fp32.txt; then
  cat plan-fp32.txt; echo "calibrate_precision: FAIL: the fp32 plan names a precision table"; exit 1
fi
echo "calibrate_precision: PASS"
