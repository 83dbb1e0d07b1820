#!/usr/bin/env bash
# The README's test command: installs what it needs, fetches the data, builds, runs every test.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/fetch_data.sh"
"$root/scripts/build.sh"
cd "${NEXUS_BUILD_DIR:-$root/build}"
ctest --output-on-failure -j 2 "$@"
