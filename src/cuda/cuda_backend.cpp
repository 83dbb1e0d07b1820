// CudaBackend: the Graph IR on cuDNN (convolutions, pooling), cuBLAS (fully connected) and the
// small kernels of kernels.cu, in FP32 (NCHW) or FP16 (NHWC, tensor cores).
//
// Load builds a list of steps (one per node, activations fused into the preceding conv or FC),
// gives each materialized tensor a lifetime [defining step, last reading step], and places the
// tensors in one arena by first-fit over the live set, sized for max_batch. The same offsets
// serve every batch size, so a batch's pointers never change and its CUDA Graph replays as is.
#include "nexus/exec/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_profiler_api.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "batch_sizes.hpp"
#include "check.hpp"
#include "fused_conv.hpp"
#include "kernels.hpp"
#include "nexus/core/error.hpp"
#include "nexus/model/graph.hpp"

namespace nexus {

using cuda::Act;
using cuda::Dims4;
using cuda::Elem;
using cuda::EwOp;
using model::Node;
using model::OpType;

const char* precision_name(CudaPrecision precision) {
  return precision == CudaPrecision::kFloat16 ? "fp16" : "fp32";
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return n;
}

std::unique_ptr<Backend> make_cuda_backend(CudaBackendOptions options) {
  return std::make_unique<CudaBackend>(options);
}

void cuda_profiler(bool start) {
  const cudaError_t e = start ? cudaProfilerStart() : cudaProfilerStop();
  if (e != cudaSuccess) (void)cudaGetLastError();
}

namespace {

constexpr std::size_t kAlign = 256;
constexpr std::size_t kCublasWorkspaceBytes = std::size_t{32} << 20;

std::size_t align_up(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

/// A tensor of the run: a node's output or a temporary of one step (padded input, flattened FC
/// input). Item dims are padded to 3: [C] -> [C, 1, 1], [A, B] -> [A, B, 1].
struct Value {
  std::string name;
  std::int64_t d[3] = {1, 1, 1};
  int rank = 0;
  bool nhwc = false;          // rank 3 in the FP16 path: stored [N, H, W, C]
  bool constant = false;      // a kConstant: one copy in weights memory, batch stride 0
  int weight = -1;            // constant: its weight id
  bool materialized = false;  // lives in the arena
  int def = -1, last = -1;    // step that writes it (-1: the upload) / last step that reads it
  std::size_t offset = 0;     // arena offset in bytes

  std::int64_t item_elems() const { return d[0] * d[1] * d[2]; }
  Dims4 dims(int n) const { return Dims4{{n, d[0], d[1], d[2]}}; }
  Dims4 strides() const {
    const std::int64_t batch = constant ? 0 : item_elems();
    if (nhwc) return Dims4{{batch, 1, d[2] * d[0], d[0]}};
    return Dims4{{batch, d[1] * d[2], d[2], 1}};
  }
};

/// An elementwise operand: a value or a weight, with its (broadcast) strides.
struct Operand {
  int value = -1;
  int weight = -1;
  Dims4 strides;
};

enum class StepKind {
  kConv,
  kFullyConnected,
  kPoolCudnn,
  kPoolKernel,
  kElementwise,
  kConcat,
  kSoftmax,
  kConvert,
  kResize,
  // Added for ONNX import (model/graph.hpp's ONNX ops):
  kStridedCopy,    // Transpose, Slice, Pad: cuda::launch_strided_copy
  kResizeNearest,  // cuda::launch_resize_nearest
  kReduceMean,     // cuda::launch_reduce_mean
  kMatMul,         // cuBLAS strided-batched GEMM per item (FP32)
  kConvTranspose,  // cudnnConvolutionBackwardData + bias epilogue (FP32)
  kPoolIncludePad  // AvgPool with count_include_pad: cuda::launch_avg_pool_include_pad
};

/// How input i of a run() arrived: float32 [n, ...item] (the IR's layout), float16 of the same
/// shape, or uint8 [n, H, W, C] video frames for a [C, H, W] input (normalized on the GPU).
enum class InputKind { kF32, kF16, kU8Hwc };

/// How one convolution runs at one batch size: the alternative measured fastest at prepare.
enum class ConvImpl {
  kLegacy,       // cudnnConvolutionForward (FindEx's fastest algo) + own epilogue kernel
  kLegacyFused,  // cudnnConvolutionBiasActivationForward (bias [+ residual] + ReLU)
  kGraph,        // one cuDNN graph-API plan: conv -> + bias [-> + residual] [-> activation]
  kFp32,         // FP16 model, this layer in FP32: convert in, cudnnConvolutionForward, convert
                 // out, epilogue kernel (cuDNN runs no FP16 alternative, or options.fp32_layers)
};

struct ConvPerBatch {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  ConvImpl impl = ConvImpl::kLegacy;
  cudnnConvolutionFwdAlgo_t fused_algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM;
  std::shared_ptr<const std::vector<cuda::GraphPlan>> plans;  // shared by equal geometries
  int plan = -1;                                              // kGraph: index into plans
  std::shared_ptr<void> pack;                                 // kGraph: its variant pack
  std::string label;                                          // what runs, for the report
  float ms = 0.f;                                             // its measured time
  cudnnTensorDescriptor_t x32 = nullptr, y32 = nullptr;       // kFp32: NCHW float
  cudnnConvolutionFwdAlgo_t algo32 = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
};

/// A conv layer of an FP16 model run in FP32 (ConvImpl::kFp32): its own FP32 weights and
/// input/output buffers, outside the arena (made at prepare, once per layer).
struct Fp32Conv {
  cudnnFilterDescriptor_t w = nullptr;
  float* weights = nullptr;
  float* x = nullptr;  // [max_batch, C, H, W] of the (padded) input
  float* y = nullptr;  // [max_batch, K, OH, OW]
  std::size_t bytes = 0;
  std::string why;     // said once
};

const char* algo_name(cudnnConvolutionFwdAlgo_t a) {
  switch (a) {
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return "IMPLICIT_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return "IMPLICIT_PRECOMP_GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return "GEMM";
    case CUDNN_CONVOLUTION_FWD_ALGO_DIRECT: return "DIRECT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT: return "FFT";
    case CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: return "FFT_TILING";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: return "WINOGRAD";
    case CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: return "WINOGRAD_NONFUSED";
    default: return "?";
  }
}

struct Step {
  StepKind kind = StepKind::kElementwise;
  std::string name;  // the IR node's name, for messages
  int out = -1;
  std::vector<int> ins;
  int temp = -1;  // kConv: zero-padded input; kFullyConnected: flattened NCHW input

  // kElementwise (a = ins[0]); also the epilogue of kConv / kFullyConnected (bias, activation)
  EwOp op = EwOp::kCopy;
  Act act = Act::kNone;
  float alpha = 0.f;
  Operand b, c;

  // kConv
  cudnnFilterDescriptor_t w_desc = nullptr;
  cudnnConvolutionDescriptor_t conv_desc = nullptr;
  cudnnTensorDescriptor_t bias_desc = nullptr;
  cudnnActivationDescriptor_t relu_desc = nullptr;
  model::Pads pads;  // explicit zero padding into `temp` (asymmetric TF SAME)
  int weight = -1, bias = -1;
  int residual = -1;             // a fused residual Add's other input (ins[1]), or -1
  model::Conv2DAttrs conv;       // geometry for the graph API (its pads are the full pads)
  std::int64_t filter[4] = {};   // [K, C / groups, R, S]
  std::vector<ConvPerBatch> conv_batches;  // index: batch size
  std::shared_ptr<Fp32Conv> fp32;          // set when some batch size runs this conv in FP32

  // kFullyConnected
  int in_features = 0, out_features = 0;

  // kPoolCudnn / kPoolKernel
  bool is_max = true;
  model::Pool2DAttrs pool;
  cudnnPoolingDescriptor_t pool_desc = nullptr;
  std::vector<std::pair<cudnnTensorDescriptor_t, cudnnTensorDescriptor_t>> pool_batches;

  // kSoftmax / kConcat: logical dimension (1..3)
  int axis = 1;

  // kResize, kResizeNearest
  model::ResizeAttrs resize;

  // kElementwise: the second parameter of kClip / kHardSigmoid; a's own broadcast strides
  // (numpy broadcasting of ONNX Add/Sub/Mul/Div), used when a_bcast.
  float beta = 0.f;
  bool a_bcast = false;
  Dims4 a_strides;

  // kStridedCopy (launch_strided_copy's arguments; batch entries set per run)
  Dims4 g_src_dims, g_strides, g_pad;
  std::int64_t g_offset = 0;
  float g_value = 0.f;

  // kMatMul: y[l] = a[l] (M x K) * b[l] (K x N) for l < lead, per item
  std::int64_t mm_m = 0, mm_k = 0, mm_n = 0, mm_lead = 1, mm_stride_a = 0, mm_stride_b = 0;

  // kConvTranspose: backward-data algorithm per batch size (-1: not chosen yet)
  std::vector<int> ct_algo;
};

// The IR's legacy per-channel right operand of Add/Sub/Mul/Div (model/graph.hpp): [C] / [C, 1,
// ...] of lower rank than the left one, or a scalar (as the CpuBackend's per_channel).
bool legacy_per_channel(const Shape& sa, const Shape& sb) {
  if (sa.rank() < 1 || sb.rank() < 1 || sb.rank() >= sa.rank() || sb.numel() < 1) return false;
  bool trailing_ones = true;
  for (int i = 1; i < sb.rank(); ++i) trailing_ones = trailing_ones && sb[i] == 1;
  return trailing_ones && (sb[0] == sa[0] || sb.numel() == 1);
}

// Strides that read operand `x` (item shape xs) broadcast onto the output item shape `out` by
// numpy's rule (shapes aligned on the right, size-1 dimensions repeated).
Dims4 numpy_strides(const Value& x, const Shape& xs, const Shape& out, const std::string& layer) {
  const Dims4 st = x.strides();
  Dims4 r{{st.v[0], 0, 0, 0}};
  const int lead = out.rank() - xs.rank();
  NEXUS_CHECK(lead >= 0, "CudaBackend: layer '{}': operand '{}' {} has a higher rank than the "
              "output {}", layer, x.name, xs, out);
  for (int k = 0; k < out.rank(); ++k) {
    const int xi = k - lead;
    if (xi < 0 || xs[xi] == 1) continue;
    NEXUS_CHECK(xs[xi] == out[k], "CudaBackend: layer '{}' cannot broadcast '{}' {} onto {}",
                layer, x.name, xs, out);
    r.v[k + 1] = st.v[xi + 1];
  }
  return r;
}

struct WeightBlob {
  std::vector<float> host;  // float32 as in the IR
  Dims4 dims;               // logical dims of the copy
  Dims4 dst_strides;        // layout on the device
  std::size_t offset = 0;   // in the weights block
};

bool is_activation(OpType op) {
  return op == OpType::kRelu || op == OpType::kRelu6 || op == OpType::kLeakyRelu ||
         op == OpType::kSigmoid || op == OpType::kTanh;
}

Act act_of(OpType op) {
  switch (op) {
    case OpType::kRelu:
      return Act::kRelu;
    case OpType::kRelu6:
      return Act::kRelu6;
    case OpType::kLeakyRelu:
      return Act::kLeaky;
    case OpType::kSigmoid:
      return Act::kSigmoid;
    case OpType::kTanh:
      return Act::kTanh;
    default:
      return Act::kNone;
  }
}

Dims4 contiguous_strides(Dims4 d) {
  return Dims4{{d.v[1] * d.v[2] * d.v[3], d.v[2] * d.v[3], d.v[3], 1}};
}

/// Destroys a tensor descriptor at scope exit.
struct DescGuard {
  cudnnTensorDescriptor_t d = nullptr;
  explicit DescGuard(cudnnTensorDescriptor_t desc) : d(desc) {}
  DescGuard(const DescGuard&) = delete;
  DescGuard& operator=(const DescGuard&) = delete;
  ~DescGuard() {
    if (d) cudnnDestroyTensorDescriptor(d);
  }
};

std::vector<float> values_of(const Tensor& t) {
  auto v = t.values();
  return std::vector<float>(v.begin(), v.end());
}

}  // namespace

struct CudaBackend::Impl {
  CudaBackendOptions options;
  std::string label;
  Elem elem = Elem::kF32;
  std::size_t elem_size = 4;
  cudnnDataType_t cudnn_type = CUDNN_DATA_FLOAT;
  cudaDataType_t blas_type = CUDA_R_32F;

  cudnnHandle_t cudnn = nullptr;
  cublasHandle_t cublas = nullptr;
  cudaStream_t compute = nullptr;  // every kernel and library call; captured into graphs
  cudaStream_t copy = nullptr;     // host <-> device transfers
  cudaEvent_t uploaded = nullptr, computed = nullptr;
  cudaEvent_t timing_start = nullptr, timing_stop = nullptr;  // prepare's measurements
  bool print_engines = false;
  /// Graph-API plans by geometry (ConvGeometry::key): identical layers share them.
  std::map<std::string, std::shared_ptr<const std::vector<cuda::GraphPlan>>> plan_cache;
  std::vector<int> batch_sizes;  // the sizes prepared (batch_sizes.hpp), ascending
  std::size_t fp32_bytes = 0;    // device bytes of FP32-fallback layers (outside the arena)
  double fused_build_s = 0;      // time spent building graph-API plans since load
  bool fused_budget_said = false;

