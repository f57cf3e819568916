// The planner's network: what the comm layer's algorithms cost on a torus of nodes, priced from
// the messages they send rather than from closed formulas, so the placement (which nodes a group
// sits on), the routes (how many hops, which links two messages share) and the concurrency of
// every group of the job count. Pure arithmetic: no MPI.
//
// Routing: dimension-order, the shortest way round each dimension, + on a tie (SimGrid's TORUS
// cluster, which scripts/simulate-plan.sh checks the plan against; Tofu's default routes are
// dimension-ordered too). A step's messages share every directed link fairly; the step lasts as
// long as its busiest link takes to carry its bytes, plus the longest route's hops × α
// (allreduce_ring and allreduce_rabenseifner exchange in lock-step: a step waits for the last).
// The torus allreduce's parts instead advance independently (comm/topology.hpp): priced as a
// fluid, each part's ring step taking its fair share of its link until it completes.
#pragma once

#include <vector>

#include "comm/algorithms.hpp"
#include "comm/torus.hpp"
#include "plan/machine.hpp"

namespace hokusai::plan {

// One message of a step: from node, to node, and the fraction of the collective's bytes it moves.
struct Message {
  int from = 0, to = 0;
  double share = 1.0;
  bool operator==(const Message&) const = default;
};
using Step = std::vector<Message>;

// What a communication pattern costs per byte of its collective: Σ over steps of the busiest
// link's share (seconds = bytes · per_byte + fixed).
struct Price {
  double per_byte = 0;  // seconds per byte of the collective
  double fixed = 0;     // seconds of latency
  double seconds(double bytes) const { return bytes * per_byte + fixed; }
};

class TorusNetwork {
 public:
  // link: one link's α and bandwidth (one direction); node: between ranks of one node.
  TorusNetwork(comm::Torus torus, LinkTier link, LinkTier node);
  // The steps in order, every message of a step at once.
  Price price(const std::vector<Step>& steps) const;

 private:
  comm::Torus torus_;
  LinkTier link_, node_;
};

// The messages of allreduce algorithm `a` (ring, rabenseifner, mpi's recursive doubling) over
// one group of p ranks, in rank numbers, step by step (comm/collectives.cpp's patterns; the
// non-blocking handle's ring is the ring).
std::vector<std::vector<Message>> allreduce_steps(comm::AllreduceAlgorithm a, int p);

// The same pattern run by every group at once: groups[g][r] = the node of rank r of group g.
std::vector<Step> on_nodes(const std::vector<std::vector<Message>>& steps, const std::vector<std::vector<int>>& groups);

// The torus allreduce (comm::TorusAllreduce over a dp group laid on `torus`, one rank per node)
// of `bytes`: its parts' ring steps as a fluid over the links (see above), plus each step's α,
// the sums at link.reduce_gbs; a node's injection bandwidth caps what its links carry at once
// (injection_gbs > 0).
double torus_allreduce_seconds(const comm::Torus& torus, double bytes, const LinkTier& link, double injection_gbs);

}  // namespace hokusai::plan
