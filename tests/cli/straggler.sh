#!/usr/bin/env bash
# straggler.sh HOKUSAI CONFIG WORKDIR
# The straggler report: one rank of a job made slow (--inject-slow-rank R:MS sleeps MS ms in every
# step's compute, as a throttled node would) must be named by rank 0 — its grid coordinates, its
# factor over its pipeline stage's median and its time by phase — and listed in metrics.jsonl,
# in a dp=2 job and in a tp=2 x pp=2 job; a healthy job must name nobody.
set -euo pipefail
hokusai=$1; config=$2; work=$3
fail() { echo "straggler.sh: $*" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
common=(--set train.steps=12 --set logging.interval=2 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set model.layers=2 --set model.hidden=64 --set model.heads=4 --set train.seq_len=32 --set model.max_seq_len=32
        --set train.micro_batch=2 --set kernels.peak_gflops=100 --set comm.straggler_steps=4
        --set data.cache_dir="$work/cache")
run() {  # run NAME RANKS ARGS...
  local name=$1 ranks=$2; shift 2
  mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" \
    --set logging.run_dir="$work/$name" "$@" > "$work/$name.log" 2>&1 || fail "$name: the run failed: $(tail -3 "$work/$name.log")"
}
run dp2 2 --set parallel.dp=2 --set train.global_batch=4 --inject-slow-rank 1:300
grep -q "straggler: rank 1 (tp 0, pp 0, dp 1) works .* ms per step, .*x the median .* of pipeline stage 0, for the last 4 steps; its ms per step: compute" \
  "$work/dp2.log" || fail "dp2: rank 1 not named: $(grep -i straggler "$work/dp2.log")"
grep -q '"stragglers":\[1\]' "$work/dp2/metrics.jsonl" || fail "dp2: metrics.jsonl does not list rank 1"
! grep -q "straggler: rank 0" "$work/dp2.log" || fail "dp2: the healthy rank 0 was named"

run tp2pp2 4 --set parallel.tp=2 --set parallel.pp=2 --set train.global_batch=2 --inject-slow-rank 3:300
line=$(grep -m1 "straggler: rank 3 " "$work/tp2pp2.log") || fail "tp2pp2: rank 3 not named: $(grep -i straggler "$work/tp2pp2.log")"
[ "$(grep -c "straggler: rank [012] " "$work/tp2pp2.log")" = 0 ] || fail "tp2pp2: a healthy rank was named"

run healthy 2 --set parallel.dp=2 --set train.global_batch=4 --set comm.straggler_factor=3
! grep -q "straggler:" "$work/healthy.log" || fail "healthy: $(grep straggler: "$work/healthy.log")"
! grep -q '"stragglers"' "$work/healthy/metrics.jsonl" || fail "healthy: metrics.jsonl lists stragglers"
echo "ok: dp2 names rank 1; tp2pp2 names rank 3 (${line#*straggler: }); a healthy job names nobody"
