#!/usr/bin/env python3
"""manifest_check.py CHECKPOINT_DIR...: the tensors.json of every shard of one saved step (e.g.
run/pp-stage-*/tp-rank-*/checkpoints/step_00000003) must describe the model exactly:

- each tensor's rows and cols ranges lie inside its global shape and multiply out to its local
  shape (with the padding rows), and the offsets tile the shard's parameter array in order;
- over the shards, every element of every global tensor is held exactly once by the tp-split
  tensors, and by every tp rank of its stage for a replicated one; every global tensor lives on
  one pipeline stage (the last stage's copy of a tied wte aside).

Pure Python (json only); exits 1 with the first mismatch."""
import json
import os
import sys
from collections import defaultdict


def fail(msg):
    sys.exit(f"manifest_check.py: FAIL: {msg}")


def count(ranges):
    return sum(e - b for b, e in ranges)


def overlap(a, b):  # elements two range lists share
    return sum(max(0, min(e1, e2) - max(b1, b2)) for b1, e1 in a for b2, e2 in b)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    held = defaultdict(list)  # tensor -> [(rows, cols, replicated, path)]
    shapes, stages, tp = {}, defaultdict(set), None
    for d in sys.argv[1:]:
        path = os.path.join(d, "tensors.json")
        try:
            m = json.load(open(path))
        except (OSError, ValueError) as e:
            fail(f"{path}: {e}")
        lay = m["layout"]
        tp = lay["tp"]
        at = 0
        for t in m["tensors"]:
            name, shape, g = t["name"], t["shape"], t["global_shape"]
            where = f"{path}: {name}"
            if t["offset"] != at:
                fail(f"{where}: offset {t['offset']}, expected {at} (the tensors tile the array in order)")
            numel = 1
            for n in shape:
                numel *= n
            at += numel
            rows, cols = t["rows"], t.get("cols", [[0, 1]])
            grows, gcols = g[0], (g[1] if len(g) == 2 else 1)
            local_rows, local_cols = shape[0], (shape[1] if len(shape) == 2 else 1)
            if count(rows) + t.get("padding_rows", 0) != local_rows or count(cols) != local_cols:
                fail(f"{where}: rows {rows} (+{t.get('padding_rows', 0)} padding) x cols {cols} is not {shape}")
            if any(b < 0 or e > grows or b >= e for b, e in rows) or any(b < 0 or e > gcols or b >= e for b, e in cols):
                fail(f"{where}: a range outside the global shape {g}")
            if shapes.setdefault(name, g) != g:
                fail(f"{where}: global shape {g}, another shard says {shapes[name]}")
            if t.get("tied_copy_of_first_stage"):
                continue
            stages[name].add(lay["pp_rank"])
            held[name].append((rows, cols, t["replicated"], path))
        if at != m["parameters"]:
            fail(f"{path}: the tensors hold {at} values, the manifest says {m['parameters']}")
    for name, g in shapes.items():
        if len(stages[name]) != 1:
            fail(f"{name}: held by pipeline stages {sorted(stages[name])}, expected one")
        grows, gcols = g[0], (g[1] if len(g) == 2 else 1)
        parts = held[name]
        if parts[0][2]:  # replicated: whole on each of the stage's tp ranks
            if len(parts) != tp or any(count(r) != grows or count(c) != gcols for r, c, _, _ in parts):
                fail(f"{name}: replicated, but not whole on each of the {tp} tp ranks")
            continue
        # split: the pieces are disjoint and together as large as the tensor, so they cover it once
        if sum(count(r) * count(c) for r, c, _, _ in parts) != grows * gcols:
            fail(f"{name}: the shards hold {sum(count(r) * count(c) for r, c, _, _ in parts)} of its "
                 f"{grows * gcols} elements")
        for i in range(len(parts)):
            for j in range(i):
                if overlap(parts[i][0], parts[j][0]) * overlap(parts[i][1], parts[j][1]):
                    fail(f"{name}: {parts[i][3]} and {parts[j][3]} hold the same elements")
    print(f"manifest_check.py: {len(sys.argv) - 1} shards, {len(shapes)} tensors: every element held as expected")


main()
