// The one-process MPI of comm/serial/mpi.h: every call for a job of one rank.
#include "mpi.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

struct hokusai_one_process_window {
  void* data;
  MPI_Aint bytes;
  int disp_unit;
};

namespace {

size_t bytes_of(int count, MPI_Datatype type) { return size_t(count) * size_t(type & 0xff); }

bool valid_comm(MPI_Comm comm) { return comm != MPI_COMM_NULL; }

// The copy every collective of one rank reduces to.
int copy(const void* send, void* recv, int count, MPI_Datatype type, MPI_Comm comm) {
  if (!valid_comm(comm)) return MPI_ERR_COMM;
  if (count < 0) return MPI_ERR_ARG;
  if (send != MPI_IN_PLACE && send != recv && count > 0) std::memmove(recv, send, bytes_of(count, type));
  return MPI_SUCCESS;
}

int only_rank_zero(int rank, MPI_Comm comm) {
  if (!valid_comm(comm)) return MPI_ERR_COMM;
  return rank == 0 ? MPI_SUCCESS : MPI_ERR_RANK;
}

}  // namespace

int MPI_Init_thread(int*, char***, int required, int* provided) {
  *provided = required;  // one thread calls MPI: every level holds
  return MPI_SUCCESS;
}
int MPI_Initialized(int* flag) {
  *flag = 1;  // nothing to set up: usable at any time
  return MPI_SUCCESS;
}
int MPI_Finalize() { return MPI_SUCCESS; }
int MPI_Abort(MPI_Comm, int code) {
  std::fflush(nullptr);
  std::_Exit(code);
}
int MPI_Error_string(int code, char* text, int* len) {
  const char* what = code == MPI_SUCCESS    ? "no error"
                     : code == MPI_ERR_RANK ? "invalid rank (a one-process job has rank 0 only)"
                     : code == MPI_ERR_COMM ? "invalid communicator"
                     : code == MPI_ERR_ARG  ? "invalid argument"
                                            : "point-to-point messages need an MPI build (this build is one process: "
                                              "HOKUSAI_WITH_MPI=OFF)";
  *len = std::snprintf(text, MPI_MAX_ERROR_STRING, "%s", what);
  return MPI_SUCCESS;
}
double MPI_Wtime() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int MPI_Comm_rank(MPI_Comm comm, int* rank) {
  *rank = 0;
  return valid_comm(comm) ? MPI_SUCCESS : MPI_ERR_COMM;
}
int MPI_Comm_size(MPI_Comm comm, int* size) {
  *size = 1;
  return valid_comm(comm) ? MPI_SUCCESS : MPI_ERR_COMM;
}
int MPI_Comm_split(MPI_Comm comm, int color, int, MPI_Comm* out) {
  if (!valid_comm(comm)) return MPI_ERR_COMM;
  *out = color == MPI_UNDEFINED ? MPI_COMM_NULL : MPI_COMM_SELF + 1;  // a communicator of its own (freed alike)
  return MPI_SUCCESS;
}
int MPI_Comm_split_type(MPI_Comm comm, int, int key, MPI_Info, MPI_Comm* out) { return MPI_Comm_split(comm, 0, key, out); }
int MPI_Comm_free(MPI_Comm* comm) {
  if (!valid_comm(*comm)) return MPI_ERR_COMM;
  *comm = MPI_COMM_NULL;
  return MPI_SUCCESS;
}
int MPI_Comm_set_errhandler(MPI_Comm comm, MPI_Errhandler) { return valid_comm(comm) ? MPI_SUCCESS : MPI_ERR_COMM; }
int MPI_Comm_group(MPI_Comm comm, MPI_Group* group) {
  *group = 1;
  return valid_comm(comm) ? MPI_SUCCESS : MPI_ERR_COMM;
}
int MPI_Group_translate_ranks(MPI_Group, int n, const int* ranks, MPI_Group, int* out) {
  for (int i = 0; i < n; ++i) {
    if (ranks[i] != 0) return MPI_ERR_RANK;
    out[i] = 0;
  }
  return MPI_SUCCESS;
}
int MPI_Group_free(MPI_Group* group) {
  *group = MPI_GROUP_NULL;
  return MPI_SUCCESS;
}
int MPI_Barrier(MPI_Comm comm) { return valid_comm(comm) ? MPI_SUCCESS : MPI_ERR_COMM; }

