#!/usr/bin/env bash
# Configures and builds Nexus in build/ (Release; CUDA when the toolkit is found).
# At most 2 parallel jobs: the machines have 2 cores.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${NEXUS_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release ${NEXUS_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j 2
