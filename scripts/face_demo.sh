#!/usr/bin/env bash
# Face pipeline demo on the photos alone: sets up, fetches the data, builds, and runs the face pipeline
# (examples/face_pipeline: SSD-MobileNetV1 detection, landmarks, descriptors, age/gender and
# expressions, face-api's models) over the demo photos. Extra arguments go to face_pipeline,
# e.g. scripts/face_demo.sh --json, or --device cuda on a machine with a GPU.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/fetch_data.sh"
"$root/scripts/build.sh"
build="${NEXUS_BUILD_DIR:-$root/build}"
exe="$build/examples/face_pipeline"
[ -x "$exe" ] || { echo "demo: $exe was not built (is OpenCV installed?)" >&2; exit 1; }
exec "$exe" --models "$root/data/face-api/model" "$@" "$root"/data/face-api/demo/*.jpg
