#pragma once
// Graph IR: a model as a DAG of layers with their weights, built with GraphBuilder, checked by
// shape inference, and run by any Backend. Shapes in the IR are per item (no batch dimension):
// an image is [C, H, W]; a Backend runs batches [N, C, H, W] of them. float32 throughout.
//
// Layer semantics follow TensorFlow (the face models come from TensorFlow.js):
//  - Conv2D: weight [O, I/groups, KH, KW] (OIHW), optional bias [O]; stride, dilation, groups
//    (groups == I == O/multiplier is depthwise); padding SAME / VALID as TensorFlow defines them
//    (SAME: out = ceil(in / stride), total pad = max((out-1)*stride + (k-1)*dilation + 1 - in, 0),
//    the extra pixel of an odd total on the bottom/right), or explicit pads.
//  - BatchNorm (mean, variance, scale, offset, epsilon) and ScaleOffset (per-channel y = x*s + o)
//    directly after a Conv2D whose output has no other consumer are folded into its weights by
//    GraphBuilder::build(); elsewhere they stay as per-channel affine nodes.
//  - MaxPool/AvgPool (AvgPool excludes padding from the divisor, as TensorFlow does),
//    GlobalAvgPool ([C, H, W] -> [C]), FullyConnected (weight [out, in], input flattened),
//    Add/Mul (same shapes, or a per-channel [C] / [C,1,1] right operand broadcast), Concat (along
//    an item axis; channels = 0), Softmax (along an item axis, default last), Flatten,
//    Reshape (item shape), ResizeBilinear (align_corners / half_pixel_centers as TF).
//  - Added for ONNX import (model/onnx.hpp), with ONNX semantics: Sub/Div and general numpy
//    broadcasting of Add/Sub/Mul/Div over item shapes (right-aligned; a rank-1 [C] right operand
//    of an image keeps the per-channel meaning above), Clip (min, max), HardSigmoid
//    (max(0, min(1, alpha*x + beta))), HardSwish (x * HardSigmoid(1/6, 1/2)), Sqrt, Pow (scalar
//    exponent), ConvTranspose (weight [I, O/groups, KH, KW], explicit pads, output_padding),
//    ResizeNearest (ONNX coordinate transform + nearest_mode), Transpose (item permutation),
//    MatMul (numpy matmul of two item tensors, leading dims broadcast), Pad (constant), ReduceMean
//    (contiguous item axes, kept as size 1), Slice (per item axis begin/end/step).
//
// Errors: every builder call checks its inputs; a shape error names the node and the shapes
// (nexus::Error).

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nexus/core/shape.hpp"
#include "nexus/core/tensor.hpp"

