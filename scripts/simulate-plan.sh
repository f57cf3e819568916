#!/usr/bin/env bash
# The planner's communication terms against SimGrid: `hokusai plan --json` of a run on the
# simulated 768-node Tofu-like slice (configs/machines/simulated-tofu.yaml: SimGrid 4x4x4x2x3x2,
# one rank per node, Tofu-D links; scripts/lib/smpi.sh) lists per pipeline stage every message a
# rank takes part in (tp allreduces and pipeline transfers of a micro-batch, the dp reduction);
# bench/plan_replay.cpp, built with smpicxx from the comm layer's own sources, replays that list on
# 768 simulated ranks placed as the trainer places them, and, with --step, the whole step (the
# stage's 1F1B or interleaved schedule, computation as simulated delays of the plan's compute
# times, then the dp reduction). Prints planned beside simulated per stage and term; exits 1 when
# a term (tp, pp, dp: per stage, and their sum) differs by more than --bound percent (default 15).
# Every simulated figure is SIMULATED, every planned one MODELLED.
#   scripts/simulate-plan.sh [--bound PCT] [--step] [--out DIR] HOKUSAI CONFIG [--set K=V ...]
# e.g. the 13B recipe at tp 6 x pp 8 x dp 16 (about 10 minutes on 2 cores):
#   scripts/simulate-plan.sh build/release/hokusai configs/fugaku-llm-13b.yaml \
#     --set parallel.tp=6 --set parallel.pp=8 --set parallel.dp=16
set -euo pipefail
cd "$(dirname "$0")/.."
bound=15 step=0 dir=build/smpi-plan
while [ $# -gt 0 ]; do
  case "$1" in
    --bound) bound=$2; shift 2 ;;
    --step) step=1; shift ;;
    --out) dir=$2; shift 2 ;;
    *) break ;;
  esac
done
[ $# -ge 2 ] || { echo "usage: scripts/simulate-plan.sh [--bound PCT] [--step] [--out DIR] HOKUSAI CONFIG [--set K=V ...]" >&2; exit 2; }
hokusai=$1 config=$2; shift 2
command -v smpicxx > /dev/null || { echo "simulate-plan: smpicxx not found: ./scripts/install-deps.sh --simgrid" >&2; exit 1; }
mkdir -p "$dir"
bin=$dir/plan_replay
sources=(comm/grid.cpp comm/grid_comm.cpp comm/placement.cpp comm/shared.cpp comm/mpi.cpp comm/collectives.cpp
         comm/torus.cpp comm/topology.cpp comm/nonblocking.cpp src/parallel/schedule.cpp bench/plan_replay.cpp)
# Compiled as the release build compiles comm/ (-O3 -march=native): the replay runs the real
# reductions of every simulated rank on this machine's cores, most of its run time.
if [ ! -x "$bin" ] || [ -n "$(find comm src/parallel/schedule.* bench/plan_replay.cpp scripts/simulate-plan.sh -newer "$bin" 2>/dev/null | head -1)" ]; then
  smpicxx -std=c++20 -O3 -march=native -fopenmp-simd -DHOKUSAI_SMPI=1 -I. -Iinclude -Isrc "${sources[@]}" -o "$bin"
fi
. scripts/lib/smpi.sh
machine=configs/machines/simulated-tofu.yaml
nodes=$(smpi_platform "$dir/tofu6d.xml" 4,4,4,2,3,2)
"$hokusai" plan "$config" --machine "$machine" --nodes "$nodes" --json "$@" > "$dir/plan.json"
python3 - "$dir/plan.json" "$step" > "$dir/replay.txt" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
print("grid", p["tp"], p["pp"], p["dp"], p["virtual_stages"], p["micro_batches"])
print("torus", "2x3x2x4x4x4")
for s in p["stages"]:
    if sys.argv[2] == "1":
        t = s["time_s"]
        print("stage", s["stage"], t["forward"], t["backward"] + t["recompute"])
    for x in s["transfers"]:
        print("transfer", s["stage"], x["group"], x["algorithm"], int(x["bytes"]), x["count"])
PY
echo "== $(sed -n 1p "$dir/replay.txt"), $nodes simulated ranks on 4x4x4x2x3x2 (SIMULATED)" >&2
smpi_run "$nodes" "$dir/tofu6d.xml" "$bin" "$dir/replay.txt" > "$dir/simulated.csv"
python3 - "$dir/plan.json" "$dir/simulated.csv" "$bound" <<'PY'
import csv, json, sys
p = json.load(open(sys.argv[1])); bound = float(sys.argv[3])
sim = {(r[0], int(r[1])): float(r[2]) for r in csv.reader(open(sys.argv[2])) if len(r) == 3}
print(f"tp {p['tp']} x pp {p['pp']} x dp {p['dp']}, v {p['virtual_stages']}, {p['micro_batches']} micro-batches, "
      f"zero1 {p['zero1']}, dp torus {p['torus'] or 'none'}: planned (MODELLED) vs replayed (SIMULATED), ms")
print(f"{'stage':>5} {'term':<5} {'planned':>10} {'simulated':>10} {'error':>7}")
fails = []
planned_sum = simulated_sum = 0.0
for s in p["stages"]:
    t = s["time_s"]
    for term, key in (("tp", "tp_comm"), ("pp", "pp_transfer"), ("dp", "dp")):
        planned, got = t[key], sim.get((term, s["stage"]), 0.0)
        if planned == 0 and got == 0:
            continue
        planned_sum += planned; simulated_sum += got
        err = 100 * (planned - got) / got if got > 0 else float("inf")
        print(f"{s['stage']:>5} {term:<5} {1e3 * planned:10.3f} {1e3 * got:10.3f} {err:+6.1f}%")
        if abs(err) > bound:
            fails.append(f"stage {s['stage']} {term}: planned {1e3 * planned:.3f} ms, simulated {1e3 * got:.3f} ms ({err:+.1f}%)")
if simulated_sum > 0:
    err = 100 * (planned_sum - simulated_sum) / simulated_sum
    print(f"{'all':>5} {'comm':<5} {1e3 * planned_sum:10.3f} {1e3 * simulated_sum:10.3f} {err:+6.1f}%")
    if abs(err) > bound:
        fails.append(f"all communication: {err:+.1f}%")
if ("step", 0) in sim:
    # The replay reduces the gradients after the schedule, overlapping nothing, and runs no
    # optimizer: compare with the plan's pipeline plus the slowest stage's whole dp reduction.
    planned = p["pipeline_s"] + max(s["time_s"]["dp"] for s in p["stages"])
    got = max(v for (ph, _), v in sim.items() if ph == "step")
    err = 100 * (planned - got) / got
    print(f"{'step':>5} {'':<5} {1e3 * planned:10.3f} {1e3 * got:10.3f} {err:+6.1f}%   (pipeline + dp, no overlap)")
    if abs(err) > bound:
        fails.append(f"step: {err:+.1f}%")
if fails:
    for f in fails:
        print(f"simulate-plan: FAIL (bound {bound:g}%): {f}")
    sys.exit(1)
print(f"simulate-plan: ok, every term within {bound:g}% (planned MODELLED, replay SIMULATED)")
PY
