// [cuda] PrefixRunner on the CudaBackend (paper §6.3): the merged batch on the GPU gives, per
// request, the outputs of each member model run alone on the CpuBackend (the oracle), FP32.
// Without a CUDA device it prints "SKIPPED: no CUDA device" and returns (ctest: Skipped).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "../model/prefix_models.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/exec/prefix_runner.hpp"
#include "nexus/model/prefix.hpp"

using namespace nexus;
using namespace nexus::model;
using namespace prefix_test;

TEST_CASE("[cuda] prefix batching on the GPU equals each model alone on the CPU",
          "[cuda][prefix]") {
  if (cuda_device_count() == 0) {
    std::printf("SKIPPED: no CUDA device found; the [cuda] prefix test does not run here\n");
    WARN("SKIPPED: no CUDA device found");
    return;
  }
  const Graph a = variant("a", 1, 1), b = variant("b", 1, 2, 7);
  const Graph t = two_output_variant("t", 1, 5);
  const std::vector<const Graph*> gs{&a, &b, &t};
  PrefixRunner runner([] { return make_cuda_backend(); });
  runner.load(split_prefix(gs), 8);
  const std::vector<int> counts{3, 0, 4};
  const Tensor x = seeded({7, 3, 16, 16}, 42, 1.0f);
  const auto out = runner.run({x}, counts);
  int begin = 0;
  for (int m = 0; m < 3; ++m) {
    if (counts[m] == 0) {
      CHECK(out[m].empty());
      continue;
    }
    CpuBackend cpu(CpuBackendOptions{.threads = 1});
    cpu.load(*gs[m], counts[m]);
    const auto ref = cpu.run({x.slice(begin, begin + counts[m])});
    REQUIRE(out[m].size() == ref.size());
    for (std::size_t o = 0; o < ref.size(); ++o) {
      double diff = 0, scale = 1e-12;
      for (std::int64_t i = 0; i < ref[o].numel(); ++i) {
        diff = std::max(diff, double(std::abs(out[m][o].values()[i] - ref[o].values()[i])));
        scale = std::max(scale, double(std::abs(ref[o].values()[i])));
      }
      CHECK(diff / scale <= 1e-4);  // FP32 tolerance of tests/cuda/test_cuda_backend.cpp
    }
    begin += counts[m];
  }
}
