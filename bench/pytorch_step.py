#!/usr/bin/env python3
"""The PyTorch peer of bench_train_step: one training step of a GPT-2 decoder — forward, the
cross-entropy, backward, AdamW — in PyTorch, with the model of tests/model/pytorch_reference.py
(the independent implementation test_pytorch_parity checks hokusai against) at a config's shape.
Prints tokens/s as CSV (the median of the timed steps), like `bench_train_step --csv`.

    OMP_NUM_THREADS=2 /usr/bin/python3 bench/pytorch_step.py --layers 12 --hidden 768 --heads 12 \
        --ffn 3072 --vocab 50304 --micro-batch 4 --seq 256 [--bf16] [--steps 3] [--warmup 1]

Attention is the explicit causal softmax(QK^T/sqrt(d))V of the reference (it keeps the T x T
probabilities): Debian 12's PyTorch 1.13 has no fused scaled_dot_product_attention (2.0+).
--bf16 runs the step under torch.autocast("cpu", dtype=torch.bfloat16) with fp32 master
weights, as PyTorch's mixed precision does. Needs ./scripts/install-deps.sh --torch.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "model"))
from pytorch_reference import GPT2  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--ffn", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=50304)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--bf16", action="store_true")
    a = ap.parse_args()
    if a.hidden % a.heads:
        sys.exit(f"pytorch_step: --hidden {a.hidden} is not a multiple of --heads {a.heads}")
    torch.manual_seed(1234)
    cfg = dict(hidden=a.hidden, heads=a.heads, ffn_hidden=a.ffn, vocab_size=a.vocab, max_seq_len=a.seq,
               layers=a.layers, norm_eps=1e-5)
    model = GPT2(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, a.vocab, (a.micro_batch, a.seq))
    targets = torch.randint(0, a.vocab, (a.micro_batch, a.seq))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            logits = model(tokens)
            loss = F.cross_entropy(logits.float().view(-1, a.vocab), targets.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    for _ in range(a.warmup):
        step()
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    tokens_per_s = a.micro_batch * a.seq / med
    print("impl,precision,threads,tokens_per_s,step_ms")
    print(f"pytorch-{torch.__version__},{'bf16' if a.bf16 else 'fp32'},{torch.get_num_threads()},"
          f"{tokens_per_s:.1f},{1e3 * med:.1f}")


if __name__ == "__main__":
    main()
