#!/usr/bin/env bash
# golden_loss.sh [--write] GOLDEN CONFIG RUN_DIR -- HOKUSAI...
# Trains CONFIG for a few short steps (overrides below: narrowed to 2 layers x 128, one 32-token
# micro-batch per step, native GEMM, 1 thread, so it also runs under qemu-aarch64 in about a
# minute; the full 4 x 256 took 4.5) and compares every step's
# loss and the final validation loss with GOLDEN (one JSON object per line) to 1e-5 relative.
# HOKUSAI may be a command with an emulator in front (qemu-aarch64 -cpu a64fx .../hokusai).
# --write records GOLDEN from this run instead (do it on x86 after an intended model change).
set -euo pipefail
write=0
if [ "$1" = --write ]; then write=1; shift; fi
golden=$1; config=$2; run_dir=$3; shift 4
rm -rf "$run_dir"
"$@" train "$config" --set model.layers=2 --set model.hidden=128 --set model.heads=4 \
  --set train.steps=3 --set train.micro_batch=1 --set train.global_batch=1 \
  --set train.seq_len=32 --set kernels.gemm=native --set kernels.threads=1 --set kernels.peak_gflops=1 \
  --set logging.interval=1 --set logging.eval_interval=0 --set logging.eval_batches=1 \
  --set checkpoint.interval=0 --set logging.progress=false --set "logging.run_dir=$run_dir" >/dev/null
python3 - "$golden" "$run_dir/metrics.jsonl" "$write" <<'PY'
import json, sys
golden, metrics, write = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def curve(path):
    out = {}
    for line in open(path):
        r = json.loads(line)
        if "loss" in r: out[f"loss@{r['step']}"] = r["loss"]
        if "val_loss" in r: out[f"val_loss@{r['step']}"] = r["val_loss"]
    return out
got = curve(metrics)
if write:
    with open(golden, "w") as f:
        for k, v in got.items():
            name, step = k.split("@")
            f.write(json.dumps({"step": int(step), name: v}) + "\n")
    print(f"golden_loss: wrote {golden} ({len(got)} values)")
    sys.exit(0)
want = curve(golden)
bad = 0
for k, w in want.items():
    g = got.get(k)
    rel = abs(g - w) / abs(w) if g is not None else float("inf")
    ok = rel <= 1e-5
    bad += not ok
    print(f"{k:<12} golden {w:.8f}  this run {g if g is None else f'{g:.8f}'}  rel {rel:.1e}  {'ok' if ok else 'MISMATCH'}")
if bad:
    print(f"golden_loss: {bad} value(s) differ from {golden} by more than 1e-5 relative", file=sys.stderr)
    sys.exit(1)
PY