  // Model state (load .. unload)
  std::string model_name;
  int max_batch = 0;
  std::vector<Value> values;  // node values first (index = NodeId), then temporaries
  std::vector<Step> steps;
  std::vector<int> input_values, output_values;
  std::vector<WeightBlob> weights;
  std::size_t weights_total = 0;
  std::vector<std::size_t> activation_bytes;  // index: batch size
  std::vector<bool> prepared;                 // index: batch size
  std::vector<cudaGraphExec_t> graphs;        // index: batch size; null: run step by step

  std::byte* d_weights = nullptr;
  std::byte* d_arena = nullptr;
  std::byte* d_workspace = nullptr;
  std::size_t workspace_bytes = 0;
  std::byte* d_cublas_ws = nullptr;
  std::vector<float*> d_in_staging, d_out_staging;  // float32 NCHW, for converted transfers
  std::vector<float*> h_in, h_out;                  // pinned host staging
  std::vector<std::byte*> d_raw_in;                 // float16 / uint8 inputs before conversion
  float* d_norm = nullptr;                          // uint8 normalization: mean[4], scale[4]

  ~Impl() {
    unload();
    if (uploaded) cudaEventDestroy(uploaded);
    if (computed) cudaEventDestroy(computed);
    if (timing_start) cudaEventDestroy(timing_start);
    if (timing_stop) cudaEventDestroy(timing_stop);
    if (cublas) cublasDestroy(cublas);
    if (cudnn) cudnnDestroy(cudnn);
    if (compute) cudaStreamDestroy(compute);
    if (copy) cudaStreamDestroy(copy);
  }

  void set_device() const { NEXUS_CUDA_CHECK(cudaSetDevice(options.device_index), ""); }

  // ---- pointers ---------------------------------------------------------------------------
  void* wptr(int id) const { return d_weights + weights.at(static_cast<std::size_t>(id)).offset; }
  void* vptr(int v) const {
    const Value& x = values[static_cast<std::size_t>(v)];
    return x.constant ? wptr(x.weight) : static_cast<void*>(d_arena + x.offset);
  }
  const void* operand_ptr(const Operand& o) const {
    if (o.value >= 0) return vptr(o.value);
    if (o.weight >= 0) return wptr(o.weight);
    return nullptr;
  }
  std::byte* offset_ptr(void* base, std::int64_t elements) const {
    return static_cast<std::byte*>(base) + elements * static_cast<std::int64_t>(elem_size);
  }

  int add_weight(std::vector<float> host, Dims4 dims, Dims4 dst_strides) {
    WeightBlob w;
    w.host = std::move(host);
    w.dims = dims;
    w.dst_strides = dst_strides;
    w.offset = weights_total;
    weights_total += align_up(static_cast<std::size_t>(dims.numel()) * elem_size);
    weights.push_back(std::move(w));
    return static_cast<int>(weights.size()) - 1;
  }
  int add_flat_weight(std::vector<float> host) {
    const auto n = static_cast<std::int64_t>(host.size());
    const Dims4 d{{1, 1, 1, n}};
    return add_weight(std::move(host), d, contiguous_strides(d));
  }
  int add_temp(const std::string& name, std::int64_t d0, std::int64_t d1, std::int64_t d2,
               bool nhwc) {
    Value t;
    t.name = name;
    t.d[0] = d0;
    t.d[1] = d1;
    t.d[2] = d2;
    t.rank = 3;
    t.nhwc = nhwc;
    t.materialized = true;
    values.push_back(t);
    return static_cast<int>(values.size()) - 1;
  }

  cudnnTensorDescriptor_t tensor_desc(const Value& v, int n, const std::string& layer) const {
    cudnnTensorDescriptor_t d = nullptr;
    NEXUS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d), layer);
    NEXUS_CUDNN_CHECK(
        cudnnSetTensor4dDescriptor(d, v.nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW, cudnn_type, n,
                                   static_cast<int>(v.d[0]), static_cast<int>(v.d[1]),
                                   static_cast<int>(v.d[2])),
        layer);
    return d;
  }

  // ---- load -------------------------------------------------------------------------------
  void load(const model::Graph& graph, int batch_limit);
  void build_steps(const model::Graph& graph);
  void add_conv(const model::Graph& graph, const Node& node, int out, Act act, float alpha,
                int residual);
  void add_fc(const Node& node, int out, Act act, float alpha);
  void add_conv_transpose(const Node& node);
  void check_layers();
  void compute_lifetimes();
  std::size_t plan_arena(int n, bool assign);
  void check_arena() const;
  void allocate_and_upload();
  void unload();

  // ---- run --------------------------------------------------------------------------------
  void prepare(int n);
  void prepare_exact(int n);
  void choose_conv(Step& s, int n);
  float prepare_fp32_conv(Step& s, int n, const std::string& why);
  float measure_step(Step& s, int n, std::string* failure);
  cudaGraphExec_t capture(int n);
  void run_sequence(int n, cudaStream_t stream);
  void run_step(Step& s, int n, cudaStream_t stream);
  std::vector<Tensor> run(const std::vector<Tensor>& inputs);
  std::vector<Tensor> run_prepared(const std::vector<Tensor>& inputs,
                                   const std::vector<InputKind>& kinds, int b, int r);
};

// ------------------------------------------------------------------------------------------
// load

void CudaBackend::Impl::load(const model::Graph& graph, int batch_limit) {
  NEXUS_CHECK(batch_limit >= 1, "CudaBackend::load('{}'): max_batch {} (expected >= 1)",
              graph.name(), batch_limit);
  set_device();
  unload();
  model_name = graph.name();
  max_batch = batch_limit;
  try {
    build_steps(graph);
    check_layers();
    compute_lifetimes();
    activation_bytes.assign(static_cast<std::size_t>(max_batch) + 1, 0);
    for (int n = 1; n <= max_batch; ++n)
      activation_bytes[static_cast<std::size_t>(n)] = plan_arena(n, false);
    plan_arena(max_batch, true);
    check_arena();
    allocate_and_upload();
    prepared.assign(static_cast<std::size_t>(max_batch) + 1, false);
    graphs.assign(static_cast<std::size_t>(max_batch) + 1, nullptr);
    batch_sizes = cuda::prepared_batch_sizes(max_batch, options.graph_batch_sizes);
    // Batch 1 now: a convolution cuDNN cannot run fails here, at load, not at the first run.
    prepare(1);
  } catch (...) {
    unload();
    throw;
  }
}

