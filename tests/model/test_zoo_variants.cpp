// Zoo variants for prefix batching: standard classifiers with seeded heads, and per-tenant
// nearest-class-mean identity heads over a face embedding backbone.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/prefix.hpp"
#include "nexus/model/zoo/face_identity.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#include "nexus/model/zoo/standard.hpp"
#include "nexus/model/zoo/variants.hpp"
#include "prefix_models.hpp"
#include "skip.hpp"

using namespace nexus;
using namespace nexus::model;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

TEST_CASE("standard variants share all but their final FC head", "[model][prefix][zoo]") {
  const std::vector<Graph> v = zoo::standard_variants("mobilenet_v1", 3);
  const Graph base = zoo::mobilenet_v1();
  REQUIRE(v.size() == 3);
  CHECK(v[1].name() == "mobilenet_v1/v1");
  const NodeId fc = base.find("fc");
  REQUIRE(fc >= 0);
  const std::size_t fc_bytes = base.node(fc).weight.nbytes() + base.node(fc).bias.nbytes();
  for (const Graph& g : v) {
    CHECK(g.nodes().size() == base.nodes().size());
    CHECK(g.node(g.outputs()[0]).shape == Shape{1000});
    CHECK(g.weights_bytes() == base.weights_bytes());
    CHECK(tensor_digest(g.node(fc).weight) != tensor_digest(base.node(fc).weight));
  }
  CHECK(tensor_digest(v[0].node(fc).weight) != tensor_digest(v[1].node(fc).weight));
  // Deterministic: the same variant twice is the same model.
  CHECK(node_hashes(zoo::standard_variant("mobilenet_v1", 2)) == node_hashes(v[2]));

  // Each variant holds its own copy of the backbone, yet detection finds it shared.
  const std::vector<const Graph*> gs{&v[0], &v[1], &v[2], &base};
  const CommonPrefix cp = longest_common_prefix(gs);
  CHECK(cp.nodes[0].size() == base.nodes().size() - 2);  // all but fc and prob
  CHECK(cp.shared_weight_bytes == base.weights_bytes() - fc_bytes);
  const auto groups = find_prefix_groups(gs);
  REQUIRE(groups.size() == 1);
  CHECK(groups[0].members == std::vector<int>{0, 1, 2, 3});

  // Fewer classes: the head and the softmax after it shrink; the backbone is still shared.
  const Graph small = zoo::standard_variant("mobilenet_v1", 4, 1, 10);
  CHECK(small.node(small.outputs()[0]).shape == Shape{10});
  CHECK(small.node(fc).weight.shape() == Shape({10, 1024}));
  const std::vector<const Graph*> mixed{&small, &v[0]};
  CHECK(longest_common_prefix(mixed).shared_weight_bytes == base.weights_bytes() - fc_bytes);
  CHECK_THROWS_WITH(zoo::standard_variant("ssd_mobilenet_v1_300", 0), Contains("no classifier"));
  CHECK_THROWS_WITH(zoo::standard_variant("mobilenet_v1", -1), Contains("variant -1"));
  CHECK_THROWS_WITH(zoo::standard_variant("alexnet", 0), Contains("alexnet"));
}

TEST_CASE("resnet50 with K seeded heads shares its backbone", "[model][prefix][zoo]") {
  const std::vector<Graph> v = zoo::standard_variants("resnet50", 2);
  const std::vector<const Graph*> gs{&v[0], &v[1]};
  const PrefixSplit s = split_prefix(gs);
  REQUIRE(s.boundary.size() == 1);
  CHECK(s.boundary[0].shape == Shape{2048});  // the pooled features
  CHECK(s.suffixes[0].graph->weights_bytes() == (1000 * 2048 + 1000) * 4);
  CHECK(s.shared_weight_bytes + (1000 * 2048 + 1000) * 4 == v[0].weights_bytes());
}

