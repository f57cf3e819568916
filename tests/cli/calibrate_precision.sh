#!/usr/bin/env bash
# calibrate_precision.sh HOKUSAI CONFIG WORKDIR
# `hokusai calibrate` with a 16-bit train.precision times its GEMM table in fp32 and in that
# precision (every shape in both), and `hokusai plan` of a run in that precision reads the
# measured table ("measured bf16 table") where an fp32 plan of the same file reads the fp32 one.
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
"$hk" plan "$config" --machine machine.yaml --set train.precision=bf16 > plan-bf16.txt
"$hk" plan "$config" --machine machine.yaml > plan-fp32.txt
grep -q "precision: bf16 products from the machine file's measured bf16 table" plan-bf16.txt ||
  { cat plan-bf16.txt; echo "calibrate_precision: FAIL: the bf16 plan does not read the bf16 table"; exit 1; }
if grep -q "^precision:" plan-fp32.txt; then
  cat plan-fp32.txt; echo "calibrate_precision: FAIL: the fp32 plan names a precision table"; exit 1
fi
echo "calibrate_precision: PASS"
