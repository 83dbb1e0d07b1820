// face-api's face alignment and crop steps (classes/FaceLandmarks.ts, classes/Box.ts,
// dom/extractFaceTensors.ts, dom/NetInput.ts, ops/padToSquare.ts).
#include "nexus/model/zoo/face_align.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "nexus/core/error.hpp"

namespace nexus::model::zoo {

FaceRect clip_at_image_borders(const FaceRect& box, int image_width, int image_height) {
  const double x = std::max(box.x, 0.0);
  const double y = std::max(box.y, 0.0);
  const double w = std::min(box.right() - x, image_width - x);
  const double h = std::min(box.bottom() - y, image_height - y);
  return {std::floor(x), std::floor(y), std::floor(w), std::floor(h)};
}

FaceRect align_min_bbox(std::span<const FacePoint> points, double padding) {
  NEXUS_CHECK(!points.empty(), "align_min_bbox: no landmark points");
  // ops/minBbox.ts starts the maxima at 0 (not -inf); kept for identical results.
  double min_x = std::numeric_limits<double>::infinity(), min_y = min_x;
  double max_x = 0.0, max_y = 0.0;
  for (const FacePoint& p : points) {
    min_x = std::min(min_x, p.x);
    min_y = std::min(min_y, p.y);
    max_x = std::max(max_x, p.x);
    max_y = std::max(max_y, p.y);
  }
  const double w = max_x - min_x, h = max_y - min_y;
  const double pad_x = w * padding, pad_y = h * padding;  // Box.pad: half on each side
  return {min_x - pad_x / 2, min_y - pad_y / 2, w + pad_x, h + pad_y};
}

namespace {

FacePoint center(std::span<const FacePoint> pts) {
  double sx = 0.0, sy = 0.0;
  for (const FacePoint& p : pts) sx += p.x, sy += p.y;
  return {sx / static_cast<double>(pts.size()), sy / static_cast<double>(pts.size())};
}

}  // namespace

FaceRect align_dlib(std::span<const FacePoint> points68, int crop_width, int crop_height) {
  NEXUS_CHECK(points68.size() == kFaceLandmarkCount, "align_dlib: expected 68 points, got {}",
              points68.size());
  // FaceLandmarks.ts alignment constants.
  constexpr double kRelX = 0.5, kRelY = 0.43, kRelScale = 0.45;
  const FacePoint centers[3] = {center(points68.subspan(36, 6)),    // left eye
                                center(points68.subspan(42, 6)),    // right eye
                                center(points68.subspan(48, 20))};  // mouth
  const auto dist_to_mouth = [&](const FacePoint& p) {
    return std::hypot(centers[2].x - p.x, centers[2].y - p.y);
  };
  const double eye_to_mouth = (dist_to_mouth(centers[0]) + dist_to_mouth(centers[1])) / 2;
  const double size = std::floor(eye_to_mouth / kRelScale);
  const FacePoint ref = center(centers);
  const double x = std::floor(std::max(0.0, ref.x - kRelX * size));
  const double y = std::floor(std::max(0.0, ref.y - kRelY * size));
  return {x, y, std::min(size, crop_width + x), std::min(size, crop_height + y)};
}

Image extract_face(const Image& image, const FaceRect& box) {
  NEXUS_CHECK(!image.empty(), "extract_face: empty image");
  const FaceRect c = clip_at_image_borders(box, image.width, image.height);
  NEXUS_CHECK(c.width > 0 && c.height > 0,
              "extract_face: box (x {}, y {}, w {}, h {}) lies outside the {} x {} image", box.x,
              box.y, box.width, box.height, image.width, image.height);
  const int x0 = static_cast<int>(c.x), y0 = static_cast<int>(c.y);
  Image face(static_cast<int>(c.width), static_cast<int>(c.height));
  const std::size_t row_bytes = static_cast<std::size_t>(face.width) * 3;
  for (int y = 0; y < face.height; ++y) {
    const std::uint8_t* src = image.rgb.data() +
                              (static_cast<std::size_t>(y0 + y) * image.width + x0) * 3;
    std::copy(src, src + row_bytes, face.pixel(0, y));
  }
  return face;
}

void face_net_input_into(const Image& face, int size, std::span<float> out) {
  NEXUS_CHECK(!face.empty(), "face_net_input: empty face image");
  NEXUS_CHECK(size >= 1, "face_net_input: size {} must be positive", size);
  const std::size_t plane = static_cast<std::size_t>(size) * static_cast<std::size_t>(size);
  NEXUS_CHECK(out.size() == 3 * plane, "face_net_input: output holds {} floats, expected {}",
              out.size(), 3 * plane);
  // padToSquare(isCenterImage = true): round(diff / 2) zero rows/columns after, the rest before.
  const int w = face.width, h = face.height;
  const int diff = std::abs(h - w);
  const int after = static_cast<int>(std::floor(diff * 0.5 + 0.5));  // JS Math.round
  const int before = diff - after;
  const int side = std::max(w, h);
  const int off_x = h > w ? before : 0;
  const int off_y = w > h ? before : 0;
  // Padded square pixel (sx, sy) -> face pixel, or black.
  const auto value = [&](int sy, int sx, int c) -> double {
    const int fx = sx - off_x, fy = sy - off_y;
    if (fx < 0 || fy < 0 || fx >= w || fy >= h) return 0.0;
    return face.at(fx, fy, c);
  };
  // tf.image.resizeBilinear(alignCorners = false, halfPixelCenters = false), as tfjs-backend-cpu:
  // source = dst * in / out, floor/ceil neighbours clamped to the image.
  const double ratio = static_cast<double>(side) / size;
  for (int oy = 0; oy < size; ++oy) {
    const double fy = ratio * oy;
    const int y0 = std::max(0, static_cast<int>(std::floor(fy)));
    const int y1 = std::min(side - 1, static_cast<int>(std::ceil(fy)));
    const double dy = fy - y0;
    for (int ox = 0; ox < size; ++ox) {
      const double fx = ratio * ox;
      const int x0 = std::max(0, static_cast<int>(std::floor(fx)));
      const int x1 = std::min(side - 1, static_cast<int>(std::ceil(fx)));
      const double dx = fx - x0;
      for (int c = 0; c < 3; ++c) {
        const double tl = value(y0, x0, c), tr = value(y0, x1, c);
        const double bl = value(y1, x0, c), br = value(y1, x1, c);
        const double top = tl + (tr - tl) * dx;
        const double bottom = bl + (br - bl) * dx;
        out[static_cast<std::size_t>(c) * plane + static_cast<std::size_t>(oy) * size +
            static_cast<std::size_t>(ox)] = static_cast<float>(top + (bottom - top) * dy);
      }
    }
  }
}

Tensor face_net_input(const Image& face, int size) {
  NEXUS_CHECK(size >= 1, "face_net_input: size {} must be positive", size);
  Tensor t(Shape{3, size, size});
  face_net_input_into(face, size, t.values());
  return t;
}

AlignedFace align_face(std::span<const float> raw_landmarks, const FaceRect& detection_box,
                       int image_width, int image_height) {
  // The landmark net saw the clipped, floored detection crop; face-api shifts the points by
  // the detection box's own (unfloored) corner.
  const FaceRect crop = clip_at_image_borders(detection_box, image_width, image_height);
  NEXUS_CHECK(crop.width > 0 && crop.height > 0,
              "align_face: detection box (x {}, y {}, w {}, h {}) lies outside the {} x {} image",
              detection_box.x, detection_box.y, detection_box.width, detection_box.height,
              image_width, image_height);
  const int cw = static_cast<int>(crop.width), ch = static_cast<int>(crop.height);
  AlignedFace f;
  f.landmarks =
      decode_face_landmarks(raw_landmarks, cw, ch, FacePoint{detection_box.x, detection_box.y});
  f.aligned_rect = align_min_bbox(f.landmarks);
  f.descriptor_rect = align_dlib(f.landmarks, cw, ch);
  return f;
}

}  // namespace nexus::model::zoo
