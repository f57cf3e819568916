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

# hokusai_test(NAME name SOURCES ... [LIBS ...] [RANKS n ...] [TIMEOUT s] [LABELS ...])
#   One GoogleTest executable (tests/support/ on its include path; the test's own folder as
#   HOKUSAI_TEST_DIR, for fixture files). Without RANKS it runs as one CTest test. With RANKS the
#   MPI launcher is a property of the test, not a folder: its main() initialises MPI
#   (tests/support/mpi_gtest_main.cpp) and one CTest test per rank count, <name>_np<n>, runs it
#   under mpirun with 1 OpenMP thread per rank. A build without MPI (comm/'s one-process MPI)
#   registers the one-rank run only, directly.
function(hokusai_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;RANKS" ${ARGN})
  set(_support ${PROJECT_SOURCE_DIR}/tests/support)
  if(T_RANKS)
    add_executable(${T_NAME} ${T_SOURCES} ${_support}/mpi_gtest_main.cpp)
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest hokusai::options)
  else()
    add_executable(${T_NAME} ${T_SOURCES})
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest_main hokusai::options)
  endif()
  target_include_directories(${T_NAME} PRIVATE ${_support} ${PROJECT_SOURCE_DIR}/src)
  target_compile_definitions(${T_NAME} PRIVATE HOKUSAI_TEST_DIR="${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set(_env "HOKUSAI_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  if(NOT T_RANKS OR NOT HOKUSAI_WITH_MPI)
    add_test(NAME ${T_NAME} COMMAND ${T_NAME})
    set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}"
                         ENVIRONMENT "${_env};OMP_NUM_THREADS=2")
    return()
  endif()
  find_package(MPI REQUIRED COMPONENTS CXX)
  foreach(n ${T_RANKS})
    add_test(NAME ${T_NAME}_np${n}
             COMMAND ${MPIEXEC_EXECUTABLE} --allow-run-as-root --oversubscribe ${MPIEXEC_NUMPROC_FLAG} ${n}
                     -x OMP_NUM_THREADS=1 $<TARGET_FILE:${T_NAME}>)
    set_tests_properties(${T_NAME}_np${n} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "mpi;${T_LABELS}" PROCESSORS ${n}
                         ENVIRONMENT "${_env}")
    if(HOKUSAI_SANITIZE)  # Open MPI's own exit-time allocations: see tests/CMakeLists.txt
      set_property(TEST ${T_NAME}_np${n} APPEND PROPERTY ENVIRONMENT "ASAN_OPTIONS=detect_leaks=0")
    endif()
  endforeach()
endfunction()

# hokusai_package_usable(PACKAGE RESULT_VAR REASON_VAR)
#   True when find_package(PACKAGE REQUIRED) succeeds. Tried first in a separate configure
#   (cmake/probe-package), because a package config may itself call find_package(... REQUIRED)
#   on a dependency that is not installed (Debian's dnnl-config.cmake needs OpenCL, which
#   libdnnl-dev only recommends) and that error cannot be caught in this project. REASON_VAR gets
#   the probe's "Could NOT find ..." line. A success is remembered in the cache; a failure is
#   probed again at the next configure (the user may have installed the package since).
function(hokusai_package_usable package result_var reason_var)
  if(HOKUSAI_PACKAGE_USABLE_${package})
    set(${result_var} TRUE PARENT_SCOPE)
    return()
  endif()
  set(_dir ${PROJECT_BINARY_DIR}/probe-package-${package})
  file(REMOVE_RECURSE ${_dir})
  execute_process(COMMAND ${CMAKE_COMMAND} -S ${PROJECT_SOURCE_DIR}/cmake/probe-package -B ${_dir}
                          -G ${CMAKE_GENERATOR} -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER}
                          -DHOKUSAI_PROBE_PACKAGE=${package}
                  RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _out)
  if(_rc EQUAL 0)
    set(HOKUSAI_PACKAGE_USABLE_${package} TRUE CACHE INTERNAL "find_package(${package}) worked in a probe")
    set(${result_var} TRUE PARENT_SCOPE)
    return()
  endif()
  string(REGEX MATCH "Could NOT find [^\n]*" _why "${_out}")
  if(NOT _why)
    string(REGEX MATCH "[^\n]*(by \"${package}\"|${package}Config.cmake|${package}-config.cmake)[^\n]*" _why "${_out}")
  endif()
  if(NOT _why)
    set(_why "find_package(${package}) failed")
  endif()
  string(STRIP "${_why}" _why)
  set(${result_var} FALSE PARENT_SCOPE)
  set(${reason_var} "${_why}" PARENT_SCOPE)
endfunction()

# hokusai_peer_unavailable(OPTION WHAT REASON PACKAGES)
#   An optional peer backend (OpenBLAS, oneDNN, SentencePiece) that cannot be built: one line on
#   the configure output, and OPTION turned off for this configure (the cache keeps the user's
#   choice, so installing the package and configuring again brings the backend back).
macro(hokusai_peer_unavailable option what reason packages)
  message(NOTICE "hokusai: building without ${what}: ${reason}; "
                 "scripts/install-deps.sh installs it (${packages})")
  set(${option} OFF)
endmacro()
