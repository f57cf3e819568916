#!/usr/bin/env bash
# check-mpich.sh [WORK_DIR] — the comm layer against MPICH instead of Open MPI.
# Builds comm/ and its MPI test suite (tests/comm/test_comm.cpp) with MPICH's compiler wrapper
# (mpicxx.mpich, Debian's libmpich-dev: ./scripts/install-deps.sh --mpich) and runs it under
# MPICH's launcher with 1, 2, 3 and 4 ranks. The exit code is non-zero when the build or any run
# fails. (The trainer itself builds against the default MPI, Open MPI; comm/ is what touches MPI.)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/mpich}
command -v mpicxx.mpich > /dev/null || { echo "check-mpich: mpicxx.mpich not found: ./scripts/install-deps.sh --mpich" >&2; exit 1; }
mkdir -p "$work"
bin=$work/test_comm_mpich
mpicxx.mpich -std=c++20 -O2 -fopenmp -I. -Iinclude comm/grid.cpp comm/torus.cpp comm/placement.cpp comm/mpi.cpp comm/grid_comm.cpp \
  comm/collectives.cpp comm/shared.cpp comm/nonblocking.cpp comm/topology.cpp tests/comm/test_comm.cpp \
  tests/support/mpi_gtest_main.cpp -lgtest -lpthread -o "$bin"
echo "check-mpich: built $bin with $(mpichversion 2>/dev/null | head -1 || echo MPICH)"
for np in 1 2 3 4; do
  OMP_NUM_THREADS=1 timeout 600 mpiexec.mpich -n "$np" "$bin" --gtest_brief=1 > "$work/np$np.log" 2>&1 || {
    echo "check-mpich: FAIL with $np ranks:"; tail -20 "$work/np$np.log"; exit 1; }
  echo "check-mpich: $np ranks: $(grep -Eo '[0-9]+ tests? from [0-9]+ test suites? ran' "$work/np$np.log" | head -1), passed"
done
