// Profiler on a fake Backend in virtual time: run() advances a virtual clock by a known ℓ(b) and
// load() fails above a memory limit, so the max-batch search, the timing statistics, memory and
// pre/post-processing have exact expected values. Plus a small real model on the CpuBackend.

#include <catch2/catch.hpp>

#include <functional>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/profile/profiler.hpp"

using namespace nexus;

namespace {

struct FakeDevice {
  std::int64_t now_ns = 0;
  int oom_above = 1 << 30;                       // load(b) throws for b > this
  std::function<double(int)> latency_us;         // ℓ(b)
  int runs = 0;
  std::vector<int> loads;
};

class FakeBackend final : public Backend {
 public:
  explicit FakeBackend(FakeDevice& d) : d_(d) {}
  std::string device_name() const override { return "fake"; }
  void load(const model::Graph&, int max_batch) override {
    d_.loads.push_back(max_batch);
    NEXUS_CHECK(max_batch <= d_.oom_above, "fake: out of memory for batch {}", max_batch);
    max_ = max_batch;
  }
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const auto b = static_cast<int>(inputs.at(0).shape()[0]);
    NEXUS_CHECK(b >= 1 && b <= max_, "fake: batch {} > {}", b, max_);
    CHECK(inputs.at(0).shape() == Shape({b, 3, 4, 4}));
    d_.now_ns += static_cast<std::int64_t>(d_.latency_us(b) * 1000);
    ++d_.runs;
    return {Tensor(Shape({b, 2}))};
  }
  int max_batch() const override { return max_; }
  Shape input_shape(int) const override { return Shape({3, 4, 4}); }
  std::size_t weights_bytes() const override { return 1000; }
  std::size_t activation_bytes(int batch) const override { return 100 * static_cast<std::size_t>(batch); }

 private:
  FakeDevice& d_;
  int max_ = 0;
};

model::Graph tiny_graph() {
  model::GraphBuilder b("tiny");
  auto x = b.input("image", Shape({3, 4, 4}));
  b.output(b.global_avg_pool("gap", x));
  return std::move(b).build();
}

ProfilerOptions virtual_time(FakeDevice& d) {
  ProfilerOptions o;
  o.now = [&d] { return std::chrono::nanoseconds(d.now_ns); };
  return o;
}

}  // namespace

TEST_CASE("max batch: doubling until out of memory, then bisection", "[profiler]") {
  FakeDevice d;
  d.latency_us = [](int b) { return 1000.0 + 100.0 * b; };  // throughput still rising
  d.oom_above = 40;
  Profiler p([&] { return std::make_unique<FakeBackend>(d); }, virtual_time(d));
  CHECK(p.find_max_batch(tiny_graph()) == 40);
  // Probes: 1, 2, 4, 8, 16, 32, 64 (fails), then bisection 48 (fails), 40, 44 (fails), 42, 41.
  CHECK(d.loads == std::vector<int>{1, 2, 4, 8, 16, 32, 64, 48, 40, 44, 42, 41});
}

TEST_CASE("max batch: stops when throughput gains < 1%", "[profiler]") {
  FakeDevice d;
  // ℓ(b) = 100 + 50·b for b ≤ 8, then linear with no fixed cost: T(8) = 8/500, T(16) = 16/1000.
  d.latency_us = [](int b) { return b <= 8 ? 100.0 + 50.0 * b : 62.5 * b; };
  Profiler p([&] { return std::make_unique<FakeBackend>(d); }, virtual_time(d));
  CHECK(p.find_max_batch(tiny_graph()) == 16);
}

