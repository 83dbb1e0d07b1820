#pragma once
// The models the command-line tools (nexus-profile, nexus-perf) accept by name: the face-api nets
// (weights from a face-api model directory) and the standard zoo (seeded weights).
// Header-only, for tools/ only.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/zoo/face_age_gender.hpp"
#include "nexus/model/zoo/face_detector.hpp"
#include "nexus/model/zoo/face_expression.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#include "nexus/model/zoo/standard.hpp"

namespace nexus::tools {

/// Every name load_named_model() accepts: the face-api nets, then zoo::standard_model_names().
inline std::vector<std::string> named_model_names() {
  std::vector<std::string> names = {"face_detector", "face_recognition", "face_landmarks", "face_expression",
                                    "age_gender"};
  for (auto& n : model::zoo::standard_model_names()) names.push_back(std::move(n));
  return names;
}

/// The graph of model `name`; face nets read their weights from `face_models` (throws what the
/// loader throws when they are missing). Throws nexus::Error naming the known models on an
/// unknown name.
inline model::Graph load_named_model(const std::string& name, const std::filesystem::path& face_models) {
  namespace zoo = model::zoo;
  if (name == "face_detector") return zoo::FaceDetector::load(face_models).graph();
  if (name == "face_recognition") return zoo::load_face_recognition_net(face_models);
  if (name == "face_landmarks") return zoo::load_face_landmark68_net(face_models);
  if (name == "face_expression") return zoo::load_face_expression_net(face_models);
  if (name == "age_gender") return zoo::load_age_gender_net(face_models);
  const auto standard = zoo::standard_model_names();
  if (std::find(standard.begin(), standard.end(), name) == standard.end())
    throw_error("model '{}': unknown; expected one of {}", name, fmt::join(named_model_names(), ", "));
  return zoo::standard_model(name);
}

}  // namespace nexus::tools
