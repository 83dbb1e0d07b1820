// [cuda] CudaBackend against CpuBackend, the oracle (the ggml test-backend-ops pattern): every op
// of the Graph IR in small graphs that hit each code path (asymmetric TF SAME padding, grouped,
// depthwise and dilated convs, fused and unfused activations, NHWC layout changes in FP16), then
// every zoo and face model. Inputs and weights are seeded random; outputs must be non-zero.
//
// Error measure: max |gpu - cpu| / max |cpu| over each output (relative to the output's scale).
//   FP32: <= 1e-4 (cuDNN FMA kernels, no TF32).
//   FP16: from the error distribution measured on the H200 on 2026-11-30
//         (../shared/gpu/h200-2026-11-30/cuda_tests.txt; docs/cuda.md "FP16 tolerances"), about
//         2.5x the largest error of each class, since FP16 storage of every activation and weight
//         dominates and the chosen kernels only move the FP32 accumulation order:
//           op graphs        max 9.4e-4 -> 2.5e-3
//           zoo models       max 5.1e-3 (SSD-300 box_predictor_5) -> 1.3e-2
//           face nets        max 1.2e-3 -> 3e-3
//           face detector    max 3.1e-2 (BoxPredictor_1 box encodings: raw regressions whose
//                            max |cpu| is small next to their deep accumulation) -> 8e-2
// Without a CUDA device every GPU test prints "SKIPPED: no CUDA device" and returns; ctest marks
// the test "cuda" skipped (tests/cuda/CMakeLists.txt). The device-free tests, tagged [nodevice],
// also run as the ctest "cuda_nodevice", which can fail on any machine.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/graph.hpp"

#if __has_include("nexus/exec/cpu_backend.hpp")
#include "nexus/exec/cpu_backend.hpp"
#define NEXUS_TEST_HAVE_CPU 1
#endif
#if __has_include("nexus/model/zoo/standard.hpp")
#include "nexus/model/zoo/standard.hpp"
#define NEXUS_TEST_HAVE_STANDARD_ZOO 1
#endif
#if __has_include("nexus/model/zoo/face_recognition.hpp") &&                      \
                  __has_include(                                                  \
                      "nexus/model/zoo/face_landmarks.hpp") &&                    \
                      __has_include(                                              \
                          "nexus/model/zoo/face_expression.hpp") &&               \
                          __has_include("nexus/model/zoo/face_age_gender.hpp") && \
                                        __has_include("nexus/model/zoo/face_detector.hpp")
#include "nexus/model/zoo/face_age_gender.hpp"
#include "nexus/model/zoo/face_detector.hpp"
#include "nexus/model/zoo/face_expression.hpp"
#include "nexus/model/zoo/face_landmarks.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#define NEXUS_TEST_HAVE_FACE_ZOO 1
#endif

using namespace nexus;
using namespace nexus::model;
using Catch::Matchers::Contains;

