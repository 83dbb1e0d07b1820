#!/usr/bin/env bash
# Builds every test binary whose tests start threads with ThreadSanitizer in build-tsan (CUDA off)
# and runs them: runtime (the Engine's executor, CPU-pool and epoch threads, many producers, the
# real-time fault tests, the CpuBackend served by the Engine), exec (CpuBackend's thread pool) and
# dispatch (the queues and clocks under concurrent callers). Any report fails the run.
# Usage: scripts/test_tsan.sh [extra ctest args]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${NEXUS_TSAN_BUILD_DIR:-$root/build-tsan}"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEXUS_SANITIZE_THREAD=ON \
  -DNEXUS_BUILD_EXAMPLES=OFF -DNEXUS_BUILD_BENCHMARKS=OFF -DNEXUS_WITH_CUDA=OFF \
  ${NEXUS_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j2 --target nexus_tests_runtime nexus_tests_exec nexus_tests_dispatch
# halt_on_error: any report fails the run; second_deadlock_stack for readable lock reports.
export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"
# runtime_tsan (the [tsan] subset) is already inside "runtime".
exec "$root/scripts/run_ctest.sh" "$build" -L '^(runtime|exec|dispatch)$' -E '^runtime_tsan$' "$@"