TEST_CASE("max batch: min_gain -1 never stops on a plateau, even when throughput falls", "[profiler]") {
  FakeDevice d;
  // A noisy host: ℓ(2) = 3·ℓ(1) (throughput falls at b = 2), then it rises again.
  d.latency_us = [](int b) { return b == 2 ? 300.0 : 100.0 + 10.0 * b; };
  d.oom_above = 32;
  auto o = virtual_time(d);
  o.max_batch = 64;
  CHECK(Profiler([&] { return std::make_unique<FakeBackend>(d); }, o).find_max_batch(tiny_graph()) == 2);
  o.min_gain = -1;
  d.loads.clear();
  CHECK(Profiler([&] { return std::make_unique<FakeBackend>(d); }, o).find_max_batch(tiny_graph()) == 32);
  CHECK(d.loads == std::vector<int>{1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 34, 33});
  o.min_gain = -1.5;
  CHECK_THROWS_WITH(Profiler([&] { return std::make_unique<FakeBackend>(d); }, o), Catch::Contains("min_gain"));
}

TEST_CASE("profile: exact latencies, ≥ 10 repeats, memory, pre/post", "[profiler]") {
  FakeDevice d;
  d.latency_us = [](int b) { return 1000.0 + 100.0 * b; };
  d.oom_above = 6;
  auto o = virtual_time(d);
  o.warmup = 1;
  Profiler p([&] { return std::make_unique<FakeBackend>(d); }, o);
  const auto prof = p.profile(
      tiny_graph(), "tiny", [&] { d.now_ns += 7000; }, [&] { d.now_ns += 3000; });
  CHECK(prof.model() == "tiny");
  CHECK(prof.device() == "fake");
  CHECK(prof.batches() == std::vector<int>{1, 2, 3, 4, 5, 6});
  for (int b = 1; b <= 6; ++b) {
    CHECK(prof.mean_latency(b).count() == 1000 + 100 * b);
    CHECK(prof.latency_std(b).count() == 0);
    CHECK(prof.memory(b) == 1000u + 100u * b);
  }
  CHECK(prof.preprocess().count() == 7);
  CHECK(prof.postprocess().count() == 3);
  // Explicit sparse list: only those batches (and B_max) are timed.
  o.batches = {1, 4};
  const int before = d.runs;
  const auto sparse = Profiler([&] { return std::make_unique<FakeBackend>(d); }, o).profile(tiny_graph(), "tiny");
  CHECK(sparse.batches() == std::vector<int>{1, 4, 6});
  CHECK(sparse.latency(5).count() == 1500);  // interpolated between 4 and 6
  CHECK(d.runs - before >= 3 * 11);           // ≥ 10 timed + 1 warm-up per batch, plus the search
}

TEST_CASE("profiler errors", "[profiler][errors]") {
  FakeDevice d;
  d.latency_us = [](int) { return 10.0; };
  d.oom_above = 0;
  Profiler p([&] { return std::make_unique<FakeBackend>(d); }, virtual_time(d));
  CHECK_THROWS_WITH(p.find_max_batch(tiny_graph()),
                    Catch::Contains("'tiny'") && Catch::Contains("out of memory for batch 1"));
  ProfilerOptions o;
  o.repeats = 5;
  CHECK_THROWS_WITH(Profiler([&] { return std::make_unique<FakeBackend>(d); }, o),
                    Catch::Contains("repeats"));
  CHECK_THROWS_AS(Profiler(Profiler::BackendFactory{}), Error);
}

TEST_CASE("sparse_batches: powers of two and midpoints", "[profiler]") {
  CHECK(sparse_batches(1) == std::vector<int>{1});
  CHECK(sparse_batches(16) == std::vector<int>{1, 2, 3, 4, 6, 8, 12, 16});
  CHECK(sparse_batches(20) == std::vector<int>{1, 2, 3, 4, 6, 8, 12, 16, 20});
}

TEST_CASE("a real model on the CpuBackend gives a sane profile", "[profiler][cpu]") {
  ProfilerOptions o;
  o.max_batch = 4;
  o.warmup = 1;
  Profiler p([] { return std::make_unique<CpuBackend>(CpuBackendOptions{1}); }, o);
  const auto prof = p.profile(tiny_graph(), "tiny");
  CHECK(prof.device() == "cpu");
  CHECK(prof.max_batch() >= 1);
  CHECK(prof.max_batch() <= 4);
  for (int b : prof.batches()) CHECK(prof.mean_latency(b).count() >= 0);
  CHECK(prof.memory(prof.max_batch()) >= prof.memory(1));
}
