#!/usr/bin/env bash
# From a fresh clone on Debian 12: install what is missing, build, train the embedded default
# model (configs/tiny.yaml) on the bundled corpus (~5 minutes on 2 cores), then sample from it.
# Extra arguments go to `hokusai train` (e.g. --set train.steps=200).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release
cmake --build --preset release -j "$(nproc)" --target hokusai  # the suite and benchmarks: scripts/test.sh

hokusai=build/release/hokusai
run_dir=runs/quickstart-$(date +%Y%m%d-%H%M%S)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
start=$(date +%s)
"$hokusai" train configs/tiny.yaml --set logging.run_dir="$run_dir" "$@"
end=$(date +%s)

val=$(grep '"val_loss"' "$run_dir/metrics.jsonl" | tail -1 | sed 's/.*"val_loss":\([0-9.]*\).*/\1/')
echo
echo "== trained in $((end - start)) s; final validation loss ${val} nats/byte (untrained: ln 257 = 5.55)"
echo "== samples (hokusai generate $run_dir --prompt ... --temperature 0.8 --top-k 40):"
seed=1
for prompt in "In the beginning" "And Jesus said to them, " "The LORD is my shepherd" "Then the king"; do
  echo "---"
  "$hokusai" generate "$run_dir" --prompt "$prompt" --tokens 240 --seed "$seed"
  seed=$((seed + 1))
done
echo "---"
echo "== run directory: $run_dir (train.log, metrics.jsonl, config.yaml, checkpoints/)"
