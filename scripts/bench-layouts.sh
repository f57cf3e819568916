#!/usr/bin/env bash
# gpt2-124m training throughput and time breakdown per parallel layout on this machine, 1 OpenMP
# thread per rank (plus the one-process 2-thread reference). Every layout trains the same global
# batch (8 sequences x 256 tokens, micro-batches of 2) for 5 steps; figures are medians over
# steps 2..5 of metrics.jsonl: tokens/s, ms/step, and rank 0's time per step by phase (compute,
# tensor-parallel comm, pipeline wait = bubble + transfers, data-parallel comm not hidden,
# optimizer; pipeline wait also as the maximum over ranks). "mem" compares rank 0's memory report
# at start with its peak RSS at the end. Layouts with more ranks than the machine's cores are
# marked oversubscribed: their ranks time-share the cores.
#
# With --plan MACHINE (a file from `hokusai calibrate`), each row also shows what `hokusai plan`
# predicts for the same layout and settings: step time and rank 0's peak memory, and the error of
# each against the measurement; --check TIME%,MEM% then exits 1 when any layout's error exceeds
# the bounds. MODEL (default configs/gpt2-124m.yaml) and SETS (extra --set arguments) choose the
# model; WORK (default /tmp/lay) the run directories.
# Usage: scripts/bench-layouts.sh [build dir] [--plan MACHINE [--check T,M]] [layout ...]
set -u
cd "$(dirname "$0")/.."
H=${1:-build/release}/hokusai; shift || true
PLAN="" CHECK=""
while [ $# -gt 0 ]; do
  case $1 in
    --plan) PLAN=$2; shift 2 ;;
    --check) CHECK=$2; shift 2 ;;
    *) break ;;
  esac
done
cores=$(nproc)
MODEL=${MODEL:-configs/gpt2-124m.yaml}
WORK=${WORK:-/tmp/lay}
common="--set train.steps=5 --set logging.interval=1 --set kernels.peak_gflops=217 --set checkpoint.interval=0
        --set logging.eval_batches=1 --set train.global_batch=8 --set train.micro_batch=2 --set kernels.threads=1
        ${SETS:-}"
M="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"
mkdir -p "$WORK"
: > "$WORK/errors.txt"
printf "%-16s %5s %9s %8s | %8s %7s %8s %8s %7s %6s | %s%s\n" layout ranks tokens/s ms/step compute tp_comm pp_wait "(max)" dp_exp optim "mem report / peak RSS (rank 0)" \
  "${PLAN:+ | plan ms/step (error), plan peak MiB (error)}"
