#!/usr/bin/env bash
# The README's test command: installs what it needs, fetches the data, builds, runs every test.
# Then prints how many tests ctest reported Skipped and why (tests/skip.hpp). With
# NEXUS_REQUIRE_DATA=1 (set by .ci/run, where the data is fetched) a test skipped for lack of
# data fails the run. Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/fetch_data.sh"
"$root/scripts/build.sh"
build="${NEXUS_BUILD_DIR:-$root/build}"
exec "$root/scripts/run_ctest.sh" "$build" -j 2 "$@"
