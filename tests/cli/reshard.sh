#!/usr/bin/env bash
# reshard.sh HOKUSAI CONFIG WORKDIR [STEPS]
# Resuming a checkpoint in another parallel layout. Each saving layout trains 3 + STEPS steps
# (default 20) with a checkpoint at step 3; copies of its run directory cut back to step 3 are
# resumed in other layouts (`--resume` with other parallel.* values), and their losses at steps
# 4..3+STEPS must equal the saving layout's own (uninterrupted) losses within 1e-5 relative (the
# reduction order differs between layouts; the equivalence gate's tolerance).
# Six saving layouts, each resumed in three others:
#   serial -> tp2, pp2, tp2 x pp2 x dp2 with ZeRO-1;   tp2 -> serial, pp2 x v2, dp2 with ZeRO-1;
#   pp2 -> tp2, pp4, tp2 x dp2;                         dp2 with ZeRO-1 -> tp2 x pp2, pp2 x v2, serial;
#   tp2 x pp2 x dp2 -> serial, pp4, tp2 x dp2;          interleaved pp2 x v2 -> serial, tp2, pp4.
# Every saved step's tensors.json (one per shard) must describe the model exactly
# (tests/ckpt/manifest_check.py), and a manifest with one range moved must be caught.
# At most 8 ranks, 1 thread each (under 2 minutes on 2 cores at 20 steps).
set -euo pipefail
hokusai=$1; config=$2; work=$3; steps=${4:-20}
fail() { echo "reshard.sh: FAIL: $*" >&2; exit 1; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf "$work"; mkdir -p "$work"
common=(--set train.steps=$((3 + steps)) --set checkpoint.interval=3 --set checkpoint.keep=100 --set logging.interval=1
        --set logging.eval_interval=0 --set logging.eval_batches=1 --set train.seq_len=32 --set kernels.peak_gflops=100
        --set data.cache_dir="$work/cache")
layout() {  # NAME -> "ranks sets..."
  case $1 in
    serial) echo "1" ;;
    tp2) echo "2 --set parallel.tp=2" ;;
    pp2) echo "2 --set parallel.pp=2" ;;
    pp4) echo "4 --set parallel.pp=4" ;;
    pp2v2) echo "2 --set parallel.pp=2 --set parallel.virtual_stages=2" ;;
    tp2pp2) echo "4 --set parallel.tp=2 --set parallel.pp=2" ;;
    tp2dp2) echo "4 --set parallel.tp=2 --set parallel.dp=2" ;;
    dp2z) echo "2 --set parallel.dp=2 --set parallel.zero1=true" ;;
    tp2pp2dp2) echo "8 --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2" ;;
    tp2pp2dp2z) echo "8 --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero1=true" ;;
  esac
}
run() {  # LAYOUT RUN_DIR [--resume]
  local spec ranks
  read -r ranks spec <<< "$(layout "$1")"
  # shellcheck disable=SC2086
  if [ "$ranks" = 1 ]; then
    "$hokusai" train "$config" "${common[@]}" $spec --set logging.run_dir="$2" "${@:3}"
  else
    mpirun --oversubscribe -np "$ranks" -x OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" $spec \
      --set logging.run_dir="$2" "${@:3}"
  fi > "$2.log" 2>&1 || fail "$1 in $2: $(grep -h -m1 'error' "$2.log" || tail -2 "$2.log")"
}
losses() { grep '"loss"' "$1/metrics.jsonl" | sed 's/.*"step":\([0-9]*\),"loss":\([0-9.e+-]*\).*/\1 \2/' | awk '$1 >= 4'; }
for save in serial tp2 pp2 dp2z tp2pp2dp2 pp2v2; do
  case $save in
    serial) resumes="tp2 pp2 tp2pp2dp2z" ;;
    tp2pp2dp2) resumes="serial pp4 tp2dp2" ;;
    pp2v2) resumes="serial tp2 pp4" ;;
    dp2z) resumes="tp2pp2 pp2v2 serial" ;;
    tp2) resumes="serial pp2v2 dp2z" ;;
    pp2) resumes="tp2 pp4 tp2dp2" ;;
  esac
  run "$save" "$work/$save"
  # shellcheck disable=SC2046
  python3 "$(dirname "$0")/../ckpt/manifest_check.py" $(find "$work/$save" -type d -name step_00000003 | sort) ||
    fail "$save: the tensor manifests do not describe the model"
  # Only step 3 is resumed from: the run directory is cut back to it (the copies below then are too;
  # 25 run directories of every step took 7.5 GB).
  find "$work/$save" -type d -name 'step_*' ! -name step_00000003 -prune -exec rm -rf {} +
  find "$work/$save" -name latest -exec sh -c 'echo step_00000003 > "$1"' _ {} \;
  for r in $resumes; do
    dir=$work/$save-to-$r
    cp -r "$work/$save" "$dir"
    rm -f "$dir/metrics.jsonl"
    run "$r" "$dir" --resume --set checkpoint.interval=0 --set checkpoint.keep=1
    if [ "$save-$r" = dp2z-serial ]; then  # the same tp x pp: a dp change reads the shard as it is
      grep -q "resumed from .*step_00000003" "$dir.log" || fail "$save -> $r: $(grep -m1 resumed "$dir.log")"
    else
      grep -q "resharded to" "$dir.log" || fail "$save -> $r: the resume did not reshard: $(grep -m1 resumed "$dir.log")"
    fi
    paste <(losses "$work/$save") <(losses "$dir") | awk -v s="$save" -v r="$r" -v steps="$steps" '
      { n++; d = $2 - $4; if (d < 0) d = -d; if (d > 1e-5 * $2 || $1 != $3) { bad = 1; print "step " $1 ": " $2 " vs " $4 } }
      END { if (n != steps) { print s " -> " r ": " n " steps compared, expected " steps; exit 1 } exit bad }' ||
      fail "$save -> $r: losses after the resume differ from the uninterrupted $save run"
    paste <(losses "$work/$save") <(losses "$dir") | awk -v s="$save" -v r="$r" '
      { d = $2 - $4; if (d < 0) d = -d; if (d / $2 > w) w = d / $2; if (d == 0) same++; n++ }
      END { printf "reshard.sh: %s -> %s: steps 4..%d after the resume: max relative loss difference %.1e (%d of %d identical); step 4: %s vs %s\n", s, r, n + 3, w, same, n, a, b }
      NR == 1 { a = $2; b = $4 }'
  done
