#!/usr/bin/env bash
# gpt2-124m training throughput per parallel layout on this machine: one process (1 and 2
# threads), tp=2, dp=2 (2 ranks x 1 thread) and tp2 x dp2 (4 ranks on 2 cores: oversubscribed).
# 6 steps each; medians over steps 2..6 of metrics.jsonl. Usage: scripts/bench-layouts.sh [build dir]
set -u
cd "$(dirname "$0")/.."
H=${1:-build/release}/hokusai
common="--set train.steps=6 --set logging.interval=1 --set kernels.peak_gflops=217 --set checkpoint.interval=0 --set logging.eval_batches=1"
run() { name=$1; launch=$2; shift 2; rm -rf /tmp/lay/$name; $launch train configs/gpt2-124m.yaml $common "$@" --set logging.run_dir=/tmp/lay/$name > /tmp/lay/$name.log 2>&1;
  python3 - /tmp/lay/$name/metrics.jsonl $name <<'PY'
import json, sys, statistics
rows=[json.loads(l) for l in open(sys.argv[1]) if '"tokens_per_s"' in l][1:]
print(f"{sys.argv[2]:<22} tokens/s median {statistics.median(r['tokens_per_s'] for r in rows):7.1f}  ms/step {statistics.median(r['step_ms'] for r in rows):8.1f}  dp_exposed_ms {statistics.median(r['dp_exposed_ms'] for r in rows):7.1f}")
PY
}
mkdir -p /tmp/lay
M="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"
OMP_NUM_THREADS=1 run serial_1thread "$H" --set kernels.threads=1
OMP_NUM_THREADS=2 run serial_2threads "$H" --set kernels.threads=2
run tp2dp1 "$M -np 2 $H" --set parallel.tp=2 --set kernels.threads=1
run tp1dp2 "$M -np 2 $H" --set parallel.dp=2 --set train.micro_batch=2 --set kernels.threads=1
run tp2dp2_oversub "$M -np 4 $H" --set parallel.tp=2 --set parallel.dp=2 --set train.micro_batch=2 --set kernels.threads=1
