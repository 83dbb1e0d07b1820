// Graph IR: shape inference per node, BatchNorm/ScaleOffset folding, dead-node removal.
#include "nexus/model/graph.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

#include "nexus/core/error.hpp"

namespace nexus::model {

const char* op_name(OpType op) {
  switch (op) {
    case OpType::kInput: return "Input";
    case OpType::kConv2D: return "Conv2D";
    case OpType::kBatchNorm: return "BatchNorm";
    case OpType::kScaleOffset: return "ScaleOffset";
    case OpType::kRelu: return "Relu";
    case OpType::kRelu6: return "Relu6";
    case OpType::kLeakyRelu: return "LeakyRelu";
    case OpType::kSigmoid: return "Sigmoid";
    case OpType::kTanh: return "Tanh";
    case OpType::kMaxPool: return "MaxPool";
    case OpType::kAvgPool: return "AvgPool";
    case OpType::kGlobalAvgPool: return "GlobalAvgPool";
    case OpType::kFullyConnected: return "FullyConnected";
    case OpType::kAdd: return "Add";
    case OpType::kMul: return "Mul";
    case OpType::kConcat: return "Concat";
    case OpType::kSoftmax: return "Softmax";
    case OpType::kFlatten: return "Flatten";
    case OpType::kReshape: return "Reshape";
    case OpType::kResizeBilinear: return "ResizeBilinear";
    case OpType::kConstant: return "Constant";
    case OpType::kSub: return "Sub";
    case OpType::kDiv: return "Div";
    case OpType::kClip: return "Clip";
    case OpType::kHardSigmoid: return "HardSigmoid";
    case OpType::kHardSwish: return "HardSwish";
    case OpType::kSqrt: return "Sqrt";
    case OpType::kPow: return "Pow";
    case OpType::kConvTranspose: return "ConvTranspose";
    case OpType::kResizeNearest: return "ResizeNearest";
    case OpType::kTranspose: return "Transpose";
    case OpType::kMatMul: return "MatMul";
    case OpType::kPad: return "Pad";
    case OpType::kReduceMean: return "ReduceMean";
    case OpType::kSlice: return "Slice";
  }
  return "?";
}

// ---- Graph ----------------------------------------------------------------------------------

std::size_t Graph::weights_bytes() const {
  std::size_t bytes = 0;
  for (const Node& n : nodes_) {
    for (const Tensor* t : {&n.weight, &n.bias, &n.mean, &n.variance})
      if (!t->empty()) bytes += t->nbytes();
  }
  return bytes;
}

std::int64_t Graph::macs_per_item() const {
  std::int64_t macs = 0;
  for (const Node& n : nodes_) {
    if (n.op == OpType::kConv2D) {
      const auto& w = n.weight.shape();  // [O, I/g, KH, KW]
      macs += n.shape.numel() * w[1] * w[2] * w[3];
    } else if (n.op == OpType::kFullyConnected) {
      macs += n.weight.shape()[0] * n.weight.shape()[1];
    } else if (n.op == OpType::kConvTranspose) {
      const auto& w = n.weight.shape();  // [I, O/g, KH, KW]
      macs += nodes_[static_cast<std::size_t>(n.inputs[0])].shape.numel() * w[1] * w[2] * w[3];
    } else if (n.op == OpType::kMatMul) {
      const Shape& a = nodes_[static_cast<std::size_t>(n.inputs[0])].shape;
      macs += n.shape.numel() * a[a.rank() - 1];
    }
  }
  return macs;
}

NodeId Graph::find(const std::string& node_name) const {
  for (const Node& n : nodes_)
    if (n.name == node_name) return n.id;
  return -1;
}

Graph Graph::from_nodes(std::string graph_name, std::vector<Node> nodes,
                        std::vector<NodeId> inputs, std::vector<NodeId> outputs) {
  const auto count = static_cast<NodeId>(nodes.size());
  for (NodeId i = 0; i < count; ++i) {
    const Node& n = nodes[static_cast<std::size_t>(i)];
    NEXUS_CHECK(n.id == i, "graph '{}': node {} ('{}') has id {} (expected its position)",
                graph_name, i, n.name, n.id);
    for (NodeId in : n.inputs)
      NEXUS_CHECK(0 <= in && in < i, "graph '{}': node {} ('{}') reads node {} (expected an "
                  "earlier node, 0..{})", graph_name, i, n.name, in, i - 1);
  }
  NEXUS_CHECK(!inputs.empty(), "graph '{}': no input", graph_name);
  NEXUS_CHECK(!outputs.empty(), "graph '{}': no output", graph_name);
  for (NodeId in : inputs)
    NEXUS_CHECK(0 <= in && in < count && nodes[static_cast<std::size_t>(in)].op == OpType::kInput,
                "graph '{}': input {} is not an Input node", graph_name, in);
  for (NodeId o : outputs)
    NEXUS_CHECK(0 <= o && o < count, "graph '{}': output {} out of range (0..{})", graph_name,
                o, count - 1);
  Graph g;
  g.name_ = std::move(graph_name);
  g.nodes_ = std::move(nodes);
  g.inputs_ = std::move(inputs);
  g.outputs_ = std::move(outputs);
  return g;
}

// ---- shape helpers ----------------------------------------------------------------------------

namespace {

struct Window {
  int kernel, stride, dilation;
};

// Output size and pads along one spatial axis, as TensorFlow computes them.
std::int64_t window_out(const std::string& node, const char* axis, std::int64_t in, Window w,
                        Padding padding, int& pad_before, int& pad_after, bool ceil = false) {
  const std::int64_t eff = static_cast<std::int64_t>(w.kernel - 1) * w.dilation + 1;
  std::int64_t out = 0;
  switch (padding) {
    case Padding::kSame: {
      out = (in + w.stride - 1) / w.stride;
      const std::int64_t total = std::max<std::int64_t>((out - 1) * w.stride + eff - in, 0);
      pad_before = static_cast<int>(total / 2);
      pad_after = static_cast<int>(total - total / 2);  // the odd pixel goes bottom/right
      break;
    }
    case Padding::kValid:
      pad_before = pad_after = 0;
      NEXUS_CHECK(in >= eff,
                  "node '{}': VALID window of effective size {} does not fit the input {} of {}",
                  node, eff, axis, in);
      out = (in - eff) / w.stride + 1;
      break;
    case Padding::kExplicit: {
      NEXUS_CHECK(pad_before >= 0 && pad_after >= 0, "node '{}': negative explicit pads ({}, {})",
                  node, pad_before, pad_after);
      const std::int64_t padded = in + pad_before + pad_after;
      NEXUS_CHECK(padded >= eff,
                  "node '{}': window of effective size {} does not fit the padded input {} of {}",
                  node, eff, axis, padded);
      out = ceil ? (padded - eff + w.stride - 1) / w.stride + 1 : (padded - eff) / w.stride + 1;
      // ONNX / PyTorch: a last window that would start inside the end padding is dropped.
      if (ceil && (out - 1) * w.stride >= in + pad_before) --out;
      break;
    }
  }
  return out;
}

void check_image(const std::string& node, OpType op, const Shape& s) {
  NEXUS_CHECK(s.rank() == 3, "node '{}' ({}): input must be an image [C, H, W], got {}", node,
              op_name(op), s);
}

void check_float(const std::string& node, const char* what, const Tensor& t) {
  NEXUS_CHECK(!t.empty(), "node '{}': {} is empty", node, what);
  NEXUS_CHECK(t.dtype() == DType::kFloat32, "node '{}': {} must be float32, got {}", node, what,
              name_of(t.dtype()));
}

void check_vector(const std::string& node, const char* what, const Tensor& t, std::int64_t c) {
  check_float(node, what, t);
  NEXUS_CHECK(t.shape() == Shape({c}), "node '{}': {} has shape {}, expected [{}]", node, what,
              t.shape(), c);
}

int normalize_axis(const std::string& node, OpType op, int axis, int rank) {
  const int a = axis < 0 ? axis + rank : axis;
  NEXUS_CHECK(a >= 0 && a < rank, "node '{}' ({}): axis {} out of range for rank {}", node,
              op_name(op), axis, rank);
  return a;
}

}  // namespace

// ---- GraphBuilder ---------------------------------------------------------------------------

GraphBuilder::GraphBuilder(std::string graph_name) { graph_.name_ = std::move(graph_name); }

NodeId GraphBuilder::push(Node node) {
  node.id = static_cast<NodeId>(graph_.nodes_.size());
  for (NodeId in : node.inputs)
    NEXUS_CHECK(in >= 0 && in < node.id, "node '{}' ({}): input id {} does not name a node built "
                "before it", node.name, op_name(node.op), in);
  graph_.nodes_.push_back(std::move(node));
  return graph_.nodes_.back().id;
}

const Shape& GraphBuilder::shape(NodeId x) const {
  NEXUS_CHECK(x >= 0 && x < static_cast<NodeId>(graph_.nodes_.size()),
              "GraphBuilder '{}': node id {} does not exist", graph_.name_, x);
  return graph_.nodes_[static_cast<std::size_t>(x)].shape;
}

const Node& GraphBuilder::node(NodeId x) const {
  shape(x);  // range check
  return graph_.nodes_[static_cast<std::size_t>(x)];
}

NodeId GraphBuilder::input(std::string name, Shape item_shape) {
  NEXUS_CHECK(item_shape.rank() >= 1 && item_shape.numel() > 0,
              "input '{}': item shape {} must have rank >= 1 and no zero dimension", name,
              item_shape);
  Node n;
  n.name = std::move(name);
  n.op = OpType::kInput;
  n.shape = std::move(item_shape);
  const NodeId id = push(std::move(n));
  graph_.inputs_.push_back(id);
  return id;
}

NodeId GraphBuilder::conv2d(std::string name, NodeId x, Tensor weight, std::optional<Tensor> bias,
                            Conv2DAttrs a) {
  const Shape& in = shape(x);
  check_image(name, OpType::kConv2D, in);
  check_float(name, "weight", weight);
  const Shape& w = weight.shape();
  NEXUS_CHECK(w.rank() == 4, "node '{}' (Conv2D): weight must be [O, I/groups, KH, KW], got {}",
              name, w);
  NEXUS_CHECK(a.groups >= 1 && a.stride_h >= 1 && a.stride_w >= 1 && a.dilation_h >= 1 &&
                  a.dilation_w >= 1,
              "node '{}' (Conv2D): groups, strides and dilations must be >= 1", name);
  // The kernel size comes from the weight; attrs may repeat it (must then agree).
  if (a.kernel_h == 1 && a.kernel_w == 1) {
    a.kernel_h = static_cast<int>(w[2]);
    a.kernel_w = static_cast<int>(w[3]);
  }
  NEXUS_CHECK(a.kernel_h == w[2] && a.kernel_w == w[3],
              "node '{}' (Conv2D): attrs kernel {}x{} but weight {} has {}x{}", name, a.kernel_h,
              a.kernel_w, w, w[2], w[3]);
  const std::int64_t c = in[0];
  NEXUS_CHECK(c % a.groups == 0 && w[0] % a.groups == 0,
              "node '{}' (Conv2D): input channels {} and output channels {} must both divide by "
              "groups {}",
              name, c, w[0], a.groups);
  NEXUS_CHECK(w[1] == c / a.groups,
              "node '{}' (Conv2D): weight {} expects {} input channels per group, input {} with "
              "groups {} gives {}",
              name, w, w[1], in, a.groups, c / a.groups);
  Node n;
  n.name = std::move(name);
  if (bias) {
    check_vector(n.name, "bias", *bias, w[0]);
    n.bias = std::move(*bias);
  }
  const std::int64_t oh = window_out(n.name, "height", in[1],
                                     {a.kernel_h, a.stride_h, a.dilation_h}, a.padding,
                                     a.pads.top, a.pads.bottom);
  const std::int64_t ow = window_out(n.name, "width", in[2],
                                     {a.kernel_w, a.stride_w, a.dilation_w}, a.padding,
                                     a.pads.left, a.pads.right);
  n.op = OpType::kConv2D;
  n.inputs = {x};
  n.shape = Shape{w[0], oh, ow};
  n.conv = a;
  n.weight = std::move(weight);
  return push(std::move(n));
}

NodeId GraphBuilder::batch_norm(std::string name, NodeId x, Tensor mean, Tensor variance,
                                Tensor scale, Tensor offset, float epsilon) {
  const Shape& in = shape(x);
  NEXUS_CHECK(in.rank() >= 1, "node '{}' (BatchNorm): input has rank 0", name);
  const std::int64_t c = in[0];
  check_vector(name, "mean", mean, c);
  check_vector(name, "variance", variance, c);
  check_vector(name, "scale", scale, c);
  check_vector(name, "offset", offset, c);
  NEXUS_CHECK(epsilon >= 0.0f, "node '{}' (BatchNorm): negative epsilon {}", name, epsilon);
  Node n;
  n.name = std::move(name);
  n.op = OpType::kBatchNorm;
  n.inputs = {x};
  n.shape = in;
  n.weight = std::move(scale);
  n.bias = std::move(offset);
  n.mean = std::move(mean);
  n.variance = std::move(variance);
  n.alpha = epsilon;
  return push(std::move(n));
}

NodeId GraphBuilder::scale_offset(std::string name, NodeId x, Tensor scale, Tensor offset) {
  const Shape& in = shape(x);
  NEXUS_CHECK(in.rank() >= 1, "node '{}' (ScaleOffset): input has rank 0", name);
  check_vector(name, "scale", scale, in[0]);
  check_vector(name, "offset", offset, in[0]);
  Node n;
  n.name = std::move(name);
  n.op = OpType::kScaleOffset;
  n.inputs = {x};
  n.shape = in;
  n.weight = std::move(scale);
  n.bias = std::move(offset);
  return push(std::move(n));
}

namespace {
Node unary(std::string name, OpType op, NodeId x, const Shape& s) {
  Node n;
  n.name = std::move(name);
  n.op = op;
  n.inputs = {x};
  n.shape = s;
  return n;
}
}  // namespace

NodeId GraphBuilder::relu(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kRelu, x, shape(x)));
}
NodeId GraphBuilder::relu6(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kRelu6, x, shape(x)));
}
NodeId GraphBuilder::leaky_relu(std::string name, NodeId x, float alpha) {
  Node n = unary(std::move(name), OpType::kLeakyRelu, x, shape(x));
  n.alpha = alpha;
  return push(std::move(n));
}
NodeId GraphBuilder::sigmoid(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kSigmoid, x, shape(x)));
}
NodeId GraphBuilder::tanh(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kTanh, x, shape(x)));
}

