#!/usr/bin/env bash
# dp_equivalence.sh HOKUSAI CONFIG WORKDIR DP...   (DP "2z" = 2 ranks with the ZeRO-1 optimizer)
# Data parallelism must train the serial model: for each dp, `mpirun -np dp hokusai train` with
# the same seed and global batch must match the 1-rank run's loss at every step to 1e-5
# relative, and its final parameters to 1e-4 of their largest magnitude (summation order of the
# gradient differs, nothing else).
set -euo pipefail
hokusai=$1; config=$2; work=$3; shift 3
rm -rf "$work"; mkdir -p "$work"
common=(--set model.layers=2 --set model.hidden=64 --set model.heads=4 --set model.max_seq_len=64
        --set train.seq_len=64 --set train.micro_batch=2 --set train.global_batch=12 --set train.steps=20
        --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=6
        --set kernels.peak_gflops=100 --set data.cache_dir="$work/cache")
OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/dp1" > "$work/dp1.log" 2>&1
for spec in "$@"; do
  dp=${spec%z}; zero=false; [ "$spec" != "$dp" ] && zero=true
  mpirun --allow-run-as-root --oversubscribe -np "$dp" -x OMP_NUM_THREADS=1 \
    "$hokusai" train "$config" "${common[@]}" --set parallel.dp="$dp" --set parallel.zero1=$zero \
    --set logging.run_dir="$work/dp$spec" > "$work/dp$spec.log" 2>&1 \
    || { echo "FAIL: dp=$spec run failed"; tail -5 "$work/dp$spec.log"; exit 1; }
  python3 - "$work/dp1" "$work/dp$spec" "$spec" <<'PY'
import json, struct, sys, array
a_dir, b_dir, dp = sys.argv[1], sys.argv[2], sys.argv[3]
def losses(d):
    return [json.loads(l)["loss"] for l in open(d + "/metrics.jsonl") if '"loss"' in l]
def params(d):
    name = open(d + "/checkpoints/latest").read().strip()
    raw = open(d + "/checkpoints/" + name + "/state.bin", "rb").read()
    n = struct.unpack_from("<q", raw, 40)[0]   # header: magic, version, dtype, step, consumed, adam_t, n
    p = array.array("f"); p.frombytes(raw[64:64 + 4 * n]); return p
la, lb = losses(a_dir), losses(b_dir)
if len(la) != 20 or len(lb) != 20: sys.exit(f"FAIL dp={dp}: {len(la)} and {len(lb)} logged steps, expected 20")
worst = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
pa, pb = params(a_dir), params(b_dir)
scale = max(abs(x) for x in pa)
pworst = max(abs(x - y) for x, y in zip(pa, pb)) / scale
print(f"dp={dp}: max relative loss difference {worst:.2e} over 20 steps; max parameter difference {pworst:.2e} of max |p|")
if worst > 1e-5 or pworst > 1e-4: sys.exit(f"FAIL dp={dp}: beyond tolerance (loss 1e-5, params 1e-4)")
PY
  grep -h "data-parallel communication" "$work/dp$spec.log" | sed 's/.*\] /  /'
done