void CudaBackend::Impl::build_steps(const model::Graph& graph) {
  const auto& nodes = graph.nodes();
  const bool fp16 = elem == Elem::kF16;
  std::vector<std::vector<int>> consumers(nodes.size());
  for (const Node& n : nodes)
    for (int in : n.inputs) consumers.at(static_cast<std::size_t>(in)).push_back(n.id);
  std::vector<bool> is_output(nodes.size(), false);
  for (int o : graph.outputs()) is_output.at(static_cast<std::size_t>(o)) = true;

  // Temporaries (at most one per conv or FC) are appended: reserve so references stay valid.
  values.reserve(2 * nodes.size() + 1);
  values.assign(nodes.size(), Value{});
  for (const Node& n : nodes) {
    Value& v = values[static_cast<std::size_t>(n.id)];
    v.name = n.name;
    v.rank = n.shape.rank();
    NEXUS_CHECK(v.rank >= 1 && v.rank <= 3,
                "CudaBackend: layer '{}' ({}) has item shape {}: only ranks 1..3 are supported",
                n.name, model::op_name(n.op), n.shape);
    for (int i = 0; i < v.rank; ++i) v.d[i] = n.shape[i];
    v.nhwc = fp16 && v.rank == 3;
  }

  // The activation a conv or FC can absorb: its only consumer, and the conv is no output.
  auto fusible_activation = [&](const Node& n) -> int {
    const auto& cs = consumers[static_cast<std::size_t>(n.id)];
    if (is_output[static_cast<std::size_t>(n.id)] || cs.size() != 1) return -1;
    const Node& c = nodes[static_cast<std::size_t>(cs[0])];
    return is_activation(c.op) && c.inputs.size() == 1 ? c.id : -1;
  };
  // The Add a conv can absorb as y = conv + bias + z: the conv's only consumer (the conv is no
  // output), whose other input z is a per-item tensor of the same shape computed by an earlier
  // node (so it exists when the conv step runs). Returns the Add's id and sets *z.
  auto fusible_residual_add = [&](const Node& n, int* z) -> int {
    const auto& cs = consumers[static_cast<std::size_t>(n.id)];
    if (is_output[static_cast<std::size_t>(n.id)] || cs.size() != 1) return -1;
    const Node& a = nodes[static_cast<std::size_t>(cs[0])];
    if (a.op != OpType::kAdd || a.inputs.size() != 2) return -1;
    const int other = a.inputs[0] == n.id ? a.inputs[1] : a.inputs[0];
    if (other == n.id || other > n.id) return -1;
    const Value& zv = values[static_cast<std::size_t>(other)];
    const Value& yv = values[static_cast<std::size_t>(n.id)];
    if (zv.constant || !zv.materialized || zv.rank != 3 || yv.rank != 3) return -1;
    for (int k = 0; k < 3; ++k)
      if (zv.d[k] != yv.d[k]) return -1;
    if (a.shape.rank() != 3) return -1;
    *z = other;
    return a.id;
  };
  std::vector<bool> fused(nodes.size(), false);

  for (const Node& n : nodes) {
    const auto id = static_cast<std::size_t>(n.id);
    if (fused[id]) continue;
    Value& v = values[id];
    auto in = [&](int i) { return n.inputs.at(static_cast<std::size_t>(i)); };
    auto require_rank3 = [&](int x) {
      const Value& xv = values[static_cast<std::size_t>(x)];
      NEXUS_CHECK(xv.rank == 3 && !xv.constant,
                  "CudaBackend: layer '{}' ({}) needs a [C, H, W] input computed per item, got "
                  "'{}'",
                  n.name, model::op_name(n.op), xv.name);
    };
    Step s;
    s.name = n.name;
    s.out = n.id;
    if (n.op != OpType::kInput && n.op != OpType::kConstant) v.materialized = true;

    switch (n.op) {
      case OpType::kInput:
        v.materialized = true;
        continue;
      case OpType::kConstant: {
        NEXUS_CHECK(n.weight.numel() == v.item_elems(),
                    "CudaBackend: constant '{}' holds {} values for shape {}", n.name,
                    n.weight.numel(), n.shape);
        v.constant = true;
        const Dims4 dims = v.dims(1);
        Value one = v;
        one.constant = false;  // strides of one item
        v.weight = add_weight(values_of(n.weight), dims, one.strides());
        continue;
      }
      case OpType::kConv2D:
      case OpType::kFullyConnected: {
        // Fold into this step: a following residual Add (conv only: y = conv + bias + z, with
        // z computed earlier), then a following activation.
        int tail = n.id, residual = -1;
        if (n.op == OpType::kConv2D) {
          const int add = fusible_residual_add(n, &residual);
          if (add >= 0) {
            fused[static_cast<std::size_t>(add)] = true;
            tail = add;
          }
        }
        const int act_node = fusible_activation(nodes[static_cast<std::size_t>(tail)]);
        Act act = Act::kNone;
        float alpha = 0.f;
        if (act_node >= 0) {
          const Node& a = nodes[static_cast<std::size_t>(act_node)];
          act = act_of(a.op);
          alpha = a.alpha;
          fused[static_cast<std::size_t>(act_node)] = true;
          tail = act_node;
        }
        const int out = tail;
        if (out != n.id) {
          v.materialized = false;
          values[static_cast<std::size_t>(out)].materialized = true;
        }
        if (n.op == OpType::kConv2D) {
          require_rank3(in(0));
          add_conv(graph, n, out, act, alpha, residual);
        } else {
          add_fc(n, out, act, alpha);
        }
        continue;
      }
      case OpType::kBatchNorm:
      case OpType::kScaleOffset: {
        const std::int64_t c = v.d[0];
        std::vector<float> scale = values_of(n.weight), shift = values_of(n.bias);
        NEXUS_CHECK(static_cast<std::int64_t>(scale.size()) == c &&
                        static_cast<std::int64_t>(shift.size()) == c,
                    "CudaBackend: layer '{}' needs {} scales and offsets", n.name, c);
        if (n.op == OpType::kBatchNorm) {
          const auto mean = values_of(n.mean), var = values_of(n.variance);
          NEXUS_CHECK(static_cast<std::int64_t>(mean.size()) == c &&
                          static_cast<std::int64_t>(var.size()) == c,
                      "CudaBackend: batch norm '{}' needs {} means and variances", n.name, c);
          for (std::size_t i = 0; i < scale.size(); ++i) {
            scale[i] = scale[i] / std::sqrt(var[i] + n.alpha);
            shift[i] = shift[i] - mean[i] * scale[i];
          }
        }
        s.kind = StepKind::kElementwise;
        s.op = EwOp::kAffine;
        s.ins = {in(0)};
        s.b = Operand{-1, add_flat_weight(std::move(scale)), Dims4{{0, 1, 0, 0}}};
        s.c = Operand{-1, add_flat_weight(std::move(shift)), Dims4{{0, 1, 0, 0}}};
        break;
      }
      case OpType::kRelu:
      case OpType::kRelu6:
      case OpType::kLeakyRelu:
      case OpType::kSigmoid:
      case OpType::kTanh:
        s.kind = StepKind::kElementwise;
        s.op = EwOp::kCopy;
        s.act = act_of(n.op);
        s.alpha = n.alpha;
        s.ins = {in(0)};
        break;
      case OpType::kMaxPool:
      case OpType::kAvgPool:
      case OpType::kGlobalAvgPool: {
        require_rank3(in(0));
        s.ins = {in(0)};
        s.is_max = n.op == OpType::kMaxPool;
        if (n.op == OpType::kGlobalAvgPool) {
          const Value& x = values[static_cast<std::size_t>(in(0))];
          s.pool.kernel_h = static_cast<int>(x.d[1]);
          s.pool.kernel_w = static_cast<int>(x.d[2]);
          s.pool.stride_h = s.pool.kernel_h;
          s.pool.stride_w = s.pool.kernel_w;
          s.pool.pads = {};
        } else {
          s.pool = n.pool;
        }
        const auto& p = s.pool.pads;
        s.kind =
            (p.top == p.bottom && p.left == p.right) ? StepKind::kPoolCudnn : StepKind::kPoolKernel;
        // ONNX ceil_mode: cuDNN's output size differs, check_layers() moves it to the kernel.
        if (n.op == OpType::kAvgPool && n.pool.count_include_pad) s.kind = StepKind::kPoolIncludePad;
        break;
      }
      case OpType::kAdd:
      case OpType::kMul:
      case OpType::kSub:
      case OpType::kDiv: {
        s.kind = StepKind::kElementwise;
        s.op = n.op == OpType::kAdd   ? EwOp::kAdd
               : n.op == OpType::kMul ? EwOp::kMul
               : n.op == OpType::kSub ? EwOp::kSub
                                      : EwOp::kDiv;
        s.ins = {in(0), in(1)};
        const Value& a = values[static_cast<std::size_t>(in(0))];
        const Value& b = values[static_cast<std::size_t>(in(1))];
        const Shape& sa = nodes[static_cast<std::size_t>(in(0))].shape;
        const Shape& sbs = nodes[static_cast<std::size_t>(in(1))].shape;
        if (sa == n.shape && (sbs == sa || legacy_per_channel(sa, sbs))) {
          // Same shapes, or the IR's per-channel right operand ([C] / [C, 1, ..] / scalar).
          Dims4 sb = b.strides();
          for (int k = 0; k < 3; ++k) {
            if (b.d[k] == v.d[k]) continue;
            NEXUS_CHECK(b.d[k] == 1, "CudaBackend: layer '{}' cannot broadcast '{}' onto '{}'",
                        n.name, b.name, a.name);
            sb.v[k + 1] = 0;
          }
          s.b = Operand{in(1), -1, sb};
        } else {  // numpy broadcasting, shapes aligned on the right (model/graph.hpp)
          s.a_bcast = true;
          s.a_strides = numpy_strides(a, sa, n.shape, n.name);
          s.b = Operand{in(1), -1, numpy_strides(b, sbs, n.shape, n.name)};
        }
        break;
      }
      case OpType::kClip:
      case OpType::kHardSigmoid:
      case OpType::kHardSwish:
      case OpType::kSqrt:
      case OpType::kPow:
        s.kind = StepKind::kElementwise;
        s.op = n.op == OpType::kClip          ? EwOp::kClip
               : n.op == OpType::kHardSigmoid ? EwOp::kHardSigmoid
               : n.op == OpType::kHardSwish   ? EwOp::kHardSwish
               : n.op == OpType::kSqrt        ? EwOp::kSqrt
                                              : EwOp::kPow;
        s.alpha = n.alpha;
        s.beta = n.beta;
        s.ins = {in(0)};
        break;
      case OpType::kTranspose:
      case OpType::kSlice:
      case OpType::kPad: {
        s.kind = StepKind::kStridedCopy;
        s.ins = {in(0)};
        const Value& x = values[static_cast<std::size_t>(in(0))];
        const Dims4 xs = x.strides();
        const int r = x.rank;
        s.g_strides.v[0] = xs.v[0];
        s.g_pad = Dims4{{0, 0, 0, 0}};
        for (int k = 0; k < 3; ++k) {
          s.g_src_dims.v[k + 1] = v.d[k];
          s.g_strides.v[k + 1] = 0;
        }
        if (n.op == OpType::kTranspose) {
          for (int k = 0; k < r; ++k)
            s.g_strides.v[k + 1] = xs.v[n.perm.at(static_cast<std::size_t>(k)) + 1];
        } else if (n.op == OpType::kSlice) {
          for (int k = 0; k < r; ++k) {
            s.g_strides.v[k + 1] = xs.v[k + 1] * n.step.at(static_cast<std::size_t>(k));
            s.g_offset += xs.v[k + 1] * n.begin.at(static_cast<std::size_t>(k));
          }
        } else {
          for (int k = 0; k < 3; ++k) {
            s.g_src_dims.v[k + 1] = x.d[k];
            s.g_strides.v[k + 1] = xs.v[k + 1];
            s.g_pad.v[k + 1] = k < r ? n.begin.at(static_cast<std::size_t>(k)) : 0;
          }
          s.g_value = n.alpha;
        }
        break;
      }
      case OpType::kResizeNearest:
        require_rank3(in(0));
        s.kind = StepKind::kResizeNearest;
        s.ins = {in(0)};
        s.resize = n.resize;
        break;
      case OpType::kReduceMean:
        s.kind = StepKind::kReduceMean;
        s.ins = {in(0)};
        break;
      case OpType::kMatMul: {
        NEXUS_CHECK(!fp16, "CudaBackend: layer '{}' (MatMul) runs in FP32 only on this backend; "
                    "load the model with CudaPrecision::kFloat32", n.name);
        s.kind = StepKind::kMatMul;
        s.ins = {in(0), in(1)};
        const Shape& sa = nodes[static_cast<std::size_t>(in(0))].shape;
        const Shape& sb = nodes[static_cast<std::size_t>(in(1))].shape;
        NEXUS_CHECK(sa.rank() >= 2 && sb.rank() >= 2,
                    "CudaBackend: layer '{}' (MatMul) needs operands of rank >= 2, got {} and {}",
                    n.name, sa, sb);
        s.mm_m = sa[sa.rank() - 2];
        s.mm_k = sa[sa.rank() - 1];
        s.mm_n = sb[sb.rank() - 1];
        s.mm_lead = n.shape.numel() / (s.mm_m * s.mm_n);
        const std::int64_t lead_a = sa.numel() / (s.mm_m * s.mm_k);
        const std::int64_t lead_b = sb.numel() / (s.mm_k * s.mm_n);
        NEXUS_CHECK((lead_a == 1 || lead_a == s.mm_lead) && (lead_b == 1 || lead_b == s.mm_lead),
                    "CudaBackend: layer '{}' (MatMul) {} x {}: only a whole leading dimension "
                    "may broadcast on this backend", n.name, sa, sb);
        s.mm_stride_a = lead_a == 1 ? 0 : s.mm_m * s.mm_k;
        s.mm_stride_b = lead_b == 1 ? 0 : s.mm_k * s.mm_n;
        break;
      }
      case OpType::kConvTranspose:
        NEXUS_CHECK(!fp16, "CudaBackend: layer '{}' (ConvTranspose) runs in FP32 only on this "
                    "backend; load the model with CudaPrecision::kFloat32", n.name);
        require_rank3(in(0));
        add_conv_transpose(n);
        continue;
      case OpType::kConcat:
      case OpType::kSoftmax: {
        s.kind = n.op == OpType::kConcat ? StepKind::kConcat : StepKind::kSoftmax;
        s.ins = n.inputs;
        const int axis = n.axis < 0 ? n.axis + v.rank : n.axis;
        NEXUS_CHECK(axis >= 0 && axis < v.rank, "CudaBackend: layer '{}' axis {} for rank {}",
                    n.name, n.axis, v.rank);
        s.axis = axis + 1;
        break;
      }
      case OpType::kFlatten:
      case OpType::kReshape:
        s.kind = StepKind::kConvert;
        s.ins = {in(0)};
        break;
      case OpType::kResizeBilinear:
        require_rank3(in(0));
        s.kind = StepKind::kResize;
        s.ins = {in(0)};
        s.resize = n.resize;
        break;
      default:
        throw_error("CudaBackend: layer '{}' has op {} which this backend cannot run", n.name,
                    model::op_name(n.op));
    }
    steps.push_back(std::move(s));
  }
  input_values = graph.inputs();  // run()'s order
  for (int i : input_values)
    NEXUS_CHECK(nodes.at(static_cast<std::size_t>(i)).op == OpType::kInput,
                "CudaBackend: graph input {} is not an Input node", i);
  output_values = graph.outputs();
  NEXUS_CHECK(!input_values.empty() && !output_values.empty(),
              "CudaBackend: graph '{}' has no input or no output", graph.name());
}

void CudaBackend::Impl::add_conv(const model::Graph& graph, const Node& n, int out, Act act,
                                 float alpha, int residual) {
  const Value& x = values[static_cast<std::size_t>(n.inputs.at(0))];
  const Value& y = values[static_cast<std::size_t>(n.id)];
  const auto& a = n.conv;
  const auto& ws = n.weight.shape();
  NEXUS_CHECK(ws.rank() == 4 && ws[0] == y.d[0] && a.groups >= 1 && ws[1] * a.groups == x.d[0] &&
                  ws[2] == a.kernel_h && ws[3] == a.kernel_w,
              "CudaBackend: conv '{}' weight {} does not fit input channels {} (groups {})", n.name,
              ws, x.d[0], a.groups);
  (void)graph;
  Step s;
  s.kind = StepKind::kConv;
  s.name = n.name;
  s.out = out;
  s.ins = {n.inputs.at(0)};
  if (residual >= 0) s.ins.push_back(residual);
  s.residual = residual;
  s.act = act;
  s.alpha = alpha;
  s.op = residual >= 0 ? EwOp::kAdd2 : EwOp::kAdd;  // unfused epilogue: y = act(y + bias [+ z])
  s.conv = a;

  const bool nhwc = elem == Elem::kF16;
  const Dims4 wd{{ws[0], ws[1], ws[2], ws[3]}};
  for (int k = 0; k < 4; ++k) s.filter[k] = ws[k];
  const Dims4 wstrides =
      nhwc ? Dims4{{ws[2] * ws[3] * ws[1], 1, ws[3] * ws[1], ws[1]}} : contiguous_strides(wd);
  s.weight = add_weight(values_of(n.weight), wd, wstrides);
  std::vector<float> bias =
      n.bias.empty() ? std::vector<float>(static_cast<std::size_t>(ws[0]), 0.f) : values_of(n.bias);
  NEXUS_CHECK(static_cast<std::int64_t>(bias.size()) == ws[0],
              "CudaBackend: conv '{}' has {} biases for {} output channels", n.name, bias.size(),
              ws[0]);
  s.bias = add_flat_weight(std::move(bias));
  s.b = Operand{-1, s.bias, Dims4{{0, 1, 0, 0}}};

  // cuDNN pads symmetrically; asymmetric pads (TF SAME) go into a zero-padded copy.
  const auto& p = a.pads;
  const bool symmetric = p.top == p.bottom && p.left == p.right;
  int pad_h = p.top, pad_w = p.left;
  if (!symmetric) {
    s.pads = p;
    s.temp = add_temp(n.name + "/pad", x.d[0], x.d[1] + p.top + p.bottom, x.d[2] + p.left + p.right,
                      x.nhwc);
    pad_h = pad_w = 0;
  }

  NEXUS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&s.w_desc), n.name);
  NEXUS_CUDNN_CHECK(
      cudnnSetFilter4dDescriptor(s.w_desc, cudnn_type, nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                 static_cast<int>(ws[0]), static_cast<int>(ws[1]),
                                 static_cast<int>(ws[2]), static_cast<int>(ws[3])),
      n.name);
  NEXUS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&s.conv_desc), n.name);
  NEXUS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(s.conv_desc, pad_h, pad_w, a.stride_h,
                                                    a.stride_w, a.dilation_h, a.dilation_w,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                    n.name);
  NEXUS_CUDNN_CHECK(cudnnSetConvolutionGroupCount(s.conv_desc, a.groups), n.name);
  // FP32: FMA kernels only (no TF32), so results match the CPU to ~1e-5.
  NEXUS_CUDNN_CHECK(
      cudnnSetConvolutionMathType(s.conv_desc, nhwc ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH),
      n.name);
  NEXUS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&s.bias_desc), n.name);
  NEXUS_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(s.bias_desc, nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW,
                                 cudnn_type, 1, static_cast<int>(ws[0]), 1, 1),
      n.name);
  if (act == Act::kRelu) {
    NEXUS_CUDNN_CHECK(cudnnCreateActivationDescriptor(&s.relu_desc), n.name);
    NEXUS_CUDNN_CHECK(cudnnSetActivationDescriptor(s.relu_desc, CUDNN_ACTIVATION_RELU,
                                                   CUDNN_NOT_PROPAGATE_NAN, 0.0),
                      n.name);
  }
  steps.push_back(std::move(s));
}