namespace {
Node pool(std::string name, OpType op, NodeId x, const Shape& in, Pool2DAttrs a) {
  check_image(name, op, in);
  NEXUS_CHECK(a.kernel_h >= 1 && a.kernel_w >= 1 && a.stride_h >= 1 && a.stride_w >= 1,
              "node '{}' ({}): kernel {}x{} and stride {}x{} must be >= 1", name, op_name(op),
              a.kernel_h, a.kernel_w, a.stride_h, a.stride_w);
  Node n = unary(std::move(name), op, x, in);
  const std::int64_t oh =
      window_out(n.name, "height", in[1], {a.kernel_h, a.stride_h, 1}, a.padding, a.pads.top,
                 a.pads.bottom, a.ceil_mode);
  const std::int64_t ow =
      window_out(n.name, "width", in[2], {a.kernel_w, a.stride_w, 1}, a.padding, a.pads.left,
                 a.pads.right, a.ceil_mode);
  // A window lying wholly in padding would have nothing to pool.
  NEXUS_CHECK(a.pads.top < a.kernel_h && a.pads.bottom < a.kernel_h && a.pads.left < a.kernel_w &&
                  a.pads.right < a.kernel_w,
              "node '{}' ({}): pads must be smaller than the kernel {}x{}", n.name, op_name(op),
              a.kernel_h, a.kernel_w);
  n.shape = Shape{in[0], oh, ow};
  n.pool = a;
  return n;
}
}  // namespace

