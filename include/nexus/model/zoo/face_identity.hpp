#pragma once
// Per-tenant identity heads over face-api's FaceRecognitionNet (zoo/face_recognition.hpp): each
// tenant enrolls its own people and gets its own model = the shared backbone + a small head, so
// many tenants' models share the whole backbone as a common prefix (paper §6.3, prefix batching).
//
// The head is a nearest-class-mean classifier over the tenant's enrolled descriptors: class c has
// the mean μ_c of its people's enrolled 128-d descriptors, and for a descriptor d
//     score_c = 2 μ_c·d − |μ_c|²  =  |d|² − |d − μ_c|²,
// one FullyConnected layer (weight 2μ [C, D], bias −|μ|² [C]). The highest score is the nearest
// class mean; the Euclidean distance to it is sqrt(|d|² − score_c), to be compared with
// kFaceMatchDistance (0.6) to answer "unknown".
//
// Graph: the backbone's nodes and weights (shared storage) + the head; input as the backbone's
// (e.g. "image" [3, 150, 150]); outputs, in order: "descriptor" [D] (the backbone's output, a
// prefix value when tenants are grouped) and "<tenant>/identity" [C].

#include <span>
#include <string>
#include <vector>

#include "nexus/model/graph.hpp"

namespace nexus::model::zoo {

/// One tenant's enrolled classes.
struct IdentityHead {
  std::string tenant;                            ///< names the model "<backbone>/<tenant>"
  std::vector<std::string> labels;               ///< one per class, e.g. person names
  std::vector<std::vector<float>> class_means;   ///< [C][D], D = the backbone's output size
};

/// The mean of enrolled descriptors (each of the same length). Throws nexus::Error when empty or
/// when the lengths differ.
std::vector<float> class_mean(std::span<const std::vector<float>> descriptors);

/// `backbone` (one output [D], e.g. FaceRecognitionNet's descriptor) + the tenant's
/// nearest-class-mean head. Throws nexus::Error naming the tenant when it has no class, the
/// labels and means differ in count, or a mean's length is not D.
Graph with_identity_head(const Graph& backbone, const IdentityHead& head);

}  // namespace nexus::model::zoo
