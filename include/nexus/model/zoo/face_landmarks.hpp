#pragma once
// FaceLandmark68Net: face-api's 68-point facial landmark regressor in the Graph IR, and the
// decoding of its output to image coordinates as face-api does it.
//
// Graph (per item):
//   input  "image"     [3, 112, 112] float32, RGB pixel values in 0..255: a face crop padded
//                      to a centred square and resized (face_net_input(crop, 112));
//   output "landmarks" [136] float32: x0, y0, x1, y1, ... as fractions of the 112 x 112 input
//                      (the raw fc output; face-api applies no activation).
// Inside: (x - mean RGB) / 255 -> FaceFeatureExtractor (4 dense blocks, avg pool) -> fc 256->136.
//
// Point order is the iBUG 300-W 68-point scheme: jaw 0-16, eyebrows 17-26, nose 27-35,
// eyes 36-47 (left 36-41, right 42-47), mouth 48-67.
//
// Source: face-api faceLandmarkNet/{FaceLandmark68Net,FaceLandmark68NetBase}.ts,
// faceProcessor/FaceProcessor.ts, classes/FaceLandmarks.ts; weights
// data/face-api/model/face_landmark_68_model-*.

#include <array>
#include <filesystem>
#include <span>

#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"

namespace nexus::model::zoo {

inline constexpr int kFaceLandmarkCount = 68;
inline constexpr int kFaceLandmarkInputSize = 112;

/// A point in pixels (origin top-left, x right, y down), as face-api's Point.
struct FacePoint {
  double x = 0.0, y = 0.0;
};

/// 68 points in pixels.
using FaceLandmarks68 = std::array<FacePoint, kFaceLandmarkCount>;

/// Builds the graph from weights named as in face_landmark_68_model-weights_manifest.json
/// ("dense0/conv0/filters", ..., "fc/weights", "fc/bias"). Throws nexus::Error naming a
/// missing or misshaped tensor.
Graph build_face_landmark68_net(const WeightMap& weights);

/// Loads `<model_dir>/face_landmark_68_model-weights_manifest.json` and builds the graph.
Graph load_face_landmark68_net(const std::filesystem::path& model_dir);

/// face-api's decoding (FaceLandmark68NetBase.postProcess + FaceLandmarks): the net saw the
/// crop (crop_width x crop_height pixels) scaled by s = 112 / max(w, h) and padded to a centred
/// square; undo the padding |w*s - h*s| / 2 on the short side and the scale, giving positions in
/// crop pixels, then add `shift` (face-api shifts by the detection box's top-left corner, not
/// floored, to get image coordinates).
/// `raw` is the [136] output. Throws nexus::Error when raw.size() != 136 or a size is < 1.
FaceLandmarks68 decode_face_landmarks(std::span<const float> raw, int crop_width,
                                      int crop_height, FacePoint shift = {});

}  // namespace nexus::model::zoo