NodeId GraphBuilder::max_pool(std::string name, NodeId x, Pool2DAttrs attrs) {
  return push(pool(std::move(name), OpType::kMaxPool, x, shape(x), attrs));
}
NodeId GraphBuilder::avg_pool(std::string name, NodeId x, Pool2DAttrs attrs) {
  return push(pool(std::move(name), OpType::kAvgPool, x, shape(x), attrs));
}

NodeId GraphBuilder::global_avg_pool(std::string name, NodeId x) {
  const Shape& in = shape(x);
  check_image(name, OpType::kGlobalAvgPool, in);
  return push(unary(std::move(name), OpType::kGlobalAvgPool, x, Shape{in[0]}));
}

NodeId GraphBuilder::fully_connected(std::string name, NodeId x, Tensor weight,
                                     std::optional<Tensor> bias) {
  const Shape& in = shape(x);
  check_float(name, "weight", weight);
  NEXUS_CHECK(weight.shape().rank() == 2,
              "node '{}' (FullyConnected): weight must be [out, in], got {}", name, weight.shape());
  NEXUS_CHECK(weight.shape()[1] == in.numel(),
              "node '{}' (FullyConnected): weight {} expects {} inputs, input {} flattens to {}",
              name, weight.shape(), weight.shape()[1], in, in.numel());
  Node n = unary(std::move(name), OpType::kFullyConnected, x, Shape{weight.shape()[0]});
  if (bias) {
    check_vector(n.name, "bias", *bias, weight.shape()[0]);
    n.bias = std::move(*bias);
  }
  n.weight = std::move(weight);
  return push(std::move(n));
}