void CudaBackend::Impl::add_fc(const Node& n, int out, Act act, float alpha) {
  const int in = n.inputs.at(0);
  const Value& x = values[static_cast<std::size_t>(in)];
  const auto& ws = n.weight.shape();
  NEXUS_CHECK(!x.constant && ws.rank() == 2 && ws[1] == x.item_elems() &&
                  ws[0] == values[static_cast<std::size_t>(n.id)].item_elems(),
              "CudaBackend: fully connected '{}' weight {} does not fit input '{}' of {} values",
              n.name, ws, x.name, x.item_elems());
  Step s;
  s.kind = StepKind::kFullyConnected;
  s.name = n.name;
  s.out = out;
  s.ins = {in};
  s.act = act;
  s.alpha = alpha;
  s.op = EwOp::kAdd;
  s.in_features = static_cast<int>(ws[1]);
  s.out_features = static_cast<int>(ws[0]);
  s.weight = add_flat_weight(values_of(n.weight));
  std::vector<float> bias =
      n.bias.empty() ? std::vector<float>(static_cast<std::size_t>(ws[0]), 0.f) : values_of(n.bias);
  NEXUS_CHECK(static_cast<std::int64_t>(bias.size()) == ws[0],
              "CudaBackend: fully connected '{}' has {} biases for {} outputs", n.name, bias.size(),
              ws[0]);
  s.bias = add_flat_weight(std::move(bias));
  s.b = Operand{-1, s.bias, Dims4{{0, 1, 0, 0}}};
  // cuBLAS reads the item as a row-major vector: an NHWC image is first copied to CHW order.
  if (x.nhwc && x.d[1] * x.d[2] > 1)
    s.temp = add_temp(n.name + "/flat", x.item_elems(), 1, 1, false);
  steps.push_back(std::move(s));
}

// ConvTranspose (weight [C, O/groups, KH, KW]) is the data gradient of the convolution from
// [O, OH, OW] to [C, H, W] with that weight: cudnnConvolutionBackwardData with dy = x and
// dx = y; ONNX output_padding only adds rows/columns that the floor division of the forward
// size ignores. Bias in the epilogue. FP32, NCHW, symmetric pads.
void CudaBackend::Impl::add_conv_transpose(const Node& n) {
  const Value& x = values[static_cast<std::size_t>(n.inputs.at(0))];
  const Value& y = values[static_cast<std::size_t>(n.id)];
  const auto& a = n.conv;
  const auto& ws = n.weight.shape();  // [C, O/g, KH, KW]
  NEXUS_CHECK(ws.rank() == 4 && ws[0] == x.d[0] && ws[1] * a.groups == y.d[0],
              "CudaBackend: ConvTranspose '{}' weight {} does not fit {} input and {} output "
              "channels (groups {})", n.name, ws, x.d[0], y.d[0], a.groups);
  const auto& p = a.pads;
  NEXUS_CHECK(p.top == p.bottom && p.left == p.right,
              "CudaBackend: ConvTranspose '{}' has asymmetric pads (top {}, bottom {}, left {}, "
              "right {}), which this backend cannot run (CpuBackend can)", n.name, p.top,
              p.bottom, p.left, p.right);
  Step s;
  s.kind = StepKind::kConvTranspose;
  s.name = n.name;
  s.out = n.id;
  s.ins = {n.inputs.at(0)};
  s.op = EwOp::kAdd;
  s.conv = a;
  const Dims4 wd{{ws[0], ws[1], ws[2], ws[3]}};
  s.weight = add_weight(values_of(n.weight), wd, contiguous_strides(wd));
  std::vector<float> bias =
      n.bias.empty() ? std::vector<float>(static_cast<std::size_t>(y.d[0]), 0.f) : values_of(n.bias);
  NEXUS_CHECK(static_cast<std::int64_t>(bias.size()) == y.d[0],
              "CudaBackend: ConvTranspose '{}' has {} biases for {} output channels", n.name,
              bias.size(), y.d[0]);
  s.bias = add_flat_weight(std::move(bias));
  s.b = Operand{-1, s.bias, Dims4{{0, 1, 0, 0}}};
  NEXUS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&s.w_desc), n.name);
  NEXUS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(s.w_desc, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                               static_cast<int>(ws[0]), static_cast<int>(ws[1]),
                                               static_cast<int>(ws[2]), static_cast<int>(ws[3])),
                    n.name);
  NEXUS_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&s.conv_desc), n.name);
  NEXUS_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(s.conv_desc, p.top, p.left, a.stride_h,
                                                    a.stride_w, a.dilation_h, a.dilation_w,
                                                    CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
                    n.name);
  NEXUS_CUDNN_CHECK(cudnnSetConvolutionGroupCount(s.conv_desc, a.groups), n.name);
  NEXUS_CUDNN_CHECK(cudnnSetConvolutionMathType(s.conv_desc, CUDNN_FMA_MATH), n.name);
  s.ct_algo.assign(static_cast<std::size_t>(max_batch) + 1, -1);
  // Load-time check: the forward size of y under this geometry is x's.
  const DescGuard yd{tensor_desc(y, 1, n.name)};
  int on = 0, oc = 0, oh = 0, ow = 0;
  NEXUS_CUDNN_CHECK(
      cudnnGetConvolution2dForwardOutputDim(s.conv_desc, yd.d, s.w_desc, &on, &oc, &oh, &ow),
      n.name);
  NEXUS_CHECK(oc == x.d[0] && oh == x.d[1] && ow == x.d[2],
              "CudaBackend: ConvTranspose '{}': cuDNN maps [{}, {}, {}] back to [{}, {}, {}], the "
              "input is [{}, {}, {}]", n.name, y.d[0], y.d[1], y.d[2], oc, oh, ow, x.d[0], x.d[1],
              x.d[2]);
  steps.push_back(std::move(s));
}

// Load-time checks of what cuDNN will compute, so a mismatch is an Error at load, not at run.
void CudaBackend::Impl::check_layers() {
  for (Step& s : steps) {
    if (s.kind == StepKind::kConv) {
      const Value& x = values[static_cast<std::size_t>(s.temp >= 0 ? s.temp : s.ins[0])];
      const Value& y = values[static_cast<std::size_t>(s.out)];
      const DescGuard xd{tensor_desc(x, 1, s.name)};
      int n = 0, c = 0, h = 0, w = 0;
      NEXUS_CUDNN_CHECK(
          cudnnGetConvolution2dForwardOutputDim(s.conv_desc, xd.d, s.w_desc, &n, &c, &h, &w),
          s.name);
      NEXUS_CHECK(c == y.d[0] && h == y.d[1] && w == y.d[2],
                  "CudaBackend: conv '{}': cuDNN computes [{}, {}, {}], the graph says [{}, {}, "
                  "{}]",
                  s.name, c, h, w, y.d[0], y.d[1], y.d[2]);
    } else if (s.kind == StepKind::kPoolCudnn) {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      const Value& y = values[static_cast<std::size_t>(s.out)];
      NEXUS_CUDNN_CHECK(cudnnCreatePoolingDescriptor(&s.pool_desc), s.name);
      const auto mode = s.is_max ? CUDNN_POOLING_MAX : CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
      NEXUS_CUDNN_CHECK(
          cudnnSetPooling2dDescriptor(s.pool_desc, mode, CUDNN_NOT_PROPAGATE_NAN, s.pool.kernel_h,
                                      s.pool.kernel_w, s.pool.pads.top, s.pool.pads.left,
                                      s.pool.stride_h, s.pool.stride_w),
          s.name);
      const DescGuard xd{tensor_desc(x, 1, s.name)};
      int n = 0, c = 0, h = 0, w = 0;
      NEXUS_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(s.pool_desc, xd.d, &n, &c, &h, &w),
                        s.name);
      const std::int64_t oh = y.rank == 3 ? y.d[1] : 1, ow = y.rank == 3 ? y.d[2] : 1;
      if (c != y.d[0] || h != oh || w != ow) s.kind = StepKind::kPoolKernel;  // exact TF sizes
    }
  }
}

void CudaBackend::Impl::compute_lifetimes() {
  const int end = static_cast<int>(steps.size());
  for (Value& v : values) v.def = v.last = -1;
  for (int i = 0; i < end; ++i) {
    const Step& s = steps[static_cast<std::size_t>(i)];
    for (int in : s.ins) {
      Value& v = values[static_cast<std::size_t>(in)];
      v.last = std::max(v.last, i);
    }
    values[static_cast<std::size_t>(s.out)].def = i;
    if (s.temp >= 0) {
      values[static_cast<std::size_t>(s.temp)].def = i;
      values[static_cast<std::size_t>(s.temp)].last = i;
    }
  }
  for (int o : output_values) values.at(static_cast<std::size_t>(o)).last = end;
}

// First-fit placement over the live set, in step order. A value is live from its defining step
// through its last reader, so no step's output or temporary overlaps anything it reads.
std::size_t CudaBackend::Impl::plan_arena(int n, bool assign) {
  struct Block {
    std::size_t offset, size;
    int value;
  };
  std::vector<Block> live;
  std::size_t peak = 0;
  const int end = static_cast<int>(steps.size());
  for (int step = -1; step < end; ++step) {
    std::erase_if(live, [&](const Block& b) {
      return values[static_cast<std::size_t>(b.value)].last < step;
    });
    for (std::size_t vi = 0; vi < values.size(); ++vi) {
      const Value& v = values[vi];
      if (!v.materialized || v.constant || v.def != step) continue;
      const std::size_t size = align_up(static_cast<std::size_t>(n) *
                                        static_cast<std::size_t>(v.item_elems()) * elem_size);
      std::sort(live.begin(), live.end(),
                [](const Block& a, const Block& b) { return a.offset < b.offset; });
      std::size_t at = 0;
      for (const Block& b : live) {
        if (at + size <= b.offset) break;
        at = std::max(at, b.offset + b.size);
      }
      live.push_back({at, size, static_cast<int>(vi)});
      peak = std::max(peak, at + size);
      if (assign) values[vi].offset = at;
    }
  }
  return peak;
}

// Independent check of the placement: two tensors whose lifetimes meet never share bytes.
void CudaBackend::Impl::check_arena() const {
  const std::size_t arena = activation_bytes.at(static_cast<std::size_t>(max_batch));
  auto bytes = [&](const Value& v) {
    return align_up(static_cast<std::size_t>(max_batch) * static_cast<std::size_t>(v.item_elems()) *
                    elem_size);
  };
  for (std::size_t i = 0; i < values.size(); ++i) {
    const Value& a = values[i];
    if (!a.materialized || a.constant) continue;
    NEXUS_CHECK(a.offset + bytes(a) <= arena, "CudaBackend: internal error: '{}' outside the arena",
                a.name);
    for (std::size_t j = i + 1; j < values.size(); ++j) {
      const Value& b = values[j];
      if (!b.materialized || b.constant) continue;
      const bool live_together =
          a.def <= std::max(b.last, b.def) && b.def <= std::max(a.last, a.def);
      const bool share = a.offset < b.offset + bytes(b) && b.offset < a.offset + bytes(a);
      NEXUS_CHECK(!(live_together && share),
                  "CudaBackend: internal error: '{}' and '{}' are live together and overlap",
                  a.name, b.name);
    }
  }
}

