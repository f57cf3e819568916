#!/usr/bin/env bash
# plan_validation.sh BUILD_DIR WORKDIR
# The planner against measured runs on this machine: `hokusai calibrate` measures the machine file
# for a 4-layer gpt2-124m (GEMMs at its shapes, ops, MPI between 2 ranks), then
# scripts/bench-layouts.sh trains every layout that does not oversubscribe the cores (serial, tp2,
# tp2 with sequence parallelism, pp2, interleaved pp2, dp2, dp2 with ZeRO-1; 5 steps each, one
# thread per rank) and compares each with `hokusai plan` for the same settings. Fails when a layout's predicted step time is off by
# more than 20% or its predicted peak memory (rank 0) by more than 10% of the measured peak RSS —
# wider than the planner's goal (10% and 5%) because this machine is shared and noisy.
# A layout outside the bounds is checked again against a fresh calibration and a fresh run, up to
# twice (this machine's speed drifts by 10-20% over minutes, so a calibration minutes old can be
# off for every later run; one CI run on 2026-12-03 measured a core at 1.84x its time alone in
# its first calibration and 1.01x in the next) and fails the test only when it misses all three
# times: a wrong model misses every time.
# Layouts with more ranks than cores are left out: their ranks time-share the cores, which the
# planner bounds but does not model in detail (docs/performance.md lists their errors).
# dp2 with ZeRO-1 is back since 2026-12-03 (second Zen 5 session): it had measured 29-36% slower
# than planned, and the cause was not the model but a fresh zero-filled receive buffer per
# bucket per step (memset and first-touch faults: ~10% of a dp rank's step, and the overlap
# delayed); the ring's buffers are now kept between steps (comm/nonblocking.hpp).
# The calibration covers 1 and 2 threads: two ranks on the node's two cores share the bandwidth
# two threads reach, which the planner takes from the 2-thread point — without one it had the
# two share one thread's bandwidth, and the head's stage (the logits' elementwise passes and the
# cross-entropy) of pp2 came out 13-18% slow. The 2-thread serial row (scripts/bench-layouts.sh
# serial_2threads) is left to manual runs to keep CI short (docs/performance.md has its figures).
# About 5 minutes on 2 cores.
set -euo pipefail
build=$1; work=$2
cd "$(dirname "$0")/../.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
rm -rf "$work"; mkdir -p "$work"
sets="--set model.layers=4"
calibrate() {
  mpirun --bind-to none -np 2 -x OMP_NUM_THREADS=1 "$build/hokusai" calibrate configs/gpt2-124m.yaml $sets \
    --set train.micro_batch=2 --threads 1,2 --tp 1,2 --micro-batches 2 --seconds 0.3 --name ctest -o "$1"
}
calibrate "$work/machine.yaml"
layouts=(serial tp2 tp2s pp2 pp2v2 dp2 dp2z)
if MODEL=configs/gpt2-124m.yaml SETS="$sets" WORK="$work/runs" \
  scripts/bench-layouts.sh "$build" --plan "$work/machine.yaml" --check 20,10 "${layouts[@]}" | tee "$work/first.txt"; then
  exit 0
fi
# Up to two more attempts, each with a fresh calibration, for the layouts the last one missed.
prev="$work/first.txt"
for attempt in 2 3; do
  again=$(sed -n 's/^plan check FAILED: \([a-z0-9_]*\):.*/\1/p' "$prev" | sort -u | tr '\n' ' ')
  [ -n "$again" ] || { echo "plan_validation: FAIL (see above)"; exit 1; }
  echo "plan_validation: attempt $attempt, calibrating and measuring again: $again"
  calibrate "$work/machine-$attempt.yaml"
  if MODEL=configs/gpt2-124m.yaml SETS="$sets" WORK="$work/attempt-$attempt" \
    scripts/bench-layouts.sh "$build" --plan "$work/machine-$attempt.yaml" --check 20,10 $again |
    tee "$work/attempt-$attempt.txt"; then
    exit 0
  fi
  prev="$work/attempt-$attempt.txt"
done
echo "plan_validation: FAIL: missed in three calibrations and runs"
exit 1