namespace {
// The legacy per-channel rule: b is [C] / [C, 1, ...] (rank below a's) or a scalar [1].
bool per_channel(const Shape& sa, const Shape& sb) {
  if (sa.rank() < 1 || sb.rank() < 1 || sb.rank() >= sa.rank() || sb.numel() < 1) return false;
  bool trailing_ones = true;
  for (int i = 1; i < sb.rank(); ++i) trailing_ones = trailing_ones && sb[i] == 1;
  return trailing_ones && (sb[0] == sa[0] || sb.numel() == 1);
}

Node binary(std::string name, OpType op, NodeId a, NodeId b, const Shape& sa, const Shape& sb) {
  Shape out = sa;
  if (sa != sb && !per_channel(sa, sb)) {
    // numpy broadcasting, shapes aligned on the right.
    const int r = std::max(sa.rank(), sb.rank());
    std::vector<std::int64_t> dims(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i) {
      const int ia = i - (r - sa.rank()), ib = i - (r - sb.rank());
      const std::int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
      NEXUS_CHECK(da == db || da == 1 || db == 1,
                  "node '{}' ({}): shapes {} and {} do not broadcast (axis {} has {} and {}; "
                  "numpy broadcasting needs equal sizes or 1)",
                  name, op_name(op), sa, sb, i, da, db);
      dims[static_cast<std::size_t>(i)] = da == 1 ? db : da;
    }
    out = Shape(std::move(dims));
  }
  Node n;
  n.name = std::move(name);
  n.op = op;
  n.inputs = {a, b};
  n.shape = std::move(out);
  return n;
}
}  // namespace