namespace {

constexpr double kFp32Tolerance = 1e-4;
constexpr double kFp16OpsTolerance = 2.5e-3;
constexpr double kFp16ZooTolerance = 1.3e-2;
constexpr double kFp16FaceNetTolerance = 3e-3;
constexpr double kFp16DetectorTolerance = 8e-2;

/// The face models' directory: $NEXUS_DATA_DIR/face-api/model when set (the GPU machine gets
/// the data in a carried folder), else the checkout's data/.
std::filesystem::path face_model_dir() {
  if (const char* d = std::getenv("NEXUS_DATA_DIR"); d && *d)
    return std::filesystem::path(d) / "face-api/model";
  return std::filesystem::path(NEXUS_SOURCE_DIR) / "data/face-api/model";
}

bool have_device() {
  static const int count = [] {
    const int n = cuda_device_count();
    if (n == 0)
      std::printf(
          "SKIPPED: no CUDA device found; the [cuda] GPU tests do not run here "
          "(see docs/cuda.md for the GPU session's commands)\n");
    return n;
  }();
  return count > 0;
}

#define NEXUS_REQUIRE_DEVICE()               \
  do {                                       \
    if (!have_device()) {                    \
      WARN("SKIPPED: no CUDA device found"); \
      return;                                \
    }                                        \
  } while (0)

Tensor random_tensor(Shape shape, std::mt19937& rng, float lo, float hi) {
  Tensor t(std::move(shape));
  std::uniform_real_distribution<float> u(lo, hi);
  for (float& v : t.values()) v = u(rng);
  return t;
}

/// He-like scale so activations neither vanish nor overflow FP16 through a few layers.
Tensor random_weight(Shape shape, std::mt19937& rng) {
  const std::int64_t fan_in = shape.numel() / shape[0];
  const float a = std::sqrt(3.0f / static_cast<float>(std::max<std::int64_t>(fan_in, 1)));
  return random_tensor(std::move(shape), rng, -a, a);
}

/// IEEE binary16 bits of f, round to nearest even (normal range; the test's values are small).
std::uint16_t float_to_half_bits(float f) {
  std::uint32_t x;
  std::memcpy(&x, &f, 4);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const int exp = static_cast<int>((x >> 23) & 0xffu) - 127 + 15;
  std::uint32_t mant = x & 0x7fffffu;
  if (exp <= 0) return static_cast<std::uint16_t>(sign);  // flush tiny values to zero
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  std::uint32_t h = sign | (static_cast<std::uint32_t>(exp) << 10) | (mant >> 13);
  const std::uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(h);
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (float v : t.values()) m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

double relative_error(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  double diff = 0;
  auto g = got.values();
  auto w = want.values();
  for (std::size_t i = 0; i < g.size(); ++i)
    diff = std::max(diff, std::fabs(static_cast<double>(g[i]) - static_cast<double>(w[i])));
  return diff / std::max(max_abs(want), 1e-12);
}

std::vector<Tensor> random_inputs(const Graph& g, int batch, std::mt19937& rng, float lo,
                                  float hi) {
  std::vector<Tensor> inputs;
  for (NodeId id : g.inputs()) {
    std::vector<std::int64_t> dims{batch};
    for (auto d : g.node(id).shape.dims()) dims.push_back(d);
    inputs.push_back(random_tensor(Shape(std::move(dims)), rng, lo, hi));
  }
  return inputs;
}

#if NEXUS_TEST_HAVE_CPU
/// Runs g on the CPU and on the GPU in both precisions at `batch` and compares every output.
void compare_with_cpu(const Graph& g, int batch, float lo, float hi, double fp16_tol,
                      CudaBackendOptions base = {}) {
  std::mt19937 rng(1234);
  const auto inputs = random_inputs(g, batch, rng, lo, hi);
  CpuBackend cpu;
  cpu.load(g, batch);
  const auto want = cpu.run(inputs);
  for (CudaPrecision p : {CudaPrecision::kFloat32, CudaPrecision::kFloat16}) {
    CudaBackendOptions o = base;
    o.precision = p;
    CudaBackend gpu(o);
    gpu.load(g, batch);
    const auto got = gpu.run(inputs);
    const auto again = gpu.run(inputs);  // the replayed CUDA Graph gives the same result
    REQUIRE(got.size() == want.size());
    const double tol = p == CudaPrecision::kFloat32 ? kFp32Tolerance : fp16_tol;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const std::string out_name = g.node(g.outputs()[i]).name;
      INFO(g.name() << " output " << i << " '" << out_name << "' " << precision_name(p) << " batch "
                    << batch);
      CHECK(max_abs(want[i]) > 0);  // an all-zero reference proves nothing
      const double err = relative_error(got[i], want[i]);
      std::printf("[cuda] %s/%s %s batch %d: relative error %.3g\n", g.name().c_str(),
                  out_name.c_str(), precision_name(p), batch, err);
      CHECK(err <= tol);
      CHECK(relative_error(again[i], got[i]) == 0.0);
    }
  }
}
#endif

Conv2DAttrs conv(int stride, Padding p, int dilation = 1, int groups = 1) {
  Conv2DAttrs a;
  a.stride_h = a.stride_w = stride;
  a.dilation_h = a.dilation_w = dilation;
  a.groups = groups;
  a.padding = p;
  return a;
}

Pool2DAttrs pool(int k, int s, Padding p) {
  Pool2DAttrs a;
  a.kernel_h = a.kernel_w = k;
  a.stride_h = a.stride_w = s;
  a.padding = p;
  return a;
}

/// Convolutions: TF SAME with asymmetric pads (explicit pad kernel), VALID, dilation, groups,
/// depthwise, 1x1; fused ReLU (cudnnConvolutionBiasActivationForward), fused epilogues of the
/// other activations, an unfusable conv (also an output), bias-free convs.
Graph conv_graph() {
  std::mt19937 rng(7);
  GraphBuilder b("ops_conv");
  auto x = b.input("x", Shape{6, 12, 13});
  auto c1 = b.conv2d("same_s2", x, random_weight({8, 6, 3, 3}, rng),
                     random_tensor({8}, rng, -0.1f, 0.1f), conv(2, Padding::kSame));
  auto r1 = b.relu("same_s2/relu", c1);
  auto c2 = b.conv2d("valid_dil2", x, random_weight({4, 6, 3, 3}, rng), std::nullopt,
                     conv(1, Padding::kValid, 2));
  auto r2 = b.relu6("valid_dil2/relu6", c2);
  auto c3 = b.conv2d("depthwise", x, random_weight({6, 1, 3, 3}, rng),
                     random_tensor({6}, rng, -0.1f, 0.1f), conv(1, Padding::kSame, 1, 6));
  auto r3 = b.leaky_relu("depthwise/leaky", c3, 0.2f);
  auto c4 = b.conv2d("grouped_5x5_s2", x, random_weight({4, 3, 5, 5}, rng),
                     random_tensor({4}, rng, -0.1f, 0.1f), conv(2, Padding::kSame, 1, 2));
  auto r4 = b.sigmoid("grouped/sigmoid", c4);
  auto c5 = b.conv2d("pointwise", r3, random_weight({5, 6, 1, 1}, rng),
                     random_tensor({5}, rng, -0.1f, 0.1f), conv(1, Padding::kValid));
  auto r5 = b.tanh("pointwise/tanh", c5);
  auto c6 = b.conv2d("even_k4", x, random_weight({3, 6, 4, 4}, rng),
                     random_tensor({3}, rng, -0.1f, 0.1f), conv(1, Padding::kSame));
  auto r6 = b.relu("even_k4/relu", c6);  // c6 is also an output: not fused
  b.output(r1);
  b.output(r2);
  b.output(r4);
  b.output(r5);
  b.output(c6);
  b.output(r6);
  return std::move(b).build();
}

/// Pooling (cuDNN for symmetric pads, the kernel for asymmetric), global pool + FC + softmax,
/// squeeze-excite style broadcast Mul, per-channel Add of a constant, BatchNorm/ScaleOffset not
/// after a conv, Concat on channels and width, Softmax over channels (NHWC in FP16).
Graph pool_graph() {
  std::mt19937 rng(11);
  GraphBuilder b("ops_pool");
  auto x = b.input("x", Shape{8, 12, 15});
  auto mp_same = b.max_pool("max_same_s2", x, pool(3, 2, Padding::kSame));  // asymmetric pads
  auto mp_valid = b.max_pool("max_valid", x, pool(2, 2, Padding::kValid));
  // cuDNN max pooling with padding on negative inputs: padding must not count as 0.
  auto mp_sym = b.max_pool("max_same_s1", x, pool(3, 1, Padding::kSame));
  auto ap_sym = b.avg_pool("avg_same_s1", x, pool(3, 1, Padding::kSame));   // pads 1,1
  auto ap_asym = b.avg_pool("avg_same_s2", x, pool(2, 2, Padding::kSame));  // pads 0,1 (odd W)
  auto gap = b.global_avg_pool("gap", x);
  auto fc = b.fully_connected("fc", gap, random_weight({8, 8}, rng),
                              random_tensor({8}, rng, -0.1f, 0.1f));
  auto gate = b.sigmoid("gate", fc);
  auto se = b.mul("se", x, gate);
  auto cst = b.constant("channel_bias", random_tensor({8}, rng, -1.f, 1.f));
  auto added = b.add("add_channel", se, cst);
  auto sum = b.add("add_same", added, x);
  auto bn = b.batch_norm("bn", sum, random_tensor({8}, rng, -0.5f, 0.5f),
                         random_tensor({8}, rng, 0.5f, 2.f), random_tensor({8}, rng, 0.5f, 1.5f),
                         random_tensor({8}, rng, -0.5f, 0.5f), 1e-3f);
  auto so = b.scale_offset("scale_offset", bn, random_tensor({8}, rng, 0.5f, 1.5f),
                           random_tensor({8}, rng, -0.5f, 0.5f));
  auto cat_c = b.concat("concat_channels", {mp_same, ap_asym}, 0);
  auto cat_w = b.concat("concat_width", {x, ap_sym}, 2);
  auto sm_c = b.softmax("softmax_channels", so, 0);
  auto logits =
      b.fully_connected("logits", b.flatten("flat", mp_valid), random_weight({10, 8 * 6 * 7}, rng),
                        random_tensor({10}, rng, -0.1f, 0.1f));
  auto probs = b.softmax("probs", logits);
  b.output(cat_c);
  b.output(cat_w);
  b.output(mp_sym);
  b.output(sm_c);
  b.output(probs);
  b.output(fc);
  return std::move(b).build();
}

/// Layout changes and resizing: Flatten -> FC, Reshape of a vector back into an image (NCHW to
/// NHWC in FP16) -> conv, a rank-3 constant, ResizeBilinear in TF's three coordinate modes.
Graph shape_graph() {
  std::mt19937 rng(13);
  GraphBuilder b("ops_shape");
  auto x = b.input("x", Shape{4, 6, 10});
  auto flat = b.flatten("flat", x);
  auto fc = b.fully_connected("fc", flat, random_weight({48, 240}, rng),
                              random_tensor({48}, rng, -0.1f, 0.1f));
  auto img = b.reshape("to_image", b.relu("fc/relu", fc), Shape{3, 4, 4});
  auto conv1 = b.conv2d("conv", img, random_weight({5, 3, 3, 3}, rng),
                        random_tensor({5}, rng, -0.1f, 0.1f), conv(1, Padding::kSame));
  auto cst = b.constant("image_constant", random_tensor({5, 4, 4}, rng, -1.f, 1.f));
  auto sum = b.add("add_constant", conv1, cst);
  ResizeAttrs legacy{9, 7, false, false}, corners{9, 7, true, false}, half{5, 13, false, true};
  auto r1 = b.resize_bilinear("resize_legacy", sum, legacy);
  auto r2 = b.resize_bilinear("resize_corners", x, corners);
  auto r3 = b.resize_bilinear("resize_half_pixel", x, half);
  auto back = b.reshape("to_rows", x, Shape{24, 10});
  auto sm = b.softmax("softmax_rows", back, -1);
  b.output(r1);
  b.output(r2);
  b.output(r3);
  b.output(sm);
  return std::move(b).build();
}

/// Residual blocks as ResNet has them, each fused into its conv step: conv -> Add(z) -> ReLU
/// with z an earlier tensor (identity shortcut), conv -> Add without activation, a stride-2 TF
/// SAME conv (asymmetric pads: the graph API's pre/post paddings) -> Add(projection conv) ->
/// ReLU6, and an Add whose conv is an output (not fused).
Graph residual_graph() {
  std::mt19937 rng(19);
  GraphBuilder b("ops_residual");
  auto x = b.input("x", Shape{8, 9, 11});
  auto stem = b.relu("stem/relu", b.conv2d("stem", x, random_weight({8, 8, 1, 1}, rng),
                                             random_tensor({8}, rng, -0.1f, 0.1f),
                                             conv(1, Padding::kValid)));
  auto c1 = b.conv2d("block1/conv", stem, random_weight({8, 8, 3, 3}, rng),
                     random_tensor({8}, rng, -0.1f, 0.1f), conv(1, Padding::kSame));
  auto r1 = b.relu("block1/relu", b.add("block1/add", c1, stem));
  auto c2 = b.conv2d("block2/conv", r1, random_weight({8, 8, 3, 3}, rng),
                     random_tensor({8}, rng, -0.1f, 0.1f), conv(1, Padding::kSame));
  auto a2 = b.add("block2/add", r1, c2);  // residual first, conv second: still fused
  auto proj = b.conv2d("block3/proj", a2, random_weight({16, 8, 1, 1}, rng), std::nullopt,
                       conv(2, Padding::kSame));
  auto c3 = b.conv2d("block3/conv", a2, random_weight({16, 8, 3, 3}, rng),
                     random_tensor({16}, rng, -0.1f, 0.1f), conv(2, Padding::kSame));
  auto r3 = b.relu6("block3/relu6", b.add("block3/add", c3, proj));
  auto c4 = b.conv2d("block4/conv", r3, random_weight({16, 16, 1, 1}, rng),
                     random_tensor({16}, rng, -0.1f, 0.1f), conv(1, Padding::kValid));
  auto a4 = b.add("block4/add", c4, r3);  // c4 is also an output: not fused
  b.output(a4);
  b.output(c4);
  return std::move(b).build();
}

}  // namespace

