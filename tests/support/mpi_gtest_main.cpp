// main() of the MPI gtest executables (tests/mpi): MPI around GoogleTest; only rank 0 prints
// progress (failures print from every rank); the exit code is the worst rank's.
#include <gtest/gtest.h>
#include <mpi.h>

#include "comm/mpi.hpp"

int main(int argc, char** argv) {
  hokusai::comm::Environment env(&argc, &argv);
  ::testing::InitGoogleTest(&argc, argv);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  int worst = rc;
  MPI_Allreduce(&rc, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return worst;
}