NodeId GraphBuilder::add(std::string name, NodeId a, NodeId b) {
  return push(binary(std::move(name), OpType::kAdd, a, b, shape(a), shape(b)));
}
NodeId GraphBuilder::mul(std::string name, NodeId a, NodeId b) {
  return push(binary(std::move(name), OpType::kMul, a, b, shape(a), shape(b)));
}

NodeId GraphBuilder::constant(std::string name, Tensor value) {
  check_float(name, "constant value", value);
  NEXUS_CHECK(value.shape().rank() >= 1, "node '{}' (Constant): value must have rank >= 1", name);
  Node n;
  n.name = std::move(name);
  n.op = OpType::kConstant;
  n.shape = value.shape();
  n.weight = std::move(value);
  return push(std::move(n));
}

NodeId GraphBuilder::concat(std::string name, std::vector<NodeId> xs, int axis) {
  NEXUS_CHECK(!xs.empty(), "node '{}' (Concat): no inputs", name);
  const Shape first = shape(xs[0]);
  const int a = normalize_axis(name, OpType::kConcat, axis, first.rank());
  std::vector<std::int64_t> dims = first.dims();
  dims[static_cast<std::size_t>(a)] = 0;
  for (NodeId x : xs) {
    const Shape& s = shape(x);
    bool ok = s.rank() == first.rank();
    for (int i = 0; ok && i < s.rank(); ++i) ok = i == a || s[i] == first[i];
    NEXUS_CHECK(ok, "node '{}' (Concat): input {} has shape {}, incompatible with {} along axis {}",
                name, graph_.nodes_[static_cast<std::size_t>(x)].name, s, first, a);
    dims[static_cast<std::size_t>(a)] += s[a];
  }
  Node n;
  n.name = std::move(name);
  n.op = OpType::kConcat;
  n.inputs = std::move(xs);
  n.shape = Shape(std::move(dims));
  n.axis = a;
  return push(std::move(n));
}

NodeId GraphBuilder::softmax(std::string name, NodeId x, int axis) {
  const Shape& in = shape(x);
  const int a = normalize_axis(name, OpType::kSoftmax, axis, in.rank());
  Node n = unary(std::move(name), OpType::kSoftmax, x, in);
  n.axis = a;
  return push(std::move(n));
}

NodeId GraphBuilder::flatten(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kFlatten, x, Shape{shape(x).numel()}));
}

NodeId GraphBuilder::reshape(std::string name, NodeId x, Shape item_shape) {
  const Shape& in = shape(x);
  NEXUS_CHECK(item_shape.numel() == in.numel(),
              "node '{}' (Reshape): cannot reshape {} ({} elements) to {} ({} elements)", name, in,
              in.numel(), item_shape, item_shape.numel());
  Node n = unary(std::move(name), OpType::kReshape, x, item_shape);
  n.target = std::move(item_shape);
  return push(std::move(n));
}

NodeId GraphBuilder::resize_bilinear(std::string name, NodeId x, ResizeAttrs attrs) {
  const Shape& in = shape(x);
  check_image(name, OpType::kResizeBilinear, in);
  NEXUS_CHECK(attrs.out_h >= 1 && attrs.out_w >= 1,
              "node '{}' (ResizeBilinear): output size {}x{} must be positive", name, attrs.out_h,
              attrs.out_w);
  NEXUS_CHECK(!(attrs.align_corners && attrs.half_pixel_centers),
              "node '{}' (ResizeBilinear): align_corners and half_pixel_centers are exclusive "
              "(as in TensorFlow)",
              name);
  Node n = unary(std::move(name), OpType::kResizeBilinear, x,
                 Shape{in[0], attrs.out_h, attrs.out_w});
  n.resize = attrs;
  return push(std::move(n));
}

NodeId GraphBuilder::sub(std::string name, NodeId a, NodeId b) {
  return push(binary(std::move(name), OpType::kSub, a, b, shape(a), shape(b)));
}
NodeId GraphBuilder::div(std::string name, NodeId a, NodeId b) {
  return push(binary(std::move(name), OpType::kDiv, a, b, shape(a), shape(b)));
}
NodeId GraphBuilder::clip(std::string name, NodeId x, float min, float max) {
  NEXUS_CHECK(!(min > max), "node '{}' (Clip): min {} > max {}", name, min, max);
  Node n = unary(std::move(name), OpType::kClip, x, shape(x));
  n.alpha = min;
  n.beta = max;
  return push(std::move(n));
}
NodeId GraphBuilder::hard_sigmoid(std::string name, NodeId x, float alpha, float beta) {
  Node n = unary(std::move(name), OpType::kHardSigmoid, x, shape(x));
  n.alpha = alpha;
  n.beta = beta;
  return push(std::move(n));
}
NodeId GraphBuilder::hard_swish(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kHardSwish, x, shape(x)));
}
NodeId GraphBuilder::sqrt(std::string name, NodeId x) {
  return push(unary(std::move(name), OpType::kSqrt, x, shape(x)));
}
NodeId GraphBuilder::pow(std::string name, NodeId x, float exponent) {
  Node n = unary(std::move(name), OpType::kPow, x, shape(x));
  n.alpha = exponent;
  return push(std::move(n));
}

