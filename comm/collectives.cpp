#include "comm/collectives.hpp"

#include "comm/scratch.hpp"

#include <algorithm>
#include <climits>
#include <stdexcept>
#include <string>
#include <vector>

namespace hokusai::comm {

namespace {

constexpr int kTagRing = 1001, kTagFold = 1002, kTagHalve = 1003, kTagDouble = 1004, kTagUnfold = 1005,
              kTagScatter = 1006;
constexpr int64_t kMaxPiece = INT_MAX / 2;  // MPI counts are int: long buffers go in pieces

// Exchange with possibly different peers and sizes; handles buffers beyond INT_MAX elements.
template <class T>
void sendrecv(const Communicator& c, const T* send, int64_t send_n, int dst, T* recv, int64_t recv_n, int src,
              int tag) {
  int64_t done_s = 0, done_r = 0;
  do {
    const int ns = int(std::min(kMaxPiece, send_n - done_s)), nr = int(std::min(kMaxPiece, recv_n - done_r));
    HOKUSAI_MPI(MPI_Sendrecv(send + done_s, ns, Elem<T>::mpi(), dst, tag, recv + done_r, nr, Elem<T>::mpi(), src, tag,
                             c.raw(), MPI_STATUS_IGNORE));
    done_s += ns;
    done_r += nr;
  } while (done_s < send_n || done_r < recv_n);
}

template <class T>
void send(const Communicator& c, const T* p, int64_t n, int dst, int tag) {
  for (int64_t done = 0; done < n || done == 0; done += kMaxPiece) {
    HOKUSAI_MPI(MPI_Send(p + done, int(std::min(kMaxPiece, n - done)), Elem<T>::mpi(), dst, tag, c.raw()));
    if (n == 0) break;
  }
}

template <class T>
void recv(const Communicator& c, T* p, int64_t n, int src, int tag) {
  for (int64_t done = 0; done < n || done == 0; done += kMaxPiece) {
    HOKUSAI_MPI(
        MPI_Recv(p + done, int(std::min(kMaxPiece, n - done)), Elem<T>::mpi(), src, tag, c.raw(), MPI_STATUS_IGNORE));
    if (n == 0) break;
  }
}

template <class T>
void add_into(T* dst, const T* src, int64_t n) {
  Elem<T>::add(dst, src, n);
}

template <class T>
void scale(T* p, int64_t n, float s) {
  Elem<T>::scale(p, n, s);
}

int mod(int a, int p) { return ((a % p) + p) % p; }

template <class T>
void allreduce_ring(const Communicator& c, T* data, int64_t n, ReduceOp op) {
  reduce_scatter_ring(c, data, n, op);
  allgather_ring(c, data, n);
}

void allreduce_mpi(const Communicator& c, float* data, int64_t n, ReduceOp op) {
  for (int64_t done = 0; done < n; done += kMaxPiece)
    HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, data + done, int(std::min(kMaxPiece, n - done)), MPI_FLOAT, MPI_SUM, c.raw()));
  if (op == ReduceOp::average) scale(data, n, 1.0f / float(c.size()));
}

// MPI has no bf16 sum: the library's MPI_Allreduce runs on an fp32 copy (one rounding at the end,
// so it is the most accurate bf16 result, and the reference the bf16 algorithms are tested against).
void allreduce_mpi(const Communicator& c, bf16* data, int64_t n, ReduceOp op) {
  Scratch wide(n);
  for (int64_t i = 0; i < n; ++i) wide.data()[i] = to_float(data[i]);
  allreduce_mpi(c, wide.data(), n, op);
  for (int64_t i = 0; i < n; ++i) data[i] = to_bf16(wide.data()[i]);
}

