#pragma once
// FaceExpressionNet: face-api's 7-class facial expression classifier in the Graph IR.
//
// Graph (per item):
//   input  "image"       [3, 112, 112] float32, RGB pixel values in 0..255: an aligned face
//                        crop padded to a centred square and resized (face_net_input(crop, 112));
//   output "expressions" [7] float32 probabilities (softmax, sum 1) in kFaceExpressionLabels
//                        order.
// Inside: (x - mean RGB) / 255 -> FaceFeatureExtractor (4 dense blocks, avg pool) -> fc 256->7
// -> softmax.
//
// Source: face-api faceExpressionNet/{FaceExpressionNet,FaceExpressions}.ts,
// faceProcessor/FaceProcessor.ts; weights data/face-api/model/face_expression_model-*.

#include <array>
#include <filesystem>
#include <span>
#include <string_view>

#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"

namespace nexus::model::zoo {

inline constexpr int kFaceExpressionCount = 7;
inline constexpr int kFaceExpressionInputSize = 112;
/// face-api's FACE_EXPRESSION_LABELS, the order of the output.
inline constexpr std::array<std::string_view, kFaceExpressionCount> kFaceExpressionLabels = {
    "neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised"};

/// Builds the graph from weights named as in face_expression_model-weights_manifest.json.
/// Throws nexus::Error naming a missing or misshaped tensor.
Graph build_face_expression_net(const WeightMap& weights);

/// Loads `<model_dir>/face_expression_model-weights_manifest.json` and builds the graph.
Graph load_face_expression_net(const std::filesystem::path& model_dir);

/// Index of the most probable expression in `probabilities` ([7]); ties go to the first.
/// Throws nexus::Error when the size is not 7.
int top_face_expression(std::span<const float> probabilities);

}  // namespace nexus::model::zoo
