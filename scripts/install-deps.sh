#!/usr/bin/env bash
# Installs the Debian 12 packages hokusai needs, and only those that are missing.
# Idempotent; runs as root or through sudo; runs `apt-get update` before installing.
# Usage: scripts/install-deps.sh [--check]   (--check: list what is missing, install nothing)
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git python3
  libopenmpi-dev openmpi-bin        # MPI (the distributed engine)
  libopenblas-openmp-dev libdnnl-dev  # GEMM peers and selectable backends
  libfmt-dev libspdlog-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev
  libsentencepiece-dev sentencepiece  # tokenizer (spm_train only builds the test model)
  libgtest-dev libgmock-dev libbenchmark-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${1:-}" = "--check" ]; then
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
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
