#!/usr/bin/env bash
# disk_full.sh HOKUSAI CONFIG WORKDIR
# A run directory on a small tmpfs (mounted here: needs root; exit 77 = skipped otherwise):
#  - too small for one checkpoint: the run refuses to start, one line naming the directory and
#    the space it needs;
#  - room for one checkpoint but not two: the first save succeeds, the second fails with one line
#    naming the file, the system's reason and the space left, the run exits non-zero, and the
#    first checkpoint stays `latest` and loads;
#  - the same with checkpoint.on_error: continue: the failed save is a warning, training goes on
#    to the last step, whose save must succeed (it fails here too: exit non-zero, saying so), and
#    the first checkpoint stays `latest` and loads;
#  - a tp=2 job whose second shard alone is on the small file system: when that shard's save
#    fails, the first shard discards the step it did write, so both stay at the same `latest`.
set -euo pipefail
hokusai=$1; config=$2; work=$3
[ "$(id -u)" -eq 0 ] || { echo "disk_full.sh: skipped (mounting a tmpfs needs root)"; exit 77; }
fail() { echo "disk_full.sh: $*" >&2; exit 1; }
cleanup() {
  umount "$work/small" 2>/dev/null || true; umount "$work/tiny" 2>/dev/null || true
  umount "$work/tp/run/tp-rank-1" 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$work"; mkdir -p "$work/small" "$work/tiny"
common=(--set train.steps=6 --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=1
        --set model.layers=2 --set model.hidden=64 --set model.heads=4 --set train.seq_len=32 --set model.max_seq_len=32
        --set train.micro_batch=2 --set train.global_batch=2 --set kernels.peak_gflops=100 --set checkpoint.interval=2
        --set checkpoint.keep=5 --set data.cache_dir="$work/cache")
# A checkpoint of this model: 12 bytes per parameter (parameters, Adam m and v).
mount -t tmpfs -o size=1M tmpfs "$work/tiny" || { echo "disk_full.sh: skipped (cannot mount a tmpfs here)"; exit 77; }
set +e
"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/tiny/run" > "$work/tiny.out" 2> "$work/tiny.err"
code=$?
set -e
[ "$code" = 1 ] || fail "a run directory without room for one checkpoint: exit $code, expected 1"
grep -q "MiB free but a checkpoint of rank 0 needs" "$work/tiny.err" || fail "no line about the space: $(cat "$work/tiny.err")"

mount -t tmpfs -o size=2500k tmpfs "$work/small"
set +e
"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/small/run" > "$work/small.out" 2> "$work/small.err"
code=$?
set -e
[ "$code" = 1 ] || fail "a full disk during a save: exit $code, expected 1 ($(tail -2 "$work/small.err"))"
grep -q "cannot write '.*step_00000004.tmp/state.bin': No space left on device (.* MiB written, .* MiB free there)" \
  "$work/small.err" || fail "the error does not name the file, the reason and the space: $(cat "$work/small.err")"
[ "$(cat "$work/small/run/checkpoints/latest")" = step_00000002 ] || fail "latest moved: $(cat "$work/small/run/checkpoints/latest")"
[ ! -e "$work/small/run/checkpoints/step_00000004.tmp" ] || fail "the failed save left its partial directory"
"$hokusai" generate "$work/small/run" --tokens 8 > "$work/generate.out" 2>&1 || fail "the previous checkpoint does not load: $(cat "$work/generate.out")"

rm -rf "$work/small/run"
set +e
"$hokusai" train "$config" "${common[@]}" --set logging.run_dir="$work/small/run" --set checkpoint.on_error=continue \
  > "$work/continue.out" 2> "$work/continue.err"
code=$?
set -e
[ "$code" = 1 ] || fail "on_error continue, final save failing: exit $code, expected 1 ($(tail -2 "$work/continue.err"))"
grep -q "checkpoint of step 4 failed on rank 0: training continues (checkpoint.on_error: continue)" "$work/continue.out" ||
  fail "no warning about the skipped save: $(cat "$work/continue.out")"
grep -q '"step":6,"loss"' "$work/small/run/metrics.jsonl" || fail "training did not go on to step 6 after the failed save"
grep -q "the checkpoint of step 6 at the end of this job; the newest complete one is kept" "$work/continue.err" ||
  fail "the failed final save does not say so: $(cat "$work/continue.err")"
[ "$(cat "$work/small/run/checkpoints/latest")" = step_00000002 ] || fail "latest moved: $(cat "$work/small/run/checkpoints/latest")"
"$hokusai" generate "$work/small/run" --tokens 8 > "$work/generate.out" 2>&1 || fail "the previous checkpoint does not load: $(cat "$work/generate.out")"
# tp=2: only tp-rank-1's checkpoints are on a small tmpfs.
if command -v mpirun >/dev/null; then
  mkdir -p "$work/tp/run/tp-rank-1"
  mount -t tmpfs -o size=1200k tmpfs "$work/tp/run/tp-rank-1"
  set +e
  mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" \
    --set parallel.tp=2 --set logging.run_dir="$work/tp/run" --set checkpoint.on_error=continue > "$work/tp.out" 2> "$work/tp.err"
  code=$?
  set -e
  [ "$code" != 0 ] || fail "tp=2, the final save failing on shard 1: exit 0"
  grep -q "hokusai: rank 1: checkpoint of step 4 not saved: checkpoint: cannot write '.*tp-rank-1/checkpoints/step_00000004.tmp/state.bin'" \
    "$work/tp.err" || fail "tp=2: rank 1 does not name its failed file: $(cat "$work/tp.err")"
  grep -q "checkpoint of step 4 failed on rank 1: training continues" "$work/tp.out" || fail "tp=2: no warning: $(cat "$work/tp.out")"
  for shard in tp-rank-0 tp-rank-1; do
    [ "$(cat "$work/tp/run/$shard/checkpoints/latest")" = step_00000002 ] ||
      fail "tp=2: $shard's latest is $(cat "$work/tp/run/$shard/checkpoints/latest"), expected step_00000002"
  done
  [ ! -e "$work/tp/run/tp-rank-0/checkpoints/step_00000004" ] || fail "tp=2: shard 0 kept the step shard 1 failed to save"
  tp_note="; tp=2 with shard 1 full: shard 0 discarded step 4, both at step_00000002"
fi
echo "ok: refused at start ($(head -1 "$work/tiny.err")); full during the second save ($(head -1 "$work/small.err")); with on_error continue trained on to step 6 and failed the final save; step_00000002 still latest and loads${tp_note:-}"
