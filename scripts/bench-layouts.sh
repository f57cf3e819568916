#!/usr/bin/env bash
# gpt2-124m training throughput and time breakdown per parallel layout on this machine, 1 OpenMP
# thread per rank (plus the one-process 2-thread reference). Every layout trains the same global
# batch (8 sequences x 256 tokens, micro-batches of 2) for 5 steps; figures are medians over
# steps 2..5 of metrics.jsonl: tokens/s, ms/step, and rank 0's time per step by phase (compute,
# tensor-parallel comm, pipeline wait = bubble + transfers, data-parallel comm not hidden,
# optimizer; pipeline wait also as the maximum over ranks). "mem" compares rank 0's memory report
# at start with its peak RSS at the end. Layouts with more ranks than the machine's cores are
# marked oversubscribed: their ranks time-share the cores.
# Usage: scripts/bench-layouts.sh [build dir] [layout ...]   (layouts: see the list below)
set -u
cd "$(dirname "$0")/.."
H=${1:-build/release}/hokusai; shift || true
cores=$(nproc)
common="--set train.steps=5 --set logging.interval=1 --set kernels.peak_gflops=217 --set checkpoint.interval=0
        --set logging.eval_batches=1 --set train.global_batch=8 --set train.micro_batch=2 --set kernels.threads=1"
M="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"
mkdir -p /tmp/lay
printf "%-16s %5s %9s %8s | %8s %7s %8s %8s %7s %6s | %s\n" layout ranks tokens/s ms/step compute tp_comm pp_wait "(max)" dp_exp optim "mem report / peak RSS (rank 0)"
run() {  # run NAME TP PP DP V [extra --set ...]
  name=$1 tp=$2 pp=$3 dp=$4 v=$5; shift 5
  ranks=$((tp * pp * dp)); dir=/tmp/lay/$name; rm -rf "$dir"
  if [ "$name" = serial_2threads ]; then
    OMP_NUM_THREADS=2 "$H" train configs/gpt2-124m.yaml $common --set kernels.threads=2 --set logging.run_dir="$dir" > "$dir.log" 2>&1
  elif [ "$ranks" = 1 ]; then
    OMP_NUM_THREADS=1 "$H" train configs/gpt2-124m.yaml $common --set logging.run_dir="$dir" > "$dir.log" 2>&1
  else
    $M -np $ranks "$H" train configs/gpt2-124m.yaml $common --set parallel.tp=$tp --set parallel.pp=$pp \
      --set parallel.dp=$dp --set parallel.virtual_stages=$v "$@" --set logging.run_dir="$dir" > "$dir.log" 2>&1
  fi || { echo "$name: FAILED (see $dir.log)"; return; }
  python3 - "$dir" "$name" "$ranks" "$cores" <<'PY'
import json, re, sys, statistics as st
d, name, ranks, cores = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(d + "/metrics.jsonl") if '"tokens_per_s"' in l][1:]
med = lambda f: st.median(f(r) for r in rows)
t = lambda k: med(lambda r: r["time_ms"][k][0])
log = open(d + "/train.log").read()
m = re.search(r"peak resident memory \(rank 0\): ([0-9.]+) MiB \(\S+ against the ([0-9.]+) MiB", log)
rss, rep = float(m.group(1)), float(m.group(2))
tag = name + (" *" if ranks > cores else "")
print(f"{tag:<16} {ranks:5d} {med(lambda r: r['tokens_per_s']):9.1f} {med(lambda r: r['step_ms']):8.1f} | "
      f"{t('compute'):8.1f} {t('tp_comm'):7.1f} {t('pp_wait'):8.1f} {med(lambda r: max(r['time_ms']['pp_wait'])):8.1f} "
      f"{t('dp_exposed'):7.1f} {t('optimizer'):6.1f} | {rep:.0f} / {rss:.0f} MiB ({100 * (rss - rep) / rss:+.0f}%)")
PY
}
layouts=("$@")
[ ${#layouts[@]} -gt 0 ] || layouts=(serial serial_2threads tp2 pp2 pp2bal pp2v2 dp2 dp2z tp2pp2 tp2dp2 pp2dp2 pp4 pp4bal tp2pp2dp2)
for l in "${layouts[@]}"; do
  case $l in
    serial) run serial 1 1 1 1 ;;
    serial_2threads) run serial_2threads 1 1 1 1 ;;
    tp2) run tp2 2 1 1 1 ;;
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
    *) echo "unknown layout $l" ;;
  esac
done
echo "* oversubscribed: more ranks than the $cores cores"
