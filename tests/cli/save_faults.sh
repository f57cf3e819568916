#!/usr/bin/env bash
# save_faults.sh HOKUSAI CONFIG WORKDIR
# Checkpoint saves under faults, one process:
#  1. checkpoint.async: true writes the same bytes as synchronous saves (every state.bin of the
#     run compared), reports the time it blocked training and is not counted twice;
#  2. SIGKILL while a checkpoint's state.bin is being written (polled for, then killed at once):
#     the half-written step is never `latest`, --resume continues from the previous complete
#     checkpoint and reaches the uninterrupted run's final loss bit for bit.
set -euo pipefail
hokusai=$1; config=$2; work=$3
fail() { echo "save_faults.sh: $*" >&2; exit 1; }
rm -rf "$work"; mkdir -p "$work"
# ~7M parameters: an 80 MB state.bin, long enough to be caught mid-write.
common=(--set train.steps=6 --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set model.layers=4 --set model.hidden=384 --set model.heads=6 --set train.seq_len=32 --set model.max_seq_len=32
        --set train.micro_batch=2 --set train.global_batch=2 --set kernels.peak_gflops=100 --set checkpoint.interval=2
        --set checkpoint.keep=5 --set data.cache_dir="$work/cache")

"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/sync" > "$work/sync.log" 2>&1 ||
  fail "the synchronous run failed: $(tail -3 "$work/sync.log")"
"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/async" --set checkpoint.async=true \
  > "$work/async.log" 2>&1 || fail "the asynchronous run failed: $(tail -3 "$work/async.log")"
for s in 2 4 6; do
  f=checkpoints/step_0000000$s/state.bin
  cmp -s "$work/sync/$f" "$work/async/$f" || fail "step $s: the asynchronous save differs from the synchronous one"
done
grep -q "written in .* s in the background" "$work/async.log" || fail "the asynchronous run does not say it wrote in the background"
[ "$(grep -c '"checkpoint_blocked_s"' "$work/async/metrics.jsonl")" = 3 ] || fail "metrics.jsonl: not one save record per save"

"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/cut" > "$work/cut.log" 2>&1 &
pid=$!
partial=$work/cut/checkpoints/step_00000004.tmp/state.bin
# Polled without sleeping (the write lasts ~0.1 s), until the file appears, the run ends or 120 s
# pass: a bound in iterations (~1 s) ran out before step 4 under a loaded CI and failed the test.
deadline=$((SECONDS + 120))
until [ -e "$partial" ]; do kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ] || break; done
[ -e "$partial" ] || fail "never saw step 4's state.bin being written (the run ended or saved too fast)"
kill -KILL "$pid"
set +e; wait "$pid"; code=$?; set -e
[ "$code" = 137 ] || fail "exit $code after SIGKILL, expected 137"
[ "$(cat "$work/cut/checkpoints/latest")" = step_00000002 ] || fail "latest is $(cat "$work/cut/checkpoints/latest") after a kill mid-save"
[ ! -e "$work/cut/checkpoints/step_00000004" ] || fail "a step 4 checkpoint exists although its save was killed"
"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/cut" --resume > "$work/resume.log" 2>&1 ||
  fail "--resume failed: $(tail -3 "$work/resume.log")"
grep -q "resumed from .*step_00000002 at step 2" "$work/resume.log" || fail "did not resume from step 2: $(grep -i resum "$work/resume.log")"
last() { grep '"loss"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.]*\).*/\1/'; }
a=$(last "$work/sync"); b=$(last "$work/cut")
[ "$a" = "$b" ] || fail "final loss $b after the resume differs from the uninterrupted $a"
echo "ok: async saves identical to sync ($(grep -o 'blocked training [0-9.]* s, written in [0-9.]* s' "$work/async.log" | head -1)); killed mid-save of step 4, resumed from step 2 to the same final loss $a"
