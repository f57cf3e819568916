#include "comm/mpi.hpp"

#include <climits>
#include <cstdlib>

#include "comm/range.hpp"

namespace hokusai::comm {

void check_mpi(int rc, const char* expr, const char* file, int line) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  int rank = -1, initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  throw MpiError("rank " + std::to_string(rank) + ": " + expr + " failed: " + std::string(text, size_t(len)) + " (" +
                 file + ":" + std::to_string(line) + ")");
}

Environment::Environment(int* argc, char*** argv, int required) {
#if HOKUSAI_SMPI  // simulated ranks run no OpenMP threads, and SMPI reports MPI_THREAD_SINGLE
  required = MPI_THREAD_SINGLE;
#endif
  HOKUSAI_MPI(MPI_Init_thread(argc, argv, required, &provided_));
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (provided_ < required) {
    MPI_Finalize();
    throw MpiError("MPI provides thread level " + std::to_string(provided_) + " but hokusai needs " +
                   std::to_string(required) + " (MPI_THREAD_FUNNELED = " + std::to_string(MPI_THREAD_FUNNELED) +
                   "): use an MPI library built with thread support");
  }
}

Environment::~Environment() { MPI_Finalize(); }

Communicator Communicator::world() { return Communicator(MPI_COMM_WORLD, false); }

Communicator::Communicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
}

Communicator::~Communicator() {
  if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

Communicator& Communicator::operator=(Communicator&& o) noexcept {
  if (this != &o) {
    if (owned_ && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    comm_ = std::exchange(o.comm_, MPI_COMM_NULL);
    owned_ = o.owned_;
  }
  return *this;
}

int Communicator::rank() const {
  int r = 0;
  HOKUSAI_MPI(MPI_Comm_rank(comm_, &r));
  return r;
}

int Communicator::size() const {
  int s = 0;
  HOKUSAI_MPI(MPI_Comm_size(comm_, &s));
  return s;
}

Communicator Communicator::split(int color, int key) const {
  MPI_Comm out = MPI_COMM_NULL;
  HOKUSAI_MPI(MPI_Comm_split(comm_, color, key, &out));
  return Communicator(out, true);
}

std::vector<int> Communicator::world_ranks() const {
  MPI_Group mine, world;
  HOKUSAI_MPI(MPI_Comm_group(comm_, &mine));
  HOKUSAI_MPI(MPI_Comm_group(MPI_COMM_WORLD, &world));
  const int n = size();
  std::vector<int> local(static_cast<size_t>(n)), global(static_cast<size_t>(n));
  for (size_t i = 0; i < local.size(); ++i) local[i] = int(i);
  HOKUSAI_MPI(MPI_Group_translate_ranks(mine, int(local.size()), local.data(), world, global.data()));
  MPI_Group_free(&mine);
  MPI_Group_free(&world);
  return global;
}

void Communicator::barrier() const { HOKUSAI_MPI(MPI_Barrier(comm_)); }

double wall_time() { return MPI_Wtime(); }

void abort_job(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
  std::abort();  // MPI_Abort does not return; the compiler cannot know
}

namespace {
MPI_Op mpi_op(Reduce op) {
  switch (op) {
    case Reduce::sum: return MPI_SUM;
    case Reduce::min: return MPI_MIN;
    case Reduce::max: return MPI_MAX;
  }
  return MPI_SUM;
}
}  // namespace

double Communicator::allreduce(double x, Reduce op) const {
  if (size() > 1) HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, mpi_op(op), comm_));
  return x;
}

std::string Communicator::broadcast(std::string text, int root) const {
  if (size() == 1) return text;
  double n = double(text.size());  // exact below 2^53
  HOKUSAI_MPI(MPI_Bcast(&n, 1, MPI_DOUBLE, root, comm_));
  text.resize(size_t(n));
  if (n > 0) HOKUSAI_MPI(MPI_Bcast(text.data(), int(n), MPI_BYTE, root, comm_));
  return text;
}

std::vector<double> Communicator::gather(const std::vector<double>& mine, int root) const {
  const int n = int(mine.size());
  std::vector<double> all(rank() == root ? mine.size() * size_t(size()) : 0);
  HOKUSAI_MPI(MPI_Gather(mine.data(), n, MPI_DOUBLE, all.data(), n, MPI_DOUBLE, root, comm_));
  return all;
}

std::vector<float> Communicator::gather_even(const std::vector<float>& mine, int64_t total, int root) const {
  const int p = size();
  std::vector<int> counts(static_cast<size_t>(p)), displs(static_cast<size_t>(p));
  for (int q = 0; q < p; ++q) {
    const Range r = split_evenly(total, p, q);
    if (r.end > INT32_MAX)
      throw std::runtime_error("gather of " + std::to_string(total) + " values: beyond 2^31 is not supported yet");
    counts[size_t(q)] = int(r.size());
    displs[size_t(q)] = int(r.begin);
  }
  std::vector<float> full(rank() == root ? size_t(total) : 0);
  HOKUSAI_MPI(MPI_Gatherv(mine.data(), int(mine.size()), MPI_FLOAT, full.data(), counts.data(), displs.data(),
                          MPI_FLOAT, root, comm_));
  return full;
}

namespace {
// MPI counts are int: a larger block is an error that says what to change.
int count_of(int64_t n, const char* what) {
  if (n > INT32_MAX || n < 0)
    throw std::runtime_error(std::string(what) + ": a block of " + std::to_string(n) +
                             " elements exceeds MPI's int count; use more ranks or smaller micro-batches");
  return int(n);
}

void counts_and_displs(const std::vector<int64_t>& counts, std::vector<int>& c, std::vector<int>& d, const char* what) {
  int64_t at = 0;
  for (int64_t n : counts) {
    c.push_back(count_of(n, what));
    d.push_back(count_of(at, what));
    at += n;
  }
}
}  // namespace

void Communicator::allreduce(float* x, int64_t n, Reduce op) const {
  if (size() > 1 && n > 0)
    HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, x, count_of(n, "allreduce"), MPI_FLOAT, mpi_op(op), comm_));
}

void Communicator::allreduce(double* x, int64_t n, Reduce op) const {
  if (size() > 1 && n > 0)
    HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, x, count_of(n, "allreduce"), MPI_DOUBLE, mpi_op(op), comm_));
}

void Communicator::allgatherv(const float* mine, float* out, const std::vector<int64_t>& counts) const {
  std::vector<int> c, d;
  counts_and_displs(counts, c, d, "allgatherv");
  HOKUSAI_MPI(MPI_Allgatherv(mine, c[size_t(rank())], MPI_FLOAT, out, c.data(), d.data(), MPI_FLOAT, comm_));
}

void Communicator::reduce_scatter(const float* full, float* mine, const std::vector<int64_t>& counts) const {
  std::vector<int> c, d;
  counts_and_displs(counts, c, d, "reduce_scatter");
  HOKUSAI_MPI(MPI_Reduce_scatter(full, mine, c.data(), MPI_FLOAT, MPI_SUM, comm_));
}

int Communicator::lowest_rank_where(bool flag) const {
  const int n = size();
  int lowest = flag ? rank() : n;
  HOKUSAI_MPI(MPI_Allreduce(MPI_IN_PLACE, &lowest, 1, MPI_INT, MPI_MIN, comm_));
  return lowest < n ? lowest : -1;
}

}  // namespace hokusai::comm