NodeId GraphBuilder::conv_transpose(std::string name, NodeId x, Tensor weight,
                                    std::optional<Tensor> bias, Conv2DAttrs a) {
  const Shape& in = shape(x);
  check_image(name, OpType::kConvTranspose, in);
  check_float(name, "weight", weight);
  const Shape& w = weight.shape();
  NEXUS_CHECK(w.rank() == 4,
              "node '{}' (ConvTranspose): weight must be [I, O/groups, KH, KW], got {}", name, w);
  NEXUS_CHECK(a.groups >= 1 && a.stride_h >= 1 && a.stride_w >= 1 && a.dilation_h >= 1 &&
                  a.dilation_w >= 1,
              "node '{}' (ConvTranspose): groups, strides and dilations must be >= 1", name);
  NEXUS_CHECK(a.padding != Padding::kSame,
              "node '{}' (ConvTranspose): SAME padding must be resolved to explicit pads", name);
  if (a.padding == Padding::kValid) a.pads = {};
  NEXUS_CHECK(w[0] == in[0] && in[0] % a.groups == 0,
              "node '{}' (ConvTranspose): weight {} expects {} input channels (divisible by "
              "groups {}), input is {}",
              name, w, w[0], a.groups, in);
  NEXUS_CHECK(a.out_pad_h >= 0 && a.out_pad_w >= 0 && a.out_pad_h < std::max(a.stride_h, a.dilation_h) &&
                  a.out_pad_w < std::max(a.stride_w, a.dilation_w),
              "node '{}' (ConvTranspose): output_padding ({}, {}) must be below the stride or "
              "dilation", name, a.out_pad_h, a.out_pad_w);
  a.kernel_h = static_cast<int>(w[2]);
  a.kernel_w = static_cast<int>(w[3]);
  const std::int64_t oh = (in[1] - 1) * a.stride_h + (a.kernel_h - 1) * a.dilation_h + 1 +
                          a.out_pad_h - a.pads.top - a.pads.bottom;
  const std::int64_t ow = (in[2] - 1) * a.stride_w + (a.kernel_w - 1) * a.dilation_w + 1 +
                          a.out_pad_w - a.pads.left - a.pads.right;
  NEXUS_CHECK(oh >= 1 && ow >= 1 && a.pads.top >= 0 && a.pads.bottom >= 0 && a.pads.left >= 0 &&
                  a.pads.right >= 0,
              "node '{}' (ConvTranspose): pads give an empty or negative output {}x{}", name, oh,
              ow);
  const std::int64_t o = w[1] * a.groups;
  Node n = unary(std::move(name), OpType::kConvTranspose, x, Shape{o, oh, ow});
  if (bias) {
    check_vector(n.name, "bias", *bias, o);
    n.bias = std::move(*bias);
  }
  a.padding = Padding::kExplicit;
  n.conv = a;
  n.weight = std::move(weight);
  return push(std::move(n));
}

NodeId GraphBuilder::resize_nearest(std::string name, NodeId x, ResizeAttrs attrs) {
  const Shape& in = shape(x);
  check_image(name, OpType::kResizeNearest, in);
  NEXUS_CHECK(attrs.out_h >= 1 && attrs.out_w >= 1,
              "node '{}' (ResizeNearest): output size {}x{} must be positive", name, attrs.out_h,
              attrs.out_w);
  Node n = unary(std::move(name), OpType::kResizeNearest, x,
                 Shape{in[0], attrs.out_h, attrs.out_w});
  n.resize = attrs;
  return push(std::move(n));
}

NodeId GraphBuilder::transpose(std::string name, NodeId x, std::vector<int> perm) {
  const Shape& in = shape(x);
  NEXUS_CHECK(static_cast<int>(perm.size()) == in.rank(),
              "node '{}' (Transpose): perm has {} axes, input {} has rank {}", name, perm.size(),
              in, in.rank());
  std::vector<char> seen(perm.size(), 0);
  std::vector<std::int64_t> dims;
  for (int p : perm) {
    NEXUS_CHECK(p >= 0 && p < in.rank() && !seen[static_cast<std::size_t>(p)],
                "node '{}' (Transpose): perm [{}] is not a permutation of the {} item axes",
                name, fmt::join(perm, ", "), in.rank());
    seen[static_cast<std::size_t>(p)] = 1;
    dims.push_back(in[p]);
  }
  Node n = unary(std::move(name), OpType::kTranspose, x, Shape(std::move(dims)));
  n.perm = std::move(perm);
  return push(std::move(n));
}

