#pragma once
// TensorFlow.js weights: loads a `*-weights_manifest.json` and its binary shards (the format
// of the face models shipped in the npm package @vladmandic/face-api) into named tensors, and
// converts TensorFlow kernel layouts to the Graph IR's OIHW.
//
// Manifest format (tfjs "weights manifest"): a JSON array of groups
//   {"paths": ["shard1.bin", ...],
//    "weights": [{"name", "shape": [...], "dtype": "float32"|"int32",
//                 "quantization"?: {"scale", "min", "dtype": "uint8"|"uint16"}
//                            or {"dtype": "float16"}}]}
// A group's shards (paths relative to the manifest) are concatenated; its weights lie in that
// byte stream one after the other, in manifest order, little-endian, each taking
// numel * bytes(stored dtype) bytes.

#include <filesystem>
#include <map>
#include <string>

#include "nexus/core/shape.hpp"
#include "nexus/core/tensor.hpp"

namespace nexus::model {

/// Tensors by their TensorFlow name, e.g. "MobilenetV1/Conv2d_0/weights".
using WeightMap = std::map<std::string, Tensor>;

/// Loads every weight of a tfjs manifest. Float weights come back as float32 tensors with the
/// manifest's shape in TensorFlow layout (conv kernels HWIO [kh, kw, in, out], depthwise
/// [kh, kw, in, multiplier], dense [in, out]); int32 weights as int32 tensors. Quantized
/// weights are dequantized at load: value = q * scale + min (q uint8 or uint16; int32 results
/// rounded to nearest), or converted from float16.
///
/// Throws nexus::Error naming the file (and tensor) when: the manifest is missing or not valid
/// JSON / not the expected structure; a shard named by the manifest is missing; the shards hold
/// fewer bytes than the weights need (truncated) or more (size does not match the shapes); a
/// dtype or quantization dtype is unknown; two weights share a name.
WeightMap load_tfjs_weights(const std::filesystem::path& manifest_json);

/// The tensor `name`, checked to have shape `expected`. Throws nexus::Error naming the tensor
/// and both shapes on a mismatch, or naming the tensor when it is absent.
const Tensor& get(const WeightMap& weights, const std::string& name, const Shape& expected);

/// TF conv kernel HWIO [kh, kw, in, out] -> OIHW [out, in, kh, kw] (a new float32 tensor).
/// Throws nexus::Error if `hwio` is not rank 4 float32.
Tensor hwio_to_oihw(const Tensor& hwio);

/// TF depthwise kernel [kh, kw, in, mult] -> OIHW [in * mult, 1, kh, kw], output channel
/// c = i * mult + m as TensorFlow's depthwise_conv2d orders them (use with groups = in).
/// Throws nexus::Error if `kernel` is not rank 4 float32.
Tensor depthwise_to_oihw(const Tensor& kernel);

/// TF dense kernel [in, out] -> FullyConnected weight [out, in].
/// Throws nexus::Error if `kernel` is not rank 2 float32.
Tensor dense_to_out_in(const Tensor& kernel);

}  // namespace nexus::model
