#!/usr/bin/env bash
# The README's main-job command: sets up, builds, and runs the main example.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/fetch_data.sh"
"$root/scripts/build.sh"
echo "demo: the main example is not built yet" >&2
