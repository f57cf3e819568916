#!/usr/bin/env python3
"""png_check.py SCREENSHOT.png COLOUR[:MIN_PIXELS[:MIN_SPAN]] ...

Checks a screenshot of `hokusai report` without image libraries (zlib + PNG's five row filters):
it is not blank (at least 3% of pixels not white), and each COLOUR (#rrggbb, a run's line colour or
a phase's bar colour) covers at least MIN_PIXELS pixels spread over at least MIN_SPAN columns —
a curve drawn across its chart, not a legend swatch. Exits 1 naming what is missing."""
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        sys.exit(f"png_check.py: {path}: not a PNG file")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or colour not in (2, 6) or interlace:
                sys.exit(f"png_check.py: {path}: only 8-bit RGB/RGBA, non-interlaced (got depth {depth}, colour {colour})")
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, channels, rows


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    width, height, channels, rows = read_png(path)
    counts, columns, inked = {}, {}, 0
    wanted = {}
    for spec in sys.argv[2:]:
        parts = spec.split(":")
        rgb = tuple(int(parts[0][k:k + 2], 16) for k in (1, 3, 5))
        wanted[rgb] = (parts[0], int(parts[1]) if len(parts) > 1 else 50, int(parts[2]) if len(parts) > 2 else 0)
        counts[rgb], columns[rgb] = 0, set()
    for y, row in enumerate(rows):
        for x in range(width):
            px = tuple(row[x * channels:x * channels + 3])
            if px != (255, 255, 255):
                inked += 1
            if px in wanted:
                counts[px] += 1
                columns[px].add(x)
    failures = []
    share = inked / (width * height)
    if share < 0.03:
        failures.append(f"blank: only {100 * share:.1f}% of the pixels are not white")
    for rgb, (name, min_pixels, min_span) in wanted.items():
        span = (max(columns[rgb]) - min(columns[rgb])) if columns[rgb] else 0
        print(f"png_check.py: {name}: {counts[rgb]} pixels over {span} columns")
        if counts[rgb] < min_pixels or span < min_span:
            failures.append(f"{name}: {counts[rgb]} pixels over {span} columns, expected >= {min_pixels} over >= {min_span}")
    print(f"png_check.py: {path}: {width}x{height}, {100 * share:.1f}% inked")
    if failures:
        for f in failures:
            print(f"png_check.py: FAIL: {f}", file=sys.stderr)
        sys.exit(1)


main()
