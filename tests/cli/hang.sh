#!/usr/bin/env bash
# hang.sh HOKUSAI CONFIG WORKDIR RANKS [TP [PP [SIGNAL]]]   (dp = RANKS / (TP * PP))
# The last rank stops making progress (SIGNAL=STOP, the default) or dies (SIGNAL=KILL) after the
# step-10 checkpoint while the others go on into a collective with it. STOP, with
# comm.timeout_s=5: the job must be gone within 15 s, exit non-zero, and say in one line which
# rank went silent (the watchdog). KILL: gone within 60 s, exit non-zero (the launcher). Either
# way --resume from the last checkpoint must reach the uninterrupted run's final loss bit for bit.
set -euo pipefail
hokusai=$1; config=$2; work=$3; ranks=$4; tp=${5:-1}; pp=${6:-1}; signal=${7:-STOP}
dp=$((ranks / (tp * pp)))
# Every shard root's checkpoint pointer (one per pp stage x tp rank): the victim is stopped only
# after all of them have the step-10 checkpoint — stopping it inside its own first save left one
# shard with none, and that run cannot resume (a CI run on 2026-12-03 hit this race).
shard_roots=()
for p in $(seq 0 $((pp - 1))); do
  for t in $(seq 0 $((tp - 1))); do
    root=checkpoints
    [ "$tp" -gt 1 ] && root=tp-rank-$t/$root
    [ "$pp" -gt 1 ] && root=pp-stage-$p/$root
    shard_roots+=("$root")
  done
done
ckpt=${shard_roots[0]}
all_saved() { for r in "${shard_roots[@]}"; do [ -f "$work/cut/$r/latest" ] || return 1; done; }
launch=(mpirun --allow-run-as-root --oversubscribe -np "$ranks" -x OMP_NUM_THREADS=1)
rm -rf "$work"; mkdir -p "$work"
common=(--set train.steps=150 --set logging.interval=150 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set model.layers=4 --set model.hidden=64 --set model.heads=4 --set train.micro_batch=2
        --set train.global_batch=$((4 * dp)) --set train.seq_len=32 --set model.max_seq_len=32
        --set kernels.peak_gflops=100 --set checkpoint.interval=10 --set checkpoint.keep=50 --set comm.timeout_s=5
        --set parallel.dp="$dp" --set parallel.tp="$tp" --set parallel.pp="$pp" --set data.cache_dir="$work/cache")
fail() { echo "hang.sh: $*" >&2; exit 1; }

"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/full" > "$work/full.log" 2>&1 ||
  fail "the uninterrupted run failed: $(tail -3 "$work/full.log")"
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/cut" > "$work/cut.out" 2> "$work/cut.err" &
job=$!
victim=$((ranks - 1))
for _ in $(seq 1 1200); do all_saved && break; sleep 0.05; done
all_saved || fail "no checkpoint appeared in every shard root (${shard_roots[*]})"
pid=$(cut -d' ' -f1 "$work/cut/heartbeat/rank-$victim")
kill -"$signal" "$pid"
t0=$(date +%s.%N)
set +e; wait "$job"; code=$?; set -e
# mpirun may return while it still reaps the stopped rank: that rank must be gone (or a zombie)
# within the limit too.
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
elapsed=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
alive "$pid" && { kill -KILL "$pid"; fail "the stopped rank $victim (pid $pid) outlived the job by 10 s"; }
[ "$code" -ne 0 ] || fail "the job exited 0 after a rank stopped"
limit=15
[ "$signal" = STOP ] || limit=60
python3 -c "import sys; sys.exit(0 if $elapsed <= $limit else 1)" || fail "the job took ${elapsed} s to end (limit $limit s)"
if [ "$signal" = STOP ]; then
  lines=$(grep -c "no progress for" "$work/cut.err" || true)
  [ "$lines" = 1 ] || fail "expected one watchdog line, got $lines: $(cat "$work/cut.err")"
  grep -q "waiting for rank $victim .* silent for" "$work/cut.err" || fail "the line does not name rank $victim: $(cat "$work/cut.err")"
fi
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/cut" --resume > "$work/resume.log" 2>&1 ||
  fail "--resume failed: $(tail -3 "$work/resume.log")"
last() { grep '"loss"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
a=$(last "$work/full"); b=$(last "$work/cut")
[ "$a" = "$b" ] || fail "final loss $b after resume differs from uninterrupted $a"
echo "ok ($ranks ranks, tp=$tp, pp=$pp): SIG$signal to rank $victim, job gone in ${elapsed} s (exit $code): $(grep -h "no progress\|exited on signal" "$work/cut.err" | head -1)"
echo "resumed from $(head -1 "$work/cut/$ckpt/latest" 2>/dev/null) to the same final loss $a"
