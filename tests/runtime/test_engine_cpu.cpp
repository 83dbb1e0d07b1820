// Real time, real model: the face-api FaceRecognitionNet on the CpuBackend behind the Engine
// (small load, generous SLO). The reference is the same graph run directly on its own
// CpuBackend, item by item: the engine's batched, routed result must match it.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <random>

#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#include "nexus/runtime/engine.hpp"

#include "skip.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace std::chrono_literals;

TEST_CASE("cpu: face recognition net served by the Engine matches a direct run", "[runtime][cpu][data]") {
  const std::filesystem::path dir = std::filesystem::path(NEXUS_SOURCE_DIR) / "data/face-api/model";
  NEXUS_SKIP_UNLESS_DATA(std::filesystem::exists(dir / "face_recognition_model-weights_manifest.json"),
                         "face-api models not in " << dir.string() << " (run scripts/fetch_data.sh)");
  auto graph = std::make_shared<model::Graph>(model::zoo::load_face_recognition_net(dir));
  constexpr int kItems = 6;
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(0.f, 255.f);
  std::vector<Tensor> inputs;
  for (int i = 0; i < kItems; ++i) {
    Tensor t(Shape{3, 150, 150});
    for (auto& x : t.values()) x = u(g);
    inputs.push_back(t);
  }
  // Reference: direct runs, batch 1.
  CpuBackend ref(CpuBackendOptions{.threads = 1});
  ref.load(*graph, 1);
  std::vector<Tensor> expected;
  for (auto& t : inputs) expected.push_back(ref.run_one(t.reshape(Shape{1, 3, 150, 150})));

  // Generous profile (planning only): 2 s per item, so the policy never drops at this SLO.
  std::vector<int> b{1, 2, 3, 4};
  std::vector<double> l{2e6, 4e6, 6e6, 8e6};
  Engine e({.devices = "cpu", .cpu_workers = 1});
  e.load_model({.name = "facerec", .profile = BatchProfile("facerec", "cpu", b, l), .graph = graph});
  e.add_query({.name = "describe", .slo = 60s, .expected_rate_rps = 1,
               .stages = {{.name = "rec", .model = "facerec"}}});
  // Wrong shape: refused at the call.
  CHECK_THROWS_AS(e.submit("describe", Tensor(Shape{3, 112, 112})), nexus::Error);
  std::map<RequestId, int> which;
  for (int i = 0; i < kItems; ++i) which[e.submit("describe", inputs[static_cast<std::size_t>(i)])] = i;
  std::vector<QueryResult> rs;
  while (rs.size() < kItems) {
    auto got = e.poll(kItems, 1s);
    for (auto& r : got) rs.push_back(std::move(r));
  }
  e.shutdown();
  REQUIRE(rs.size() == kItems);
  for (const auto& r : rs) {
    REQUIRE(r.ok());
    CHECK(r.met_slo);
    REQUIRE(r.stages.size() == 1);
    const Tensor& got = r.stages[0].outputs.at(0);
    const Tensor& want = expected[static_cast<std::size_t>(which.at(r.id))];
    REQUIRE(got.numel() == model::zoo::kFaceDescriptorSize);
    float max_diff = 0;
    for (std::int64_t k = 0; k < got.numel(); ++k)
      max_diff = std::max(max_diff, std::abs(got.values()[static_cast<std::size_t>(k)] - want.values()[static_cast<std::size_t>(k)]));
    CHECK(max_diff < 1e-4f);
  }
  const auto st = e.stats();
  CHECK(st.completed == kItems);
  CHECK(st.devices.at(0).batches >= 1);
}