// ---- device-free: these always run -------------------------------------------------------

TEST_CASE("cuda_device_count never throws and precision names", "[cuda][nodevice]") {
  CHECK(cuda_device_count() >= 0);
  CHECK(std::string(precision_name(CudaPrecision::kFloat32)) == "fp32");
  CHECK(std::string(precision_name(CudaPrecision::kFloat16)) == "fp16");
}

#if !defined(NEXUS_WITH_CUDA) || !NEXUS_WITH_CUDA

// A build without CUDA has only the stub factory (src/exec/cuda_stub.cpp).
TEST_CASE("without a CUDA build the factory says so", "[cuda][nodevice]") {
  CHECK(cuda_device_count() == 0);
  CHECK_THROWS_WITH(make_cuda_backend(), Contains("without CUDA"));
}

#else  // the CUDA build: everything below needs nexus_cuda

TEST_CASE("a missing device or an index out of range is a nexus::Error", "[cuda][nodevice]") {
  const int count = cuda_device_count();
  CudaBackendOptions o;
  o.device_index = count + 2;
  if (count == 0) {
    have_device();  // prints the skip message once
    CHECK_THROWS_WITH(CudaBackend(o), Contains("no CUDA device"));
    CHECK_THROWS_AS(make_cuda_backend(), Error);
  } else {
    CHECK_THROWS_WITH(CudaBackend(o), Contains("out of range"));
    o.device_index = -1;
    CHECK_THROWS_AS(CudaBackend(o), Error);
  }
}

