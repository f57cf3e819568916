#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest.
# Usage: scripts/test.sh [preset]   (release by default; asan for AddressSanitizer+UBSan)
# The release run also cross-builds the kernels for ARM SVE and runs their suites under
# qemu-aarch64: preset aarch64-a64fx (512-bit, as on Fugaku) and aarch64-sve (vector-length
# agnostic, at 128, 256 and 512 bits). HOKUSAI_SKIP_CROSS=1 skips them.
# Tests run one at a time: each uses every core through OpenMP, and two OpenMP processes spinning
# on 2 cores slow each other 4x.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}

# SimGrid (--simgrid) builds the simulated-torus test (ctest simulated_torus_4x4); MPICH
# (--mpich) the comm layer's MPICH build and test (ctest mpich_comm); clang and libFuzzer (--fuzz)
# the fuzz_* tests (scripts/fuzz.sh, 30 s per reader); Slurm (--slurm) the live-Slurm test
# (ctest slurm_requeue); Chromium (--chromium) the report's screenshot test; NumPy (--numpy) the
# export's independent reader (ctest hf_export).
if [ "$preset" = release ] && [ "${HOKUSAI_SKIP_CROSS:-0}" != 1 ]; then
  scripts/install-deps.sh --cross --simgrid --mpich --fuzz --slurm --chromium --numpy
else
  scripts/install-deps.sh --simgrid --mpich --fuzz --slurm --chromium --numpy
fi
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" --timeout 900

if [ "$preset" = release ] && [ "${HOKUSAI_SKIP_CROSS:-0}" != 1 ]; then
  for cross in aarch64-a64fx aarch64-sve; do
    echo "== $cross: cross build, tests under qemu-aarch64"
    cmake --preset "$cross"
    cmake --build --preset "$cross" -j "$(nproc)"
    # Emulated processes are single-threaded in effect; two at a time use both cores.
    ctest --preset "$cross" --timeout 900 -j 2
  done
fi