done
# The manifest check can fail: one shard's qkv_w rows moved by one row.
bad=$work/bad-manifest; mkdir -p "$bad"
for d in $(find "$work/tp2pp2dp2" -type d -name step_00000003 | sort); do
  mkdir -p "$bad/$(echo "$d" | md5sum | cut -c1-8)" && cp "$d/tensors.json" "$bad/$(echo "$d" | md5sum | cut -c1-8)/"
done
first=$(find "$bad" -name tensors.json | sort | head -1)
python3 - "$first" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
t = next(t for t in m["tensors"] if t["name"].endswith("qkv_w"))
t["rows"][0] = [t["rows"][0][0] + 1, t["rows"][0][1] + 1]
json.dump(m, open(sys.argv[1], "w"))
PY
# shellcheck disable=SC2046
python3 "$(dirname "$0")/../ckpt/manifest_check.py" $(find "$bad" -mindepth 1 -maxdepth 1 -type d | sort) > /dev/null 2>&1 &&
  fail "manifest_check.py accepted a manifest with a moved range"
# A checkpoint of another model is refused with one line.
cp -r "$work/serial" "$work/other"
mpirun --oversubscribe -np 2 -x OMP_NUM_THREADS=1 "$hokusai" train "$config" "${common[@]}" --set model.layers=2 \
  --set parallel.tp=2 --set logging.run_dir="$work/other" --resume > "$work/other.log" 2>&1 &&
  fail "a checkpoint of a 4-layer model resumed into a 2-layer one (in another layout)"
grep -q "^hokusai: rank 0: --resume: the newest checkpoint in .* is of another model" "$work/other.log" ||
  fail "another model's checkpoint: $(tail -2 "$work/other.log")"
# Passed: the checkpoints are not needed any more (the logs and metrics stay).
find "$work" -type d -name checkpoints -prune -exec rm -rf {} +
echo "reshard.sh: PASS"