int MPI_Allreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op, MPI_Comm comm) {
  return copy(send, recv, count, type, comm);
}
int MPI_Iallreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op, MPI_Comm comm,
                   MPI_Request* request) {
  *request = MPI_REQUEST_NULL;
  return copy(send, recv, count, type, comm);
}
int MPI_Bcast(void*, int count, MPI_Datatype, int root, MPI_Comm comm) {
  return count < 0 ? MPI_ERR_ARG : only_rank_zero(root, comm);
}
int MPI_Gather(const void* send, int send_count, MPI_Datatype send_type, void* recv, int, MPI_Datatype, int root,
               MPI_Comm comm) {
  if (const int rc = only_rank_zero(root, comm)) return rc;
  return copy(send, recv, send_count, send_type, comm);
}
int MPI_Gatherv(const void* send, int send_count, MPI_Datatype send_type, void* recv, const int*, const int* displs,
                MPI_Datatype recv_type, int root, MPI_Comm comm) {
  if (const int rc = only_rank_zero(root, comm)) return rc;
  return copy(send, static_cast<char*>(recv) + bytes_of(displs[0], recv_type), send_count, send_type, comm);
}
int MPI_Allgather(const void* send, int send_count, MPI_Datatype send_type, void* recv, int, MPI_Datatype,
                  MPI_Comm comm) {
  return copy(send, recv, send_count, send_type, comm);
}
int MPI_Allgatherv(const void* send, int send_count, MPI_Datatype send_type, void* recv, const int*, const int* displs,
                   MPI_Datatype recv_type, MPI_Comm comm) {
  if (send == MPI_IN_PLACE) return valid_comm(comm) ? MPI_SUCCESS : MPI_ERR_COMM;
  return copy(send, static_cast<char*>(recv) + bytes_of(displs[0], recv_type), send_count, send_type, comm);
}
int MPI_Reduce_scatter(const void* send, void* recv, const int* counts, MPI_Datatype type, MPI_Op, MPI_Comm comm) {
  return copy(send, recv, counts[0], type, comm);
}

int MPI_Sendrecv(const void* send, int send_count, MPI_Datatype send_type, int dst, int send_tag, void* recv,
                 int recv_count, MPI_Datatype, int src, int recv_tag, MPI_Comm comm, MPI_Status* status) {
  if (const int rc = only_rank_zero(dst, comm)) return rc;
  if (const int rc = only_rank_zero(src, comm)) return rc;
  if (send_tag != recv_tag || recv_count < send_count) return MPI_ERR_OTHER;  // would never match: a deadlock
  if (status) *status = MPI_Status{0, send_tag, MPI_SUCCESS};
  return copy(send, recv, send_count, send_type, comm);
}
int MPI_Send(const void*, int, MPI_Datatype, int dst, int, MPI_Comm comm) {
  const int rc = only_rank_zero(dst, comm);
  return rc ? rc : MPI_ERR_OTHER;
}
int MPI_Recv(void*, int, MPI_Datatype, int src, int, MPI_Comm comm, MPI_Status*) {
  const int rc = only_rank_zero(src, comm);
  return rc ? rc : MPI_ERR_OTHER;
}
int MPI_Isend(const void* data, int count, MPI_Datatype type, int dst, int tag, MPI_Comm comm, MPI_Request* request) {
  *request = MPI_REQUEST_NULL;
  return MPI_Send(data, count, type, dst, tag, comm);
}
int MPI_Irecv(void* data, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm, MPI_Request* request) {
  *request = MPI_REQUEST_NULL;
  return MPI_Recv(data, count, type, src, tag, comm, nullptr);
}
// Every request of this MPI is complete when it is returned (MPI_REQUEST_NULL).
int MPI_Wait(MPI_Request* request, MPI_Status*) {
  *request = MPI_REQUEST_NULL;
  return MPI_SUCCESS;
}
int MPI_Test(MPI_Request* request, int* flag, MPI_Status*) {
  *request = MPI_REQUEST_NULL;
  *flag = 1;
  return MPI_SUCCESS;
}
int MPI_Waitall(int n, MPI_Request* requests, MPI_Status*) {
  for (int i = 0; i < n; ++i) requests[i] = MPI_REQUEST_NULL;
  return MPI_SUCCESS;
}
int MPI_Testall(int n, MPI_Request* requests, int* flag, MPI_Status* statuses) {
  *flag = 1;
  return MPI_Waitall(n, requests, statuses);
}
int MPI_Waitsome(int n, MPI_Request* requests, int* count, int*, MPI_Status*) {
  for (int i = 0; i < n; ++i) requests[i] = MPI_REQUEST_NULL;
  *count = MPI_UNDEFINED;  // no active request: as the standard says
  return MPI_SUCCESS;
}
int MPI_Testsome(int n, MPI_Request* requests, int* count, int* indices, MPI_Status* statuses) {
  return MPI_Waitsome(n, requests, count, indices, statuses);
}

int MPI_Win_allocate_shared(MPI_Aint bytes, int disp_unit, MPI_Info, MPI_Comm comm, void* base, MPI_Win* win) {
  if (!valid_comm(comm)) return MPI_ERR_COMM;
  if (bytes < 0) return MPI_ERR_ARG;
  void* data = ::operator new(size_t(bytes > 0 ? bytes : 1), std::nothrow);
  if (!data) return MPI_ERR_OTHER;
  *win = new hokusai_one_process_window{data, bytes, disp_unit};
  *static_cast<void**>(base) = data;
  return MPI_SUCCESS;
}
int MPI_Win_shared_query(MPI_Win win, int rank, MPI_Aint* bytes, int* disp_unit, void* base) {
  if (rank != 0) return MPI_ERR_RANK;
  *bytes = win->bytes;
  *disp_unit = win->disp_unit;
  *static_cast<void**>(base) = win->data;
  return MPI_SUCCESS;
}
int MPI_Win_lock_all(int, MPI_Win) { return MPI_SUCCESS; }
int MPI_Win_unlock_all(MPI_Win) { return MPI_SUCCESS; }
int MPI_Win_sync(MPI_Win) { return MPI_SUCCESS; }
int MPI_Win_free(MPI_Win* win) {
  ::operator delete((*win)->data);
  delete *win;
  *win = MPI_WIN_NULL;
  return MPI_SUCCESS;
}
