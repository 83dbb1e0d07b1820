// Standard zoo: output shapes and multiply-accumulates against the published figures.
#include <catch2/catch.hpp>

#include <cmath>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/standard.hpp"

using namespace nexus;
using namespace nexus::model;
using Catch::Matchers::Contains;

namespace {
double gmacs(const Graph& g) { return static_cast<double>(g.macs_per_item()) / 1e9; }
double mparams(const Graph& g) { return static_cast<double>(g.weights_bytes()) / 4 / 1e6; }
const Shape& out_shape(const Graph& g, int i) { return g.node(g.outputs().at(static_cast<std::size_t>(i))).shape; }
}  // namespace

TEST_CASE("ResNet-50: 4.1 GMACs, 25.6 M parameters, BN folded", "[model][zoo]") {
  const Graph g = zoo::resnet50();
  CHECK(g.node(g.inputs()[0]).shape == Shape({3, 224, 224}));
  CHECK(out_shape(g, 0) == Shape({1000}));
  // torchvision resnet50: 4.09 GMACs, 25.56 M parameters (BN folded: +bias per conv channel).
  CHECK(gmacs(g) == Approx(4.09).epsilon(0.02));
  CHECK(mparams(g) == Approx(25.5).epsilon(0.02));
  for (const Node& n : g.nodes()) CHECK(n.op != OpType::kBatchNorm);
}

TEST_CASE("MobileNetV1 224: 569 M MACs, 4.2 M parameters", "[model][zoo]") {
  const Graph g = zoo::mobilenet_v1();
  CHECK(out_shape(g, 0) == Shape({1000}));
  CHECK(gmacs(g) == Approx(0.569).epsilon(0.01));  // Howard et al. 2017, Table 8
  CHECK(mparams(g) == Approx(4.2).epsilon(0.02));
}

TEST_CASE("VGG-16: 15.5 GMACs, 138 M parameters", "[model][zoo]") {
  const Graph g = zoo::vgg16();
  CHECK(out_shape(g, 0) == Shape({1000}));
  CHECK(gmacs(g) == Approx(15.47).epsilon(0.01));
  CHECK(mparams(g) == Approx(138.36).epsilon(0.01));
}

TEST_CASE("GoogLeNet: ~1.5 GMACs, ~7 M parameters", "[model][zoo]") {
  const Graph g = zoo::googlenet();
  CHECK(out_shape(g, 0) == Shape({1000}));
  // Szegedy et al. 2015: "1.5 billion multiply-adds"; 6.8 M parameters (no aux heads).
  CHECK(gmacs(g) == Approx(1.5).epsilon(0.06));
  CHECK(mparams(g) == Approx(6.8).epsilon(0.05));
  CHECK(g.node(g.find("inception_5b/concat")).shape == Shape({1024, 7, 7}));
}

TEST_CASE("Inception-v3: 5.7 GMACs, 23.8 M parameters, 8x8x2048 before pooling", "[model][zoo]") {
  const Graph g = zoo::inception_v3();
  CHECK(g.node(g.inputs()[0]).shape == Shape({3, 299, 299}));
  CHECK(out_shape(g, 0) == Shape({1000}));
  // Szegedy et al. 2016: 5.72 G multiply-adds; 23.8 M parameters without the aux head.
  CHECK(gmacs(g) == Approx(5.71).epsilon(0.01));
  CHECK(mparams(g) == Approx(23.8).epsilon(0.01));
  CHECK(g.node(g.find("Mixed_5b/concat")).shape == Shape({256, 35, 35}));
  CHECK(g.node(g.find("Mixed_6a/concat")).shape == Shape({768, 17, 17}));
  CHECK(g.node(g.find("Mixed_7c/concat")).shape == Shape({2048, 8, 8}));
}

TEST_CASE("SSD MobileNetV1 300: feature maps 19..1 and head shapes", "[model][zoo]") {
  const Graph g = zoo::ssd_mobilenet_v1_300();
  CHECK(g.node(g.inputs()[0]).shape == Shape({3, 300, 300}));
  REQUIRE(g.outputs().size() == 12);
  const std::int64_t sizes[] = {19, 10, 5, 3, 2, 1};
  std::int64_t anchors_total = 0;
  for (int m = 0; m < 6; ++m) {
    const std::int64_t a = m == 0 ? 3 : 6;
    CHECK(out_shape(g, m) == Shape({a * 4, sizes[m], sizes[m]}));
    CHECK(out_shape(g, 6 + m) == Shape({a * 91, sizes[m], sizes[m]}));
    anchors_total += a * sizes[m] * sizes[m];
  }
  CHECK(anchors_total == 1917);  // the TF detection API's SSD MobileNet v1 300 anchor count
  CHECK(gmacs(g) == Approx(1.23).epsilon(0.05));
}

TEST_CASE("LeNet (Caffe MNIST): 2,293,000 MACs, 431,080 parameters, 10 classes", "[model][zoo]") {
  const Graph g = zoo::lenet();
  CHECK(g.node(g.inputs()[0]).shape == Shape({1, 28, 28}));
  CHECK(out_shape(g, 0) == Shape({10}));
  CHECK(g.node(g.find("pool1")).shape == Shape({20, 12, 12}));
  CHECK(g.node(g.find("pool2")).shape == Shape({50, 4, 4}));
  // BVLC Caffe examples/mnist/lenet.prototxt, counted by hand:
  //   conv1 20x24x24 outputs x 25 taps = 288,000; conv2 50x8x8 x (20x25) = 1,600,000;
  //   ip1 800 x 500 = 400,000; ip2 500 x 10 = 5,000.  Parameters: 520 + 25,050 + 400,500 + 5,010.
  CHECK(g.macs_per_item() == 2'293'000);
  CHECK(g.weights_bytes() == 431'080 * 4);
}

TEST_CASE("standard_model by name; seeds are reproducible", "[model][zoo]") {
  CHECK(zoo::standard_model_names().size() == 7);
  CHECK(zoo::standard_model("lenet").name() == "lenet");
  CHECK(zoo::standard_model("inception_v3").name() == "inception_v3");
  CHECK(zoo::standard_model("mobilenet_v1").name() == "mobilenet_v1");
  CHECK_THROWS_WITH(zoo::standard_model("alexnet"), Contains("alexnet") && Contains("resnet50"));
  const Graph a = zoo::mobilenet_v1(5), b = zoo::mobilenet_v1(5), c = zoo::mobilenet_v1(6);
  const auto& wa = a.node(1).weight.values();
  CHECK(std::equal(wa.begin(), wa.end(), b.node(1).weight.values().begin()));
  CHECK(wa[0] != c.node(1).weight.values()[0]);
}