// ---- GPU ---------------------------------------------------------------------------------

TEST_CASE("load-time errors: unsupported layer, out of memory, bad inputs", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  std::mt19937 rng(3);
  {  // an item of rank 4 cannot be laid out here
    GraphBuilder b("rank4");
    auto x = b.input("x", Shape{2, 3, 4});
    b.output(b.reshape("rank4_reshape", x, Shape{1, 2, 3, 4}));
    const Graph g = std::move(b).build();
    CudaBackend gpu;
    CHECK_THROWS_WITH(gpu.load(g, 1), Contains("rank4_reshape"));
  }
  const Graph g = conv_graph();
  {  // a workspace larger than any GPU: the message gives bytes asked and free
    CudaBackendOptions o;
    o.conv_workspace_limit_bytes = std::size_t{1} << 50;
    CudaBackend gpu(o);
    CHECK_THROWS_WITH(gpu.load(g, 1), Contains("out of device memory") && Contains("bytes free"));
  }
  CudaBackend gpu;
  CHECK_THROWS_AS(gpu.run({random_tensor({1, 6, 12, 13}, rng, 0, 1)}), Error);  // not loaded
  CHECK_THROWS_AS(gpu.load(g, 0), Error);
  gpu.load(g, 4);
  CHECK(gpu.max_batch() == 4);
  CHECK(gpu.input_shape(0) == Shape({6, 12, 13}));
  CHECK_THROWS_WITH(gpu.run({random_tensor({2, 6, 12, 12}, rng, 0, 1)}),
                    Contains("[n, 6, 12, 13]"));
  CHECK_THROWS_WITH(gpu.run({random_tensor({5, 6, 12, 13}, rng, 0, 1)}), Contains("out of range"));
  CHECK_THROWS_AS(gpu.run({}), Error);
  CHECK(gpu.run({random_tensor({4, 6, 12, 13}, rng, 0, 1)}).size() == 6);
}

