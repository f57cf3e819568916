#!/usr/bin/env bash
# Two hokusai binaries (before and after a refactoring) train the same eleven layouts and
# precision / recomputation settings for 6 steps;
# their per-step loss (8 decimals) and gradient norm (6 decimals) in metrics.jsonl must be
# identical. Exits 1 on the first layout that differs or fails. Runs up to 8 ranks with
# --oversubscribe, 1 thread each (about a minute on 2 cores).
# Usage: scripts/compare-binaries.sh OLD_HOKUSAI NEW_HOKUSAI [WORK_DIR]
#   e.g. git worktree add /tmp/before HEAD~3 && cmake --preset release -S /tmp/before && ... &&
#        scripts/compare-binaries.sh /tmp/before/build/release/hokusai build/release/hokusai
set -uo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: compare-binaries.sh OLD_HOKUSAI NEW_HOKUSAI [WORK_DIR]}
new=${2:?usage: compare-binaries.sh OLD_HOKUSAI NEW_HOKUSAI [WORK_DIR]}
work=${3:-$(mktemp -d /tmp/hokusai-compare.XXXXXX)}
mkdir -p "$work"
root_flags=()
if [ "$(id -u)" -eq 0 ]; then root_flags=(--allow-run-as-root); fi
common=(--set train.steps=6 --set logging.interval=1 --set logging.eval_interval=0 --set model.layers=4
        --set model.hidden=64 --set model.heads=4 --set train.seq_len=64 --set model.max_seq_len=64
        --set kernels.peak_gflops=100 --set checkpoint.interval=0 --set data.cache_dir="$work/cache")
layouts=(
  "1 tiny.yaml"
  "8 tiny.yaml --set parallel.tp=2 --set parallel.pp=2 --set parallel.dp=2"
  "4 tiny.yaml --set parallel.pp=2 --set parallel.dp=2 --set parallel.zero1=true"
  "4 tiny.yaml --set parallel.dp=4 --set comm.topology=2x2 --set comm.ranks_per_node=1"
  "4 llama-tiny.yaml --set parallel.tp=2 --set parallel.dp=2 --set parallel.zero1=true --set train.global_batch=16 --set train.micro_batch=4"
  "4 tiny.yaml --set parallel.pp=2 --set parallel.dp=2 --set parallel.virtual_stages=2 --set train.global_batch=16 --set train.micro_batch=2"
  "1 tiny.yaml --set train.precision=bf16"
  "2 tiny.yaml --set parallel.tp=2 --set parallel.sequence_parallel=true --set train.precision=bf16"
  "2 tiny.yaml --set parallel.pp=2 --set parallel.recompute=full --set train.precision=bf16"
  "1 llama-tiny.yaml --set parallel.recompute=selective --set kernels.attention=gemm --set train.precision=bf16"
  "2 llama-tiny.yaml --set parallel.pp=2 --set parallel.recompute=selective"
)
for spec in "${layouts[@]}"; do
  read -r np cfg extra <<<"$spec"
  read -ra extra_args <<<"${extra:-}"
  for which in old new; do
    bin=$old
    [ $which = new ] && bin=$new
    rm -rf "$work/$which"
    if ! mpirun "${root_flags[@]}" --oversubscribe -np "$np" -x OMP_NUM_THREADS=1 "$bin" train "configs/$cfg" \
        "${common[@]}" "${extra_args[@]}" --set logging.run_dir="$work/$which" </dev/null >"$work/$which.log" 2>&1; then
      echo "compare-binaries: $which binary failed on np=$np $cfg $extra (log: $work/$which.log)" >&2
      exit 1
    fi
    grep '"loss"' "$work/$which/metrics.jsonl" | sed 's/.*\("loss":[^,]*\).*\("grad_norm":[^,]*\).*/\1 \2/' >"$work/$which.txt"
  done
  if [ -s "$work/new.txt" ] && cmp -s "$work/old.txt" "$work/new.txt"; then
    echo "identical ($(wc -l <"$work/new.txt") steps): np=$np $cfg $extra"
  else
    echo "compare-binaries: DIFFER on np=$np $cfg $extra:" >&2
    diff "$work/old.txt" "$work/new.txt" | head -4 >&2
    exit 1
  fi
done
echo "compare-binaries: all ${#layouts[@]} layouts identical"