template <class T>
void allreduce_rabenseifner(const Communicator& c, T* data, int64_t n, ReduceOp op) {
  const int p = c.size(), r = c.rank();
  int pow2 = 1;
  while (pow2 * 2 <= p) pow2 *= 2;
  const int rem = p - pow2;
  ScratchOf<T> tmp((n + 1) / 2 + 1);
  // Fold: among the first 2*rem ranks, each even rank hands its vector to the odd one above.
  int vrank;  // rank among the pow2 participants, -1 if folded away
  if (r < 2 * rem) {
    if (r % 2 == 0) {
      send(c, data, n, r + 1, kTagFold);
      vrank = -1;
    } else {
      tmp.resize(n);
      recv(c, tmp.data(), n, r - 1, kTagFold);
      add_into(data, tmp.data(), n);
      vrank = r / 2;
    }
  } else {
    vrank = r - rem;
  }
  const auto real = [&](int v) { return v < rem ? 2 * v + 1 : v + rem; };
  if (vrank >= 0) {
    // Reduce-scatter by recursive halving: keep one half of the current range, exchange the other.
    struct Level {
      int64_t lo, mid, hi;
      bool keep_low;
    };
    std::vector<Level> levels;
    int64_t lo = 0, hi = n;
    for (int mask = pow2 / 2; mask >= 1; mask /= 2) {
      const int partner = real(vrank ^ mask);
      const int64_t mid = lo + (hi - lo) / 2;
      const bool keep_low = (vrank & mask) == 0;
      const int64_t keep_lo = keep_low ? lo : mid, keep_hi = keep_low ? mid : hi;
      const int64_t give_lo = keep_low ? mid : lo, give_hi = keep_low ? hi : mid;
      tmp.resize(keep_hi - keep_lo);
      sendrecv(c, data + give_lo, give_hi - give_lo, partner, tmp.data(), keep_hi - keep_lo, partner, kTagHalve);
      add_into(data + keep_lo, tmp.data(), keep_hi - keep_lo);
      levels.push_back({lo, mid, hi, keep_low});
      lo = keep_lo;
      hi = keep_hi;
    }
    if (op == ReduceOp::average) scale(data + lo, hi - lo, 1.0f / float(p));
    // Allgather by recursive doubling: undo the levels, swapping owned halves with the partner.
    for (int i = int(levels.size()) - 1, mask = 1; i >= 0; --i, mask *= 2) {
      const Level& L = levels[size_t(i)];
      const int partner = real(vrank ^ mask);
      const int64_t own_lo = L.keep_low ? L.lo : L.mid, own_hi = L.keep_low ? L.mid : L.hi;
      const int64_t other_lo = L.keep_low ? L.mid : L.lo, other_hi = L.keep_low ? L.hi : L.mid;
      sendrecv(c, data + own_lo, own_hi - own_lo, partner, data + other_lo, other_hi - other_lo, partner, kTagDouble);
    }
  }
  // Unfold: the odd ranks hand the result back to the even ones.
  if (r < 2 * rem) {
    if (r % 2 == 1)
      send(c, data, n, r - 1, kTagUnfold);
    else
      recv(c, data, n, r + 1, kTagUnfold);
  }
}

}  // namespace


namespace {
constexpr int64_t kSmall = 64 << 10;
}

AllreduceAlgorithm choose_allreduce(int64_t bytes, int ranks, Layout layout) {
  // Below 64 KiB latency dominates: MPI's recursive doubling (lg p steps) wins. Above, the
  // bandwidth-optimal algorithms: on a torus the torus algorithm (all links at once: 13.9x the
  // ring and 21x Rabenseifner at 16 MiB on a simulated 768-node Tofu slice, docs/communication.md);
  // with several ranks per node the hierarchical one (a node sends n(N-1)/N bytes over the
  // network instead of q times that); otherwise Rabenseifner's 2 lg p steps beat the ring's
  // 2(p-1) once p > 2.
  if (ranks <= 1 || bytes < kSmall) return AllreduceAlgorithm::mpi;
  if (layout == Layout::torus) return AllreduceAlgorithm::torus;
  if (layout == Layout::nodes) return AllreduceAlgorithm::hierarchical;
  return ranks <= 2 ? AllreduceAlgorithm::ring : AllreduceAlgorithm::rabenseifner;
}

AllreduceAlgorithm resolve_allreduce(AllreduceAlgorithm requested, int64_t bytes, int ranks, Layout layout) {
  return requested == AllreduceAlgorithm::automatic ? choose_allreduce(bytes, ranks, layout) : requested;
}

std::string describe_policy(int64_t min_bytes, int64_t max_bytes, int ranks, Layout layout) {
  if (ranks <= 1) return "none (1 rank)";
  const AllreduceAlgorithm lo = choose_allreduce(min_bytes, ranks, layout);
  const AllreduceAlgorithm hi = choose_allreduce(max_bytes, ranks, layout);
  if (lo == hi) return std::string(name_of(lo));
  return std::string(name_of(lo)) + " below 64 KiB, " + std::string(name_of(hi)) + " above";
}

template <class T>
void allreduce(const Communicator& comm, T* data, int64_t count, ReduceOp op, AllreduceAlgorithm algorithm) {
  const int p = comm.size();
  if (p == 1 || count == 0) return;  // one rank: the sum is the data, the average too
  algorithm = resolve_allreduce(algorithm, count * int64_t(sizeof(T)), p, Layout::flat);
  switch (algorithm) {
    case AllreduceAlgorithm::mpi: return allreduce_mpi(comm, data, count, op);
    case AllreduceAlgorithm::ring: return allreduce_ring(comm, data, count, op);
    case AllreduceAlgorithm::rabenseifner: return allreduce_rabenseifner(comm, data, count, op);
    case AllreduceAlgorithm::torus:
    case AllreduceAlgorithm::hierarchical:
      throw std::invalid_argument("allreduce: the " + std::string(name_of(algorithm)) +
                                  " algorithm needs the communicator's TorusComms or Hierarchy (comm/topology.hpp)");
    case AllreduceAlgorithm::automatic: break;
  }
}

