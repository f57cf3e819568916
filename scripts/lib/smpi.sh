# Sourced by the SimGrid scripts (simulate-collectives.sh, simulate-plan.sh): the simulated
# platforms and the smpirun settings they share.
#   smpi_platform FILE "a,b,c"   writes a SimGrid torus cluster (its first dimension varies
#                                fastest; hokusai lists the slowest first) and FILE.hosts, one
#                                node per rank; prints the number of nodes.
#   smpi_run NP PLATFORM PROGRAM ARGS...   smpirun with the settings below.
# Links: Tofu-D's 6.8 GB/s per direction and 0.49 us (../shared/REFERENCE.md). Computation is not
# simulated (smpi/simulate-computation:no) except where a program asks for it (smpi_execute), nor
# SMPI's default 0.1 ms per MPI_Test-like call (smpi/test:0; it would charge a progress loop for
# polling a real network does not pay), and SMPI's latency and bandwidth factors are 1 (its
# defaults are calibrated on a TCP/Ethernet cluster; the links here are given by Tofu-D's own put
# latency and bandwidth), and no cross-traffic (network/crosstraffic:0: SimGrid's default charges
# every flow's TCP acknowledgements to the reverse direction of its links, 10-20% of a torus
# allreduce that drives both directions at once; Tofu's RDMA puts send none). Buffers come from SMPI_SHARED_MALLOC (comm/scratch.hpp): simulated
# ranks share their pages, so hundreds of ranks with large buffers fit this machine.
SMPI_BW=6.8GBps SMPI_LAT=0.49us
smpi_platform() {
  local n=1; IFS=, read -ra d <<< "$2"; for x in "${d[@]}"; do n=$((n * x)); done
  cat > "$1" <<XML
<?xml version='1.0'?>
<!DOCTYPE platform SYSTEM "https://simgrid.org/simgrid.dtd">
<platform version="4.1">
  <cluster id="torus" prefix="node-" suffix="" radical="0-$((n - 1))" speed="1Gf" bw="$SMPI_BW" lat="$SMPI_LAT"
           topology="TORUS" topo_parameters="$2"/>
</platform>
XML
  seq 0 $((n - 1)) | sed 's/^/node-/' > "$1.hosts"
  echo "$n"
}
smpi_run() {
  local np=$1 platform=$2; shift 2
  smpirun -np "$np" -platform "$platform" -hostfile "$platform.hosts" \
    --cfg=smpi/simulate-computation:no --cfg=smpi/host-speed:1Gf --cfg=smpi/test:0 --cfg=smpi/lat-factor:0:1 \
    --cfg=smpi/bw-factor:0:1 --cfg=network/crosstraffic:0 --cfg=smpi/shared-malloc:global --cfg=smpi/shared-malloc-blocksize:67108864 \
    --cfg=contexts/stack-size:256 --log=root.thres:critical "$@"
}