void CudaBackend::Impl::allocate_and_upload() {
  const std::size_t arena = activation_bytes.at(static_cast<std::size_t>(max_batch));
  workspace_bytes = options.conv_workspace_limit_bytes;
  std::size_t staging = 0;
  for (int v : input_values)
    staging +=
        align_up(static_cast<std::size_t>(max_batch) *
                 static_cast<std::size_t>(values[static_cast<std::size_t>(v)].item_elems()) * 4);
  for (int v : output_values)
    staging +=
        align_up(static_cast<std::size_t>(max_batch) *
                 static_cast<std::size_t>(values[static_cast<std::size_t>(v)].item_elems()) * 4);
  std::size_t largest_weight = 0;
  for (const auto& w : weights) largest_weight = std::max(largest_weight, w.host.size() * 4);
  const std::size_t needed = weights_total + arena + workspace_bytes + kCublasWorkspaceBytes +
                             staging + align_up(largest_weight);
  std::size_t free_bytes = 0, total_bytes = 0;
  NEXUS_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes), model_name);
  NEXUS_CHECK(needed <= free_bytes,
              "CudaBackend: out of device memory loading '{}' at max_batch {} on {}: {} bytes "
              "asked (weights {}, activations {}, workspaces {}, staging {}), {} bytes free of {}",
              model_name, max_batch, label, needed, weights_total, arena,
              workspace_bytes + kCublasWorkspaceBytes, staging, free_bytes, total_bytes);

  auto device_alloc = [&](std::size_t bytes, const char* what) {
    void* p = nullptr;
    const cudaError_t e = cudaMalloc(&p, std::max<std::size_t>(bytes, kAlign));
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      std::size_t f = 0, t = 0;
      cudaMemGetInfo(&f, &t);
      throw_error("CudaBackend: cudaMalloc of {} bytes for {} of '{}' failed: {} ({} bytes free)",
                  bytes, what, model_name, cudaGetErrorName(e), f);
    }
    return static_cast<std::byte*>(p);
  };
  d_weights = device_alloc(weights_total, "weights");
  d_arena = device_alloc(arena, "activations");
  d_workspace = device_alloc(workspace_bytes, "the cuDNN workspace");
  d_cublas_ws = device_alloc(kCublasWorkspaceBytes, "the cuBLAS workspace");
  for (int v : input_values) {
    const std::size_t bytes =
        static_cast<std::size_t>(max_batch) *
        static_cast<std::size_t>(values[static_cast<std::size_t>(v)].item_elems()) * 4;
    d_in_staging.push_back(reinterpret_cast<float*>(device_alloc(bytes, "input staging")));
    d_raw_in.push_back(device_alloc(bytes / 2, "float16/uint8 input staging"));
    void* h = nullptr;
    NEXUS_CUDA_CHECK(cudaHostAlloc(&h, std::max<std::size_t>(bytes, 4), cudaHostAllocDefault),
                     model_name);
    h_in.push_back(static_cast<float*>(h));
  }
  for (int v : output_values) {
    const std::size_t bytes =
        static_cast<std::size_t>(max_batch) *
        static_cast<std::size_t>(values[static_cast<std::size_t>(v)].item_elems()) * 4;
    d_out_staging.push_back(reinterpret_cast<float*>(device_alloc(bytes, "output staging")));
    void* h = nullptr;
    NEXUS_CUDA_CHECK(cudaHostAlloc(&h, std::max<std::size_t>(bytes, 4), cudaHostAllocDefault),
                     model_name);
    h_out.push_back(static_cast<float*>(h));
  }
  NEXUS_CUBLAS_CHECK(cublasSetWorkspace(cublas, d_cublas_ws, kCublasWorkspaceBytes), model_name);
  {  // uint8 frame normalization constants: (x - mean[c]) * scale[c]
    float norm[8] = {0, 0, 0, 0, 1, 1, 1, 1};
    for (std::size_t c = 0; c < 4 && c < options.input_mean.size(); ++c) norm[c] = options.input_mean[c];
    for (std::size_t c = 0; c < 4 && c < options.input_scale.size(); ++c) norm[4 + c] = options.input_scale[c];
    d_norm = reinterpret_cast<float*>(device_alloc(sizeof(norm), "normalization constants"));
    NEXUS_CUDA_CHECK(cudaMemcpy(d_norm, norm, sizeof(norm), cudaMemcpyHostToDevice), model_name);
  }

  // Weights: float32 to a scratch buffer, then cast and laid out on the device.
  std::byte* scratch = device_alloc(largest_weight, "weight upload scratch");
  try {
    for (const auto& w : weights) {
      if (w.host.empty()) continue;
      NEXUS_CUDA_CHECK(cudaMemcpyAsync(scratch, w.host.data(), w.host.size() * 4,
                                       cudaMemcpyHostToDevice, compute),
                       model_name);
      cuda::launch_convert(Elem::kF32, scratch, w.dims, contiguous_strides(w.dims), elem,
                           d_weights + w.offset, w.dims, w.dst_strides, compute);
      NEXUS_CUDA_CHECK(cudaGetLastError(), model_name);
      NEXUS_CUDA_CHECK(cudaStreamSynchronize(compute), model_name);
    }
  } catch (...) {
    cudaFree(scratch);
    throw;
  }
  NEXUS_CUDA_CHECK(cudaFree(scratch), model_name);
  for (auto& w : weights) std::vector<float>().swap(w.host);  // resident on the device now
}

void CudaBackend::Impl::unload() {
  cudaSetDevice(options.device_index);
  if (compute) cudaStreamSynchronize(compute);
  if (copy) cudaStreamSynchronize(copy);
  for (auto& g : graphs)
    if (g) cudaGraphExecDestroy(g);
  graphs.clear();
  for (Step& s : steps) {
    for (auto& b : s.conv_batches) {
      if (b.x) cudnnDestroyTensorDescriptor(b.x);
      if (b.y) cudnnDestroyTensorDescriptor(b.y);
      if (b.x32) cudnnDestroyTensorDescriptor(b.x32);
      if (b.y32) cudnnDestroyTensorDescriptor(b.y32);
    }
    if (s.fp32) {
      if (s.fp32->w) cudnnDestroyFilterDescriptor(s.fp32->w);
      for (float* p : {s.fp32->weights, s.fp32->x, s.fp32->y})
        if (p) cudaFree(p);
      s.fp32.reset();
    }
    for (auto& b : s.pool_batches) {
      if (b.first) cudnnDestroyTensorDescriptor(b.first);
      if (b.second) cudnnDestroyTensorDescriptor(b.second);
    }
    if (s.w_desc) cudnnDestroyFilterDescriptor(s.w_desc);
    if (s.conv_desc) cudnnDestroyConvolutionDescriptor(s.conv_desc);
    if (s.bias_desc) cudnnDestroyTensorDescriptor(s.bias_desc);
    if (s.relu_desc) cudnnDestroyActivationDescriptor(s.relu_desc);
    if (s.pool_desc) cudnnDestroyPoolingDescriptor(s.pool_desc);
  }
  steps.clear();
  plan_cache.clear();
  batch_sizes.clear();
  fused_build_s = 0;
  fused_budget_said = false;
  fp32_bytes = 0;
  values.clear();
  input_values.clear();
  output_values.clear();
  weights.clear();
  weights_total = 0;
  activation_bytes.clear();
  prepared.clear();
  for (void* p : {static_cast<void*>(d_weights), static_cast<void*>(d_arena),
                  static_cast<void*>(d_workspace), static_cast<void*>(d_cublas_ws)})
    if (p) cudaFree(p);
  d_weights = d_arena = d_workspace = d_cublas_ws = nullptr;
  for (float* p : d_in_staging) cudaFree(p);
  for (std::byte* p : d_raw_in) cudaFree(p);
  d_raw_in.clear();
  if (d_norm) cudaFree(d_norm);
  d_norm = nullptr;
  for (float* p : d_out_staging) cudaFree(p);
  for (float* p : h_in) cudaFreeHost(p);
  for (float* p : h_out) cudaFreeHost(p);
  d_in_staging.clear();
  d_out_staging.clear();
  h_in.clear();
  h_out.clear();
  max_batch = 0;
  (void)cudaGetLastError();
}

// ------------------------------------------------------------------------------------------
// run

// Runs step s at batch n a few times on the compute stream and returns its mean GPU time (ms),
// or -1 with *failure set when a cuDNN call refuses this configuration.
float CudaBackend::Impl::measure_step(Step& s, int n, std::string* failure) {
  constexpr int kReps = 5;
  try {
    run_step(s, n, compute);  // warm-up; a refusing call throws here
    NEXUS_CUDA_CHECK(cudaStreamSynchronize(compute), s.name);
    NEXUS_CUDA_CHECK(cudaEventRecord(timing_start, compute), s.name);
    for (int r = 0; r < kReps; ++r) run_step(s, n, compute);
    NEXUS_CUDA_CHECK(cudaEventRecord(timing_stop, compute), s.name);
    NEXUS_CUDA_CHECK(cudaEventSynchronize(timing_stop), s.name);
    float ms = 0.f;
    NEXUS_CUDA_CHECK(cudaEventElapsedTime(&ms, timing_start, timing_stop), s.name);
    return ms / kReps;
  } catch (const Error& e) {
    cudaStreamSynchronize(compute);
    (void)cudaGetLastError();
    if (failure) *failure = e.what();
    return -1.f;
  }
}

// Sets up conv step s of an FP16 model to run in FP32 at batch n (weights converted once from
// the resident FP16 copy, buffers outside the arena), says so once per layer on stderr, and
// returns the measured time (ms), or -1 when FP32 fails too.
float CudaBackend::Impl::prepare_fp32_conv(Step& s, int n, const std::string& why) {
  ConvPerBatch& pb = s.conv_batches[static_cast<std::size_t>(n)];
  const Value& xv = values[static_cast<std::size_t>(s.temp >= 0 ? s.temp : s.ins[0])];
  const Value& yv = values[static_cast<std::size_t>(s.out)];
  if (!s.fp32) {
    auto f = std::make_shared<Fp32Conv>();
    s.fp32 = f;  // freed by unload() whatever happens below
    f->why = why;
    const Dims4 wd{{s.filter[0], s.filter[1], s.filter[2], s.filter[3]}};
    const std::size_t wbytes = static_cast<std::size_t>(wd.numel()) * 4;
    const std::size_t xbytes = static_cast<std::size_t>(max_batch * xv.item_elems()) * 4;
    const std::size_t ybytes = static_cast<std::size_t>(max_batch * yv.item_elems()) * 4;
    NEXUS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&f->weights), wbytes), s.name);
    NEXUS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&f->x), xbytes), s.name);
    NEXUS_CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&f->y), ybytes), s.name);
    f->bytes = wbytes + xbytes + ybytes;
    fp32_bytes += f->bytes;
    // The resident FP16 weights are KRSC: back to KCRS float.
    const Dims4 krsc{{wd.v[2] * wd.v[3] * wd.v[1], 1, wd.v[3] * wd.v[1], wd.v[1]}};
    cuda::launch_convert(elem, wptr(s.weight), wd, krsc, Elem::kF32, f->weights, wd,
                         contiguous_strides(wd), compute);
    NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
    NEXUS_CUDA_CHECK(cudaStreamSynchronize(compute), s.name);
    NEXUS_CUDNN_CHECK(cudnnCreateFilterDescriptor(&f->w), s.name);
    NEXUS_CUDNN_CHECK(cudnnSetFilter4dDescriptor(f->w, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                                 static_cast<int>(wd.v[0]), static_cast<int>(wd.v[1]),
                                                 static_cast<int>(wd.v[2]), static_cast<int>(wd.v[3])),
                      s.name);
    std::fprintf(stderr, "nexus: CudaBackend '%s' on cuda:%d (%s): conv '%s' runs in FP32 (%s)\n",
                 model_name.c_str(), options.device_index, label.c_str(), s.name.c_str(),
                 why.c_str());
  }
  auto desc32 = [&](const Value& v) {
    cudnnTensorDescriptor_t d = nullptr;
    NEXUS_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d), s.name);
    NEXUS_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, n,
                                                 static_cast<int>(v.d[0]), static_cast<int>(v.d[1]),
                                                 static_cast<int>(v.d[2])),
                      s.name);
    return d;
  };
  pb.x32 = desc32(xv);
  pb.y32 = desc32(yv);
  NEXUS_CUDNN_CHECK(cudnnSetConvolutionMathType(s.conv_desc, CUDNN_FMA_MATH), s.name);
  constexpr int kMaxAlgos = 16;
  cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
  int returned = 0;
  NEXUS_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(
                        cudnn, pb.x32, s.fp32->x, s.fp32->w, s.fp32->weights, s.conv_desc, pb.y32,
                        s.fp32->y, kMaxAlgos, &returned, perf, d_workspace, workspace_bytes),
                    s.name);
  int chosen = -1;
  for (int i = 0; i < returned && chosen < 0; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= workspace_bytes &&
        (perf[i].mathType == CUDNN_FMA_MATH || perf[i].mathType == CUDNN_DEFAULT_MATH))
      chosen = i;
  if (chosen < 0) return -1.f;
  pb.algo32 = perf[chosen].algo;
  pb.impl = ConvImpl::kFp32;
  return measure_step(s, n, nullptr);
}