NodeId GraphBuilder::matmul(std::string name, NodeId a, NodeId b) {
  const Shape& sa = shape(a);
  const Shape& sb = shape(b);
  NEXUS_CHECK(sa.rank() >= 2 && sb.rank() >= 2,
              "node '{}' (MatMul): operands must have rank >= 2 per item, got {} and {}", name, sa,
              sb);
  NEXUS_CHECK(sa[sa.rank() - 1] == sb[sb.rank() - 2],
              "node '{}' (MatMul): {} x {}: inner dimensions {} and {} differ", name, sa, sb,
              sa[sa.rank() - 1], sb[sb.rank() - 2]);
  // Leading dims: b's must equal a's trailing leading dims, or b is a plain matrix.
  NEXUS_CHECK(sb.rank() <= sa.rank(), "node '{}' (MatMul): right operand {} has a higher rank "
              "than the left {} (not supported)", name, sb, sa);
  for (int i = 0; i < sb.rank() - 2; ++i)
    NEXUS_CHECK(sb[i] == sa[i + sa.rank() - sb.rank()],
                "node '{}' (MatMul): leading dims of {} and {} differ (broadcast of a leading "
                "dim is not supported)", name, sa, sb);
  std::vector<std::int64_t> dims = sa.dims();
  dims.back() = sb[sb.rank() - 1];
  Node n = unary(std::move(name), OpType::kMatMul, a, Shape(std::move(dims)));
  n.inputs = {a, b};
  return push(std::move(n));
}

