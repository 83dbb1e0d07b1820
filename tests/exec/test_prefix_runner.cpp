// PrefixRunner on the CpuBackend (paper §6.3): the merged batch gives, per request, the outputs
// of each member model run alone -- the reference is the unsplit model on its own CpuBackend,
// one request at a time, which shares no code path with the split/slice/merge logic.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "../model/prefix_models.hpp"
#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/exec/prefix_runner.hpp"
#include "nexus/model/prefix.hpp"

using namespace nexus;
using namespace nexus::model;
using namespace prefix_test;
using Catch::Matchers::Contains;

namespace {

Tensor images(int n, std::uint64_t seed) { return seeded({n, 3, 16, 16}, seed, 1.0f); }

// max |a - b| / max(|b|, tiny)
double rel_error(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double diff = 0, scale = 1e-12;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    diff = std::max(diff, static_cast<double>(std::abs(a.values()[i] - b.values()[i])));
    scale = std::max(scale, static_cast<double>(std::abs(b.values()[i])));
  }
  return diff / scale;
}

// Each request of `batch` run alone through the whole model.
std::vector<std::vector<Tensor>> alone(const Graph& g, const Tensor& batch) {
  CpuBackend cpu(CpuBackendOptions{.threads = 1});
  cpu.load(g, 1);
  std::vector<std::vector<Tensor>> out;
  for (std::int64_t i = 0; i < batch.shape()[0]; ++i) out.push_back(cpu.run({batch.slice(i, i + 1)}));
  return out;
}

BackendFactory cpu_factory() {
  return [] { return std::make_unique<CpuBackend>(CpuBackendOptions{.threads = 2}); };
}

}  // namespace

TEST_CASE("merged execution equals each model run alone, per request", "[exec][prefix]") {
  const Graph a = variant("a", 1, 1), b = variant("b", 1, 2, 7);
  const Graph t = two_output_variant("t", 1, 5);
  const std::vector<const Graph*> gs{&a, &b, &t};
  PrefixRunner runner(cpu_factory());
  runner.load(split_prefix(gs), 8);
  CHECK(runner.members() == 3);
  CHECK(runner.member_name(1) == "b");
  CHECK(runner.input_shape(0) == Shape{3, 16, 16});

  // Uneven counts, an absent member, and a full batch.
  const std::vector<std::vector<int>> cases = {{2, 3, 1}, {0, 4, 0}, {1, 0, 2}, {3, 3, 2}};
  std::uint64_t seed = 100;
  for (const auto& counts : cases) {
    std::vector<std::vector<Tensor>> member_inputs(3);
    for (int m = 0; m < 3; ++m)
      if (counts[m] > 0) member_inputs[m] = {images(counts[m], ++seed)};
    const auto merged = runner.run_members(member_inputs);
    REQUIRE(merged.size() == 3);
    for (int m = 0; m < 3; ++m) {
      if (counts[m] == 0) {
        CHECK(merged[m].empty());
        continue;
      }
      const auto ref = alone(*gs[m], member_inputs[m][0]);
      REQUIRE(merged[m].size() == ref[0].size());
      for (std::size_t o = 0; o < ref[0].size(); ++o) {
        CHECK(merged[m][o].shape()[0] == counts[m]);
        for (int i = 0; i < counts[m]; ++i)
          CHECK(rel_error(merged[m][o].slice(i, i + 1), ref[i][o]) < 1e-5);
      }
    }
  }
}

TEST_CASE("run() takes one merged batch and slices the prefix output without copying",
          "[exec][prefix]") {
  const Graph a = variant("a", 1, 1), t = two_output_variant("t", 1, 5);
  const std::vector<const Graph*> gs{&a, &t};
  PrefixRunner runner(cpu_factory());
  runner.load(split_prefix(gs), 4);
  const Tensor x = images(4, 7);
  const std::vector<int> counts{1, 3};
  const auto out = runner.run({x}, counts);
  // t's first output is the prefix's "gap" value: a view into the prefix output, not a copy.
  REQUIRE(out[1].size() == 2);
  CHECK(out[1][0].is_view());
  CHECK(out[1][0].shape() == Shape{3, 16});
  const auto ref = alone(t, x.slice(1, 4));
  for (int i = 0; i < 3; ++i) CHECK(rel_error(out[1][0].slice(i, i + 1), ref[i][0]) < 1e-5);
  const auto ref_a = alone(a, x.slice(0, 1));
  CHECK(rel_error(out[0][0], ref_a[0][0]) < 1e-5);
}

TEST_CASE("shared weights are counted once", "[exec][prefix]") {
  std::vector<Graph> variants;
  for (int k = 0; k < 5; ++k) variants.push_back(variant("v" + std::to_string(k), 1, 10 + k));
  std::vector<const Graph*> gs;
  for (const Graph& g : variants) gs.push_back(&g);
  PrefixRunner runner(cpu_factory());
  runner.load(split_prefix(gs), 4);
  const std::size_t backbone = variants[0].weights_bytes() - (5 * 16 + 5) * 4;
  CHECK(runner.shared_weights_bytes() == backbone);
  CHECK(runner.weights_bytes() == backbone + 5 * (5 * 16 + 5) * 4);
  std::size_t separately = 0;
  for (const Graph& g : variants) separately += g.weights_bytes();
  CHECK(runner.unshared_weights_bytes() == separately);
  CHECK(runner.activation_bytes(4) > 0);
  CHECK(runner.device_bytes() == runner.weights_bytes() + runner.activation_bytes(4));
  runner.prepare({1, 2, 3, 4});  // nothing to prepare on the CPU; must not throw
}

TEST_CASE("PrefixRunner rejects bad batches", "[exec][prefix]") {
  const Graph a = variant("a", 1, 1), b = variant("b", 1, 2);
  const std::vector<const Graph*> gs{&a, &b};
  PrefixRunner runner(cpu_factory());
  CHECK_THROWS_WITH(runner.run({images(1, 1)}, std::vector<int>{1}), Contains("before load"));
  runner.load(split_prefix(gs), 4);
  CHECK_THROWS_WITH(runner.run({images(3, 1)}, std::vector<int>{1}), Contains("2 members"));
  CHECK_THROWS_WITH(runner.run({images(3, 1)}, std::vector<int>{1, 1}),
                    Contains("add up to 2"));
  CHECK_THROWS_WITH(runner.run({images(5, 1)}, std::vector<int>{2, 3}), Contains("5"));
  CHECK_THROWS_WITH(runner.run_members({{seeded({1, 3, 8, 8}, 1)}, {}}),
                    Contains("member 'a'") && Contains("[1, 3, 16, 16]"));
  CHECK_THROWS_WITH(PrefixRunner(BackendFactory{}), Contains("factory"));
}