template <class T>
void reduce_scatter_ring(const Communicator& c, T* data, int64_t n, ReduceOp op) {
  const int p = c.size(), r = c.rank();
  if (p == 1) return;
  const int right = mod(r + 1, p), left = mod(r - 1, p);
  ScratchOf<T> tmp(n / p + 1);
  // Step s sends chunk r-s-1 and receives chunk r-s-2: after p-1 steps chunk r is complete here.
  for (int s = 0; s < p - 1; ++s) {
    const Range out = split_evenly(n, p, mod(r - s - 1, p)), in = split_evenly(n, p, mod(r - s - 2, p));
    sendrecv(c, data + out.begin, out.size(), right, tmp.data(), in.size(), left, kTagRing);
    add_into(data + in.begin, tmp.data(), in.size());
  }
  if (op == ReduceOp::average) {
    const Range mine = split_evenly(n, p, r);
    scale(data + mine.begin, mine.size(), 1.0f / float(p));
  }
}

template <class T>
void allgather_ring(const Communicator& c, T* data, int64_t n) {
  const int p = c.size(), r = c.rank();
  if (p == 1) return;
  const int right = mod(r + 1, p), left = mod(r - 1, p);
  for (int s = 0; s < p - 1; ++s) {
    const Range out = split_evenly(n, p, mod(r - s, p)), in = split_evenly(n, p, mod(r - s - 1, p));
    sendrecv(c, data + out.begin, out.size(), right, data + in.begin, in.size(), left, kTagRing);
  }
}

template <class T>
void allreduce(const Communicator& comm, const T* in, T* out, int64_t count, ReduceOp op, AllreduceAlgorithm algorithm) {
  if (in != out) std::copy(in, in + count, out);
  allreduce(comm, out, count, op, algorithm);
}

template <class T>
void reduce_scatter(const Communicator& c, const T* in, T* out, int64_t n, ReduceOp op) {
  const Range mine = split_evenly(n, c.size(), c.rank());
  if (c.size() == 1) {
    std::copy(in, in + n, out);
    return;
  }
  ScratchOf<T> work(n);
  std::copy(in, in + n, work.data());
  reduce_scatter_ring(c, work.data(), n, op);
  std::copy(work.data() + mine.begin, work.data() + mine.end, out);
}

template <class T>
void allgather(const Communicator& c, const T* in, T* out, int64_t n) {
  const Range mine = split_evenly(n, c.size(), c.rank());
  if (in != out + mine.begin) std::copy(in, in + mine.size(), out + mine.begin);
  allgather_ring(c, out, n);
}

template <class T>
void broadcast(const Communicator& c, T* data, int64_t n, int root, BroadcastAlgorithm algorithm) {
  const int p = c.size(), r = c.rank();
  if (root < 0 || root >= p)
    throw std::invalid_argument("broadcast: root " + std::to_string(root) + " outside the " + std::to_string(p) +
                                " ranks");
  if (p == 1 || n == 0) return;
  if (algorithm == BroadcastAlgorithm::mpi) {
    for (int64_t done = 0; done < n; done += kMaxPiece)
      HOKUSAI_MPI(MPI_Bcast(data + done, int(std::min(kMaxPiece, n - done)), Elem<T>::mpi(), root, c.raw()));
    return;
  }
  // van de Geijn: the root scatters chunk q to rank q (its link carries n(p-1)/p), then the ring
  // allgather; 2n(p-1)/p bytes per rank, against the binomial tree's n·lg p at the root.
  const Range mine = split_evenly(n, p, r);
  if (r == root) {
    std::vector<MPI_Request> reqs;
    for (int q = 0; q < p; ++q) {
      if (q == root) continue;
      const Range part = split_evenly(n, p, q);
      for (int64_t done = part.begin; done < part.end; done += kMaxPiece) {
        reqs.emplace_back();
        HOKUSAI_MPI(MPI_Isend(data + done, int(std::min(kMaxPiece, part.end - done)), Elem<T>::mpi(), q, kTagScatter,
                              c.raw(), &reqs.back()));
      }
    }
    HOKUSAI_MPI(MPI_Waitall(int(reqs.size()), reqs.data(), MPI_STATUSES_IGNORE));
  } else if (mine.size() > 0) {
    for (int64_t done = mine.begin; done < mine.end; done += kMaxPiece)
      recv(c, data + done, std::min(kMaxPiece, mine.end - done), root, kTagScatter);
  }
  allgather_ring(c, data, n);
}

#define HOKUSAI_COMM_INSTANTIATE(T)                                                                              \
  template void allreduce<T>(const Communicator&, T*, int64_t, ReduceOp, AllreduceAlgorithm);                    \
  template void allreduce<T>(const Communicator&, const T*, T*, int64_t, ReduceOp, AllreduceAlgorithm);          \
  template void reduce_scatter_ring<T>(const Communicator&, T*, int64_t, ReduceOp);                               \
  template void allgather_ring<T>(const Communicator&, T*, int64_t);                                              \
  template void reduce_scatter<T>(const Communicator&, const T*, T*, int64_t, ReduceOp);                          \
  template void allgather<T>(const Communicator&, const T*, T*, int64_t);                                         \
  template void broadcast<T>(const Communicator&, T*, int64_t, int, BroadcastAlgorithm);
HOKUSAI_COMM_INSTANTIATE(float)
HOKUSAI_COMM_INSTANTIATE(bf16)
#undef HOKUSAI_COMM_INSTANTIATE

}  // namespace hokusai::comm
