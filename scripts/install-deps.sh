#!/usr/bin/env bash
# Installs the Debian 12 packages hokusai needs, and only those that are missing.
# Idempotent; runs as root or through sudo; runs `apt-get update` before installing.
# Usage: scripts/install-deps.sh [--cross] [--simgrid] [--mpich] [--torch] [--fuzz] [--slurm] [--chromium] [--numpy] [--check]
#   --cross  also the ARM SVE tools: aarch64 cross g++, qemu-user, GoogleTest sources, llvm-mca,
#            and the arm64 runtime libraries of the emulated trainer build (Debian multiarch:
#            adds the arm64 architecture to dpkg). scripts/test.sh uses it.
#   --simgrid  also SimGrid SMPI (smpicxx, smpirun) for scripts/simulate-collectives.sh and the
#            simulated-torus test
#   --mpich  also MPICH beside Open MPI (Open MPI stays the default MPI) for scripts/check-mpich.sh
#            and the mpich_comm test
#   --torch  also PyTorch (Debian's python3-torch, CPU) to regenerate the independent parity
#            fixture (tests/model/pytorch_reference.py) and to run the PyTorch peer by hand; the
#            suite itself reads the committed fixture and does not need it
#   --fuzz   also clang and libFuzzer (clang-14, libclang-rt-14-dev, libfuzzer-14-dev) for
#            scripts/fuzz.sh and the fuzz_* tests; scripts/test.sh uses it
#   --slurm  also Slurm (munge, slurmctld, slurmd, slurm-client; libpmix-dev for srun --mpi=pmix)
#            for the live-Slurm test (tests/cli/slurm.sh, ctest slurm_requeue), which starts its own
#            daemons; scripts/test.sh uses it
#   --chromium  also Chromium, whose headless screenshot checks `hokusai report` (ctest
#            report_screenshot); scripts/test.sh uses it
#   --numpy  also NumPy, for the independent reader that checks `hokusai export`
#            (tests/ckpt/hf_reference.py, ctest hf_export); scripts/test.sh uses it
#   --check  list what is missing, install nothing
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3
  libopenmpi-dev openmpi-bin        # MPI (the distributed engine)
  # GEMM peers and selectable backends. Debian's oneDNN CMake package (dnnl-config.cmake) calls
  # find_package(OpenCL REQUIRED), and libdnnl-dev only recommends the OpenCL headers.
  libopenblas-openmp-dev libdnnl-dev ocl-icd-opencl-dev
  libfmt-dev libspdlog-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libsentencepiece-dev sentencepiece  # tokenizer (spm_train only builds the test model)
  libgtest-dev libgmock-dev libbenchmark-dev
)
# ARM (presets aarch64-a64fx, aarch64-sve): the cross compiler, qemu-user to run its tests,
# GoogleTest sources to build for the target, llvm-mca for the A64FX pipeline model, and the
# arm64 runtimes the trainer links (yaml-cpp's arm64 -dev package conflicts with the amd64 one;
# its headers are the same, so only the runtime library is installed for arm64).
cross_packages=(
  g++-aarch64-linux-gnu qemu-user googletest llvm
  libyaml-cpp0.7:arm64 libfmt-dev:arm64 libspdlog-dev:arm64
)

simgrid_packages=(libsimgrid-dev)
mpich_packages=(libmpich-dev mpich)
torch_packages=(python3-torch python3-numpy)
fuzz_packages=(clang-14 libclang-rt-14-dev libfuzzer-14-dev)
slurm_packages=(munge slurmctld slurmd slurm-client libpmix-dev)
chromium_packages=(chromium)
numpy_packages=(python3-numpy)

cross=0
simgrid=0
mpich=0
torch=0
fuzz=0
slurm=0
chromium=0
numpy=0
check=0
for arg in "$@"; do
  case "$arg" in
    --cross) cross=1 ;;
    --simgrid) simgrid=1 ;;
    --mpich) mpich=1 ;;
    --torch) torch=1 ;;
    --fuzz) fuzz=1 ;;
    --slurm) slurm=1 ;;
    --chromium) chromium=1 ;;
    --numpy) numpy=1 ;;
    --check) check=1 ;;
    *) echo "install-deps: unknown option '$arg' (expected --cross, --simgrid, --mpich, --torch, --fuzz, --slurm, --chromium, --numpy, --check)" >&2; exit 2 ;;
  esac
done
if [ $cross = 1 ]; then packages+=("${cross_packages[@]}"); fi
if [ $simgrid = 1 ]; then packages+=("${simgrid_packages[@]}"); fi
if [ $mpich = 1 ]; then packages+=("${mpich_packages[@]}"); fi
if [ $torch = 1 ]; then packages+=("${torch_packages[@]}"); fi
if [ $fuzz = 1 ]; then packages+=("${fuzz_packages[@]}"); fi
if [ $slurm = 1 ]; then packages+=("${slurm_packages[@]}"); fi
if [ $chromium = 1 ]; then packages+=("${chromium_packages[@]}"); fi
if [ $numpy = 1 ]; then packages+=("${numpy_packages[@]}"); fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ $check = 1 ]; then
  printf '%s\n' "${missing[@]}"
  exit 0
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo_cmd=()
elif command -v sudo >/dev/null 2>&1; then
  sudo_cmd=(sudo)
else
  echo "install-deps: missing packages (${missing[*]}) and neither root nor sudo: install them as root" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
if [ $cross = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  "${sudo_cmd[@]}" dpkg --add-architecture arm64
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
