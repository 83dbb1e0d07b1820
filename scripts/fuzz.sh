#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang + ASan + UBSan) in build-asan (the build that
# scripts/test_asan.sh runs the tests in) and runs each for
# SECONDS (default 60) on its committed seed corpus, one at a time, single process.
# Usage: scripts/fuzz.sh [SECONDS] [target...]   e.g. scripts/fuzz.sh 10 (the CI smoke run)
# New inputs go to build-asan/corpus/<target> (not committed); a crash leaves
# build-asan/artifacts/<target>/crash-* and fails the script. Prints one JSON line per target:
# executions, seconds, coverage (libFuzzer's cov: edges) and corpus size.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
secs="${1:-60}"; shift || true
build="${NEXUS_ASAN_BUILD_DIR:-$root/build-asan}"
all=(fuzz_tfjs_weights fuzz_batch_profile fuzz_workload fuzz_image_decode fuzz_engine_sequence)
[ -d /usr/share/libonnx-testdata/data/node ] && all+=(fuzz_onnx)
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=("${all[@]}")
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DNEXUS_BUILD_FUZZERS=ON -DNEXUS_WITH_CUDA=OFF \
  -DNEXUS_BUILD_EXAMPLES=OFF -DNEXUS_BUILD_BENCHMARKS=OFF ${NEXUS_CMAKE_ARGS:-} >/dev/null
# Targets this build defines (fuzz_onnx needs the ONNX importer, fuzz_image_decode OpenCV).
known="$(cmake --build "$build" --target help)"
have=(); for t in "${targets[@]}"; do
  if grep -q "\b$t\b" <<<"$known"; then have+=("$t"); else echo "fuzz: $t not defined in this build; skipped" >&2; fi
done
targets=("${have[@]}")
cmake --build "$build" -j 2 --target "${targets[@]}"
export ASAN_OPTIONS="halt_on_error=1 detect_leaks=1 ${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="halt_on_error=1 print_stacktrace=1 ${UBSAN_OPTIONS:-}"
status=0
for t in "${targets[@]}"; do
  exe="$build/fuzz/$t"
  [ -x "$exe" ] || { echo "fuzz: $t not built (see cmake output)" >&2; status=1; continue; }
  corpus="$build/corpus/$t"; artifacts="$build/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  log="$build/$t.log"
  dict=(); [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  seeds=("fuzz/corpus/$t")
  if [ "$t" = fuzz_onnx ]; then  # seeds: ONNX's own node-test models (Debian libonnx-testdata)
    seeds+=("$build/seeds/$t"); mkdir -p "${seeds[1]}"
    for m in /usr/share/libonnx-testdata/data/node/test_{conv,relu,add,maxpool,averagepool,gemm,softmax,concat,reshape,transpose,batchnorm,sigmoid,flatten,globalaveragepool,resize,matmul,mul,clip}*/model.onnx; do
      [ -f "$m" ] && cp "$m" "${seeds[1]}/$(basename "$(dirname "$m")").onnx"
    done
  fi
  # -rss_limit_mb / -malloc_limit_mb: an allocation sized from the input beyond 2 GB is a bug.
  # NEXUS_FUZZ_RUNS (CI): a fixed number of mutations from a fixed seed, so that the smoke run
  # is the same run on every machine with this compiler (a time limit alone is not).
  det=(); [ -n "${NEXUS_FUZZ_RUNS:-}" ] && det=(-runs="$NEXUS_FUZZ_RUNS" -seed=1)
  if "$exe" "$corpus" "${seeds[@]}" -max_total_time="$secs" "${det[@]}" -rss_limit_mb=2560 \
       -malloc_limit_mb=2048 -timeout=25 -max_len=65536 -print_final_stats=1 \
       -artifact_prefix="$artifacts/" "${dict[@]}" >"$log" 2>&1; then
    rc=0
  else
    rc=$?; status=1
    tail -40 "$log" >&2
  fi
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  ft=$(grep -Eo 'ft: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  files=$(ls "$corpus" | wc -l)
  printf '{"target": "%s", "seconds": %s, "executions": %s, "coverage_edges": %s, "features": %s, "corpus_files": %s, "exit": %s}\n' \
    "$t" "$secs" "${execs:-0}" "${cov:-0}" "${ft:-0}" "$files" "$rc"
done
exit $status
