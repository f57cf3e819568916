#!/usr/bin/env bash
# precision_parity.sh [--steps N] [--every K] [--tolerance R] [--precisions "bf16 fp16"] [--expect-overflow P]
#                     CONFIG RUN_ROOT [--set key=value ...] -- HOKUSAI...
# Trains CONFIG in fp32 and in each low precision from the same seed (train.precision; --set
# overrides apply to every run), prints the loss curves side by side every K steps (the overlay),
# and fails unless each precision's final validation loss — or, when the config evaluates
# nothing, its mean training loss over the last tenth of the steps — is within R (relative) of
# fp32's. --expect-overflow P also fails unless precision run P skipped at least one step for
# overflowing fp16 gradients (the dynamic loss scale's back-off was exercised) and ended with a
# finite scale. HOKUSAI may have an emulator in front (qemu-aarch64 -cpu a64fx .../hokusai).
set -euo pipefail
steps=300 every=50 tol=0.01 precisions="bf16 fp16" expect_overflow=""
while [ $# -gt 0 ]; do
  case "$1" in
    --steps) steps=$2; shift 2 ;;
    --every) every=$2; shift 2 ;;
    --tolerance) tol=$2; shift 2 ;;
    --precisions) precisions=$2; shift 2 ;;
    --expect-overflow) expect_overflow=$2; shift 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 3 ]; then
  echo "usage: precision_parity.sh [options] CONFIG RUN_ROOT [--set k=v ...] -- HOKUSAI..." >&2
  exit 2
fi
config=$1 root=$2
shift 2
sets=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do sets+=("$1"); shift; done
[ "${1:-}" = -- ] || { echo "precision_parity.sh: missing '-- HOKUSAI...'" >&2; exit 2; }
shift
rm -rf "$root"
mkdir -p "$root"
for p in fp32 $precisions; do
  name=${p%%:*}  # fp16:overflow is fp16 with the run-specific overrides below
  extra=()
  if [ "$p" = fp16:overflow ]; then
    # 2^28, far above what these gradients allow in fp16: the first steps (in the warm-up, while the
    # learning rate is small) must overflow and back off; a window of 20 makes the scale grow again.
    extra=(--set train.loss_scale=268435456 --set train.loss_scale_window=20)
  fi
  start=$(date +%s.%N)
  if ! "$@" train "$config" --set train.steps="$steps" --set train.precision="$name" --set logging.progress=false \
      --set checkpoint.interval=0 --set logging.interval=1 "${sets[@]}" "${extra[@]}" \
      --set "logging.run_dir=$root/$p" >"$root/$p.log" 2>&1; then
    echo "precision_parity: the $p run failed ($root/$p.log):" >&2
    tail -5 "$root/$p.log" >&2
    exit 1
  fi
  echo "$p: $steps steps in $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)") s; $(grep -o 'precision: [^;]*' "$root/$p.log" || echo 'precision: fp32')"
done
python3 - "$root" "$every" "$tol" "$expect_overflow" fp32 $precisions <<'PY'
import json, math, sys
root, every, tol, expect_overflow = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
runs = sys.argv[5:]
curves = {}
for p in runs:
    loss, val, last = {}, {}, {}
    for line in open(f"{root}/{p}/metrics.jsonl"):
        r = json.loads(line)
        if r.get("loss") is not None: loss[r["step"]] = r["loss"]
        if "val_loss" in r: val[r["step"]] = r["val_loss"]
        if "skipped_steps" in r: last = r
    curves[p] = (loss, val, last)
steps = max(curves["fp32"][0])
print("step  " + "".join(f"{p:>16}" for p in runs))
for s in sorted(set(range(every, steps + 1, every)) | {1, steps}):
    print(f"{s:<6}" + "".join(f"{curves[p][0].get(s, float('nan')):>16.4f}" for p in runs))
def final(p):
    loss, val, _ = curves[p]
    if val: return "val_loss", val[max(val)]
    tail = [loss[s] for s in loss if s > steps - max(1, steps // 10)]
    return "mean loss of the last tenth", sum(tail) / len(tail)
what, ref = final("fp32")
bad = 0
for p in runs[1:]:
    _, x = final(p)
    signed = (x - ref) / abs(ref)
    rel = abs(signed)
    last = curves[p][2]
    scale = f", loss scale {last['loss_scale']:g}, {last['overflow_steps']} overflow step(s)" if "loss_scale" in last else ""
    ok = rel <= tol
    print(f"{p}: {what} {x:.5f} vs fp32 {ref:.5f}: {100 * signed:+.3f}% (tolerance {100 * tol:g}%){scale}  "
          f"{'ok' if ok else 'MISMATCH'}")
    bad += not ok
    if p == expect_overflow:
        if last.get("overflow_steps", 0) < 1 or not math.isfinite(last.get("loss_scale", float("nan"))):
            print(f"{p}: expected at least one overflow step and a finite final loss scale, got {last}")
            bad += 1
if bad:
    print(f"precision_parity: {bad} check(s) failed (runs in {root})", file=sys.stderr)
    sys.exit(1)
PY
