#!/usr/bin/env bash
# parallel_equivalence.sh HOKUSAI CONFIG WORKDIR LAYOUT...
#   LAYOUT = tp<T>dp<D>[z], e.g. tp1dp2, tp2dp1, tp3dp1, tp2dp2z (z: the ZeRO-1 optimizer)
# Every layout must train the serial model: `mpirun -np T*D hokusai train` with the same seed and
# global batch must match the 1-rank run's loss at every step to 1e-5 relative; with tp = 1 its
# final parameters (rank 0 holds them all) must match to 1e-4 of their largest magnitude. Only
# summation orders differ (gradient reductions, row-parallel partial products), nothing else.
# The model (6 heads, hidden 96, FFN 384) divides by tp = 2 and 3.
set -euo pipefail
hokusai=$1; config=$2; work=$3; shift 3
rm -rf "$work"; mkdir -p "$work"
common=(--set model.layers=2 --set model.hidden=96 --set model.heads=6 --set model.ffn_hidden=384 --set model.max_seq_len=64
        --set train.seq_len=64 --set train.micro_batch=2 --set train.global_batch=12 --set train.steps=20
        --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=6
        --set kernels.peak_gflops=100 --set data.cache_dir="$work/cache")
OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/dp1" > "$work/dp1.log" 2>&1
for spec in "$@"; do
  if ! [[ $spec =~ ^tp([0-9]+)dp([0-9]+)(z?)$ ]]; then echo "FAIL: layout '$spec' is not tp<T>dp<D>[z]"; exit 1; fi
  tp=${BASH_REMATCH[1]}; dp=${BASH_REMATCH[2]}; zero=false; [ -n "${BASH_REMATCH[3]}" ] && zero=true
  mpirun --allow-run-as-root --oversubscribe -np $((tp * dp)) -x OMP_NUM_THREADS=1 \
    "$hokusai" train "$config" "${common[@]}" --set parallel.tp="$tp" --set parallel.dp="$dp" \
    --set parallel.zero1=$zero --set logging.run_dir="$work/$spec" > "$work/$spec.log" 2>&1 \
    || { echo "FAIL: $spec run failed"; tail -5 "$work/$spec.log"; exit 1; }
  python3 - "$work/dp1" "$work/$spec" "$spec" "$tp" <<'PY'
import json, struct, sys, array
a_dir, b_dir, dp, tp = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
def losses(d):
    return [json.loads(l)["loss"] for l in open(d + "/metrics.jsonl") if '"loss"' in l]
def params(d):
    name = open(d + "/checkpoints/latest").read().strip()
    raw = open(d + "/checkpoints/" + name + "/state.bin", "rb").read()
    n = struct.unpack_from("<q", raw, 40)[0]   # header: magic, version, dtype, step, consumed, adam_t, n
    p = array.array("f"); p.frombytes(raw[64:64 + 4 * n]); return p
la, lb = losses(a_dir), losses(b_dir)
if len(la) != 20 or len(lb) != 20: sys.exit(f"FAIL {dp}: {len(la)} and {len(lb)} logged steps, expected 20")
worst = max(abs(x - y) / abs(x) for x, y in zip(la, lb))
msg = f"{dp}: max relative loss difference {worst:.2e} over 20 steps"
pworst = 0.0
if tp == 1:
    pa, pb = params(a_dir), params(b_dir)
    scale = max(abs(x) for x in pa)
    pworst = max(abs(x - y) for x, y in zip(pa, pb)) / scale
    msg += f"; max parameter difference {pworst:.2e} of max |p|"
print(msg)
if worst > 1e-5 or pworst > 1e-4: sys.exit(f"FAIL {dp}: beyond tolerance (loss 1e-5, params 1e-4)")
PY
  grep -h "data-parallel communication" "$work/$spec.log" | sed 's/.*\] /  /'  || true
done
