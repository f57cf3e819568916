#!/usr/bin/env bash
# simulated_torus.sh SOURCE_DIR WORKDIR
# The collectives under SimGrid SMPI on a simulated 4x4 torus (16 nodes, Tofu-D links: 6.8 GB/s,
# 0.49 us), 16 MiB: the torus allreduce must beat the ring by >= 1.5x and stay within 1.3x of the
# alpha-beta bound (every byte a node sends, 2n(P-1)/P, spread over its 4 links). SIMULATED
# figures; scripts/simulate-collectives.sh runs the same at 512 and 768 nodes.
set -euo pipefail
src=$1; work=$2
mkdir -p "$work"
cd "$src"
smpicxx -std=c++20 -O2 -fopenmp-simd -DHOKUSAI_SMPI=1 -I. comm/grid.cpp comm/mpi.cpp comm/collectives.cpp \
  comm/topology.cpp comm/nonblocking.cpp bench/collectives.cpp -o "$work/bench_collectives_smpi"
cat > "$work/t16.xml" <<'XML'
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <cluster id="torus" prefix="node-" suffix="" radical="0-15" speed="1Gf" bw="6.8GBps" lat="0.49us"
           topology="TORUS" topo_parameters="4,4"/>
</platform>
XML
seq 0 15 | sed 's/^/node-/' > "$work/t16.hosts"
smpirun -np 16 -platform "$work/t16.xml" -hostfile "$work/t16.hosts" --cfg=smpi/simulate-computation:no \
  --cfg=smpi/test:0 --cfg=smpi/lat-factor:0:1 --cfg=smpi/bw-factor:0:1 --cfg=smpi/shared-malloc:global \
  --log=root.thres:critical \
  "$work/bench_collectives_smpi" --csv --no-mpi --reps 1 --min 16777216 --max 16777216 --torus 4x4 > "$work/out.csv"
python3 - "$work/out.csv" <<'PY'
import csv, sys
t = {r["algorithm"]: float(r["time_s"]) for r in csv.DictReader(open(sys.argv[1]))}
n, P, beta, alpha = 16 << 20, 16, 1 / 6.8e9, 0.49e-6
bound = 2 * n * (P - 1) / P * beta / 4 + 2 * (3 + 3) * alpha
torus, ring, rab = t["torus_4x4"], t["ring"], t["rabenseifner"]
print(f"SIMULATED 4x4 torus, 16 MiB: torus {torus*1e3:.3f} ms, ring {ring*1e3:.3f} ms ({ring/torus:.2f}x), "
      f"rabenseifner {rab*1e3:.3f} ms ({rab/torus:.2f}x), alpha-beta bound {bound*1e3:.3f} ms ({torus/bound:.2f}x)")
if ring / torus < 1.5 or rab / torus < 1.5: sys.exit("FAIL: the torus allreduce is not 1.5x faster than ring and Rabenseifner")
if torus / bound > 1.3: sys.exit("FAIL: the torus allreduce is beyond 1.3x the alpha-beta bound")
PY
