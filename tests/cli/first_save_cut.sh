#!/usr/bin/env bash
# first_save_cut.sh HOKUSAI CONFIG WORKDIR
# --resume after a job stopped inside its *first* checkpoint save, 2 ranks (pp 2): stage 0's
# shard has step 4, stage 1's only step_00000004.tmp and no `latest` — the state a kill at that
# instant leaves, made directly (hitting that window with a signal is a race; hang.sh waits it
# out). --resume must start over from step 0 on every rank with one line saying why, reach the
# uninterrupted run's final loss bit for bit and leave step 8 complete on both shards. --resume
# where no shard has a checkpoint must stop on every rank with one line naming the directory.
set -euo pipefail
hokusai=$1; config=$2; work=$3
fail() { echo "first_save_cut.sh: $*" >&2; exit 1; }
launch=(timeout 120 mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1)
rm -rf "$work"; mkdir -p "$work"
common=(--set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=1 --set model.layers=4
        --set model.hidden=64 --set model.heads=4 --set train.micro_batch=2 --set train.global_batch=4
        --set train.seq_len=32 --set model.max_seq_len=32 --set kernels.peak_gflops=100 --set checkpoint.interval=4
        --set checkpoint.keep=5 --set parallel.pp=2 --set data.cache_dir="$work/cache")

"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set train.steps=8 --set logging.run_dir="$work/full" \
  > "$work/full.log" 2>&1 || fail "the uninterrupted run failed: $(tail -3 "$work/full.log")"
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set train.steps=4 --set logging.run_dir="$work/cut" \
  > "$work/cut.log" 2>&1 || fail "the run to cut failed: $(tail -3 "$work/cut.log")"
s1=$work/cut/pp-stage-1/checkpoints
[ -d "$s1/step_00000004" ] && [ -f "$work/cut/pp-stage-0/checkpoints/latest" ] || fail "no step-4 checkpoint to cut"
mv "$s1/step_00000004" "$s1/step_00000004.tmp"
rm "$s1/latest"

"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set train.steps=8 --set logging.run_dir="$work/cut" \
  --resume > "$work/resume.log" 2>&1 || fail "--resume after a cut first save failed: $(tail -3 "$work/resume.log")"
[ "$(grep -c "no step of .* has a checkpoint from every shard .*starting from step 0" "$work/resume.log")" = 1 ] ||
  fail "expected one line saying it starts over: $(grep -i -m3 'resum\|checkpoint' "$work/resume.log")"
! grep -q "resumed from" "$work/resume.log" || fail "it resumed from a checkpoint one shard does not have"
last() { grep '"loss"' "$1/metrics.jsonl" | tail -1 | sed 's/.*"loss":\([0-9.e+-]*\).*/\1/'; }
a=$(last "$work/full"); b=$(last "$work/cut")
[ -n "$a" ] && [ "$a" = "$b" ] || fail "final loss '$b' after starting over differs from the uninterrupted '$a'"
for s in 0 1; do
  [ "$(cat "$work/cut/pp-stage-$s/checkpoints/latest")" = step_00000008 ] || fail "stage $s: latest is not step 8"
  [ -f "$work/cut/pp-stage-$s/checkpoints/step_00000004/state.bin" ] || fail "stage $s: step 4 was not rewritten"
done

mkdir -p "$work/empty"
set +e
"${launch[@]}" "$hokusai" train "$config" "${common[@]}" --set train.steps=8 --set logging.run_dir="$work/empty" \
  --resume > "$work/empty.log" 2>&1
code=$?
set -e
[ "$code" -ne 0 ] && [ "$code" -ne 124 ] || fail "--resume with no checkpoint: exit $code (124: it hung)"
grep -q -- "--resume: no checkpoint in '$work/empty'" "$work/empty.log" ||
  fail "--resume with no checkpoint: no line naming the directory: $(tail -3 "$work/empty.log")"
echo "ok: a first save cut on one shard: --resume started over and reached the uninterrupted final loss $a, step 8 saved on both shards; with no checkpoint at all it stopped naming the directory"
