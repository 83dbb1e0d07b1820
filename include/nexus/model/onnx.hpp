#pragma once
// ONNX import: an .onnx model (a ModelProto, parsed by Debian's libonnx protobuf classes) becomes
// a Graph (model/graph.hpp) that every Backend runs. Built when libonnx-dev + libprotobuf-dev are
// present (CMake target nexus::onnx, macro NEXUS_WITH_ONNX); see docs/onnx.md for the operator
// table and the ONNX node tests that check each operator.
//
// How an ONNX graph maps to the IR:
//  - Dimension 0 of every graph input is the batch (fixed or symbolic); the IR is per item, so
//    each ONNX value keeps track of where its batch axis is (Transpose may move it) and ops that
//    act along the batch axis are refused. Other symbolic dimensions (say H and W of an NCHW
//    detector) are resolved at load from OnnxOptions::input_shape or OnnxOptions::dims.
//  - Initializers and Constant nodes are weights; any node whose inputs are all constant
//    (shape subgraphs: Shape -> Gather -> Concat -> Reshape, Cast, Unsqueeze, arithmetic) is
//    evaluated at load. The batch size is dynamic, so it stays symbolic while folding; a shape
//    subgraph may pass it through to a Reshape but not compute with it.
//  - BatchNormalization after a Conv is folded into the conv's weights (GraphBuilder::build);
//    Identity, Dropout and Cast-to-float are no-ops.
//  - Weights are float32 or float16 (converted to float32), inline or in external data files
//    (TensorProto.external_data, relative to the model file's folder).
//
// Errors: every fault throws nexus::Error naming the node (name and op type), the attribute or
// tensor, and what is supported: an unsupported op (with the model's opset), an unsupported or
// invalid attribute value, a truncated or non-ONNX file, missing external data, zero or several
// graph inputs where one is required, a weight data type other than float32/float16, shapes that
// do not infer. The loader never crashes on malformed input (a fuzz target runs it).

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/model/graph.hpp"

namespace nexus::model {

struct OnnxOptions {
  /// Graph name; empty: the file's stem (or the ONNX graph's name for load_onnx_bytes).
  std::string name;
  /// Per-item shape of the (single) input, e.g. {3, 640, 640}: replaces every non-batch
  /// dimension of the model's declared input (needed where H, W are symbolic). Empty: the
  /// declared dimensions, with symbolic ones looked up in `dims`.
  std::vector<std::int64_t> input_shape;
  /// Values of symbolic dimensions by name (ONNX dim_param), e.g. {"height", 480}.
  std::map<std::string, std::int64_t> dims;
  /// Require exactly one graph input (what the Engine serves). Off: several inputs, each with
  /// its batch on dimension 0 (the same batch for all), as in ONNX's node tests.
  bool single_input = true;
  /// Folder external data files are relative to (load_onnx: the model's folder).
  std::filesystem::path external_data_dir;
};

/// Loads an ONNX model file. Throws nexus::Error (see the header comment), naming the file.
Graph load_onnx(const std::filesystem::path& path, const OnnxOptions& options = {});

/// Loads an ONNX model from the bytes of a ModelProto. Throws nexus::Error as load_onnx.
Graph load_onnx_bytes(std::string_view bytes, const OnnxOptions& options = {});

/// The ONNX op types the loader maps (some only with constant inputs, see docs/onnx.md).
const std::vector<std::string>& onnx_supported_ops();

}  // namespace nexus::model
