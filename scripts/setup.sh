#!/usr/bin/env bash
# Installs the Debian packages Nexus builds with. Idempotent: runs apt-get (update once) only
# when something is missing.
set -euo pipefail
pkgs=(build-essential cmake pkg-config libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev
      libcxxopts-dev libopencv-dev gnuplot-nox glpk-utils libglpk-dev nodejs npm
      libspdlog-dev prometheus-cpp-dev
      libgoogle-perftools-dev  # tcmalloc for nexus-sim (optional, faster)
      libonnx-dev libprotobuf-dev protobuf-compiler libonnx-testdata
      clang libfuzzer-14-dev)  # clang + libFuzzer: scripts/test_asan.sh, scripts/fuzz.sh
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# nodejs/npm may come from outside Debian (e.g. a preinstalled toolchain): keep those.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
read -r -a missing <<<"${missing[*]}"
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: Debian packages present" >&2
