#pragma once
// AgeGenderNet: face-api's age regressor and gender classifier on a TinyXception backbone, in
// the Graph IR, plus face-api's reading of its outputs.
//
// Graph (per item):
//   input   "image"  [3, 112, 112] float32, RGB pixel values in 0..255: an aligned face crop
//                    padded to a centred square and resized (face_net_input(crop, 112));
//   output0 "age"    [1] float32, years (linear regression, not clamped);
//   output1 "gender" [2] float32 probabilities [male, female] (softmax).
// Inside: (x - mean RGB) / 255; TinyXception with 2 middle blocks: conv 3x3/2 + relu,
// reduction blocks (separable convs, max pool 3x3/2 same, + 1x1/2 expansion conv of the block
// input) to 64 and 128 channels, 2 main blocks (3 relu-separable convs + identity), an exit
// reduction block to 256 and a separable conv to 512 + relu ([512, 7, 7]); avg pool 7x7/2
// valid -> [512]; fc 512->1 (age) and fc 512->2 -> softmax (gender).
//
// Source: face-api ageGenderNet/{AgeGenderNet,extractParamsFromWeightMap,types}.ts,
// xception/{TinyXception,extractParamsFromWeightMap}.ts; weights
// data/face-api/model/age_gender_model-*.

#include <filesystem>
#include <span>

#include "nexus/model/graph.hpp"
#include "nexus/model/weights.hpp"

namespace nexus::model::zoo {

inline constexpr int kAgeGenderInputSize = 112;
/// TinyXception's middle-flow blocks in AgeGenderNet (face-api: new TinyXception(2)).
inline constexpr int kAgeGenderMainBlocks = 2;

enum class Gender { kMale, kFemale };
/// "male" / "female", as face-api's Gender enum values.
const char* gender_name(Gender g);

/// face-api's AgeAndGenderPrediction.
struct AgeGender {
  float age = 0.0f;                ///< years
  Gender gender = Gender::kMale;
  float gender_probability = 0.0f;  ///< probability of `gender`, in [0.5, 1]
};

/// Builds the graph from weights named as in age_gender_model-weights_manifest.json
/// ("entry_flow/conv_in/filters", ..., "fc/age/weights", "fc/gender/bias"). Throws
/// nexus::Error naming a missing or misshaped tensor.
Graph build_age_gender_net(const WeightMap& weights);

/// Loads `<model_dir>/age_gender_model-weights_manifest.json` and builds the graph.
Graph load_age_gender_net(const std::filesystem::path& model_dir);

/// face-api predictAgeAndGender: male when P(male) > 0.5, else female with 1 - P(male).
/// `age` is the [1] output, `gender` the [2] output. Throws nexus::Error on other sizes.
AgeGender decode_age_gender(std::span<const float> age, std::span<const float> gender);

}  // namespace nexus::model::zoo