// Chooses how conv step s runs at batch n: every alternative that cuDNN accepts is timed on the
// real buffers and the fastest is kept (issue 9: a fused path must never put a slower kernel in
// the critical path; a non-tensor-core kernel runs in FP16 only when it was measured fastest).
void CudaBackend::Impl::choose_conv(Step& s, int n) {
  ConvPerBatch& pb = s.conv_batches[static_cast<std::size_t>(n)];
  const Value& x = values[static_cast<std::size_t>(s.temp >= 0 ? s.temp : s.ins[0])];
  for (auto d : {pb.x, pb.y, pb.x32, pb.y32})  // left by an earlier, failed prepare()
    if (d) cudnnDestroyTensorDescriptor(d);
  pb = ConvPerBatch{};
  pb.x = tensor_desc(x, n, s.name);
  pb.y = tensor_desc(values[static_cast<std::size_t>(s.out)], n, s.name);
  const bool fp32 = elem == Elem::kF32;

  struct Alternative {
    ConvImpl impl;
    cudnnConvolutionFwdAlgo_t algo;
    int plan;
    std::string label;
    float ms;
  };
  std::vector<Alternative> tried;
  std::vector<std::string> refused;

  // 1. Legacy: cudnnFindConvolutionForwardAlgorithmEx's fastest algorithm + the epilogue kernel.
  NEXUS_CUDNN_CHECK(cudnnSetConvolutionMathType(
                        s.conv_desc, fp32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH),
                    s.name);
  constexpr int kMaxAlgos = 16;
  cudnnConvolutionFwdAlgoPerf_t perf[kMaxAlgos];
  int returned = 0;
  const cudnnStatus_t found = cudnnFindConvolutionForwardAlgorithmEx(
      cudnn, pb.x, vptr(s.temp >= 0 ? s.temp : s.ins[0]), s.w_desc, wptr(s.weight), s.conv_desc,
      pb.y, vptr(s.out), kMaxAlgos, &returned, perf, d_workspace, workspace_bytes);
  if (found != CUDNN_STATUS_SUCCESS) {  // e.g. no FP16 kernel for this geometry: try the others
    refused.push_back(fmt::format("legacy: cudnnFindConvolutionForwardAlgorithmEx: {}",
                                  cudnnGetErrorString(found)));
    returned = 0;
    NEXUS_CUDA_CHECK(cudaStreamSynchronize(compute), s.name);  // a sticky CUDA error stops here
  }
  int chosen = -1;
  for (int i = 0; i < returned; ++i) {  // sorted fastest first
    if (perf[i].status != CUDNN_STATUS_SUCCESS || perf[i].memory > workspace_bytes) continue;
    if (fp32 && perf[i].mathType != CUDNN_FMA_MATH && perf[i].mathType != CUDNN_DEFAULT_MATH)
      continue;  // no TF32 in the FP32 path
    chosen = i;
    break;
  }
  if (chosen >= 0) {
    pb.algo = perf[chosen].algo;
    pb.math = fp32 ? CUDNN_FMA_MATH : perf[chosen].mathType;
    pb.impl = ConvImpl::kLegacy;
    std::string why;
    const float ms = measure_step(s, n, &why);
    const std::string label =
        fmt::format("legacy {}{} + epilogue kernel", algo_name(pb.algo),
                    pb.math == CUDNN_TENSOR_OP_MATH ? " tensor-op" : "");
    if (ms >= 0)
      tried.push_back({ConvImpl::kLegacy, pb.algo, -1, label, ms});
    else
      refused.push_back(label + ": " + why);
  } else {
    refused.push_back(fmt::format("legacy: FindEx found no algorithm within {} workspace bytes ({} tried)",
                                  workspace_bytes, returned));
  }

  // 2. cudnnConvolutionBiasActivationForward (ReLU only): FindEx's algorithm and the one its
  //    fast fused kernels exist for.
  if (s.act == Act::kRelu && s.relu_desc && chosen >= 0 &&
      options.conv_path != CudaConvPath::kLegacy) {
    std::vector<cudnnConvolutionFwdAlgo_t> algos{pb.algo};
    if (pb.algo != CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM)
      algos.push_back(CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM);
    for (auto a : algos) {
      pb.impl = ConvImpl::kLegacyFused;
      pb.fused_algo = a;
      std::string why;
      const float ms = measure_step(s, n, &why);
      const std::string label = fmt::format("cudnnConvolutionBiasActivationForward {}", algo_name(a));
      if (ms >= 0)
        tried.push_back({ConvImpl::kLegacyFused, a, -1, label, ms});
      else
        refused.push_back(label + ": " + why);
    }
  }

  // 3. FP16: the cuDNN graph API, conv -> + bias [-> + z] [-> activation] in one plan.
  if (!fp32 && options.fuse_epilogues && options.fused_plans_per_layer > 0 &&
      options.conv_path != CudaConvPath::kLegacy) {
    const Value& in = values[static_cast<std::size_t>(s.ins[0])];
    const Value& y = values[static_cast<std::size_t>(s.out)];
    cuda::ConvGeometry g;
    g.n = n;
    g.c = in.d[0];
    g.h = in.d[1];
    g.w = in.d[2];
    g.k = s.filter[0];
    g.cg = s.filter[1];
    g.r = s.filter[2];
    g.s = s.filter[3];
    g.oh = y.d[1];
    g.ow = y.d[2];
    g.pad_top = s.conv.pads.top;
    g.pad_left = s.conv.pads.left;
    g.pad_bottom = s.conv.pads.bottom;
    g.pad_right = s.conv.pads.right;
    g.stride_h = s.conv.stride_h;
    g.stride_w = s.conv.stride_w;
    g.dil_h = s.conv.dilation_h;
    g.dil_w = s.conv.dilation_w;
    g.nhwc = in.nhwc;
    g.io = cudnn_type;
    g.residual = s.residual >= 0;
    g.act = s.act;
    g.alpha = s.alpha;
    const std::string key = g.key();
    auto found = plan_cache.find(key);
    std::shared_ptr<const std::vector<cuda::GraphPlan>> cached;
    if (found != plan_cache.end()) {
      cached = found->second;
    } else if (fused_build_s < options.fused_build_budget_s) {
      std::string why;
      const auto t0 = std::chrono::steady_clock::now();
      cached = std::make_shared<const std::vector<cuda::GraphPlan>>(cuda::build_fused_conv_plans(
          cudnn, g, workspace_bytes, options.fused_plans_per_layer, options.fused_runtime_compiled,
          &why));
      fused_build_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      plan_cache[key] = cached;
      if (cached->empty()) refused.push_back("graph API: " + why);
    } else {
      if (!fused_budget_said)
        std::fprintf(stderr,
                     "nexus: CudaBackend '%s' on cuda:%d: %.1f s spent building cuDNN graph-API "
                     "plans (fused_build_budget_s %.0f); later layers and batch sizes try only "
                     "the legacy convolutions\n",
                     model_name.c_str(), options.device_index, fused_build_s,
                     options.fused_build_budget_s);
      fused_budget_said = true;
      refused.push_back("graph API: build budget spent");
    }
    if (!cached) cached = std::make_shared<const std::vector<cuda::GraphPlan>>();
    pb.plans = cached;
    for (std::size_t i = 0; i < cached->size(); ++i) {
      pb.impl = ConvImpl::kGraph;
      pb.plan = static_cast<int>(i);
      pb.pack = cuda::make_fused_conv_pack(vptr(s.ins[0]), wptr(s.weight), wptr(s.bias),
                                           s.residual >= 0 ? vptr(s.residual) : nullptr,
                                           vptr(s.out), d_workspace);
      std::string why;
      const float ms = pb.pack ? measure_step(s, n, &why) : -1.f;
      const std::string& label = (*cached)[i].label;
      if (ms >= 0)
        tried.push_back({ConvImpl::kGraph, pb.algo, static_cast<int>(i), label, ms});
      else
        refused.push_back(label + ": " + (pb.pack ? why : std::string("variant pack refused")));
    }
  }

  // FP16 model: the FP32 fallback for a layer cuDNN runs no FP16 alternative of, or one the
  // options name (e.g. a detector's box regressions, for accuracy).
  const bool named_fp32 = std::find(options.fp32_layers.begin(), options.fp32_layers.end(),
                                    s.name) != options.fp32_layers.end();
  if (!fp32 && (tried.empty() || named_fp32)) {
    std::string all;
    for (const auto& r : refused) all += "; " + r;
    const float ms = prepare_fp32_conv(s, n, named_fp32 ? "named in fp32_layers" : "cuDNN runs none of its FP16 alternatives" + all);
    if (ms >= 0) {
      tried.clear();
      tried.push_back({ConvImpl::kFp32, pb.algo32, -1,
                       fmt::format("FP32 fallback {} (fp16 -> fp32 -> fp16)", algo_name(pb.algo32)), ms});
    }
  }

  if (tried.empty()) {
    std::string all;
    for (const auto& r : refused) all += "\n  " + r;
    throw_error("CudaBackend: conv '{}' of '{}' on {} ({}) at batch {}: cuDNN runs none of the "
                "alternatives in {}:{}",
                s.name, model_name, label, fmt::format("cuda:{}", options.device_index), n,
                precision_name(options.precision), all);
  }
  if (options.conv_path == CudaConvPath::kGraph &&
      std::any_of(tried.begin(), tried.end(), [](const auto& t) { return t.impl == ConvImpl::kGraph; }))
    std::erase_if(tried, [](const auto& t) { return t.impl != ConvImpl::kGraph; });
  const auto best = std::min_element(tried.begin(), tried.end(), [](const auto& a, const auto& b) {
    return a.ms < b.ms;
  });
  pb.impl = best->impl;
  pb.label = best->label;
  pb.ms = best->ms;
  if (best->impl == ConvImpl::kLegacyFused) pb.fused_algo = best->algo;
  if (best->impl == ConvImpl::kGraph) {
    pb.plan = best->plan;
    pb.pack = cuda::make_fused_conv_pack(vptr(s.ins[0]), wptr(s.weight), wptr(s.bias),
                                         s.residual >= 0 ? vptr(s.residual) : nullptr, vptr(s.out),
                                         d_workspace);
    NEXUS_CHECK(pb.pack != nullptr, "CudaBackend: conv '{}': cuDNN variant pack refused", s.name);
  } else {
    pb.plans.reset();
    pb.pack.reset();
    pb.plan = -1;
  }
  if (print_engines) {
    std::string others;
    for (const auto& t : tried)
      if (&t != &*best) others += fmt::format("; {} {:.4f} ms", t.label, t.ms);
    for (const auto& r : refused) others += "; refused: " + r;
    std::fprintf(stderr, "nexus: %s cuda:%d %s b%d conv '%s': %s %.4f ms%s\n", model_name.c_str(),
                 options.device_index, precision_name(options.precision), n, s.name.c_str(),
                 pb.label.c_str(), pb.ms, others.c_str());
  }
}

// prepare(n): the prepared size batch n runs at (n itself unless graph_batch_sizes pads it).
void CudaBackend::Impl::prepare(int n) {
  NEXUS_CHECK(max_batch > 0, "CudaBackend: prepare({}) before load()", n);
  NEXUS_CHECK(n >= 1 && n <= max_batch, "CudaBackend: batch {} out of range 1..{} for '{}'", n,
              max_batch, model_name);
  prepare_exact(cuda::padded_batch(n, batch_sizes));
}

void CudaBackend::Impl::prepare_exact(int n) {
  NEXUS_CHECK(n >= 1 && n <= max_batch, "CudaBackend: batch {} out of range 1..{} for '{}'", n,
              max_batch, model_name);
  if (prepared[static_cast<std::size_t>(n)]) return;
  set_device();
  for (Step& s : steps) {
    if (s.kind == StepKind::kConv) {
      if (s.conv_batches.empty()) s.conv_batches.resize(static_cast<std::size_t>(max_batch) + 1);
      choose_conv(s, n);
    } else if (s.kind == StepKind::kPoolCudnn) {
      if (s.pool_batches.empty()) s.pool_batches.resize(static_cast<std::size_t>(max_batch) + 1);
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      Value y = values[static_cast<std::size_t>(s.out)];
      if (y.rank != 3) y.nhwc = x.nhwc;  // global pool: [C] viewed as [C, 1, 1] in x's format
      auto& pb = s.pool_batches[static_cast<std::size_t>(n)];
      if (pb.first) cudnnDestroyTensorDescriptor(pb.first);
      if (pb.second) cudnnDestroyTensorDescriptor(pb.second);
      pb.first = pb.second = nullptr;
      pb.first = tensor_desc(x, n, s.name);
      pb.second = tensor_desc(y, n, s.name);
    }
  }
  // One uncaptured pass (on whatever the buffers hold): every call is checked outside capture,
  // where its error is a plain Error, and every kernel module is loaded before capture.
  run_sequence(n, compute);
  NEXUS_CUDA_CHECK(cudaStreamSynchronize(compute), model_name);
  if (options.use_cuda_graphs) graphs[static_cast<std::size_t>(n)] = capture(n);
  prepared[static_cast<std::size_t>(n)] = true;
}

// Captures run_sequence(n) into a CUDA Graph. If a library call refuses capture, the batch size
// runs step by step instead (null), with a note on stderr: slower, never wrong.
cudaGraphExec_t CudaBackend::Impl::capture(int n) {
  auto give_up = [&](const char* why) -> cudaGraphExec_t {
    std::fprintf(stderr, "nexus: CudaBackend '%s' batch %d runs without a CUDA Graph: %s\n",
                 model_name.c_str(), n, why);
    return nullptr;
  };
  NEXUS_CUDA_CHECK(cudaStreamBeginCapture(compute, cudaStreamCaptureModeThreadLocal), model_name);
  cudaGraph_t graph = nullptr;
  try {
    run_sequence(n, compute);
  } catch (const Error& e) {
    cudaStreamEndCapture(compute, &graph);
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    return give_up(e.what());
  }
  cudaError_t status = cudaStreamEndCapture(compute, &graph);
  if (status != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    return give_up(cudaGetErrorName(status));
  }
  cudaGraphExec_t exec = nullptr;
  status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  if (status != cudaSuccess) {
    (void)cudaGetLastError();
    return give_up(cudaGetErrorName(status));
  }
  return exec;
}

