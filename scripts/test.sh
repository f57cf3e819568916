#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite through ctest.
# Usage: scripts/test.sh [preset]   (release by default; asan for AddressSanitizer+UBSan)
# Tests run one at a time: each uses every core through OpenMP, and two OpenMP processes spinning
# on 2 cores slow each other 4x.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-release}

scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" --timeout 900
