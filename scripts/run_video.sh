#!/usr/bin/env bash
# The main job: sets up, fetches the data, builds, then runs examples/video_analytics — face
# detection, landmarks, identity, age/gender and expression on two videos and the demo photos
# through the Nexus engine under a latency SLO — and writes the report, plots and annotated
# frames to out/ (docs/video_analytics.md explains them). GPU when there is one, else the CPU.
#
#   scripts/run_video.sh                 # defaults: about 1-2 minutes on a 2-core CPU box
#   scripts/run_video.sh --duration 120 --tenants 2 --policy lazy   # any video_analytics option
#   VIDEO_OUT=/tmp/x scripts/run_video.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
"$root/scripts/fetch_data.sh"
"$root/scripts/build.sh"
build="${NEXUS_BUILD_DIR:-$root/build}"
exe="$build/examples/video_analytics/video_analytics"
[ -x "$exe" ] || { echo "run_video: $exe was not built (is OpenCV installed?)" >&2; exit 1; }
out="${VIDEO_OUT:-$root/out}"
# The first run measures the batching profiles of the six models on this machine (about a
# minute on a 2-core CPU) and caches them in data/profiles/<device>/.
"$exe" --data "$root/data" --out "$out" --duration 45 "$@"
echo "run_video: report in $out/report.json and $out/summary.txt, plots in $out/plots/," \
     "annotated frames in $out/frames/" >&2