TEST_CASE("memory accounting: FP16 halves the weights, activations grow with the batch", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  const Graph g = conv_graph();
  CudaBackendOptions o32, o16;
  o16.precision = CudaPrecision::kFloat16;
  CudaBackend a(o32), b(o16);
  a.load(g, 8);
  b.load(g, 8);
  // Each weight tensor is rounded up to 256 bytes, so allow that slack per tensor.
  CHECK(a.weights_bytes() >= g.weights_bytes());
  CHECK(b.weights_bytes() < a.weights_bytes());
  CHECK(a.activation_bytes(1) > 0);
  CHECK(a.activation_bytes(8) > a.activation_bytes(1));
  CHECK(b.activation_bytes(8) < a.activation_bytes(8));
  CHECK(a.device_bytes() >= a.weights_bytes() + a.activation_bytes(8));
  CHECK(a.device_name() == "cuda:0");
  CHECK_FALSE(a.device_label().empty());
}

#if NEXUS_TEST_HAVE_CPU

TEST_CASE("every op matches CpuBackend (FP32 1e-4, FP16 2.5e-3)", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  for (int batch : {1, 3}) {
    compare_with_cpu(conv_graph(), batch, -1.f, 1.f, kFp16OpsTolerance);
    compare_with_cpu(pool_graph(), batch, -1.f, 1.f, kFp16OpsTolerance);
    compare_with_cpu(shape_graph(), batch, -1.f, 1.f, kFp16OpsTolerance);
    compare_with_cpu(residual_graph(), batch, -1.f, 1.f, kFp16OpsTolerance);
  }
}

