#!/usr/bin/env bash
# Runs ctest in a configured build dir and reports skips: how many tests ctest marked Skipped and
# the reason each one recorded (tests/skip.hpp writes them to <build>/Testing/skipped/<test>.txt).
# With NEXUS_REQUIRE_DATA=1 a "data" skip is an error: CI fetches the data, so nothing
# data-dependent may silently not run. Usage: scripts/run_ctest.sh <build dir> [ctest args]
set -uo pipefail
build="$1"; shift
skipdir="$build/Testing/skipped"
mkdir -p "$skipdir"
rm -f "$skipdir"/*.txt
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
ctest --test-dir "$build" --output-on-failure "$@" | tee "$out"
rc=${PIPESTATUS[0]}
skipped=$(grep -E '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*\*\*\*Skipped' "$out" | sed -E 's/.*Test +#[0-9]+: ([^ ]+) .*/\1/' || true)
n=$(printf '%s' "$skipped" | grep -c . || true)
echo "== skipped: $n test(s)"
data_skips=0
for t in $skipped; do
  if [ -s "$skipdir/$t.txt" ]; then
    sed "s/^/   $t: /" "$skipdir/$t.txt"
    grep -q '^data: ' "$skipdir/$t.txt" && data_skips=$((data_skips + 1))
  else
    echo "   $t: (no reason recorded; see its output: ctest --test-dir $build -R '^$t\$' -V)"
  fi
done
if [ "${NEXUS_REQUIRE_DATA:-0}" = 1 ] && [ "$data_skips" -gt 0 ]; then
  echo "== NEXUS_REQUIRE_DATA=1 but $data_skips test(s) skipped for lack of data: failing" >&2
  [ "$rc" -eq 0 ] && rc=1
fi
exit "$rc"
