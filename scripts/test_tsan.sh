#!/usr/bin/env bash
# Builds the runtime tests with ThreadSanitizer in build-tsan and runs the ctest label "tsan"
# (the many-producer engine tests). Usage: scripts/test_tsan.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEXUS_SANITIZE_THREAD=ON \
  -DNEXUS_BUILD_EXAMPLES=OFF -DNEXUS_BUILD_BENCHMARKS=OFF -DNEXUS_WITH_CUDA=OFF
cmake --build build-tsan -j2 --target nexus_tests_runtime
# halt_on_error: any report fails the run; second_deadlock_stack for readable lock reports.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
ctest --test-dir build-tsan -L tsan --output-on-failure "$@"