NodeId GraphBuilder::pad(std::string name, NodeId x, std::vector<std::int64_t> begin,
                         std::vector<std::int64_t> end, float value) {
  const Shape& in = shape(x);
  NEXUS_CHECK(static_cast<int>(begin.size()) == in.rank() && begin.size() == end.size(),
              "node '{}' (Pad): {} / {} pads for input {} of rank {}", name, begin.size(),
              end.size(), in, in.rank());
  std::vector<std::int64_t> dims;
  for (int i = 0; i < in.rank(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    NEXUS_CHECK(begin[k] >= 0 && end[k] >= 0,
                "node '{}' (Pad): negative pads (cropping) are not supported", name);
    dims.push_back(in[i] + begin[k] + end[k]);
  }
  Node n = unary(std::move(name), OpType::kPad, x, Shape(std::move(dims)));
  n.begin = std::move(begin);
  n.end = std::move(end);
  n.alpha = value;
  return push(std::move(n));
}

NodeId GraphBuilder::reduce_mean(std::string name, NodeId x, std::vector<int> axes) {
  const Shape& in = shape(x);
  std::sort(axes.begin(), axes.end());
  NEXUS_CHECK(!axes.empty(), "node '{}' (ReduceMean): no axes", name);
  for (std::size_t i = 0; i < axes.size(); ++i) {
    NEXUS_CHECK(axes[i] >= 0 && axes[i] < in.rank() && (i == 0 || axes[i] == axes[i - 1] + 1),
                "node '{}' (ReduceMean): item axes [{}] of {} must be valid and contiguous",
                name, fmt::join(axes, ", "), in);
  }
  std::vector<std::int64_t> dims = in.dims();
  for (int a : axes) dims[static_cast<std::size_t>(a)] = 1;
  Node n = unary(std::move(name), OpType::kReduceMean, x, Shape(std::move(dims)));
  n.axes = std::move(axes);
  return push(std::move(n));
}

NodeId GraphBuilder::slice(std::string name, NodeId x, std::vector<std::int64_t> begin,
                           std::vector<std::int64_t> end, std::vector<std::int64_t> step) {
  const Shape& in = shape(x);
  NEXUS_CHECK(static_cast<int>(begin.size()) == in.rank() && begin.size() == end.size() &&
                  end.size() == step.size(),
              "node '{}' (Slice): bounds for {} axes, input {} has rank {}", name, begin.size(), in,
              in.rank());
  std::vector<std::int64_t> dims;
  for (int i = 0; i < in.rank(); ++i) {
    const auto k = static_cast<std::size_t>(i);
    NEXUS_CHECK(step[k] >= 1 && begin[k] >= 0 && end[k] <= in[i] && begin[k] < end[k],
                "node '{}' (Slice): axis {} of {}: [{}, {}) step {} is empty or out of range "
                "(positive steps only)", name, i, in, begin[k], end[k], step[k]);
    dims.push_back((end[k] - begin[k] + step[k] - 1) / step[k]);
  }
  Node n = unary(std::move(name), OpType::kSlice, x, Shape(std::move(dims)));
  n.begin = std::move(begin);
  n.end = std::move(end);
  n.step = std::move(step);
  return push(std::move(n));
}

void GraphBuilder::output(NodeId x) {
  shape(x);  // range check
  graph_.outputs_.push_back(x);
}

// ---- build: fold, prune, renumber -------------------------------------------------------------

namespace {

// Scales conv output channel o by s[o] and sets bias b'[o] = b[o] * s[o] + t[o]. The weights are
// cloned first: they may share storage with the caller's tensors.
void fold_affine(Node& conv, const std::vector<float>& s, const std::vector<float>& t) {
  Tensor w = conv.weight.clone();
  const std::int64_t out = w.shape()[0];
  const std::int64_t per = w.numel() / out;
  float* wp = w.data<float>();
  for (std::int64_t o = 0; o < out; ++o)
    for (std::int64_t i = 0; i < per; ++i) wp[o * per + i] *= s[static_cast<std::size_t>(o)];
  Tensor b(Shape{out});
  float* bp = b.data<float>();
  const float* old = conv.bias.empty() ? nullptr : conv.bias.data<float>();
  for (std::int64_t o = 0; o < out; ++o)
    bp[o] = (old ? old[o] : 0.0f) * s[static_cast<std::size_t>(o)] + t[static_cast<std::size_t>(o)];
  conv.weight = std::move(w);
  conv.bias = std::move(b);
}

}  // namespace

Graph GraphBuilder::build() && {
  Graph& g = graph_;
  NEXUS_CHECK(!g.inputs_.empty(), "graph '{}': no input", g.name_);
  NEXUS_CHECK(!g.outputs_.empty(), "graph '{}': no output", g.name_);
  const std::size_t count = g.nodes_.size();

  // alias[i]: the node whose value node i now is (itself unless folded away).
  std::vector<NodeId> alias(count);
  for (std::size_t i = 0; i < count; ++i) alias[i] = static_cast<NodeId>(i);
  auto resolve = [&](NodeId x) {
    while (alias[static_cast<std::size_t>(x)] != x) x = alias[static_cast<std::size_t>(x)];
    return x;
  };
  std::vector<int> uses(count, 0);
  for (const Node& n : g.nodes_)
    for (NodeId in : n.inputs) ++uses[static_cast<std::size_t>(in)];
  for (NodeId o : g.outputs_) ++uses[static_cast<std::size_t>(o)];  // outputs are never folded into

  for (Node& n : g.nodes_) {
    for (NodeId& in : n.inputs) in = resolve(in);
    if (n.op != OpType::kBatchNorm && n.op != OpType::kScaleOffset) continue;
    Node& src = g.nodes_[static_cast<std::size_t>(n.inputs[0])];
    if (src.op != OpType::kConv2D || uses[static_cast<std::size_t>(src.id)] != 1) continue;
    const std::int64_t c = n.shape[0];
    std::vector<float> s(static_cast<std::size_t>(c)), t(static_cast<std::size_t>(c));
    const float* scale = n.weight.data<float>();
    const float* offset = n.bias.data<float>();
    for (std::int64_t i = 0; i < c; ++i) {
      if (n.op == OpType::kBatchNorm) {
        // y = (x - mean) / sqrt(var + eps) * scale + offset
        const float k = scale[i] / std::sqrt(n.variance.data<float>()[i] + n.alpha);
        s[static_cast<std::size_t>(i)] = k;
        t[static_cast<std::size_t>(i)] = offset[i] - n.mean.data<float>()[i] * k;
      } else {
        s[static_cast<std::size_t>(i)] = scale[i];
        t[static_cast<std::size_t>(i)] = offset[i];
      }
    }
    fold_affine(src, s, t);
    alias[static_cast<std::size_t>(n.id)] = src.id;
    uses[static_cast<std::size_t>(src.id)] = uses[static_cast<std::size_t>(n.id)];
  }
  for (NodeId& o : g.outputs_) o = resolve(o);

  // Keep what the outputs need, and every input (callers feed them all).
  std::vector<char> live(count, 0);
  for (NodeId o : g.outputs_) live[static_cast<std::size_t>(o)] = 1;
  for (NodeId in : g.inputs_) live[static_cast<std::size_t>(in)] = 1;
  for (std::size_t i = count; i-- > 0;) {
    if (!live[i] || alias[i] != static_cast<NodeId>(i)) continue;
    for (NodeId in : g.nodes_[i].inputs) live[static_cast<std::size_t>(in)] = 1;
  }

  // Builder order is already topological (inputs precede users); renumber the survivors.
  std::vector<NodeId> new_id(count, -1);
  std::vector<Node> kept;
  for (std::size_t i = 0; i < count; ++i) {
    if (!live[i] || alias[i] != static_cast<NodeId>(i)) continue;
    new_id[i] = static_cast<NodeId>(kept.size());
    kept.push_back(std::move(g.nodes_[i]));
    kept.back().id = new_id[i];
    for (NodeId& in : kept.back().inputs) in = new_id[static_cast<std::size_t>(in)];
  }
  g.nodes_ = std::move(kept);
  for (NodeId& in : g.inputs_) in = new_id[static_cast<std::size_t>(in)];
  for (NodeId& o : g.outputs_) o = new_id[static_cast<std::size_t>(o)];
  return std::move(g);
}

}  // namespace nexus::model
