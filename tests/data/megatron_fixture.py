#!/usr/bin/env python3
"""Independent writer of Megatron indexed datasets, following the documented layout only
(../shared/REFERENCE.md, Megatron-LM's indexed_dataset.py): no hokusai code involved.

    megatron_fixture.py OUTDIR

writes OUTDIR/fixture_u16.{bin,idx} (dtype 8) and OUTDIR/fixture_i32.{bin,idx} (dtype 4), each
holding the documents below: several sequences per document, an empty document and an empty
sequence. tests/data/test_data.cpp checks hokusai reads exactly these tokens and boundaries.
"""
import os
import struct
import sys

# documents -> sequences -> tokens
DOCS = [
    [[1, 2, 3], [4, 5]],          # two sequences
    [],                           # an empty document (no sequences)
    [[6]],
    [[], [7, 8, 9, 10]],          # an empty sequence, then a long one
    [[65000, 0, 257]],            # large ids (fit in uint16)
]


def write(prefix, dtype_code, fmt):
    size = struct.calcsize(fmt)
    lengths, pointers, doc_idx = [], [], [0]
    offset = 0
    with open(prefix + ".bin", "wb") as b:
        for doc in DOCS:
            for seq in doc:
                b.write(struct.pack("<%d%s" % (len(seq), fmt), *seq))
                lengths.append(len(seq))
                pointers.append(offset)
                offset += len(seq) * size
            doc_idx.append(len(lengths))
    with open(prefix + ".idx", "wb") as f:
        f.write(b"MMIDIDX\x00\x00")
        f.write(struct.pack("<Q", 1))
        f.write(struct.pack("<B", dtype_code))
        f.write(struct.pack("<Q", len(lengths)))
        f.write(struct.pack("<Q", len(doc_idx)))
        f.write(struct.pack("<%di" % len(lengths), *lengths))
        f.write(struct.pack("<%dq" % len(pointers), *pointers))
        f.write(struct.pack("<%dq" % len(doc_idx), *doc_idx))


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write(os.path.join(out, "fixture_u16"), 8, "H")
    write(os.path.join(out, "fixture_i32"), 4, "i")


if __name__ == "__main__":
    main()
