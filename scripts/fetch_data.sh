#!/usr/bin/env bash
# Fetches the real models and data into data/ (git-ignored), verifying checksums:
#   data/face-api/model/*   trained face models of @vladmandic/face-api 1.7.15 (npm, MIT)
#   data/face-api/demo/*.jpg its six sample photos
#   data/video/vtest.avi, data/video/Megamind.avi   from Debian's opencv-doc
# Idempotent: what is present and verified is not fetched again.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
data="$root/data"
mkdir -p "$data/cache" "$data/video"

check() {  # check SHA256 FILE
  echo "$1  $2" | sha256sum -c --quiet - || { echo "fetch_data: checksum mismatch for $2" >&2; exit 1; }
}

FACE_API_VERSION=1.7.15
FACE_API_SHA=0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031
tgz="$data/cache/vladmandic-face-api-$FACE_API_VERSION.tgz"
if [ ! -f "$data/face-api/.ok" ]; then
  if [ ! -f "$tgz" ]; then
    (cd "$data/cache" && npm pack --silent "@vladmandic/face-api@$FACE_API_VERSION" >/dev/null)
  fi
  check "$FACE_API_SHA" "$tgz"
  rm -rf "$data/face-api" "$data/cache/face-api" && mkdir -p "$data/cache/face-api"
  tar xzf "$tgz" -C "$data/cache/face-api"
  mkdir -p "$data/face-api"
  cp -r "$data/cache/face-api/package/model" "$data/face-api/model"
  mkdir -p "$data/face-api/demo" && cp "$data/cache/face-api/package/demo/"sample*.jpg "$data/face-api/demo/"
  cp -r "$data/cache/face-api/package/src" "$data/face-api/src"
  touch "$data/face-api/.ok"
fi

VTEST_SHA=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
MEGAMIND_SHA=0057387cb7e75c8fd1663b62cfdc51fa53f527795d0fe3c1fea2fd159d3130b5
if [ ! -f "$data/video/.ok" ]; then
  deb=$(ls "$data/cache"/opencv-doc_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$data/cache" && apt-get download opencv-doc >/dev/null 2>&1) || {
      [ "$(id -u)" -ne 0 ] || apt-get update -qq
      (cd "$data/cache" && apt-get download opencv-doc >/dev/null)
    }
    deb=$(ls "$data/cache"/opencv-doc_*.deb | head -1)
  fi
  rm -rf "$data/cache/opencv-doc" && dpkg-deb -x "$deb" "$data/cache/opencv-doc"
  src="$data/cache/opencv-doc/usr/share/doc/opencv-doc/examples/data"
  cp "$src/vtest.avi" "$src/Megamind.avi" "$data/video/"
  check "$VTEST_SHA" "$data/video/vtest.avi"
  check "$MEGAMIND_SHA" "$data/video/Megamind.avi"
  rm -rf "$data/cache/opencv-doc"
  touch "$data/video/.ok"
fi
echo "fetch_data: models, photos and videos in $data" >&2
