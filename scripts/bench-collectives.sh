#!/usr/bin/env bash
# Allreduce table for docs/communication.md: hokusai's algorithms and Open MPI's default, then
# each Open MPI algorithm forced, for 2, 4 and 8 ranks (1 OpenMP thread per rank; more ranks than
# cores are oversubscribed and say so in the output). CSV on stdout.
#   scripts/bench-collectives.sh [build/release] [ranks...]
set -euo pipefail
build=${1:-build/release}; shift || true
ranks=("${@:-2 4 8}")
bench=$build/bench/bench_collectives
run() { mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 "$@"; }
header=1
for np in ${ranks[@]}; do
  flags=(--csv --reps 5)
  out=$(run -np "$np" "$bench" "${flags[@]}")
  if [ $header = 1 ]; then echo "$out" | head -1; header=0; fi
  echo "$out" | tail -n +2
  for algo in 1 2 3 4 5 6; do
    run -np "$np" --mca coll_tuned_use_dynamic_rules 1 --mca coll_tuned_allreduce_algorithm "$algo" \
      -x OMPI_MCA_coll_tuned_allreduce_algorithm="$algo" "$bench" "${flags[@]}" --mpi-only | tail -n +2
  done
done