namespace nexus::model {

using NodeId = int;

enum class OpType {
  kInput,
  kConv2D,
  kBatchNorm,
  kScaleOffset,
  kRelu,
  kRelu6,
  kLeakyRelu,
  kSigmoid,
  kTanh,
  kMaxPool,
  kAvgPool,
  kGlobalAvgPool,
  kFullyConnected,
  kAdd,
  kMul,
  kConcat,
  kSoftmax,
  kFlatten,
  kReshape,
  kResizeBilinear,
  kConstant,  ///< a per-item constant tensor held in Node::weight
  kSub,
  kDiv,
  kClip,           ///< y = min(max(x, alpha), beta)
  kHardSigmoid,    ///< y = max(0, min(1, alpha * x + beta))
  kHardSwish,      ///< y = x * max(0, min(1, x / 6 + 1 / 2))
  kSqrt,
  kPow,            ///< y = x ^ alpha
  kConvTranspose,  ///< weight [I, O/groups, KH, KW], explicit pads, Conv2DAttrs::out_pad_*
  kResizeNearest,
  kTranspose,      ///< Node::perm over item axes
  kMatMul,         ///< numpy matmul of inputs[0] [..., M, K] and inputs[1] [..., K, N]
  kPad,            ///< constant alpha; Node::begin / Node::end pads per item axis
  kReduceMean,     ///< mean over Node::axes (contiguous item axes), kept as size 1
  kSlice,          ///< Node::begin / end / step per item axis (end exclusive, step > 0)
};

/// "Conv2D", "Relu", ... for messages.
const char* op_name(OpType op);

enum class Padding { kSame, kValid, kExplicit };

/// Explicit padding in pixels (used when padding == Padding::kExplicit).
struct Pads {
  int top = 0, bottom = 0, left = 0, right = 0;
  friend bool operator==(const Pads&, const Pads&) = default;
};

struct Conv2DAttrs {
  int kernel_h = 1, kernel_w = 1;
  int stride_h = 1, stride_w = 1;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;
  Padding padding = Padding::kSame;
  Pads pads;  ///< after build(): the resolved pads, whatever `padding` was
  int out_pad_h = 0, out_pad_w = 0;  ///< kConvTranspose: ONNX output_padding
};

struct Pool2DAttrs {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  Padding padding = Padding::kValid;
  Pads pads;  ///< after build(): the resolved pads
  bool ceil_mode = false;          ///< explicit padding: output size rounds up (ONNX ceil_mode)
  bool count_include_pad = false;  ///< AvgPool: padded pixels count in the divisor (ONNX)
};

/// ONNX coordinate_transformation_mode (ResizeNearest; ResizeBilinear uses the two flags).
enum class ResizeCoord { kAsymmetric, kHalfPixel, kPytorchHalfPixel, kAlignCorners, kTfHalfPixelForNN };
/// ONNX nearest_mode.
enum class NearestRound { kRoundPreferFloor, kRoundPreferCeil, kFloor, kCeil };

struct ResizeAttrs {
  int out_h = 0, out_w = 0;
  bool align_corners = false;
  bool half_pixel_centers = false;
  /// out/in scale factors as given by an ONNX model (0 = out/in); they set the source coordinate.
  float scale_h = 0.0f, scale_w = 0.0f;
  ResizeCoord coord = ResizeCoord::kAsymmetric;          ///< kResizeNearest
  NearestRound nearest = NearestRound::kRoundPreferFloor;  ///< kResizeNearest
};

/// Activation fused into a Conv2D or FullyConnected by a backend; the IR keeps it separate.
struct Node {
  NodeId id = -1;
  std::string name;
  OpType op = OpType::kInput;
  std::vector<NodeId> inputs;
  Shape shape;  ///< inferred output shape, per item (no batch dimension)

  Conv2DAttrs conv;     ///< kConv2D
  Pool2DAttrs pool;     ///< kMaxPool, kAvgPool
  ResizeAttrs resize;   ///< kResizeBilinear
  float alpha = 0.0f;   ///< kLeakyRelu slope; kBatchNorm epsilon; kClip min; kHardSigmoid alpha;
                        ///< kPow exponent; kPad value
  float beta = 0.0f;    ///< kClip max; kHardSigmoid beta
  std::vector<int> perm;  ///< kTranspose: output axis i is input item axis perm[i]
  std::vector<int> axes;  ///< kReduceMean item axes (sorted, contiguous)
  std::vector<std::int64_t> begin, end, step;  ///< kPad pads / kSlice bounds, per item axis
  int axis = 0;         ///< kConcat / kSoftmax item axis (negative counts from the end)
  Shape target;         ///< kReshape item shape

  /// kConv2D: weight [O, I/groups, KH, KW], bias [O] (empty if none).
  /// kFullyConnected: weight [out, in], bias [out].
  /// kScaleOffset: weight = scale [C], bias = offset [C].
  /// kBatchNorm: weight = scale [C], bias = offset [C], mean [C], variance [C], alpha = epsilon.
  Tensor weight, bias, mean, variance;
};

class Graph {
 public:
  const std::string& name() const { return name_; }
  /// Nodes in topological order; node(i).id == i.
  const std::vector<Node>& nodes() const { return nodes_; }
  const Node& node(NodeId id) const { return nodes_.at(static_cast<std::size_t>(id)); }
  const std::vector<NodeId>& inputs() const { return inputs_; }
  const std::vector<NodeId>& outputs() const { return outputs_; }
  /// Bytes of all weight tensors (float32).
  std::size_t weights_bytes() const;
  /// Multiply-accumulates per item (convs and FCs), for GFLOP/s figures (FLOPs = 2 x MACs).
  std::int64_t macs_per_item() const;
  /// The id of the first node named `node_name`, or -1 when there is none.
  NodeId find(const std::string& node_name) const;

