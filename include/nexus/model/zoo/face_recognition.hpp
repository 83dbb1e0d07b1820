#pragma once
// FaceRecognitionNet: face-api's ResNet-34-like face embedding net (a port of dlib's
// face recognition ResNet), in the Graph IR. A 150 x 150 aligned face crop -> a 128-d
// descriptor; two faces belong to the same person when the Euclidean distance of their
// descriptors is below ~0.6 (face-api's FaceMatcher default).
//
// Graph (per item):
//   input  "image"      [3, 150, 150] float32, RGB pixel values in 0..255, the face crop padded
//                       to a square (centred) and resized as face_net_input() does;
//   output "descriptor" [128] float32 (not normalized; |d| is about 1).
// Inside: (x - mean RGB) / 255; conv 7x7/2 valid + scale; max pool 3x3/2 valid; residual
// blocks 32 x3, 64 (down) x4, 128 (down) x3, 256 (down) x3, 256 (down_out); mean over H, W;
// fc 256 -> 128 without bias. Every conv is conv + bias, then the per-channel "scale layer"
// (y * weights + biases), which GraphBuilder folds into the conv.
//
// Source: face-api faceRecognitionNet/{FaceRecognitionNet,convLayer,residualLayer,scaleLayer,
// extractParamsFromWeightMap}.ts; weights data/face-api/model/face_recognition_model-*.

#include <filesystem>
#include <span>

#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"

namespace nexus::model::zoo {

inline constexpr int kFaceRecognitionInputSize = 150;
inline constexpr int kFaceDescriptorSize = 128;
/// face-api's FaceMatcher default: same person when distance < 0.6.
inline constexpr float kFaceMatchDistance = 0.6f;

/// Builds the graph from weights named as in face_recognition_model-weights_manifest.json
/// ("conv32_down/conv/filters", ..., "fc"). Throws nexus::Error naming a missing or
/// misshaped tensor.
Graph build_face_recognition_net(const WeightMap& weights);

/// Loads `<model_dir>/face_recognition_model-weights_manifest.json` and builds the graph.
/// Throws nexus::Error when the files are missing or malformed.
Graph load_face_recognition_net(const std::filesystem::path& model_dir);

/// Euclidean distance of two descriptors (face-api euclideanDistance.ts). Throws nexus::Error
/// when the lengths differ.
float face_distance(std::span<const float> a, std::span<const float> b);

}  // namespace nexus::model::zoo
