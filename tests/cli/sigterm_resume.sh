#!/usr/bin/env bash
# sigterm_resume.sh HOKUSAI CONFIG WORKDIR [RANKS [TP [PP [--set KEY=VALUE ...]]]]
#   (dp = RANKS / (TP * PP); the --set options go to every run, e.g. --set parallel.zero1=true)
# What a batch system does before the wall-clock limit: SIGTERM during training. The run must
# save a checkpoint and exit 75 (one process; under mpirun, SIGTERM goes to mpirun, which
# forwards it, and every rank stops at the same step); --resume must then finish the run, and
# its final loss must equal an uninterrupted run's.
set -euo pipefail
hokusai=$1; config=$2; work=$3; ranks=${4:-1}; tp=${5:-1}; pp=${6:-1}
extra=("${@:7}")
dp=$((ranks / (tp * pp)))
ckpt=checkpoints  # one directory per pipeline stage and tp rank
[ "$tp" -gt 1 ] && ckpt=tp-rank-0/$ckpt
[ "$pp" -gt 1 ] && ckpt=pp-stage-0/$ckpt
launch=()
if [ "$ranks" -gt 1 ]; then
  launch=(mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x OMP_NUM_THREADS=1)
fi
rm -rf "$work"; mkdir -p "$work"
common=(--set train.steps=2000 --set logging.interval=2000 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set model.layers=2 --set model.hidden=64 --set model.heads=4 --set train.micro_batch=4
        --set train.global_batch=8 --set train.seq_len=64 --set model.max_seq_len=64 --set kernels.peak_gflops=100
        --set parallel.dp="$dp" --set parallel.tp="$tp" --set parallel.pp="$pp" --set data.cache_dir="$work/cache"
        "${extra[@]}")
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/full" > "$work/full.log" 2>&1
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/cut" > "$work/cut.log" 2>&1 &
pid=$!
# Wait until the loop has started (the log names the run directory just before it), then stop.
for _ in $(seq 1 600); do grep -qs "run directory" "$work/cut/train.log" && break; sleep 0.05; done
sleep 0.5
kill -TERM "$pid"
set +e; wait "$pid"; code=$?; set -e
if [ "$ranks" -eq 1 ]; then
  [ "$code" = 75 ] || { echo "FAIL: exit code $code after SIGTERM, expected 75"; cat "$work/cut.log"; exit 1; }
else
  [ "$code" != 0 ] || { echo "FAIL: mpirun exited 0 after SIGTERM"; exit 1; }
  grep -q "stop signal received" "$work/cut.log" || { echo "FAIL: no rank reported the stop"; cat "$work/cut.log"; exit 1; }
fi
[ -f "$work/cut/$ckpt/latest" ] || { echo "FAIL: no checkpoint after SIGTERM"; exit 1; }
stopped_at=$(head -1 "$work/cut/$ckpt/latest")
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/cut" --resume > "$work/resume.log" 2>&1
last() { grep '"loss"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
a=$(last "$work/full"); b=$(last "$work/cut")
[ "$a" = "$b" ] || { echo "FAIL: final loss $b after resume differs from uninterrupted $a"; exit 1; }
echo "ok ($ranks rank(s), tp=$tp, pp=$pp): stopped with $code at $stopped_at, resumed to the same final loss $a"
