// One training step's communication as the planner lists it, replayed with the comm layer's own
// code on a simulated torus: the check of the planner's communication terms at scale
// (scripts/simulate-plan.sh builds it with SimGrid's smpicxx and runs it under smpirun; every time
// it prints is SIMULATED). The ranks form the run's tp x pp x dp grid, placed on the torus as the
// trainer places them (comm::place, GridComms), and run, with real buffers of the real sizes:
//   tp    every stage's tensor-parallel allreduces of one micro-batch (comm::allreduce, the
//         policy's algorithm), all groups at once;
//   pp    one micro-batch's pipeline transfers: per model chunk the activations forward, then the
//         gradients backward, every stage sending while it receives; the time a stage waits for
//         what it receives (its sends are non-blocking, as in parallel::Pipeline);
//   dp    the stage's gradient arena reduced over its dp group as GradientSync does: a
//         non-blocking AllreduceHandle with the torus comms the placement built (ZeRO-1: the
//         ring reduce-scatter and allgather);
//   step  (with forward/backward times) the whole step: the stage's schedule
//         (parallel::pipeline_schedule, 1F1B or interleaved) with computation as simulated delays
//         (smpi_execute), the tp allreduces after each forward and backward, the transfers
//         between stages, then the dp reduction.
// Each phase starts after a barrier and reports, per stage, the slowest rank's seconds.
//
// Input (scripts/simulate-plan.sh writes it from `hokusai plan --json`), one item per line:
//   grid TP PP DP CHUNKS MICRO_BATCHES
//   torus SHAPE                 the nodes' torus, slowest dimension first (one rank per node)
//   stage S FORWARD BACKWARD    seconds of computation per micro-batch (all chunks; backward
//                               includes recomputation)
//   transfer S GROUP ALGORITHM BYTES COUNT   GROUP: tp, pp, dp, dp_zero1 or tied; ALGORITHM: the
//                               allreduce the trainer runs, or p2p; COUNT per micro-batch,
//                               fractional for what runs once per step (hokusai::plan::Transfer).
//                               tied (the tied embedding's sum over a pipeline's two ends, one
//                               ring of two ranks) is read and not replayed: the dp phase is
//                               compared with the plan's dp term alone.
// Output (rank 0): phase,stage,seconds
//   smpirun -np 768 ... plan_replay INPUT
#if !HOKUSAI_SMPI
#error "plan_replay runs under SimGrid SMPI: build it with scripts/simulate-plan.sh"
#endif
#include <smpi/smpi.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "comm/collectives.hpp"
#include "comm/grid_comm.hpp"
#include "comm/mpi.hpp"
#include "comm/nonblocking.hpp"
#include "comm/placement.hpp"
#include "comm/range.hpp"
#include "comm/scratch.hpp"
#include "comm/topology.hpp"
#include "parallel/schedule.hpp"

namespace {

using namespace hokusai;

struct Transfer {
  std::string group;
  comm::AllreduceAlgorithm algorithm = comm::AllreduceAlgorithm::automatic;
  int64_t bytes = 0;
  double count = 0;  // per micro-batch (hokusai::plan::Transfer)
};

struct Replay {
  int tp = 1, pp = 1, dp = 1, chunks = 1, micro_batches = 1;
  std::string torus;
  std::map<int, std::pair<double, double>> compute;  // stage -> forward, backward seconds per micro-batch
  std::map<int, std::vector<Transfer>> transfers;     // stage -> its list
};

Replay read_replay(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot read the replay input");
  Replay r;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::istringstream is(line);
    std::string key;
    if (!(is >> key)) continue;
    bool ok = true;
    if (key == "grid") {
      ok = bool(is >> r.tp >> r.pp >> r.dp >> r.chunks >> r.micro_batches);
    } else if (key == "torus") {
      ok = bool(is >> r.torus);
    } else if (key == "stage") {
      int s = 0;
      double f = 0, b = 0;
      ok = bool(is >> s >> f >> b);
      r.compute[s] = {f, b};
    } else if (key == "transfer") {
      int s = 0;
      Transfer t;
      double bytes = 0;
      std::string algorithm;
      ok = bool(is >> s >> t.group >> algorithm >> bytes >> t.count);
      t.bytes = int64_t(bytes);
      if (ok && algorithm != "p2p") t.algorithm = parse_name<comm::AllreduceAlgorithm>(algorithm);
      if (t.group != "tp" && t.group != "pp" && t.group != "dp" && t.group != "dp_zero1" && t.group != "tied") ok = false;
      r.transfers[s].push_back(t);
    } else {
      ok = false;
    }
    if (!ok) throw std::runtime_error(path + ":" + std::to_string(n) + ": cannot read '" + line + "'");
  }
  if (r.tp < 1 || r.pp < 1 || r.dp < 1 || r.chunks < 1 || r.micro_batches < 1)
    throw std::runtime_error(path + ": no valid 'grid TP PP DP CHUNKS MICRO_BATCHES' line");
  return r;
}

