// A one-process MPI: the subset of the MPI C API that comm/ calls, for a job of exactly one rank,
// used in place of the MPI library when hokusai is built without one (HOKUSAI_WITH_MPI=OFF, e.g.
// the cross-built A64FX trainer run under qemu). It is what PETSc's MPIUNI is to PETSc: with it,
// comm/ and src/parallel/ compile and run unchanged in every build, and a one-process run takes
// exactly the code path of a one-rank mpirun job (size-1 communicators, collectives that copy).
//
// Semantics, for one rank: every communicator has size 1 and rank 0; collectives copy the send
// buffer to the receive buffer (nothing with MPI_IN_PLACE); non-blocking collectives complete at
// once (the request returned is MPI_REQUEST_NULL); MPI_Sendrecv to rank 0 copies. Point-to-point
// messages (MPI_Send/Recv/Isend/Irecv) would need a message queue no one-rank code path uses (a
// one-stage pipeline sends nothing): they return MPI_ERR_OTHER, which check_mpi turns into an
// error naming the call. Shared windows are plain allocations.
#pragma once

#include <cstddef>
#include <cstdint>

#define HOKUSAI_ONE_PROCESS_MPI 1

using MPI_Comm = int;
using MPI_Group = int;
using MPI_Info = int;
using MPI_Errhandler = int;
using MPI_Request = int;
using MPI_Op = int;
using MPI_Aint = std::ptrdiff_t;
struct hokusai_one_process_window;
using MPI_Win = hokusai_one_process_window*;
struct MPI_Status {
  int MPI_SOURCE, MPI_TAG, MPI_ERROR;
};

// Datatypes: the value is the element size in bytes, tagged so distinct types stay distinct.
using MPI_Datatype = int;
constexpr MPI_Datatype MPI_BYTE = 0x100 | 1, MPI_UINT16_T = 0x200 | 2, MPI_INT = 0x300 | 4,
                       MPI_FLOAT = 0x400 | 4, MPI_DOUBLE = 0x500 | 8;

constexpr MPI_Comm MPI_COMM_NULL = 0, MPI_COMM_WORLD = 1, MPI_COMM_SELF = 2;
constexpr MPI_Group MPI_GROUP_NULL = 0;
constexpr MPI_Info MPI_INFO_NULL = 0;
constexpr MPI_Errhandler MPI_ERRORS_RETURN = 1;
constexpr MPI_Request MPI_REQUEST_NULL = 0;
constexpr MPI_Op MPI_SUM = 1, MPI_MIN = 2, MPI_MAX = 3;
#define MPI_WIN_NULL nullptr
#define MPI_IN_PLACE (reinterpret_cast<void*>(std::intptr_t(-1)))
#define MPI_STATUS_IGNORE (static_cast<MPI_Status*>(nullptr))
#define MPI_STATUSES_IGNORE (static_cast<MPI_Status*>(nullptr))
constexpr int MPI_SUCCESS = 0, MPI_ERR_OTHER = 16, MPI_ERR_RANK = 6, MPI_ERR_ARG = 12, MPI_ERR_COMM = 5;
constexpr int MPI_UNDEFINED = -32766;
constexpr int MPI_MAX_ERROR_STRING = 256;
constexpr int MPI_THREAD_SINGLE = 0, MPI_THREAD_FUNNELED = 1, MPI_THREAD_SERIALIZED = 2, MPI_THREAD_MULTIPLE = 3;
constexpr int MPI_COMM_TYPE_SHARED = 1;
constexpr int MPI_MODE_NOCHECK = 1024;

int MPI_Init_thread(int* argc, char*** argv, int required, int* provided);
int MPI_Initialized(int* flag);
int MPI_Finalize();
int MPI_Abort(MPI_Comm comm, int code);
int MPI_Error_string(int code, char* text, int* len);
double MPI_Wtime();

int MPI_Comm_rank(MPI_Comm comm, int* rank);
int MPI_Comm_size(MPI_Comm comm, int* size);
int MPI_Comm_split(MPI_Comm comm, int color, int key, MPI_Comm* out);
int MPI_Comm_split_type(MPI_Comm comm, int type, int key, MPI_Info info, MPI_Comm* out);
int MPI_Comm_free(MPI_Comm* comm);
int MPI_Comm_set_errhandler(MPI_Comm comm, MPI_Errhandler handler);
int MPI_Comm_group(MPI_Comm comm, MPI_Group* group);
int MPI_Group_translate_ranks(MPI_Group from, int n, const int* ranks, MPI_Group to, int* out);
int MPI_Group_free(MPI_Group* group);
int MPI_Barrier(MPI_Comm comm);

int MPI_Allreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm);
int MPI_Iallreduce(const void* send, void* recv, int count, MPI_Datatype type, MPI_Op op, MPI_Comm comm,
                   MPI_Request* request);
int MPI_Bcast(void* data, int count, MPI_Datatype type, int root, MPI_Comm comm);
int MPI_Gather(const void* send, int send_count, MPI_Datatype send_type, void* recv, int recv_count,
               MPI_Datatype recv_type, int root, MPI_Comm comm);
int MPI_Gatherv(const void* send, int send_count, MPI_Datatype send_type, void* recv, const int* counts,
                const int* displs, MPI_Datatype recv_type, int root, MPI_Comm comm);
int MPI_Allgather(const void* send, int send_count, MPI_Datatype send_type, void* recv, int recv_count,
                  MPI_Datatype recv_type, MPI_Comm comm);
int MPI_Allgatherv(const void* send, int send_count, MPI_Datatype send_type, void* recv, const int* counts,
                   const int* displs, MPI_Datatype recv_type, MPI_Comm comm);
int MPI_Reduce_scatter(const void* send, void* recv, const int* counts, MPI_Datatype type, MPI_Op op, MPI_Comm comm);

int MPI_Sendrecv(const void* send, int send_count, MPI_Datatype send_type, int dst, int send_tag, void* recv,
                 int recv_count, MPI_Datatype recv_type, int src, int recv_tag, MPI_Comm comm, MPI_Status* status);
int MPI_Send(const void* data, int count, MPI_Datatype type, int dst, int tag, MPI_Comm comm);
int MPI_Recv(void* data, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm, MPI_Status* status);
int MPI_Isend(const void* data, int count, MPI_Datatype type, int dst, int tag, MPI_Comm comm, MPI_Request* request);
int MPI_Irecv(void* data, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm, MPI_Request* request);
int MPI_Wait(MPI_Request* request, MPI_Status* status);
int MPI_Test(MPI_Request* request, int* flag, MPI_Status* status);
int MPI_Waitall(int n, MPI_Request* requests, MPI_Status* statuses);
int MPI_Testall(int n, MPI_Request* requests, int* flag, MPI_Status* statuses);
int MPI_Waitsome(int n, MPI_Request* requests, int* count, int* indices, MPI_Status* statuses);
int MPI_Testsome(int n, MPI_Request* requests, int* count, int* indices, MPI_Status* statuses);

int MPI_Win_allocate_shared(MPI_Aint bytes, int disp_unit, MPI_Info info, MPI_Comm comm, void* base, MPI_Win* win);
int MPI_Win_shared_query(MPI_Win win, int rank, MPI_Aint* bytes, int* disp_unit, void* base);
int MPI_Win_lock_all(int assert_, MPI_Win win);
int MPI_Win_unlock_all(MPI_Win win);
int MPI_Win_sync(MPI_Win win);
int MPI_Win_free(MPI_Win* win);
