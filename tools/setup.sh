#!/usr/bin/env bash
# Set-up for a fresh Debian 12 machine: installs every Debian package that the build, the
# tests and the demo need, then builds the release preset. Idempotent: a second run installs
# nothing and the build is a no-op. Runs apt-get as root, or through sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
    # toolchain
    g++ cmake ninja-build pkg-config git clang libclang-rt-14-dev
    # libraries
    liburing-dev libssl-dev openssl libtbb-dev libjemalloc-dev libflatbuffers-dev
    flatbuffers-compiler libhwloc-dev libexpected-dev libyaml-cpp-dev
    # tests, benchmarks and the demo: curl and openssl as real ETSI 014 / TLS clients, nginx as
    # the benchmark reference server, gnuplot for plots, python3 for the harness's JSON
    libgtest-dev libgmock-dev libbenchmark-dev valgrind curl nginx-light gnuplot-nox python3
    procps
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "setup: installing ${missing[*]}"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo_cmd=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "setup: all ${#packages[@]} packages present"
fi

if [[ "${KEYRAIL_SETUP_NO_BUILD:-0}" != 1 ]]; then
    cmake --preset release >/dev/null
    cmake --build --preset release -j "$(nproc)"
    echo "setup: release build in build/release"
fi