// Every rank's seconds, the slowest per stage, printed by rank 0 as phase,stage,seconds.
void report(const comm::GridComms& g, const char* phase, double seconds) {
  const std::vector<double> all = g.world.gather({double(g.grid.pp_rank()), seconds}, 0);
  if (g.world.rank() != 0) return;
  std::map<int, double> slowest;
  for (size_t i = 0; i + 1 < all.size(); i += 2) {
    double& s = slowest[int(all[i])];
    s = std::max(s, all[i + 1]);
  }
  for (const auto& [stage, s] : slowest) std::printf("%s,%d,%.9g\n", phase, stage, s);
  std::fflush(stdout);
}

class Runner {
 public:
  Runner(const Replay& r, const comm::GridComms& g) : r_(r), g_(g), stage_(g.grid.pp_rank()) {
    const auto it = r.transfers.find(stage_);
    if (it != r.transfers.end()) mine_ = it->second;
    // The buffers' contents are never looked at (SMPI shares their pages between ranks, see
    // comm/scratch.hpp): they are not filled — on 768 ranks filling them took a quarter of the
    // replay's run time.
    int64_t widest = 1, gradients = 0;
    for (const Transfer& t : mine_) {
      widest = std::max(widest, t.bytes / 4);
      if (t.group == "dp" || t.group == "dp_zero1") gradients = std::max(gradients, t.bytes / 4);
      if (t.group == "pp") act_ = t.bytes / 4;
    }
    buf_.resize(widest);
    grads_.resize(gradients);
    if (act_ > 0) recv_.resize(act_);
  }

  // `share` of a micro-batch's tp allreduces (1: all of them; the step runs them spread over its
  // forwards and backwards: each call runs the ones its share completes, so every micro-batch
  // runs exactly its list).
  void tp(double share) {
    owed_.resize(mine_.size());
    for (size_t k = 0; k < mine_.size(); ++k) {
      const Transfer& t = mine_[k];
      if (t.group != "tp") continue;
      owed_[k] += t.count * share;
      for (; owed_[k] > 0.5; owed_[k] -= 1)
        comm::allreduce(g_.tp, buf_.data(), t.bytes / 4, comm::ReduceOp::sum, t.algorithm);
    }
  }

  // Round `chunk` of one micro-batch's pipeline transfers: every virtual stage of that chunk
  // receives its input (forward) or its output's gradient (backward) — on stage 0 (P-1) from the
  // previous (next) chunk of stage P-1 (0) — all at once after a barrier. Returns the seconds this
  // stage waited for its receive (its sends are non-blocking, as in parallel::Pipeline).
  double exchange(int chunk, bool forward) {
    const int P = r_.pp, vs = chunk * P + stage_, last = r_.chunks * P - 1;
    if (act_ == 0 || P == 1) return 0;
    const bool sends = forward ? stage_ < P - 1 || chunk >= 1 : stage_ > 0 || chunk + 1 < r_.chunks;
    g_.pp.barrier();
    comm::Request out;
    if (sends) out = comm::isend(g_.pp, buf_.data(), act_, (stage_ + (forward ? 1 : P - 1)) % P, tag(0, chunk, forward));
    const double t0 = comm::wall_time();
    if (forward ? vs > 0 : vs < last)
      comm::irecv(g_.pp, recv_.data(), act_, (stage_ + (forward ? P - 1 : 1)) % P, tag(0, chunk, forward)).wait();
    const double waited = comm::wall_time() - t0;
    if (sends) out.wait();
    return waited;
  }

  void dp() {
    for (const Transfer& t : mine_) {
      const int64_t n = t.bytes / 4;
      float* grads = grads_.data();
      if (t.group == "dp") {
        // As DataParallel::ready: the plan's algorithm (the config's, resolved for this size).
        const comm::AllreduceAlgorithm a = t.algorithm;
        if (a == comm::AllreduceAlgorithm::hierarchical)
          comm::AllreduceHandle(*g_.dp_nodes, grads, n, comm::ReduceOp::sum, 1).wait();
        else
          comm::AllreduceHandle(g_.dp, grads, n, comm::ReduceOp::sum, a, 1, g_.dp_torus.get()).wait();
      } else if (t.group == "dp_zero1") {
        std::vector<comm::Range> chunks;
        for (int q = 0; q < g_.dp.size(); ++q) chunks.push_back(comm::split_evenly(n, g_.dp.size(), q));
        comm::AllreduceHandle::ring_reduce_scatter(g_.dp, grads, chunks, 1).wait();
        comm::AllreduceHandle::ring_allgather(g_.dp, grads, chunks, 2).wait();
      }
    }
  }

