# hokusai_find_gtest()
#   GoogleTest for the build's target: the host's packaged libraries, or, when cross-compiling,
#   built for the target from Debian's source package (googletest: /usr/src/googletest).
macro(hokusai_find_gtest)
  if(CMAKE_CROSSCOMPILING)
    if(NOT EXISTS /usr/src/googletest/CMakeLists.txt)
      message(FATAL_ERROR "cross build: GoogleTest sources not found in /usr/src/googletest: run "
                          "scripts/install-deps.sh --cross (package googletest)")
    endif()
    set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
    set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
    add_subdirectory(/usr/src/googletest ${PROJECT_BINARY_DIR}/googletest EXCLUDE_FROM_ALL SYSTEM)
  else()
    find_package(GTest REQUIRED)
  endif()
endmacro()

# hokusai_add_test(NAME name SOURCES ... [LIBS ...] [LABELS ...])
#   One GoogleTest executable registered as one CTest test.
function(hokusai_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest_main hokusai::options)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
                       ENVIRONMENT "HOKUSAI_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMP_NUM_THREADS=2")
endfunction()

# hokusai_add_mpi_test(NAME name RANKS n COMMAND exe args...)
#   Runs an already-built executable under mpirun with n ranks and 1 OpenMP thread per rank.
function(hokusai_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;RANKS;TIMEOUT" "COMMAND;LABELS" ${ARGN})
  find_package(MPI REQUIRED COMPONENTS CXX)
  add_test(NAME ${T_NAME}
           COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${T_RANKS}
                   -x OMP_NUM_THREADS=1 ${T_COMMAND})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 900)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "mpi;${T_LABELS}"
                       PROCESSORS ${T_RANKS})
  if(HOKUSAI_SANITIZE)  # Open MPI's own exit-time allocations: see tests/CMakeLists.txt
    set_property(TEST ${T_NAME} APPEND PROPERTY ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
  endif()
endfunction()
