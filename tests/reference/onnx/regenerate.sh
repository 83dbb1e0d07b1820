#!/usr/bin/env bash
# Regenerates tests/fixtures/onnx_reference.json (see README.md): installs onnxruntime-node
# (its CPU binaries ship in the npm package; --ignore-scripts skips the CUDA download), decodes
# the photo with OpenCV (../dump_rgb.cpp, the pixels nexus::model::zoo::read_image gives) and
# runs ONNX Runtime on the PaddleOCR models fetched by scripts/fetch_data.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$here"
npm ci --no-audit --no-fund --ignore-scripts
g++ -std=c++17 -O2 ../dump_rgb.cpp -o "$tmp/dump_rgb" $(pkg-config --cflags --libs opencv4)
"$tmp/dump_rgb" "$tmp" "$root/data/onnx/scenetext01.jpg"
node make_fixtures.js "$root/data" "$tmp" "$root/tests/fixtures/onnx_reference.json"