  /// Assembles a Graph from nodes that were already shape-checked (e.g. cut out of built graphs,
  /// model/prefix.hpp); no folding, no shape inference. `nodes` must be in topological order with
  /// nodes[i].id == i and inputs referring to earlier nodes; `inputs` must name kInput nodes and
  /// `outputs` existing nodes. Weight tensors keep sharing their storage. Throws nexus::Error
  /// naming the graph and the first node that breaks a rule.
  static Graph from_nodes(std::string graph_name, std::vector<Node> nodes,
                          std::vector<NodeId> inputs, std::vector<NodeId> outputs);

 private:
  friend class GraphBuilder;
  std::string name_;
  std::vector<Node> nodes_;
  std::vector<NodeId> inputs_;
  std::vector<NodeId> outputs_;
};

/// Builds a Graph node by node; each call infers and checks the node's output shape at once
/// (throws nexus::Error naming the node and shapes on a mismatch).
class GraphBuilder {
 public:
  explicit GraphBuilder(std::string graph_name);

  NodeId input(std::string name, Shape item_shape);
  NodeId conv2d(std::string name, NodeId x, Tensor weight, std::optional<Tensor> bias,
                Conv2DAttrs attrs);
  NodeId batch_norm(std::string name, NodeId x, Tensor mean, Tensor variance, Tensor scale,
                    Tensor offset, float epsilon);
  NodeId scale_offset(std::string name, NodeId x, Tensor scale, Tensor offset);
  NodeId relu(std::string name, NodeId x);
  NodeId relu6(std::string name, NodeId x);
  NodeId leaky_relu(std::string name, NodeId x, float alpha);
  NodeId sigmoid(std::string name, NodeId x);
  NodeId tanh(std::string name, NodeId x);
  NodeId max_pool(std::string name, NodeId x, Pool2DAttrs attrs);
  NodeId avg_pool(std::string name, NodeId x, Pool2DAttrs attrs);
  NodeId global_avg_pool(std::string name, NodeId x);
  NodeId fully_connected(std::string name, NodeId x, Tensor weight, std::optional<Tensor> bias);
  NodeId add(std::string name, NodeId a, NodeId b);
  NodeId mul(std::string name, NodeId a, NodeId b);
  /// A constant per-item tensor (e.g. a [C] bias to add); stored as a weight.
  NodeId constant(std::string name, Tensor value);
  NodeId concat(std::string name, std::vector<NodeId> xs, int axis = 0);
  NodeId softmax(std::string name, NodeId x, int axis = -1);
  NodeId flatten(std::string name, NodeId x);
  NodeId reshape(std::string name, NodeId x, Shape item_shape);
  NodeId resize_bilinear(std::string name, NodeId x, ResizeAttrs attrs);
  // ---- ONNX ops (semantics in the header comment) ----
  NodeId sub(std::string name, NodeId a, NodeId b);
  NodeId div(std::string name, NodeId a, NodeId b);
  NodeId clip(std::string name, NodeId x, float min, float max);
  NodeId hard_sigmoid(std::string name, NodeId x, float alpha, float beta);
  NodeId hard_swish(std::string name, NodeId x);
  NodeId sqrt(std::string name, NodeId x);
  NodeId pow(std::string name, NodeId x, float exponent);
  /// weight [I, O/groups, KH, KW]; attrs.padding must be kExplicit (or kValid).
  NodeId conv_transpose(std::string name, NodeId x, Tensor weight, std::optional<Tensor> bias,
                        Conv2DAttrs attrs);
  NodeId resize_nearest(std::string name, NodeId x, ResizeAttrs attrs);
  NodeId transpose(std::string name, NodeId x, std::vector<int> perm);
  NodeId matmul(std::string name, NodeId a, NodeId b);
  NodeId pad(std::string name, NodeId x, std::vector<std::int64_t> begin,
             std::vector<std::int64_t> end, float value);
  NodeId reduce_mean(std::string name, NodeId x, std::vector<int> axes);
  NodeId slice(std::string name, NodeId x, std::vector<std::int64_t> begin,
               std::vector<std::int64_t> end, std::vector<std::int64_t> step);
  void output(NodeId x);

  /// Shape of a node built so far (per item).
  const Shape& shape(NodeId x) const;
  /// A node built so far (its attrs hold the resolved pads). Throws on an unknown id.
  const Node& node(NodeId x) const;

  /// Finishes the graph: folds BatchNorm/ScaleOffset into preceding convs, drops dead nodes,
  /// renumbers. Throws if there is no input or no output.
  Graph build() &&;

 private:
  NodeId push(Node node);
  Graph graph_;
};

}  // namespace nexus::model
