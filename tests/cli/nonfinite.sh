#!/usr/bin/env bash
# nonfinite.sh HOKUSAI CONFIG WORKDIR RANKS
# A non-finite gradient (rank 0's, injected after step 3's backward, as an overflow would be):
#  - without train.skip_nonfinite the run stops at step 3 with one line naming the step and rank;
#  - with train.skip_nonfinite=2 every rank skips step 3 (no update), the skip is counted in
#    metrics.jsonl (skipped_steps, grad_norm null) and training goes on to a finite final loss.
# RANKS > 1 runs data parallelism under mpirun (the ranks must agree: only rank 0's norm is NaN).
set -euo pipefail
hokusai=$1; config=$2; work=$3; ranks=$4
launch=()
[ "$ranks" -gt 1 ] && launch=(mpirun --allow-run-as-root --oversubscribe -q -np "$ranks" -x OMP_NUM_THREADS=1)
rm -rf "$work"; mkdir -p "$work"
common=(--set train.steps=6 --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set model.layers=2 --set model.hidden=64 --set model.heads=4 --set train.seq_len=32 --set model.max_seq_len=32
        --set train.micro_batch=2 --set train.global_batch=$((2 * ranks)) --set parallel.dp="$ranks"
        --set kernels.peak_gflops=100 --set data.cache_dir="$work/cache" --inject-nonfinite-step 3)
fail() { echo "nonfinite.sh: $*" >&2; exit 1; }

set +e
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/stop" > "$work/stop.out" 2> "$work/stop.err"
code=$?
set -e
[ "$code" -ne 0 ] || fail "without train.skip_nonfinite the run must stop (exit 0)"
grep -q "step 3: gradient norm is not finite (first on rank 0)" "$work/stop.err" ||
  fail "no one-line error naming step 3 and rank 0: $(cat "$work/stop.err")"

"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set train.skip_nonfinite=2 \
  --set logging.run_dir="$work/skip" > "$work/skip.out" 2>&1 || fail "with train.skip_nonfinite=2 the run failed: $(tail -3 "$work/skip.out")"
grep -q "step 3: gradient norm is not finite (first on rank 0): step skipped" "$work/skip/train.log" ||
  fail "the skip is not logged"
python3 - "$work/skip/metrics.jsonl" <<'PY'
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if '"loss"' in l]
by_step = {r["step"]: r for r in rows}
assert by_step[3]["grad_norm"] is None, f"step 3's norm should be null: {by_step[3]}"
assert by_step[2]["skipped_steps"] == 0 and by_step[6]["skipped_steps"] == 1, [r["skipped_steps"] for r in rows]
assert all(math.isfinite(by_step[s]["loss"]) for s in (4, 5, 6)), rows
print(f"ok: step 3 skipped on every rank, final loss {by_step[6]['loss']}")
PY