TEST_CASE("each convolution path alone matches CpuBackend: legacy, graph API", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  for (CudaConvPath path : {CudaConvPath::kLegacy, CudaConvPath::kGraph}) {
    CudaBackendOptions o;
    o.conv_path = path;
    o.print_engines = true;  // the log shows which alternative each layer ran
    compare_with_cpu(conv_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
    compare_with_cpu(residual_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
  }
}

TEST_CASE("FP16 model with layers in FP32: fallback path matches CpuBackend", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  CudaBackendOptions o;
  // asymmetric SAME pads (padded copy first), grouped, a residual-fused conv
  o.fp32_layers = {"same_s2", "grouped_5x5_s2", "pointwise", "block1/conv", "block3/conv"};
  compare_with_cpu(conv_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
  compare_with_cpu(residual_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
  o.precision = CudaPrecision::kFloat16;
  CudaBackend gpu(o);
  gpu.load(residual_graph(), 2);
  int fp32 = 0;
  for (const auto& c : gpu.conv_choices(1)) fp32 += c.find("FP32 fallback") != std::string::npos;
  CHECK(fp32 == 2);
}

TEST_CASE("without CUDA Graphs the results are the same", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  CudaBackendOptions o;
  o.use_cuda_graphs = false;
  compare_with_cpu(conv_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
  compare_with_cpu(pool_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
  compare_with_cpu(residual_graph(), 2, -1.f, 1.f, kFp16OpsTolerance, o);
}

TEST_CASE("padded batch sizes: a batch runs at the next captured size, same results", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  const Graph g = residual_graph();
  std::mt19937 rng(21);
  const auto inputs = random_inputs(g, 7, rng, -1.f, 1.f);
  CpuBackend cpu;
  cpu.load(g, 7);
  const auto want = cpu.run(inputs);
  for (CudaPrecision p : {CudaPrecision::kFloat32, CudaPrecision::kFloat16}) {
    CudaBackendOptions o;
    o.precision = p;
    o.graph_batch_sizes = {1, 4};  // prepared: 1, 4, 8 (max_batch)
    CudaBackend gpu(o);
    gpu.load(g, 8);
    gpu.prepare(std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8});
    for (int n : {3, 7, 1, 5}) {  // run at 4, 8, 1, 8
      std::vector<Tensor> part;
      for (const Tensor& t : inputs) part.push_back(t.slice(0, n).clone());
      const auto got = gpu.run(part);
      REQUIRE(got.size() == want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        REQUIRE(got[i].shape()[0] == n);
        const double tol = p == CudaPrecision::kFloat32 ? kFp32Tolerance : kFp16OpsTolerance;
        CHECK(relative_error(got[i], want[i].slice(0, n).clone()) <= tol);
      }
    }
  }
}

TEST_CASE("uint8 HWC frames and float16 inputs are converted on the GPU", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  GraphBuilder b("image_in");
  std::mt19937 rng(17);
  auto x = b.input("x", Shape{3, 10, 12});
  b.output(b.conv2d("conv", x, random_weight({4, 3, 3, 3}, rng), random_tensor({4}, rng, -0.1f, 0.1f),
                    conv(1, Padding::kSame)));
  const Graph g = std::move(b).build();
  const int n = 3;
  Tensor frames(Shape{n, 10, 12, 3}, DType::kUInt8);
  std::uniform_int_distribution<int> px(0, 255);
  for (std::int64_t i = 0; i < frames.numel(); ++i)
    static_cast<std::uint8_t*>(frames.raw_data())[i] = static_cast<std::uint8_t>(px(rng));
  // The same frames normalized on the host as the GPU does it, (v - mean) * scale, [n, C, H, W]:
  // the same float operations, so the outputs must agree to rounding of the last bit.
  Tensor normalized(Shape{n, 3, 10, 12});
  const auto* u8 = static_cast<const std::uint8_t*>(frames.raw_data());
  for (int i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c)
      for (int h = 0; h < 10; ++h)
        for (int w = 0; w < 12; ++w)
          normalized.values()[static_cast<std::size_t>(((i * 3 + c) * 10 + h) * 12 + w)] =
              (static_cast<float>(u8[((i * 10 + h) * 12 + w) * 3 + c]) - 127.5f) * (1 / 127.5f);
  for (CudaPrecision p : {CudaPrecision::kFloat32, CudaPrecision::kFloat16}) {
    CudaBackendOptions o;
    o.precision = p;
    o.input_mean = {127.5f, 127.5f, 127.5f};
    o.input_scale = {1 / 127.5f, 1 / 127.5f, 1 / 127.5f};
    CudaBackend gpu(o);
    gpu.load(g, 4);
    const auto want = gpu.run({normalized});
    const auto got = gpu.run({frames});
    CHECK(relative_error(got.at(0), want.at(0)) <= 1e-6);
    // float16 of the IR's shape
    Tensor half(Shape{n, 3, 10, 12}, DType::kFloat16);
    auto* hp = static_cast<std::uint16_t*>(half.raw_data());
    for (std::int64_t i = 0; i < normalized.numel(); ++i)
      hp[i] = float_to_half_bits(normalized.values()[static_cast<std::size_t>(i)]);
    const auto got16 = gpu.run({half});
    CHECK(relative_error(got16.at(0), want.at(0)) <= 2e-3);
    CHECK_THROWS_WITH(gpu.run({Tensor(Shape{n, 10, 12, 4}, DType::kUInt8)}), Contains("uint8 HWC"));
  }
}

TEST_CASE("batch sizes share one loaded model: each size gets its own plan", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  const Graph g = pool_graph();
  std::mt19937 rng(5);
  const auto inputs = random_inputs(g, 5, rng, -1.f, 1.f);
  CpuBackend cpu;
  cpu.load(g, 5);
  const auto want = cpu.run(inputs);
  CudaBackend gpu;
  gpu.load(g, 8);
  gpu.prepare(8);
  for (int n : {5, 1, 3, 5}) {
    std::vector<Tensor> part;
    for (const Tensor& t : inputs) part.push_back(t.slice(0, n).clone());
    const auto got = gpu.run(part);
    for (std::size_t i = 0; i < want.size(); ++i)
      CHECK(relative_error(got[i], want[i].slice(0, n).clone()) <= kFp32Tolerance);
  }
}

TEST_CASE("prepare reports each convolution's choice; ready sizes need no more work", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  CudaBackendOptions o;
  o.precision = CudaPrecision::kFloat16;
  CudaBackend gpu(o);
  gpu.load(residual_graph(), 4);
  gpu.prepare(std::vector<int>{1, 2, 3, 4});
  for (int n = 1; n <= 4; ++n) {
    const auto choices = gpu.conv_choices(n);
    CHECK(choices.size() == 6);
    for (const auto& c : choices) {
      INFO(c);
      CHECK(c.find("not prepared") == std::string::npos);
      std::printf("[cuda] ops_residual fp16 b%d %s\n", n, c.c_str());
    }
  }
  CHECK_THROWS_AS(gpu.prepare(std::vector<int>{5}), Error);
}

/// Whole models: one graph-API engine per layer and a bounded plan-building time per load, so
/// that runtime compilation (unmeasured as yet) cannot make the test run long.
CudaBackendOptions model_options() {
  CudaBackendOptions o;
  o.fused_plans_per_layer = 1;
  o.fused_build_budget_s = 10;
  return o;
}

#if NEXUS_TEST_HAVE_STANDARD_ZOO
TEST_CASE("zoo models match CpuBackend", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  using namespace nexus::model::zoo;
  const CudaBackendOptions o = model_options();
  compare_with_cpu(resnet50(), 2, -1.f, 1.f, kFp16ZooTolerance, o);
  compare_with_cpu(mobilenet_v1(), 2, -1.f, 1.f, kFp16ZooTolerance, o);
  compare_with_cpu(vgg16(), 2, -1.f, 1.f, kFp16ZooTolerance, o);
  compare_with_cpu(googlenet(), 2, -1.f, 1.f, kFp16ZooTolerance, o);
  compare_with_cpu(ssd_mobilenet_v1_300(), 2, -1.f, 1.f, kFp16ZooTolerance, o);
}
#endif

#if NEXUS_TEST_HAVE_FACE_ZOO
TEST_CASE("face models match CpuBackend", "[cuda]") {
  NEXUS_REQUIRE_DEVICE();
  using namespace nexus::model::zoo;
  const std::filesystem::path dir = face_model_dir();
  if (!std::filesystem::exists(dir / "face_recognition_model-weights_manifest.json")) {
    WARN("SKIPPED: face-api weights not found in " << dir.string()
                                                    << " (scripts/fetch_data.sh, or set NEXUS_DATA_DIR)");
    return;
  }
  // Face nets take RGB pixel values in 0..255; the detector takes x / 127.5 - 1.
  const CudaBackendOptions o = model_options();
  compare_with_cpu(load_face_recognition_net(dir), 2, 0.f, 255.f, kFp16FaceNetTolerance, o);
  compare_with_cpu(load_face_landmark68_net(dir), 2, 0.f, 255.f, kFp16FaceNetTolerance, o);
  compare_with_cpu(load_face_expression_net(dir), 2, 0.f, 255.f, kFp16FaceNetTolerance, o);
  compare_with_cpu(load_age_gender_net(dir), 2, 0.f, 255.f, kFp16FaceNetTolerance, o);
  compare_with_cpu(FaceDetector::load(dir).graph(), 2, -1.f, 1.f, kFp16DetectorTolerance, o);
}
#endif

#endif  // NEXUS_TEST_HAVE_CPU

#endif  // NEXUS_WITH_CUDA