run() {  # run NAME TP PP DP V [extra --set ...]
  name=$1 tp=$2 pp=$3 dp=$4 v=$5; shift 5
  ranks=$((tp * pp * dp)); dir=$WORK/$name; rm -rf "$dir"
  layout="--set parallel.tp=$tp --set parallel.pp=$pp --set parallel.dp=$dp --set parallel.virtual_stages=$v"
  threads=1
  [ "$name" = serial_2threads ] && threads=2
  if [ "$ranks" = 1 ]; then
    OMP_NUM_THREADS=$threads "$H" train "$MODEL" $common --set kernels.threads=$threads $layout "$@" --set logging.run_dir="$dir" > "$dir.log" 2>&1
  else
    $M -np $ranks "$H" train "$MODEL" $common $layout "$@" --set logging.run_dir="$dir" > "$dir.log" 2>&1
  fi || { echo "$name: FAILED (see $dir.log)"; echo "$name failed" >> "$WORK/errors.txt"; return; }
  # The end-of-run checkpoint is not kept: gpt2-124m's is 1.4 GB per replica, and a sweep filled a disk.
  find "$dir" -type d -name checkpoints -prune -exec rm -rf {} +
  plan_json=""
  if [ -n "$PLAN" ]; then
    plan_json=$("$H" plan "$MODEL" --machine "$PLAN" --json $common --set kernels.threads=$threads $layout "$@") ||
      { echo "$name: plan FAILED"; echo "$name plan failed" >> "$WORK/errors.txt"; return; }
  fi
  PLAN_JSON="$plan_json" python3 - "$dir" "$name" "$ranks" "$cores" "$WORK/errors.txt" <<'PY'
import json, os, re, sys, statistics as st
d, name, ranks, cores, errors = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
rows = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"tokens_per_s"' in l][1:]
med = lambda f: st.median(f(r) for r in rows)
t = lambda k: med(lambda r: r["time_ms"][k][0])
log = open(d + "/train.log").read()
m = re.search(r"peak resident memory \(rank 0\): ([0-9.]+) MiB \(\S+ against the ([0-9.]+) MiB", log)
rss, rep = float(m.group(1)), float(m.group(2))
tag = name + (" *" if ranks > cores else "")
step = med(lambda r: r['step_ms'])
plan = ""
if os.environ.get("PLAN_JSON"):
    p = json.loads(os.environ["PLAN_JSON"])
    pt, pm = 1e3 * p["step_s"], p["stages"][0]["memory"]["peak"] / 2**20
    et, em = 100 * (pt - step) / step, 100 * (pm - rss) / rss
    plan = f" | {pt:8.1f} ({et:+5.1f}%), {pm:6.0f} ({em:+5.1f}%)"
    open(errors, "a").write(f"{name} {et:.2f} {em:.2f}\n")
print(f"{tag:<16} {ranks:5d} {med(lambda r: r['tokens_per_s']):9.1f} {step:8.1f} | "
      f"{t('compute'):8.1f} {t('tp_comm'):7.1f} {t('pp_wait'):8.1f} {med(lambda r: max(r['time_ms']['pp_wait'])):8.1f} "
      f"{t('dp_exposed'):7.1f} {t('optimizer'):6.1f} | {rep:.0f} / {rss:.0f} MiB ({100 * (rss - rep) / rss:+.0f}%){plan}")
PY
}
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(serial serial_2threads tp2 tp2s pp2 pp2bal pp2v2 dp2 dp2z tp2pp2 tp2dp2 pp2dp2 pp4 pp4bal tp2pp2dp2)
for l in "${layouts[@]}"; do
  case $l in
    serial) run serial 1 1 1 1 ;;
    serial_2threads) run serial_2threads 1 1 1 1 ;;
    tp2) run tp2 2 1 1 1 ;;
    tp2s) run tp2s 2 1 1 1 --set parallel.sequence_parallel=true ;;  # sequence parallelism
    pp2) run pp2 1 2 1 1 ;;
    pp2v2) run pp2v2 1 2 1 2 ;;
    pp2bal) run pp2bal 1 2 1 1 --set 'parallel.stage_layers=[9, 3]' ;;  # the head costs ~5.5 layers (V = 50304)
    dp2) run dp2 1 1 2 1 ;;
    dp2z) run dp2z 1 1 2 1 --set parallel.zero1=true ;;
    tp2pp2) run tp2pp2 2 2 1 1 ;;
    tp2dp2) run tp2dp2 2 1 2 1 ;;
    pp2dp2) run pp2dp2 1 2 2 1 ;;
    pp4) run pp4 1 4 1 1 ;;
    pp4bal) run pp4bal 1 4 1 1 --set 'parallel.stage_layers=[4, 4, 3, 1]' ;;
    tp2pp2dp2) run tp2pp2dp2 2 2 2 1 ;;
    tp2pp2dp2s) run tp2pp2dp2s 2 2 2 1 --set parallel.sequence_parallel=true ;;
    *) echo "unknown layout $l" ;;
  esac
done
echo "* oversubscribed: more ranks than the $cores cores"
if [ -n "$CHECK" ]; then
  python3 - "$WORK/errors.txt" "$CHECK" <<'PY'
import sys
tmax, mmax = (float(x) for x in sys.argv[2].split(","))
bad = []
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) != 3 or f[1] == "plan":
        bad.append(f"{f[0]}: {' '.join(f[1:])}")
        continue
    if abs(float(f[1])) > tmax: bad.append(f"{f[0]}: step time error {float(f[1]):+.1f}% (bound {tmax:.0f}%)")
    if abs(float(f[2])) > mmax: bad.append(f"{f[0]}: memory error {float(f[2]):+.1f}% (bound {mmax:.0f}%)")
for b in bad: print("plan check FAILED:", b)
print("plan check:", "FAIL" if bad else f"PASS (every layout within {tmax:.0f}% in time and {mmax:.0f}% in memory)")
sys.exit(1 if bad else 0)
PY
fi
