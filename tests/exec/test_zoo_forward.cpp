// The standard zoo runs on the CpuBackend with finite activations (seeded random weights).
#include <catch2/catch.hpp>

#include <cmath>
#include <numeric>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/zoo/standard.hpp"

using namespace nexus;

namespace {
Tensor image_batch(int n, const Shape& item) {
  std::vector<std::int64_t> dims{n};
  dims.insert(dims.end(), item.dims().begin(), item.dims().end());
  Tensor t{Shape(dims)};
  std::uint32_t s = 12345;
  for (float& v : t.values()) {
    s = s * 1664525u + 1013904223u;  // LCG pixels in [0, 1)
    v = static_cast<float>(s >> 8) / 16777216.0f;
  }
  return t;
}

void check_classifier(const model::Graph& g, int batch) {
  CpuBackend be(CpuBackendOptions{2});
  be.load(g, batch);
  const Tensor y = be.run_one(image_batch(batch, be.input_shape()));
  REQUIRE(y.shape() == Shape({batch, 1000}));
  for (int i = 0; i < batch; ++i) {
    const float* p = y.data<float>() + i * 1000;
    double sum = 0.0;
    float lo = 1.0f, hi = 0.0f;
    for (int j = 0; j < 1000; ++j) {
      REQUIRE(std::isfinite(p[j]));
      sum += p[j];
      lo = std::min(lo, p[j]);
      hi = std::max(hi, p[j]);
    }
    CHECK(sum == Approx(1.0).epsilon(1e-4));
    CHECK(hi > lo);  // the logits are not degenerate
  }
}
}  // namespace

TEST_CASE("MobileNetV1 forward: finite probabilities", "[exec][zoo]") {
  check_classifier(model::zoo::mobilenet_v1(), 2);
}

TEST_CASE("ResNet-50 forward: finite probabilities", "[exec][zoo]") {
  check_classifier(model::zoo::resnet50(), 1);
}

TEST_CASE("GoogLeNet forward: finite probabilities", "[exec][zoo]") {
  check_classifier(model::zoo::googlenet(), 1);
}

TEST_CASE("Inception-v3 forward: finite probabilities", "[exec][zoo]") {
  check_classifier(model::zoo::inception_v3(), 1);
}

TEST_CASE("SSD MobileNetV1 300 forward: finite head outputs", "[exec][zoo]") {
  CpuBackend be(CpuBackendOptions{2});
  be.load(model::zoo::ssd_mobilenet_v1_300(), 1);
  const auto outs = be.run({image_batch(1, be.input_shape())});
  REQUIRE(outs.size() == 12);
  CHECK(outs[0].shape() == Shape({1, 12, 19, 19}));
  CHECK(outs[11].shape() == Shape({1, 546, 1, 1}));
  for (const Tensor& t : outs) {
    double sq = 0.0;
    for (float v : t.values()) {
      REQUIRE(std::isfinite(v));
      sq += double(v) * v;
    }
    CHECK(sq > 0.0);
  }
}
