#!/usr/bin/env python3
"""Reads `bench_gemm --csv` output and prints the docs/performance.md table and the issue's targets.

    build/release/bench/bench_gemm --reps 5 --csv > gemm.csv
    scripts/gemm-table.py gemm.csv            # markdown table + one verdict line per target
    scripts/gemm-table.py --strict gemm.csv   # exit 1 when a target is missed

Targets (fp32): hokusai >= the faster of OpenBLAS and oneDNN on every shape, layout and thread
count; >= 90% of the probed fp32 peak on the 13B shapes and the square one. bf16: hokusai bf16
>= 1.8x hokusai fp32 on the 13B shapes.
"""
import argparse
import csv
import statistics
import sys

SHAPES = {
    (1024, 2304, 768): "gpt2", (1024, 768, 768): "gpt2", (1024, 3072, 768): "gpt2",
    (1024, 768, 3072): "gpt2", (1024, 50304, 768): "gpt2",
    (2048, 2592, 5184): "13b", (2048, 5184, 864): "13b", (2048, 3456, 5184): "13b",
    (2048, 5184, 3456): "13b", (2048, 2048, 2048): "square",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = ap.parse_args()

    rows = {}
    expected = "backend,dtype,layout,m,n,k,threads,gflops,pct_peak".split(",")
    with open(args.csv, newline="") as f:
        # bench_gemm's "# ..." lines (the run's machine and blocks, our variants' ratios) are not rows.
        reader = csv.DictReader(line for line in f if not line.startswith("#"))
        if reader.fieldnames != expected:
            sys.exit(f"{args.csv}: header is {reader.fieldnames}, expected {','.join(expected)} "
                     "(the output of bench_gemm --csv)")
        for r in reader:
            key = (int(r["m"]), int(r["n"]), int(r["k"]), r["layout"], int(r["threads"]))
            rows.setdefault(key, {})[(r["backend"], r["dtype"])] = (float(r["gflops"]), float(r["pct_peak"]))
    if not rows:
        sys.exit(f"{args.csv}: no measurements")

    print("| shape (M, N, K) | layout | threads | hokusai fp32 | OpenBLAS | oneDNN | hokusai ÷ best peer "
          "| hokusai bf16 | bf16 ÷ fp32 | oneDNN bf16 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios, peer_misses, peak_misses, bf16_misses, bf16_ratios = [], [], [], [], []
    peak_checked = 0
    for key in sorted(rows, key=lambda k: (list(SHAPES).index(k[:3]) if k[:3] in SHAPES else 99, k[3], k[4])):
        m, n, k, layout, threads = key
        got = rows[key]
        family = SHAPES.get((m, n, k), "other")
        ours = got.get(("hokusai", "fp32"))
        peers = [got[p][0] for p in (("openblas", "fp32"), ("onednn", "fp32")) if p in got]
        cell = lambda p: f"{got[p][0]:.0f} ({got[p][1]:.0f}%)" if p in got else "—"
        ratio = ours[0] / max(peers) if ours and peers else None
        bf16 = got.get(("hokusai", "bf16"))
        bf16_ratio = bf16[0] / ours[0] if bf16 and ours else None
        onednn_bf16 = got.get(("onednn", "bf16"))
        print(f"| {family} ({m}, {n}, {k}) | {layout} | {threads} | {cell(('hokusai', 'fp32'))} "
              f"| {cell(('openblas', 'fp32'))} | {cell(('onednn', 'fp32'))} "
              f"| {'—' if ratio is None else f'{ratio:.2f}'} | {'—' if not bf16 else f'{bf16[0]:.0f}'} "
              f"| {'—' if bf16_ratio is None else f'{bf16_ratio:.2f}'} "
              f"| {'—' if not onednn_bf16 else f'{onednn_bf16[0]:.0f}'} |")
        where = f"({m}, {n}, {k}) {layout} {threads} thr"
        if ratio is not None:
            ratios.append(ratio)
            if ratio < 1.0:
                peer_misses.append(f"{where}: {ratio:.2f}")
        if ours and family in ("13b", "square"):
            peak_checked += 1
            if ours[1] < 90.0:
                peak_misses.append(f"{where}: {ours[1]:.0f}%")
        if bf16_ratio is not None and family == "13b":
            bf16_ratios.append(bf16_ratio)
            if bf16_ratio < 1.8:
                bf16_misses.append(f"{where}: {bf16_ratio:.2f}x")

    print()
    if ratios:
        print(f"hokusai fp32 / faster peer: min {min(ratios):.2f}, median {statistics.median(ratios):.2f}, "
              f"max {max(ratios):.2f}; >= 1 on {len(ratios) - len(peer_misses)} of {len(ratios)}")
    verdicts = [
        ("fp32 >= faster peer everywhere", len(ratios), peer_misses),
        ("fp32 >= 90% of peak on 13B and square", peak_checked, peak_misses),
        ("bf16 >= 1.8x our fp32 on 13B", len(bf16_ratios), bf16_misses),
    ]
    if bf16_ratios:
        print(f"bf16 / fp32 on 13B: {min(bf16_ratios):.2f}-{max(bf16_ratios):.2f}")
    missed = False
    for name, checked, misses in verdicts:
        if not checked:
            print(f"no data {name}")
        elif misses:
            missed = True
            print(f"MISSED {name}: {len(misses)} cases, worst {sorted(misses, key=lambda s: float(s.split(': ')[1].rstrip('%x')))[0]}")
        else:
            print(f"met    {name} ({checked} cases)")
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
