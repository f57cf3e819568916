// A thin checked layer over MPI: every call's return code is checked and a failure throws
// MpiError with the expression, MPI's error string, the rank and file:line. Communicators are
// RAII objects; there is no global communicator besides MPI's own world.
#pragma once

#include <mpi.h>

#include <cstdint>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace hokusai::comm {

class MpiError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws MpiError when rc != MPI_SUCCESS.
void check_mpi(int rc, const char* expr, const char* file, int line);
#define HOKUSAI_MPI(expr) ::hokusai::comm::check_mpi((expr), #expr, __FILE__, __LINE__)

// MPI_Init_thread / MPI_Finalize. Throws when MPI provides less than `required` (e.g.
// MPI_THREAD_FUNNELED: OpenMP threads inside ranks, MPI calls from the main thread only).
class Environment {
 public:
  Environment(int* argc, char*** argv, int required = MPI_THREAD_FUNNELED);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  int provided() const { return provided_; }

 private:
  int provided_ = 0;
};

// True in a build without an MPI library (HOKUSAI_WITH_MPI=OFF): comm/ runs over the one-process
// MPI of comm/serial/mpi.h and every job has one rank.
constexpr bool one_process_build() {
#ifdef HOKUSAI_ONE_PROCESS_MPI
  return true;
#else
  return false;
#endif
}

// MPI_Wtime: seconds on a clock every rank of the job reads alike.
double wall_time();

// MPI_Abort of the whole job with `code`: for an error found by one rank while the others may be
// inside a collective (nothing else can end them).
[[noreturn]] void abort_job(int code);

enum class Reduce { sum, min, max };

// An owned communicator (freed on destruction unless it is MPI_COMM_WORLD/SELF). Errors on it
// return codes (MPI_ERRORS_RETURN) so HOKUSAI_MPI can report them.
class Communicator {
 public:
  static Communicator world();
  Communicator() = default;
  explicit Communicator(MPI_Comm comm, bool owned);
  ~Communicator();
  Communicator(Communicator&& o) noexcept : comm_(std::exchange(o.comm_, MPI_COMM_NULL)), owned_(o.owned_) {}
  Communicator& operator=(Communicator&& o) noexcept;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  MPI_Comm raw() const { return comm_; }
  int rank() const;
  int size() const;
  // Ranks with the same color form one communicator, ordered by key.
  Communicator split(int color, int key) const;
  // World ranks of this communicator's members, in its rank order.
  std::vector<int> world_ranks() const;
  void barrier() const;
  // Collective: the lowest rank whose `flag` is true, or -1 when no rank's is. Lets a job agree
  // on which one of several ranks that hit the same error reports it.
  int lowest_rank_where(bool flag) const;
  // Collective: x reduced over the ranks (returned as is on one rank).
  double allreduce(double x, Reduce op) const;
  // Collective, in place: x[0..n) reduced element-wise over the ranks by the MPI library (the
  // small reductions of the model: softmax maxima, norms; comm/collectives.hpp has the
  // algorithms for large buffers).
  void allreduce(float* x, int64_t n, Reduce op) const;
  void allreduce(double* x, int64_t n, Reduce op) const;
  // Collective: every rank's block (counts[q] floats from rank q, laid in rank order) in `out` on
  // every rank; `mine` holds this rank's counts[rank()] floats.
  void allgatherv(const float* mine, float* out, const std::vector<int64_t>& counts) const;
  // Collective: the element-wise sum of every rank's `full` (the sum of counts), cut into blocks
  // in rank order; this rank receives its block (counts[rank()] floats) in `mine`.
  void reduce_scatter(const float* full, float* mine, const std::vector<int64_t>& counts) const;
  // Collective: every rank's `mine` (the same length on every rank) in rank order on `root`;
  // empty elsewhere.
  std::vector<double> gather(const std::vector<double>& mine, int root) const;
  // Root's text on every rank (a config, a path: small; below 2 GiB).
  std::string broadcast(std::string text, int root) const;
  // Collective: the vector of `total` values on `root` from every rank's part
  // split_evenly(total, size, rank) (a ZeRO-1 shard); empty elsewhere.
  std::vector<float> gather_even(const std::vector<float>& mine, int64_t total, int root) const;

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  bool owned_ = false;
};

}  // namespace hokusai::comm
