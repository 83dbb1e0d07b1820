#!/usr/bin/env bash
# Builds the whole CPU test suite with AddressSanitizer + UndefinedBehaviorSanitizer in
# build-asan (CUDA off) and runs every ctest test there; any report aborts its test
# (halt_on_error, -fno-sanitize-recover). Leak checking is on. Examples are off: the video
# test (video_analytics end to end on the full face pipeline) would take longer than the rest of
# CI under ASan; the example code runs unsanitized in scripts/test.sh. Usage: scripts/test_asan.sh [ctest args]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build="${NEXUS_ASAN_BUILD_DIR:-$root/build-asan}"
# With clang + libFuzzer (scripts/setup.sh installs them) the same build also holds the fuzz
# targets (scripts/fuzz.sh reuses it); otherwise the default compiler's ASan + UBSan.
san=(-DNEXUS_SANITIZE_ADDRESS=ON)
if command -v clang++ >/dev/null && ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1; then
  san=(-DCMAKE_CXX_COMPILER=clang++ -DNEXUS_BUILD_FUZZERS=ON)
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${san[@]}" \
  -DNEXUS_WITH_CUDA=OFF -DNEXUS_BUILD_BENCHMARKS=OFF -DNEXUS_BUILD_EXAMPLES=OFF \
  ${NEXUS_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" -j 2
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 abort_on_error=1 strict_string_checks=1 detect_stack_use_after_return=1 check_initialization_order=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 ${UBSAN_OPTIONS:-}"
# The install_consumer test builds an outside project against the installed tree without the
# sanitizer flags; it checks packaging, not memory, and runs in scripts/test.sh.
exec "$root/scripts/run_ctest.sh" "$build" -j 2 -E '^install_consumer$' "$@"
