#!/usr/bin/env bash
# The main job: sets up, fetches the data, builds the one program it runs, then runs
# examples/video_analytics — face detection, landmarks, identity, age/gender and expression on two
# videos and the demo photos through the Nexus engine under a latency SLO — and writes the report,
# plots and annotated frames to out/ (docs/video_analytics.md explains them).
#
#   scripts/run_video.sh                 # first run 3-10 min on a 2-core CPU box, then ~1.5 min
#   scripts/run_video.sh --duration 120 --tenants 2 --policy lazy   # any video_analytics option
#   VIDEO_OUT=/tmp/x scripts/run_video.sh
#   NEXUS_WITH_CUDA=ON scripts/run_video.sh   # build the CUDA backend (default: only with a GPU)
#
# Builds only the target video_analytics (the library and the example): no tests, no benchmarks
# (scripts/test.sh builds those). The CUDA backend is built only when a GPU is present
# (nvidia-smi lists one) or NEXUS_WITH_CUDA=ON asks for it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${NEXUS_BUILD_DIR:-$root/build}"
out="${VIDEO_OUT:-$root/out}"
t0=$(date +%s)
elapsed() { local s=$(( $(date +%s) - t0 )); printf '%d:%02d' $((s / 60)) $((s % 60)); }
step() { printf '\n== [%s] %s\n' "$(elapsed)" "$*" >&2; }
tty=0; [ -t 2 ] && tty=1

step "1/4 Debian packages (scripts/setup.sh; installs only what is missing)"
"$root/scripts/setup.sh"

step "2/4 models, photos and videos (scripts/fetch_data.sh; downloads ~110 MB on the first run: face-api 13 MB, opencv-doc 96 MB)"
"$root/scripts/fetch_data.sh"

# -- 3/4 build ----------------------------------------------------------------------------------
cuda="${NEXUS_WITH_CUDA:-}"
if [ -z "$cuda" ]; then
  cuda=OFF
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
    cuda=ON
  fi
fi
cmake_args=(-DCMAKE_BUILD_TYPE=Release "-DNEXUS_WITH_CUDA=$cuda")
command -v ccache >/dev/null 2>&1 && cmake_args+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
jobs=$(nproc 2>/dev/null || echo 2); [ "$jobs" -gt 2 ] || jobs=2
step "3/4 build video_analytics in $build (CUDA backend: $cuda)"
mkdir -p "$build"
clog="$build/run_video_configure.log"
# shellcheck disable=SC2086
cmake -S "$root" -B "$build" "${cmake_args[@]}" ${NEXUS_CMAKE_ARGS:-} >"$clog" 2>&1 || {
  tail -30 "$clog" >&2; echo "run_video: cmake configure failed (log: $clog)" >&2; exit 1; }
# Files left to compile (a dry run of the build tool), and an estimate: one file takes ~3.8 s of
# CPU time (measured: 42 files, 159 s of CPU, docs/first_run.md), run on min(jobs, cores) cores
# of which we get cores / max(cores, load average) when other work is running.
todo=$(
  if [ -f "$build/build.ninja" ]; then ninja -C "$build" -n video_analytics 2>/dev/null
  else make -C "$build" -n video_analytics 2>/dev/null; fi | grep -c 'Building CXX object' || true)
if [ "$todo" -gt 0 ]; then
  cores=$(nproc 2>/dev/null || echo 2)
  load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
  est=$(awk -v n="$todo" -v j="$jobs" -v c="$cores" -v l="$load" 'BEGIN {
    p = j < c ? j : c; share = c / (l > c ? l : c); printf "%d", n * 3.8 / (p * share) + 5 }')
  printf '   %d file(s) to compile with %d jobs on %d cores at load average %s: about %d min %02d s\n' \
    "$todo" "$jobs" "$cores" "$load" $((est / 60)) $((est % 60)) >&2
else
  echo "   up to date" >&2
fi
blog="$build/run_video_build.log"
n=0
set +e
cmake --build "$build" --target video_analytics -j "$jobs" 2>&1 | tee "$blog" |
  while IFS= read -r line; do
    case "$line" in
      *"Building CXX object"*|*"Building CUDA object"*)
        n=$((n + 1)); f="${line##* object }"; f="${f#*CMakeFiles/}"
        if [ "$tty" = 1 ]; then printf '\r   [%d/%d] %s  (%s)\033[K' "$n" "$todo" "$f" "$(elapsed)" >&2
        else printf '   [%d/%d] %s  (%s)\n' "$n" "$todo" "$f" "$(elapsed)" >&2; fi ;;
      *"error"*|*"Error"*) printf '\n%s\n' "$line" >&2 ;;
    esac
  done
rc=${PIPESTATUS[0]}
set -e
[ "$tty" = 1 ] && [ "$todo" -gt 0 ] && echo >&2
if [ "$rc" -ne 0 ]; then
  tail -40 "$blog" >&2
  echo "run_video: the build failed (full log: $blog)" >&2
  exit 1
fi
exe="$build/examples/video_analytics/video_analytics"
[ -x "$exe" ] || { echo "run_video: $exe was not built (is OpenCV installed? see $blog)" >&2; exit 1; }

# -- 4/4 serve ----------------------------------------------------------------------------------
dev=cpu; [ "$cuda" = ON ] && dev=cuda
if [ -f "$root/data/profiles/$dev/machine.txt" ]; then
  plan="profiles cached (measured again if this build or machine differs from the stamp: ~1 min); gallery ~5 s, 45 s of serving, ~5 s to drain and write the report"
else
  plan="first run: measures the six models' batching profiles (~1 min on a 2-core CPU, cached in data/profiles/), then gallery ~5 s, 45 s of serving, ~5 s for the report"
fi
step "4/4 serving the videos and photos ($plan)"
"$exe" --data "$root/data" --out "$out" --duration 45 "$@"
step "done in $(elapsed): report in $out/report.json and $out/summary.txt, plots in $out/plots/, annotated frames in $out/frames/"
