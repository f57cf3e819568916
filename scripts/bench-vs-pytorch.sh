#!/usr/bin/env bash
# hokusai's training step beside PyTorch's on the same shape, interleaved in one sitting:
# bench_train_step (configs/gpt2-124m.yaml, native GEMM, each attention kind given) and
# bench/pytorch_step.py (the reference model of tests/model/pytorch_reference.py with AdamW), each
# run ROUNDS times alternately (this machine's speed drifts: compare medians of interleaved runs),
# then the runs, the medians and the ratios. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are unset so
# PyTorch's OpenBLAS runs its own kernels.
#   scripts/bench-vs-pytorch.sh BUILD_DIR [--rounds 3] [--threads 2] [--micro-batch 4] [--seq 256]
#       [--attention flash,gemm] [--steps 3] [--bf16]
# --bf16: both in bf16 as well as fp32 (hokusai train.precision: bf16; PyTorch torch.autocast(bfloat16)).
# Needs ./scripts/install-deps.sh --torch.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/bench-vs-pytorch.sh BUILD_DIR [--rounds N] [--threads N] [--micro-batch B] [--seq T] [--attention LIST] [--steps N] [--bf16]" >&2; exit 2; }
build=$1; shift
rounds=3 threads=2 mb=4 seq=256 attention=flash steps=3 bf16=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --micro-batch) mb=$2; shift 2 ;;
    --seq) seq=$2; shift 2 ;;
    --attention) attention=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --bf16) bf16=1; shift ;;
    *) echo "bench-vs-pytorch: unknown option '$1'" >&2; exit 2 ;;
  esac
done
/usr/bin/python3 -c 'import torch' 2> /dev/null || { echo "bench-vs-pytorch: PyTorch not found: ./scripts/install-deps.sh --torch" >&2; exit 1; }
[ -x "$build/bench/bench_train_step" ] || { echo "bench-vs-pytorch: $build/bench/bench_train_step not built" >&2; exit 1; }
unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE
export OMP_NUM_THREADS=$threads
out=$(mktemp); trap 'rm -f "$out"' EXIT
shape="--set train.micro_batch=$mb --set train.global_batch=$mb --set train.seq_len=$seq --set model.max_seq_len=$seq"
for r in $(seq 1 "$rounds"); do
  "$build/bench/bench_train_step" configs/gpt2-124m.yaml --backends native --attention "$attention" --steps "$steps" \
    --precisions "$([ $bf16 = 1 ] && echo fp32,bf16 || echo fp32)" --warmup 1 --threads "$threads" --csv $shape |
    awk -F, -v r="$r" 'NR > 1 { print r ",hokusai-" $2 "-" $3 "," $5 }' >> "$out"
  /usr/bin/python3 bench/pytorch_step.py --micro-batch "$mb" --seq "$seq" --steps "$steps" --warmup 1 |
    awk -F, -v r="$r" 'NR > 1 { print r ",pytorch-" $2 "," $4 }' >> "$out"
  if [ $bf16 = 1 ]; then
    /usr/bin/python3 bench/pytorch_step.py --micro-batch "$mb" --seq "$seq" --steps "$steps" --warmup 1 --bf16 |
      awk -F, -v r="$r" 'NR > 1 { print r ",pytorch-" $2 "," $4 }' >> "$out"
  fi
  echo "round $r done" >&2
done
/usr/bin/python3 - "$out" "$mb" "$seq" "$threads" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r, impl, tok = line.strip().split(",")
    runs[impl].append(float(tok))
print(f"gpt2-124m, micro-batch {sys.argv[2]} x {sys.argv[3]}, {sys.argv[4]} threads, {sys.argv[5]}; tokens/s per run (interleaved), median")
med = {k: statistics.median(v) for k, v in runs.items()}
for k, v in runs.items():
    print(f"  {k:<18} {', '.join(f'{x:.1f}' for x in v):<40} median {med[k]:.1f}")
for ours in [k for k in med if k.startswith("hokusai")]:
    for peer in [k for k in med if k.startswith("pytorch")]:
        print(f"  {ours} / {peer}: {med[ours] / med[peer]:.2f}x (medians)")
PY
