// FaceLandmark68Net (face-api faceLandmarkNet/) in the Graph IR, and its decoding.
#include "nexus/model/zoo/face_landmarks.hpp"

#include <algorithm>
#include <cmath>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/face_feature_extractor.hpp"

namespace nexus::model::zoo {

Graph build_face_landmark68_net(const WeightMap& w) {
  GraphBuilder b("face_landmark68_net");
  const NodeId image = b.input("image", Shape{3, kFaceLandmarkInputSize, kFaceLandmarkInputSize});
  NodeId out = add_face_feature_extractor(b, add_face_normalization(b, image, "normalize"), w);
  const Tensor& fw = get(w, "fc/weights", Shape{256, 2 * kFaceLandmarkCount});
  const Tensor& fb = get(w, "fc/bias", Shape{2 * kFaceLandmarkCount});
  out = b.fully_connected("landmarks", b.flatten("flatten", out), dense_to_out_in(fw),
                          fb.clone());
  b.output(out);
  return std::move(b).build();
}

Graph load_face_landmark68_net(const std::filesystem::path& model_dir) {
  return build_face_landmark68_net(
      load_tfjs_weights(model_dir / "face_landmark_68_model-weights_manifest.json"));
}

FaceLandmarks68 decode_face_landmarks(std::span<const float> raw, int crop_width,
                                      int crop_height, FacePoint shift) {
  NEXUS_CHECK(raw.size() == 2 * kFaceLandmarkCount,
              "decode_face_landmarks: expected {} values, got {}", 2 * kFaceLandmarkCount,
              raw.size());
  NEXUS_CHECK(crop_width >= 1 && crop_height >= 1,
              "decode_face_landmarks: crop size {}x{} must be positive", crop_width, crop_height);
  // Dimensions of the crop inside the square input (not rounded, as in postProcess).
  const double size = kFaceLandmarkInputSize;
  const double scale = size / std::max(crop_width, crop_height);
  const double w = crop_width * scale;
  const double h = crop_height * scale;
  const double pad_x = w < h ? std::abs(w - h) / 2 : 0.0;
  const double pad_y = h < w ? std::abs(w - h) / 2 : 0.0;
  FaceLandmarks68 points;
  for (int i = 0; i < kFaceLandmarkCount; ++i) {
    // Relative position in the crop, then FaceLandmarks' "rel * (width, height) + shift".
    const double rx = (static_cast<double>(raw[2 * i]) * size - pad_x) / w;
    const double ry = (static_cast<double>(raw[2 * i + 1]) * size - pad_y) / h;
    points[static_cast<std::size_t>(i)] = {rx * crop_width + shift.x, ry * crop_height + shift.y};
  }
  return points;
}

}  // namespace nexus::model::zoo