// Input conversions, every step, output conversions: the work captured into a batch's graph.
void CudaBackend::Impl::run_sequence(int n, cudaStream_t stream) {
  for (std::size_t i = 0; i < input_values.size(); ++i) {
    const Value& v = values[static_cast<std::size_t>(input_values[i])];
    if (elem == Elem::kF32 && !v.nhwc) continue;  // uploaded in place
    const Dims4 d = v.dims(n);
    cuda::launch_convert(Elem::kF32, d_in_staging[i], d, contiguous_strides(d), elem,
                         vptr(input_values[i]), d, v.strides(), stream);
    NEXUS_CUDA_CHECK(cudaGetLastError(), v.name);
  }
  for (Step& s : steps) run_step(s, n, stream);
  for (std::size_t i = 0; i < output_values.size(); ++i) {
    const Value& v = values[static_cast<std::size_t>(output_values[i])];
    if (elem == Elem::kF32 && !v.nhwc && !v.constant) continue;  // downloaded in place
    const Dims4 d = v.dims(n);
    cuda::launch_convert(elem, vptr(output_values[i]), d, v.strides(), Elem::kF32, d_out_staging[i],
                         d, contiguous_strides(d), stream);
    NEXUS_CUDA_CHECK(cudaGetLastError(), v.name);
  }
}