  // The step: the stage's schedule with computation as delays, then the dp reduction.
  void step() {
    const auto it = r_.compute.find(stage_);
    const double f = it == r_.compute.end() ? 0 : it->second.first / r_.chunks;
    const double b = it == r_.compute.end() ? 0 : it->second.second / r_.chunks;
    const double share = 0.5 / r_.chunks;  // half the tp allreduces in a forward, half in a backward
    for (const parallel::ScheduleOp& op : parallel::pipeline_schedule(r_.pp, stage_, r_.micro_batches, r_.chunks)) {
      receive(op.micro, op.chunk, op.forward);
      smpi_execute(op.forward ? f : b);
      tp(share);
      send(op.micro, op.chunk, op.forward);
    }
    for (comm::Request& s : sends_) s.wait();
    sends_.clear();
    dp();
  }

 private:
  // A transfer's tag: the receiving virtual stage's micro-batch and chunk and the direction.
  int tag(int micro, int chunk, bool forward) const { return 2 * (micro * r_.chunks + chunk) + (forward ? 0 : 1); }
  // Receive what chunk `chunk` of this stage needs: its input (forward) from the previous virtual
  // stage, or its output's gradient (backward) from the next.
  void receive(int micro, int chunk, bool forward) {
    const int P = r_.pp, vs = chunk * P + stage_, last = r_.chunks * P - 1;
    if (P == 1 || (forward ? vs == 0 : vs == last)) return;
    comm::irecv(g_.pp, recv_.data(), act_, (stage_ + (forward ? P - 1 : 1)) % P, tag(micro, chunk, forward)).wait();
  }
  // Send chunk `chunk`'s output (forward) to the next virtual stage, or its input's gradient
  // (backward) to the previous: on stage P-1 (0) that is the next (previous) chunk of stage 0 (P-1).
  void send(int micro, int chunk, bool forward) {
    const int P = r_.pp, vs = chunk * P + stage_, last = r_.chunks * P - 1;
    if (P == 1 || (forward ? vs == last : vs == 0)) return;
    const int to = (vs + (forward ? 1 : -1)) / P;  // the receiver's chunk
    sends_.push_back(
        comm::isend(g_.pp, buf_.data(), act_, (stage_ + (forward ? 1 : P - 1)) % P, tag(micro, to, forward)));
  }

  const Replay& r_;
  const comm::GridComms& g_;
  int stage_ = 0;
  int64_t act_ = 0;
  std::vector<Transfer> mine_;
  comm::ScratchOf<float> buf_, recv_, grads_;  // grads_: the stage's gradient arena (dp)
  std::vector<comm::Request> sends_;
  std::vector<double> owed_;  // tp allreduces a share of a micro-batch has not yet run
};

}  // namespace

int main(int argc, char** argv) {
  comm::Environment env(&argc, &argv);
  const comm::Communicator world = comm::Communicator::world();
  try {
    if (argc != 2) throw std::runtime_error("usage: plan_replay INPUT (scripts/simulate-plan.sh writes it)");
    const Replay r = read_replay(argv[1]);
    const comm::GridShape shape{r.tp, r.pp, r.dp};
    if (shape.world() != world.size())
      throw std::runtime_error(std::string(argv[1]) + ": grid " + std::to_string(r.tp) + "x" + std::to_string(r.pp) +
                               "x" + std::to_string(r.dp) + " needs " + std::to_string(shape.world()) +
                               " ranks, smpirun started " + std::to_string(world.size()));
    const comm::Machine machine = comm::describe_machine(world, r.torus, "", 1);
    const comm::GridComms g = comm::GridComms::build(shape, world, comm::place(shape, machine));
    Runner run(r, g);
    double t0 = 0;
    const auto start = [&] {
      g.world.barrier();
      t0 = comm::wall_time();
    };
    start();
    run.tp(1.0);
    report(g, "tp", comm::wall_time() - t0);
    start();
    double waited = 0;
    for (int c = 0; c < r.chunks; ++c) waited += run.exchange(c, true);
    for (int c = r.chunks - 1; c >= 0; --c) waited += run.exchange(c, false);
    report(g, "pp", waited);
    start();
    run.dp();
    report(g, "dp", comm::wall_time() - t0);
    if (!r.compute.empty()) {
      start();
      run.step();
      report(g, "step", comm::wall_time() - t0);
    }
  } catch (const std::exception& e) {
    if (world.rank() == 0) std::fprintf(stderr, "plan_replay: %s\n", e.what());
    comm::abort_job(1);
  }
  return 0;
}
