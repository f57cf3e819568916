#!/usr/bin/env bash
# Static performance model of the SVE GEMM microkernels on A64FX (no A64FX here: this is a
# pipeline model, not a measurement). Compiles kernels/sve/sgemm_sve.cpp with the aarch64-a64fx
# flags, extracts each microkernel's inner k loop, runs llvm-mca -mcpu=a64fx on it and prints the
# predicted cycles per k step and the fraction of the two FMA pipes' peak it reaches.
# Usage: scripts/sve-model.sh [--check PCT]   (--check: exit 1 when the fp32 kernel predicts < PCT%)
# Needs g++-aarch64-linux-gnu and llvm (scripts/install-deps.sh --cross installs both).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
check=""
if [ "${1:-}" = "--check" ]; then check=${2:?--check needs a percentage}; fi
cxx=${CXX_AARCH64:-aarch64-linux-gnu-g++}
mca=$(command -v llvm-mca || command -v llvm-mca-14 || true)
if ! command -v "$cxx" >/dev/null; then echo "sve-model: $cxx not found: run scripts/install-deps.sh --cross" >&2; exit 1; fi
if [ -z "$mca" ]; then echo "sve-model: llvm-mca not found: run scripts/install-deps.sh --cross (package llvm)" >&2; exit 1; fi
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
flags="-std=c++20 -O3 -fno-math-errno -mcpu=a64fx -msve-vector-bits=512"
"$cxx" $flags -I"$root" -I"$root/include" -S -o "$work/sve.s" "$root/kernels/sve/sgemm_sve.cpp"
echo "A64FX static model: $("$mca" --version | grep -m1 -i 'llvm version' | sed 's/^ *//'), $cxx $flags"
echo "(llvm-mca's A64FX scheduling model; predicted, not measured. FMA peak = 2 FMLA per cycle.)"
printf '%-22s %10s %8s %10s %12s %10s\n' kernel instr/k fmla/k cycles/k bound-cycles pct_fma
python3 - "$work/sve.s" "$mca" "$check" <<'PY'
import re, subprocess, sys
asm, mca, check = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(asm).read().splitlines()
kernels = {"sgemm_sve_10x2v": "_ZN7hokusai7kernels15sgemm_sve_10x2v"}  # fp32 and fp16 products (rounded panels)
status = 0
for name, sym in kernels.items():
    start = next(i for i, l in enumerate(lines) if l.startswith(sym) and l.endswith(":"))
    end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith(".size"))
    body = lines[start:end]
    # The k loop: the labelled block that branches back to its own label with the most FMLAs.
    best = None
    for i, l in enumerate(body):
        m = re.match(r"^(\.L\d+):$", l)
        if not m:
            continue
        for j in range(i + 1, len(body)):
            if re.search(r"\bb(\.\w+|ne|eq)?\s+" + re.escape(m.group(1)) + r"$", body[j].strip()):
                loop = [x for x in body[i + 1:j + 1] if x.strip() and not x.strip().startswith(".")]
                n = sum(1 for x in loop if x.strip().startswith("fmla"))
                if best is None or n > best[0]:
                    best = (n, loop)
                break
    fmla, loop = best
    src = "\n".join(loop) + "\n"
    out = subprocess.run([mca, "-mtriple=aarch64", "-mcpu=a64fx", "-iterations=1000"], input=src,
                         capture_output=True, text=True, check=True).stdout
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", out).group(1)) / 1000
    bound = fmla / 2
    pct = 100 * bound / cycles
    print(f"{name:<22} {len(loop):>10} {fmla:>8} {cycles:>10.2f} {bound:>12.1f} {pct:>9.1f}%")
    if check and name == "sgemm_sve_10x2v" and pct < float(check):
        print(f"sve-model: {name} predicts {pct:.1f}% of FMA peak, below the {check}% target", file=sys.stderr)
        status = 1
sys.exit(status)
PY

# The elementwise kernels (kernels/ops.cpp) are written for the auto-vectoriser; this shows that
# every float op of a training step compiles to SVE code for A64FX (instructions on z registers).
echo
echo "Elementwise ops (kernels/ops.cpp, float): SVE instructions / all instructions, OpenMP bodies included"
"$cxx" $flags -fopenmp -I"$root" -I"$root/include" -c -o "$work/ops.o" "$root/kernels/ops.cpp"
aarch64-linux-gnu-objdump -d -C "$work/ops.o" | python3 -c '
import re, sys
counts, name = {}, None
for line in sys.stdin:
    m = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
    if m:
        f = re.search(r"hokusai::kernels::(?:\(anonymous namespace\)::)?(\w+)<float>", m.group(1))
        name = f.group(1) if f else None
        continue
    if name and re.match(r"^\s+[0-9a-f]+:", line):
        c = counts.setdefault(name, [0, 0])
        c[1] += 1
        c[0] += bool(re.search(r"\bz[0-9]+\.", line))
# Functions of a few instructions only forward to another op (rope_forward -> rope_rotate).
none = [n for n, (s, t) in counts.items() if s == 0 and t > 8]
for n, (s, t) in sorted(counts.items()):
    print(f"  {n:<32} {s:>5} / {t:<5}" + ("  (forwards to another op)" if t <= 8 else ""))
if none:
    print("sve-model: no SVE code in: " + ", ".join(sorted(none)), file=sys.stderr)
'
