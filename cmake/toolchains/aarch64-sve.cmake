# Cross-compilation to aarch64 Linux with SVE, using Debian's g++-aarch64-linux-gnu; tests run
# through qemu-user (Debian qemu-user). Two flavours, picked by HOKUSAI_SVE_BITS:
#   512 (preset aarch64-a64fx): -mcpu=a64fx -msve-vector-bits=512. Fixed-length vectors let the
#       compiler fold the vector length into addressing and loop counts; the binary refuses to
#       start on a CPU with another length (kernels/sve/vector_length.cpp).
#   0   (preset aarch64-sve): -march=armv8.2-a+sve, vector-length agnostic: one binary for
#       Graviton3 (256-bit), Grace (128-bit) and A64FX (512-bit).
# HOKUSAI_QEMU_CPU chooses the emulated CPU (default a64fx; e.g. "max,sve256=on").
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(HOKUSAI_SVE_BITS 512 CACHE STRING "SVE vector length baked into the build (0 = vector-length agnostic)")
if(HOKUSAI_SVE_BITS STREQUAL "0")
  set(_arch "-march=armv8.2-a+sve")
else()
  set(_arch "-mcpu=a64fx -msve-vector-bits=${HOKUSAI_SVE_BITS}")
endif()
set(CMAKE_C_FLAGS_INIT "${_arch}")
set(CMAKE_CXX_FLAGS_INIT "${_arch}")

set(HOKUSAI_QEMU_CPU "a64fx" CACHE STRING "qemu-aarch64 -cpu value for running the cross-built tests")
# The cross toolchain's C/C++ runtime (/usr/aarch64-linux-gnu/lib) must win over Debian's arm64
# multiarch copies in /lib/aarch64-linux-gnu (installed for yaml-cpp, fmt, spdlog): its ld.so
# with the multiarch libc (another patch level) hung every OpenMP program with 2 threads.
set(HOKUSAI_QEMU qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib)
set(CMAKE_CROSSCOMPILING_EMULATOR ${HOKUSAI_QEMU} -cpu ${HOKUSAI_QEMU_CPU})

# Headers and libraries of the target: the cross sysroot and Debian's arm64 multiarch paths.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