TEST_CASE("identity heads classify by the nearest class mean", "[model][prefix][zoo]") {
  using namespace prefix_test;
  GraphBuilder b("embed");
  b.output(backbone(b, 1, 1));  // [16] "descriptors"
  const Graph net = std::move(b).build();

  // Enroll three "people" per tenant from descriptors of seeded images.
  CpuBackend cpu(CpuBackendOptions{.threads = 1});
  cpu.load(net, 8);
  const Tensor enroll = cpu.run_one(seeded({6, 3, 16, 16}, 5, 1.0f));
  auto row = [&](int i) {
    const float* p = enroll.data() + i * 16;
    return std::vector<float>(p, p + 16);
  };
  const std::vector<std::vector<float>> p0{row(0), row(1)}, p1{row(2)}, p2{row(3), row(4)};
  zoo::IdentityHead head{"shop", {"ann", "bob", "cyd"},
                         {zoo::class_mean(p0), zoo::class_mean(p1), zoo::class_mean(p2)}};
  CHECK(zoo::class_mean(p0)[3] == Approx((row(0)[3] + row(1)[3]) / 2));
  const Graph tenant = zoo::with_identity_head(net, head);
  CHECK(tenant.name() == "embed/shop");
  REQUIRE(tenant.outputs().size() == 2);

  CpuBackend t(CpuBackendOptions{.threads = 1});
  t.load(tenant, 4);
  const Tensor x = seeded({4, 3, 16, 16}, 9, 1.0f);
  const auto out = t.run({x});
  REQUIRE(out[1].shape() == Shape({4, 3}));
  for (int i = 0; i < 4; ++i) {
    const float* d = out[0].data() + i * 16;
    double best = 1e30;
    int nearest = -1;
    for (int c = 0; c < 3; ++c) {
      double dist2 = 0, norm2 = 0;
      for (int k = 0; k < 16; ++k) {
        const double diff = d[k] - head.class_means[c][k];
        dist2 += diff * diff;
        norm2 += double(d[k]) * d[k];
      }
      // score_c = |d|^2 - |d - mu_c|^2
      CHECK(out[1].data()[i * 3 + c] == Approx(norm2 - dist2).margin(1e-4));
      if (dist2 < best) best = dist2, nearest = c;
    }
    const float* s = out[1].data() + i * 3;
    CHECK(std::max_element(s, s + 3) - s == nearest);
  }

  zoo::IdentityHead bad{"bad", {"x"}, {std::vector<float>(5, 0.0f)}};
  CHECK_THROWS_WITH(zoo::with_identity_head(net, bad), Contains("'bad'") && Contains("16"));
  CHECK_THROWS_WITH(zoo::with_identity_head(net, {"none", {}, {}}), Contains("no enrolled"));
}

TEST_CASE("tenants' identity heads share the whole FaceRecognitionNet", "[model][prefix][data]") {
  const fs::path dir = fs::path(NEXUS_SOURCE_DIR) / "data/face-api/model";
  NEXUS_SKIP_UNLESS_DATA(fs::exists(dir / "face_recognition_model-weights_manifest.json"),
                         "face-api models not in " << dir << " (run scripts/fetch_data.sh)");
  const Graph net = zoo::load_face_recognition_net(dir);
  std::vector<Graph> tenants;
  for (int t = 0; t < 3; ++t) {
    zoo::IdentityHead h{"tenant" + std::to_string(t), {}, {}};
    for (int c = 0; c <= t; ++c) {
      h.labels.push_back("person" + std::to_string(c));
      h.class_means.push_back(std::vector<float>(128, 0.01f * static_cast<float>(c + t)));
    }
    tenants.push_back(zoo::with_identity_head(net, h));
  }
  const std::vector<const Graph*> gs{&tenants[0], &tenants[1], &tenants[2]};
  const PrefixSplit s = split_prefix(gs);
  CHECK(s.shared_weight_bytes == net.weights_bytes());
  REQUIRE(s.boundary.size() == 1);
  CHECK(s.boundary[0].shape == Shape{zoo::kFaceDescriptorSize});
  CHECK(s.suffixes[2].outputs[0].from_prefix);  // the descriptor
  CHECK(s.suffixes[2].graph->weights_bytes() == (3 * 128 + 3) * 4);
}