void CudaBackend::Impl::run_step(Step& s, int n, cudaStream_t stream) {
  const float one = 1.f, zero = 0.f;
  const Value& y = values[static_cast<std::size_t>(s.out)];
  void* out = vptr(s.out);
  auto epilogue = [&] {  // y = act(y + bias [+ z]), in place
    const Dims4 d = y.dims(n);
    const bool z = s.residual >= 0;
    cuda::launch_elementwise(elem, z ? EwOp::kAdd2 : EwOp::kAdd, s.act, s.alpha, d, out,
                             y.strides(), operand_ptr(s.b), s.b.strides,
                             z ? vptr(s.residual) : nullptr,
                             z ? values[static_cast<std::size_t>(s.residual)].strides() : Dims4{},
                             out, y.strides(), stream);
    NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
  };
  switch (s.kind) {
    case StepKind::kConv: {
      const ConvPerBatch& pb = s.conv_batches.at(static_cast<std::size_t>(n));
      if (pb.impl == ConvImpl::kGraph) {  // pre/post paddings in the graph: no padded copy
        NEXUS_CUDNN_CHECK(cuda::execute_fused_conv(cudnn, pb.plans->at(static_cast<std::size_t>(pb.plan)), pb.pack),
                          s.name);
        break;
      }
      const void* x = vptr(s.ins[0]);
      if (s.temp >= 0) {  // zero-padded copy for asymmetric padding
        const Value& in = values[static_cast<std::size_t>(s.ins[0])];
        const Value& t = values[static_cast<std::size_t>(s.temp)];
        NEXUS_CUDA_CHECK(
            cudaMemsetAsync(vptr(s.temp), 0,
                            static_cast<std::size_t>(n * t.item_elems()) * elem_size, stream),
            s.name);
        const Dims4 ts = t.strides();
        void* interior = offset_ptr(vptr(s.temp), s.pads.top * ts.v[2] + s.pads.left * ts.v[3]);
        cuda::launch_convert(elem, x, in.dims(n), in.strides(), elem, interior, in.dims(n), ts,
                             stream);
        NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
        x = vptr(s.temp);
      }
      if (pb.impl == ConvImpl::kFp32) {  // FP16 in -> FP32 conv -> FP16 out + epilogue
        const Value& xv = values[static_cast<std::size_t>(s.temp >= 0 ? s.temp : s.ins[0])];
        const Dims4 xd = xv.dims(n), yd = y.dims(n);
        cuda::launch_convert(elem, x, xd, xv.strides(), Elem::kF32, s.fp32->x, xd,
                             contiguous_strides(xd), stream);
        NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
        NEXUS_CUDNN_CHECK(cudnnSetConvolutionMathType(s.conv_desc, CUDNN_FMA_MATH), s.name);
        NEXUS_CUDNN_CHECK(cudnnConvolutionForward(cudnn, &one, pb.x32, s.fp32->x, s.fp32->w,
                                                  s.fp32->weights, s.conv_desc, pb.algo32,
                                                  d_workspace, workspace_bytes, &zero, pb.y32,
                                                  s.fp32->y),
                          s.name);
        cuda::launch_convert(Elem::kF32, s.fp32->y, yd, contiguous_strides(yd), elem, out, yd,
                             y.strides(), stream);
        NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
        epilogue();
        break;
      }
      NEXUS_CUDNN_CHECK(cudnnSetConvolutionMathType(s.conv_desc, pb.math), s.name);
      if (pb.impl == ConvImpl::kLegacyFused) {  // y = relu(conv + bias [+ z])
        const bool z = s.residual >= 0;
        NEXUS_CUDNN_CHECK(cudnnConvolutionBiasActivationForward(
                              cudnn, &one, pb.x, x, s.w_desc, wptr(s.weight), s.conv_desc,
                              pb.fused_algo, d_workspace, workspace_bytes, z ? &one : &zero, pb.y,
                              z ? vptr(s.residual) : out, s.bias_desc, wptr(s.bias), s.relu_desc,
                              pb.y, out),
                          s.name);
      } else {
        NEXUS_CUDNN_CHECK(
            cudnnConvolutionForward(cudnn, &one, pb.x, x, s.w_desc, wptr(s.weight), s.conv_desc,
                                    pb.algo, d_workspace, workspace_bytes, &zero, pb.y, out),
            s.name);
        epilogue();
      }
      break;
    }
    case StepKind::kFullyConnected: {
      const void* x = vptr(s.ins[0]);
      if (s.temp >= 0) {
        const Value& in = values[static_cast<std::size_t>(s.ins[0])];
        const Dims4 d = in.dims(n);
        cuda::launch_convert(elem, x, d, in.strides(), elem, vptr(s.temp), d, contiguous_strides(d),
                             stream);
        NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
        x = vptr(s.temp);
      }
      // Row-major Y[n, out] = X[n, in] W[out, in]^T is column-major Y^T = W^T' X^T.
      NEXUS_CUBLAS_CHECK(
          cublasGemmEx(cublas, CUBLAS_OP_T, CUBLAS_OP_N, s.out_features, n, s.in_features, &one,
                       wptr(s.weight), blas_type, s.in_features, x, blas_type, s.in_features, &zero,
                       out, blas_type, s.out_features, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          s.name);
      epilogue();
      break;
    }
    case StepKind::kPoolCudnn: {
      const auto& pb = s.pool_batches.at(static_cast<std::size_t>(n));
      NEXUS_CUDNN_CHECK(cudnnPoolingForward(cudnn, s.pool_desc, &one, pb.first, vptr(s.ins[0]),
                                            &zero, pb.second, out),
                        s.name);
      break;
    }
    case StepKind::kPoolKernel: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_pool(elem, s.is_max, vptr(s.ins[0]), x.dims(n), x.strides(), out, y.dims(n),
                        y.strides(), s.pool.kernel_h, s.pool.kernel_w, s.pool.stride_h,
                        s.pool.stride_w, s.pool.pads.top, s.pool.pads.left, stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kElementwise: {
      const Value& a = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_elementwise(elem, s.op, s.act, s.alpha, y.dims(n), vptr(s.ins[0]),
                               s.a_bcast ? s.a_strides : a.strides(), operand_ptr(s.b),
                               s.b.strides, operand_ptr(s.c), s.c.strides, out, y.strides(),
                               stream, s.beta);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kPoolIncludePad: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      const auto& p = s.pool.pads;
      cuda::launch_avg_pool_include_pad(elem, vptr(s.ins[0]), x.dims(n), x.strides(), out,
                                        y.dims(n), y.strides(), s.pool.kernel_h, s.pool.kernel_w,
                                        s.pool.stride_h, s.pool.stride_w, p.top, p.left, p.bottom,
                                        p.right, stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kStridedCopy: {
      Dims4 src = s.g_src_dims;
      src.v[0] = n;
      cuda::launch_strided_copy(elem, vptr(s.ins[0]), src, s.g_strides, s.g_offset, s.g_pad,
                                s.g_value, out, y.dims(n), y.strides(), stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kResizeNearest: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_resize_nearest(elem, vptr(s.ins[0]), x.dims(n), x.strides(), out, y.dims(n),
                                  y.strides(), static_cast<int>(s.resize.coord),
                                  static_cast<int>(s.resize.nearest), s.resize.scale_h,
                                  s.resize.scale_w, stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kReduceMean: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_reduce_mean(elem, vptr(s.ins[0]), x.dims(n), x.strides(), out, y.dims(n),
                               y.strides(), stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kMatMul: {
      // Row-major Y[M, N] = A[M, K] B[K, N] is column-major Y^T = B^T A^T; one strided-batched
      // call over the leading dimension per item (FP32 values are row-major, NCHW).
      const Value& a = values[static_cast<std::size_t>(s.ins[0])];
      const Value& b = values[static_cast<std::size_t>(s.ins[1])];
      const std::int64_t sa = a.strides().v[0], sb = b.strides().v[0], sy = y.strides().v[0];
      for (int i = 0; i < n; ++i) {
        NEXUS_CUBLAS_CHECK(
            cublasGemmStridedBatchedEx(
                cublas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(s.mm_n),
                static_cast<int>(s.mm_m), static_cast<int>(s.mm_k), &one,
                offset_ptr(const_cast<void*>(static_cast<const void*>(vptr(s.ins[1]))), i * sb),
                CUDA_R_32F, static_cast<int>(s.mm_n), s.mm_stride_b,
                offset_ptr(const_cast<void*>(static_cast<const void*>(vptr(s.ins[0]))), i * sa),
                CUDA_R_32F, static_cast<int>(s.mm_k), s.mm_stride_a, &zero,
                offset_ptr(out, i * sy), CUDA_R_32F, static_cast<int>(s.mm_n),
                s.mm_m * s.mm_n, static_cast<int>(s.mm_lead), CUBLAS_COMPUTE_32F,
                CUBLAS_GEMM_DEFAULT),
            s.name);
      }
      break;
    }
    case StepKind::kConvTranspose: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      const DescGuard dy{tensor_desc(x, n, s.name)};
      const DescGuard dx{tensor_desc(y, n, s.name)};
      int& algo = s.ct_algo.at(static_cast<std::size_t>(n));
      if (algo < 0) {  // cuDNN's heuristics, first that fits the workspace
        constexpr int kMax = 8;
        cudnnConvolutionBwdDataAlgoPerf_t perf[kMax];
        int returned = 0;
        NEXUS_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                              cudnn, s.w_desc, dy.d, s.conv_desc, dx.d, kMax, &returned, perf),
                          s.name);
        algo = static_cast<int>(CUDNN_CONVOLUTION_BWD_DATA_ALGO_0);
        for (int k = 0; k < returned; ++k) {
          if (perf[k].status != CUDNN_STATUS_SUCCESS || perf[k].memory > workspace_bytes) continue;
          algo = static_cast<int>(perf[k].algo);
          break;
        }
      }
      NEXUS_CUDNN_CHECK(
          cudnnConvolutionBackwardData(cudnn, &one, s.w_desc, wptr(s.weight), dy.d, vptr(s.ins[0]),
                                       s.conv_desc,
                                       static_cast<cudnnConvolutionBwdDataAlgo_t>(algo),
                                       d_workspace, workspace_bytes, &zero, dx.d, out),
          s.name);
      epilogue();
      break;
    }
    case StepKind::kConcat: {
      const Dims4 ys = y.strides();
      std::int64_t at = 0;  // position along the concat axis
      for (int in : s.ins) {
        const Value& x = values[static_cast<std::size_t>(in)];
        const Dims4 d = x.dims(n);
        cuda::launch_convert(elem, vptr(in), d, x.strides(), elem,
                             offset_ptr(out, at * ys.v[s.axis]), d, ys, stream);
        NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
        at += d.v[s.axis];
      }
      break;
    }
    case StepKind::kSoftmax: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_softmax(elem, vptr(s.ins[0]), x.strides(), out, y.strides(), y.dims(n), s.axis,
                           stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kConvert: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_convert(elem, vptr(s.ins[0]), x.dims(n), x.strides(), elem, out, y.dims(n),
                           y.strides(), stream);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
    case StepKind::kResize: {
      const Value& x = values[static_cast<std::size_t>(s.ins[0])];
      cuda::launch_resize_bilinear(elem, vptr(s.ins[0]), x.dims(n), x.strides(), out, y.dims(n),
                                   y.strides(), s.resize.align_corners, s.resize.half_pixel_centers,
                                   stream, s.resize.scale_h, s.resize.scale_w,
                                   s.resize.coord == model::ResizeCoord::kPytorchHalfPixel);
      NEXUS_CUDA_CHECK(cudaGetLastError(), s.name);
      break;
    }
  }
}

std::vector<Tensor> CudaBackend::Impl::run(const std::vector<Tensor>& inputs) {
  NEXUS_CHECK(max_batch > 0, "CudaBackend::run: no model loaded");
  NEXUS_CHECK(inputs.size() == input_values.size(),
              "CudaBackend::run('{}'): {} inputs given, the graph has {}", model_name,
              inputs.size(), input_values.size());
  std::int64_t n = -1;
  std::vector<InputKind> kinds;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Value& v = values[static_cast<std::size_t>(input_values[i])];
    const Tensor& t = inputs[i];
    std::vector<std::int64_t> item(v.d, v.d + v.rank);
    const bool as_ir = t.shape().rank() == v.rank + 1 && t.shape().drop_front() == Shape(item);
    const bool hwc = v.rank == 3 && v.d[0] <= 4 && t.shape().rank() == 4 &&
                     t.shape()[1] == v.d[1] && t.shape()[2] == v.d[2] && t.shape()[3] == v.d[0];
    InputKind kind = InputKind::kF32;
    if (t.dtype() == DType::kFloat32 && as_ir)
      kind = InputKind::kF32;
    else if (t.dtype() == DType::kFloat16 && as_ir)
      kind = InputKind::kF16;
    else if (t.dtype() == DType::kUInt8 && hwc)
      kind = InputKind::kU8Hwc;
    else
      throw_error(
          "CudaBackend::run('{}'): input {} ('{}') is {} {}, expected float32 or float16 [n, {}]{}",
          model_name, i, v.name, name_of(t.dtype()), t.shape(), fmt::join(item, ", "),
          v.rank == 3 && v.d[0] <= 4
              ? fmt::format(" or uint8 HWC frames [n, {}, {}, {}]", v.d[1], v.d[2], v.d[0])
              : std::string());
    kinds.push_back(kind);
    if (n < 0) n = t.shape()[0];
    NEXUS_CHECK(t.shape()[0] == n, "CudaBackend::run('{}'): input {} has batch {}, input 0 {}",
                model_name, i, t.shape()[0], n);
  }
  NEXUS_CHECK(n >= 1 && n <= max_batch, "CudaBackend::run('{}'): batch {} out of range 1..{}",
              model_name, n, max_batch);
  const int b = static_cast<int>(n);
  set_device();
  prepare(b);
  const int r = cuda::padded_batch(b, batch_sizes);  // the prepared size this batch runs at
  try {
    return run_prepared(inputs, kinds, b, r);
  } catch (const Error& e) {
    // A CUDA error mid-batch: drain both streams and clear a non-sticky error, so the next
    // batch runs; this batch's requests fail with the message.
    cudaStreamSynchronize(copy);
    cudaStreamSynchronize(compute);
    (void)cudaGetLastError();
    throw_error("CudaBackend '{}' on cuda:{} ({}), batch {}: {}", model_name,
                options.device_index, label, b, e.what());
  }
}

std::vector<Tensor> CudaBackend::Impl::run_prepared(const std::vector<Tensor>& inputs,
                                                    const std::vector<InputKind>& kinds, int b,
                                                    int r) {
  // Upload on the copy stream in chunks, so copying chunk k+1 into pinned memory overlaps the
  // DMA of chunk k; compute waits for it; the download waits for compute.
  constexpr std::size_t kChunk = std::size_t{4} << 20;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Value& v = values[static_cast<std::size_t>(input_values[i])];
    const std::size_t bytes = inputs[i].nbytes();
    void* ir_dst = (elem == Elem::kF32 && !v.nhwc) ? vptr(input_values[i]) : d_in_staging[i];
    void* dst = kinds[i] == InputKind::kF32 ? ir_dst : static_cast<void*>(d_raw_in[i]);
    const auto* src = static_cast<const std::byte*>(inputs[i].raw_data());
    auto* pinned = reinterpret_cast<std::byte*>(h_in[i]);
    for (std::size_t at = 0; at < bytes; at += kChunk) {
      const std::size_t len = std::min(kChunk, bytes - at);
      std::memcpy(pinned + at, src + at, len);
      NEXUS_CUDA_CHECK(cudaMemcpyAsync(static_cast<std::byte*>(dst) + at, pinned + at, len,
                                       cudaMemcpyHostToDevice, copy),
                       v.name);
    }
    // float16 or uint8 frames: to the float32 layout the captured graph reads, on the GPU.
    if (kinds[i] == InputKind::kF16) {
      const Dims4 d = v.dims(b);
      cuda::launch_convert(Elem::kF16, d_raw_in[i], d, contiguous_strides(d), Elem::kF32, ir_dst,
                           d, contiguous_strides(d), copy);
      NEXUS_CUDA_CHECK(cudaGetLastError(), v.name);
    } else if (kinds[i] == InputKind::kU8Hwc) {
      const Dims4 d = v.dims(b);
      cuda::launch_normalize_u8(reinterpret_cast<const std::uint8_t*>(d_raw_in[i]), d, Elem::kF32,
                                ir_dst, contiguous_strides(d), d_norm, d_norm + 4, copy);
      NEXUS_CUDA_CHECK(cudaGetLastError(), v.name);
    }
  }
  NEXUS_CUDA_CHECK(cudaEventRecord(uploaded, copy), model_name);
  NEXUS_CUDA_CHECK(cudaStreamWaitEvent(compute, uploaded, 0), model_name);
  if (cudaGraphExec_t g = graphs[static_cast<std::size_t>(r)])
    NEXUS_CUDA_CHECK(cudaGraphLaunch(g, compute), model_name);
  else
    run_sequence(r, compute);
  NEXUS_CUDA_CHECK(cudaEventRecord(computed, compute), model_name);
  NEXUS_CUDA_CHECK(cudaStreamWaitEvent(copy, computed, 0), model_name);
  std::vector<Tensor> outputs;
  for (std::size_t i = 0; i < output_values.size(); ++i) {  // the first b rows of r
    const Value& v = values[static_cast<std::size_t>(output_values[i])];
    const bool direct = elem == Elem::kF32 && !v.nhwc && !v.constant;
    const std::size_t bytes = static_cast<std::size_t>(b * v.item_elems()) * 4;
    NEXUS_CUDA_CHECK(cudaMemcpyAsync(h_out[i], direct ? vptr(output_values[i]) : d_out_staging[i],
                                     bytes, cudaMemcpyDeviceToHost, copy),
                     v.name);
  }
  NEXUS_CUDA_CHECK(cudaStreamSynchronize(copy), model_name);
  for (std::size_t i = 0; i < output_values.size(); ++i) {
    const Value& v = values[static_cast<std::size_t>(output_values[i])];
    std::vector<std::int64_t> dims{b};
    dims.insert(dims.end(), v.d, v.d + v.rank);
    Tensor t{Shape(std::move(dims))};
    std::memcpy(t.raw_data(), h_out[i], t.nbytes());
    outputs.push_back(std::move(t));
  }
  return outputs;
}

// ------------------------------------------------------------------------------------------
// CudaBackend

CudaBackend::CudaBackend(CudaBackendOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = options;
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw_error("CudaBackend: no CUDA device found (cudaGetDeviceCount: {}: {})",
                cudaGetErrorName(e), cudaGetErrorString(e));
  }
  NEXUS_CHECK(count > 0, "CudaBackend: no CUDA device found");
  NEXUS_CHECK(options.device_index >= 0 && options.device_index < count,
              "CudaBackend: device_index {} out of range: {} CUDA device(s)", options.device_index,
              count);
  m.set_device();
  cudaDeviceProp prop{};
  NEXUS_CUDA_CHECK(cudaGetDeviceProperties(&prop, options.device_index), "");
  m.label = prop.name;
  if (options.precision == CudaPrecision::kFloat16) {
    m.elem = Elem::kF16;
    m.elem_size = 2;
    m.cudnn_type = CUDNN_DATA_HALF;
    m.blas_type = CUDA_R_16F;
  }
  NEXUS_CUDA_CHECK(cudaStreamCreateWithFlags(&m.compute, cudaStreamNonBlocking), "");
  NEXUS_CUDA_CHECK(cudaStreamCreateWithFlags(&m.copy, cudaStreamNonBlocking), "");
  NEXUS_CUDA_CHECK(cudaEventCreateWithFlags(&m.uploaded, cudaEventDisableTiming), "");
  NEXUS_CUDA_CHECK(cudaEventCreateWithFlags(&m.computed, cudaEventDisableTiming), "");
  NEXUS_CUDA_CHECK(cudaEventCreate(&m.timing_start), "");
  NEXUS_CUDA_CHECK(cudaEventCreate(&m.timing_stop), "");
  const char* env = std::getenv("NEXUS_CUDA_PRINT_ENGINES");
  m.print_engines = options.print_engines || (env && *env && std::string(env) != "0");
  NEXUS_CUDNN_CHECK(cudnnCreate(&m.cudnn), "");
  NEXUS_CUDNN_CHECK(cudnnSetStream(m.cudnn, m.compute), "");
  NEXUS_CUBLAS_CHECK(cublasCreate(&m.cublas), "");
  NEXUS_CUBLAS_CHECK(cublasSetStream(m.cublas, m.compute), "");
  NEXUS_CUBLAS_CHECK(cublasSetMathMode(m.cublas, m.elem == Elem::kF16 ? CUBLAS_DEFAULT_MATH
                                                                      : CUBLAS_PEDANTIC_MATH),
                     "");
}

CudaBackend::~CudaBackend() = default;

std::string CudaBackend::device_name() const {
  return fmt::format("cuda:{}", impl_->options.device_index);
}
void CudaBackend::load(const model::Graph& graph, int max_batch) { impl_->load(graph, max_batch); }
std::vector<Tensor> CudaBackend::run(const std::vector<Tensor>& inputs) {
  return impl_->run(inputs);
}
int CudaBackend::max_batch() const { return impl_->max_batch; }
Shape CudaBackend::input_shape(int i) const {
  NEXUS_CHECK(i >= 0 && static_cast<std::size_t>(i) < impl_->input_values.size(),
              "CudaBackend::input_shape({}): the graph has {} inputs", i,
              impl_->input_values.size());
  const Value& v =
      impl_->values[static_cast<std::size_t>(impl_->input_values[static_cast<std::size_t>(i)])];
  return Shape(std::vector<std::int64_t>(v.d, v.d + v.rank));
}
std::size_t CudaBackend::weights_bytes() const { return impl_->weights_total; }
std::size_t CudaBackend::activation_bytes(int batch) const {
  NEXUS_CHECK(batch >= 1 && batch <= impl_->max_batch,
              "CudaBackend::activation_bytes({}): batch out of range 1..{}", batch,
              impl_->max_batch);
  return impl_->activation_bytes[static_cast<std::size_t>(batch)];
}
void CudaBackend::prepare(int batch) { impl_->prepare(batch); }
void CudaBackend::prepare(const std::vector<int>& batch_sizes) {
  for (int b : batch_sizes) impl_->prepare(b);
}
std::size_t CudaBackend::device_bytes() const {
  const Impl& m = *impl_;
  if (m.max_batch == 0) return 0;
  return m.weights_total + m.activation_bytes[static_cast<std::size_t>(m.max_batch)] +
         m.workspace_bytes + kCublasWorkspaceBytes + m.fp32_bytes;
}
std::size_t CudaBackend::free_memory() const {
  std::size_t free_bytes = 0, total_bytes = 0;
  if (cudaSetDevice(impl_->options.device_index) != cudaSuccess ||
      cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess)
    return 0;
  return free_bytes;
}
std::string CudaBackend::device_label() const { return impl_->label; }
std::vector<std::string> CudaBackend::conv_choices(int batch) const {
  const Impl& m = *impl_;
  NEXUS_CHECK(batch >= 1 && batch <= m.max_batch, "CudaBackend::conv_choices({}): batch out of range 1..{}",
              batch, m.max_batch);
  const int r = cuda::padded_batch(batch, m.batch_sizes);
  std::vector<std::string> out;
  for (const Step& s : m.steps) {
    if (s.kind != StepKind::kConv) continue;
    if (s.conv_batches.size() <= static_cast<std::size_t>(r) || !m.prepared[static_cast<std::size_t>(r)]) {
      out.push_back(fmt::format("{}: not prepared", s.name));
      continue;
    }
    const ConvPerBatch& pb = s.conv_batches[static_cast<std::size_t>(r)];
    out.push_back(fmt::format("{}: {} {:.4f} ms", s.name, pb.label, pb.ms));
  }
  return out;
}
const CudaBackendOptions& CudaBackend::options() const { return impl_->options; }

}  // namespace nexus
