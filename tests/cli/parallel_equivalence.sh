#!/usr/bin/env bash
# parallel_equivalence.sh [--golden DIR [--write]] [--set KEY=VALUE]... HOKUSAI CONFIG WORKDIR LAYOUT...
#   LAYOUT = tp<T>[s][pp<P>]dp<D>[v<V>][z][+selective|+full][@<torus>[r<R>][^]], e.g. tp1dp2, tp2pp2dp1,
#   tp1pp2dp1v2, tp2pp2dp2z, tp2sdp1, tp1dp4@2x2, tp1pp2dp2@2x2^
#   (s: sequence parallelism; v: interleaved 1F1B with V chunks per stage; z: the ZeRO-1 optimizer; +selective / +full:
#   activation recomputation; pp defaults to 1; @: comm.topology <torus> with R ranks per emulated
#   node (default 1), ^: with a coordinate file listing the nodes in reverse row-major order, so
#   grid ranks are not MPI ranks)
# Every layout must train the serial model: `mpirun -np T*P*D hokusai train` with the same seed
# and global batch must match the 1-rank run's loss at every step to 1e-5 relative, and its final
# parameters (rank 0's checkpoint, or the per-rank checkpoints gathered by `hokusai merge`) must
# match to 1e-4 of their largest magnitude. Only summation orders differ (gradient reductions,
# row-parallel partial products), nothing else.
# The model (4 layers, 6 heads, hidden 96, FFN 384) divides by tp = 2 and 3 and by pp up to 4.
# --golden DIR: each layout's 20 losses (and the serial run's, serial.txt) must also match the
# recorded curve DIR/<layout>.txt to 1e-5 relative; --write records them instead (after an
# intended change of the model or the data). --set: more overrides for every run (e.g.
# model.kv_heads=2: grouped-query attention).
set -euo pipefail
golden=""; write=0
if [ "$1" = --golden ]; then golden=$2; shift 2; fi
if [ "$1" = --write ]; then write=1; shift; fi
extra=()
while [ "$1" = --set ]; do extra+=(--set "$2"); shift 2; done
hokusai=$1; config=$2; work=$3; shift 3
# check_golden NAME RUN_DIR: compare (or record) the run's loss curve with $golden/NAME.txt.
check_golden() {
  [ -n "$golden" ] || return 0
  python3 - "$golden/$1.txt" "$2/metrics.jsonl" "$write" "$1" <<'PY'
import json, sys
path, metrics, write, name = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
got = [json.loads(l)["loss"] for l in open(metrics) if '"loss"' in l]
if write:
    open(path, "w").write("".join(f"{x:.8f}\n" for x in got)); sys.exit(0)
try:
    want = [float(x) for x in open(path).read().split()]
except OSError:
    sys.exit(f"FAIL {name}: no golden curve {path}: record it with --golden DIR --write")
if len(want) != len(got): sys.exit(f"FAIL {name}: {len(got)} losses against {len(want)} in {path}")
errors = [abs(a - b) / abs(b) for a, b in zip(got, want)]
worst = float("nan") if any(e != e for e in errors) else max(errors)  # max() would skip a NaN
if not worst <= 1e-5: sys.exit(f"FAIL {name}: differs from the golden curve {path} by {worst:.2e} relative (> 1e-5)")
print(f"  {name}: golden curve matched ({worst:.1e})")
PY
}
rm -rf "$work"; mkdir -p "$work"
common=(--set model.layers=4 --set model.hidden=96 --set model.heads=6 --set model.ffn_hidden=384 --set model.max_seq_len=64
        --set train.seq_len=64 --set train.micro_batch=2 --set train.global_batch=12 --set train.steps=20
        --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=6
        --set kernels.peak_gflops=100 --set data.cache_dir="$work/cache" ${extra[@]+"${extra[@]}"})
OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/dp1" > "$work/dp1.log" 2>&1
check_golden serial "$work/dp1"
for spec in "$@"; do
  if ! [[ $spec =~ ^tp([0-9]+)(s?)(pp([0-9]+))?dp([0-9]+)(v([0-9]+))?(z?)(\+(selective|full))?(@((mesh:)?[0-9x]+)(r([0-9]+))?(\^?))?$ ]]; then
    echo "FAIL: layout '$spec' is not tp<T>[s][pp<P>]dp<D>[v<V>][z][+selective|+full][@<torus>[r<R>][^]]"; exit 1
  fi
  tp=${BASH_REMATCH[1]}; pp=${BASH_REMATCH[4]:-1}; dp=${BASH_REMATCH[5]}; v=${BASH_REMATCH[7]:-1}; zero=false
  sequence=false; [ -n "${BASH_REMATCH[2]}" ] && sequence=true
  [ -n "${BASH_REMATCH[8]}" ] && zero=true
  recompute=${BASH_REMATCH[10]:-none}
  topo=(); torus=${BASH_REMATCH[12]}; rpn=${BASH_REMATCH[15]:-1}; reversed=${BASH_REMATCH[16]}
  if [ -n "$torus" ]; then
    topo=(--set comm.topology="$torus" --set comm.ranks_per_node="$rpn")
    if [ -n "$reversed" ]; then  # node i at the coordinates of row-major node (nodes - 1 - i)
      python3 - "$torus" "$work/$spec.coords" <<'PY'
import itertools, sys
dims = [int(x) for x in sys.argv[1].removeprefix("mesh:").split("x")]
nodes = list(itertools.product(*[range(d) for d in dims]))
open(sys.argv[2], "w").write("".join("(" + ",".join(map(str, c)) + ")\n" for c in reversed(nodes)))
PY
      topo+=(--set comm.coordinates="$work/$spec.coords")
    fi
  fi
  mpirun --allow-run-as-root --oversubscribe -np $((tp * pp * dp)) -x OMP_NUM_THREADS=1 \
    "$hokusai" train "$config" "${common[@]}" --set parallel.tp="$tp" --set parallel.pp="$pp" --set parallel.dp="$dp" \
    --set parallel.virtual_stages="$v" --set parallel.zero1=$zero --set parallel.sequence_parallel=$sequence --set parallel.recompute=$recompute --set logging.run_dir="$work/$spec" \
    "${topo[@]}" \
    > "$work/$spec.log" 2>&1 || { echo "FAIL: $spec run failed"; tail -5 "$work/$spec.log"; exit 1; }
  # The final parameters: rank 0's checkpoint holds them all when the model is not split;
  # otherwise `hokusai merge` gathers the per-stage, per-tp-rank checkpoints into one.
  params_dir="$work/$spec"
  if [ "$tp" != 1 ] || [ "$pp" != 1 ]; then
    params_dir="$work/$spec-merged"
    "$hokusai" merge "$work/$spec" "$params_dir" > /dev/null || { echo "FAIL: $spec merge failed"; exit 1; }
  fi
  python3 - "$work/dp1" "$work/$spec" "$spec" "$params_dir" <<'PY'
import json, struct, sys, array
a_dir, b_dir, dp, p_dir = sys.argv[1:5]
def losses(d):
    return [json.loads(l)["loss"] for l in open(d + "/metrics.jsonl") if '"loss"' in l]
def params(d):
    name = open(d + "/checkpoints/latest").read().strip()
    raw = open(d + "/checkpoints/" + name + "/state.bin", "rb").read()
    n = struct.unpack_from("<q", raw, 40)[0]   # header: magic, version, dtype, step, consumed, adam_t, n
    p = array.array("f"); p.frombytes(raw[64:64 + 4 * n]); return p
la, lb = losses(a_dir), losses(b_dir)
if len(la) != 20 or len(lb) != 20: sys.exit(f"FAIL {dp}: {len(la)} and {len(lb)} logged steps, expected 20")
def worst_of(errors):  # max() keeping NaN: max() skips one unless it comes first
    errors = list(errors)
    return float("nan") if any(e != e for e in errors) else max(errors)
worst = worst_of(abs(x - y) / abs(x) for x, y in zip(la, lb))
msg = f"{dp}: max relative loss difference {worst:.2e} over 20 steps"
pa, pb = params(a_dir), params(p_dir)
if len(pa) != len(pb): sys.exit(f"FAIL {dp}: {len(pb)} parameters against the serial {len(pa)}")
scale = max(abs(x) for x in pa)
pworst = worst_of(abs(x - y) for x, y in zip(pa, pb)) / scale
msg += f"; max parameter difference {pworst:.2e} of max |p|"
print(msg)
if not (worst <= 1e-5 and pworst <= 1e-4): sys.exit(f"FAIL {dp}: beyond tolerance (loss 1e-5, params 1e-4)")
PY
  check_golden "$spec" "$work/$spec"
  grep -h "data-parallel communication" "$work/$spec.log" | sed 's/.*\] /  /'  || true
done
