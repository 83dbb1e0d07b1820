#!/usr/bin/env bash
# Regenerates tests/fixtures/face_api_reference.json (see README.md): installs the pinned npm
# packages, decodes the demo photos with OpenCV (dump_rgb.cpp) and runs face-api on them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
npm ci --no-audit --no-fund
g++ -std=c++17 -O2 dump_rgb.cpp -o "$tmp/dump_rgb" $(pkg-config --cflags --libs opencv4)
"$tmp/dump_rgb" "$tmp" "$root"/data/face-api/demo/sample*.jpg
node make_reference.js --pixels "$tmp" "$root/data/face-api/model" "$root/data/face-api/demo" \
  "$root/tests/fixtures/face_api_reference.json"
