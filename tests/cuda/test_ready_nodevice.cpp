// [cuda][nodevice] The GPU executor's contract with the Engine, checked on the CPU with a fake
// Backend that records what the Engine asks of it (issue 9, "ready before the first request"):
//  - Engine::load_model prepares every batch size the executor may form (1..max_batch), before
//    load_model returns, so no first request meets algorithm search or graph capture; the load
//    time and the device bytes are reported in EngineStats::models.
//  - A device error in the middle of a batch (the CudaBackend throws nexus::Error for a failing
//    CUDA call) fails that batch's requests, and the executor goes on serving the next ones.
#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/exec/backend.hpp"
#include "nexus/runtime/engine.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace std::chrono_literals;

namespace {

/// Everything a FakeGpu saw, shared with the test (the Engine owns the backend).
struct Record {
  std::mutex mu;
  std::set<int> prepared;
  std::vector<int> run_sizes;
  std::vector<bool> run_was_prepared;
  bool prepare_before_first_run = true;
  int fail_runs = 0;  // the next this-many run() calls throw, as a CUDA error mid-batch would
};

class FakeGpu final : public Backend {
 public:
  FakeGpu(std::shared_ptr<Record> r, int max_batch) : r_(std::move(r)), max_batch_(max_batch) {}
  std::string device_name() const override { return "fakegpu"; }
  void load(const model::Graph&, int max_batch) override { max_batch_ = max_batch; }
  void prepare(const std::vector<int>& sizes) override {
    std::lock_guard lock(r_->mu);
    if (!r_->run_sizes.empty()) r_->prepare_before_first_run = false;
    for (int b : sizes) {
      NEXUS_CHECK(b >= 1 && b <= max_batch_, "FakeGpu: batch {} out of range", b);
      r_->prepared.insert(b);
    }
  }
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const int n = static_cast<int>(inputs.at(0).shape()[0]);
    {
      std::lock_guard lock(r_->mu);
      r_->run_sizes.push_back(n);
      r_->run_was_prepared.push_back(r_->prepared.count(n) > 0);
      if (r_->fail_runs > 0) {
        --r_->fail_runs;
        throw_error("cudaGraphLaunch(g, compute) failed: cudaErrorLaunchFailure (layer 'fake', cuda:0)");
      }
    }
    Tensor out(Shape{n, 2});
    for (float& v : out.values()) v = 1.f;
    return {out};
  }
  int max_batch() const override { return max_batch_; }
  Shape input_shape(int) const override { return Shape{4}; }
  std::size_t weights_bytes() const override { return 1000; }
  std::size_t activation_bytes(int batch) const override { return 10 * static_cast<std::size_t>(batch); }
  std::size_t device_bytes() const override { return 5000; }

 private:
  std::shared_ptr<Record> r_;
  int max_batch_ = 0;
};

BatchProfile flat_profile(int max_batch) {
  std::vector<int> b;
  std::vector<double> l;
  for (int i = 1; i <= max_batch; ++i) {
    b.push_back(i);
    l.push_back(1000.0 + 100.0 * i);  // µs: fast, so the policy never drops at a 10 s SLO
  }
  return BatchProfile("fake", "fakegpu", b, l);
}

std::vector<QueryResult> collect(Engine& e, std::size_t n) {
  std::vector<QueryResult> rs;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (rs.size() < n && std::chrono::steady_clock::now() < until)
    for (auto& r : e.poll(n - rs.size(), 200ms)) rs.push_back(std::move(r));
  return rs;
}

}  // namespace

TEST_CASE("load_model prepares every batch size 1..max_batch before serving", "[cuda][nodevice]") {
  auto rec = std::make_shared<Record>();
  Engine e({.devices = "cpu", .cpu_workers = 0});
  e.load_model({.name = "fake",
                .profile = flat_profile(8),
                .make_backend = [rec](const DeviceInfo&) { return std::make_unique<FakeGpu>(rec, 6); },
                .max_batch = 6});
  {
    std::lock_guard lock(rec->mu);
    CHECK(rec->run_sizes.empty());
    CHECK(rec->prepared == std::set<int>{1, 2, 3, 4, 5, 6});  // all the executor may form
  }
  const EngineStats st0 = e.stats();
  REQUIRE(st0.models.count("fake") == 1);
  CHECK(st0.models.at("fake").prepared_batches == 6);
  CHECK(st0.models.at("fake").device_bytes == 5000);
  CHECK(st0.models.at("fake").load_seconds >= 0.0);

  e.add_query({.name = "q", .slo = 10s, .expected_rate_rps = 10, .stages = {{.name = "s", .model = "fake"}}});
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) e.submit("q", Tensor(Shape{4}));
  const auto rs = collect(e, kRequests);
  e.shutdown();
  REQUIRE(rs.size() == kRequests);
  for (const auto& r : rs) CHECK(r.ok());
  std::lock_guard lock(rec->mu);
  CHECK(rec->prepare_before_first_run);
  REQUIRE_FALSE(rec->run_sizes.empty());
  for (std::size_t i = 0; i < rec->run_sizes.size(); ++i) {
    INFO("run " << i << " at batch " << rec->run_sizes[i]);
    CHECK(rec->run_was_prepared[i]);
  }
}

TEST_CASE("a device error mid-batch fails that batch; the executor serves on", "[cuda][nodevice]") {
  auto rec = std::make_shared<Record>();
  rec->fail_runs = 1;
  Engine e({.devices = "cpu", .cpu_workers = 0});
  e.load_model({.name = "fake",
                .profile = flat_profile(4),
                .make_backend = [rec](const DeviceInfo&) { return std::make_unique<FakeGpu>(rec, 4); }});
  e.add_query({.name = "q", .slo = 10s, .expected_rate_rps = 10, .stages = {{.name = "s", .model = "fake"}}});
  // One request alone: its batch is the failing run.
  e.submit("q", Tensor(Shape{4}));
  const auto first = collect(e, 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].status == RequestStatus::kFailed);
  CHECK(first[0].reason == Reason::kBackendError);
  CHECK_THAT(first[0].message, Catch::Matchers::Contains("cudaErrorLaunchFailure"));
  // The executor goes on: the next requests complete.
  for (int i = 0; i < 5; ++i) e.submit("q", Tensor(Shape{4}));
  const auto rest = collect(e, 5);
  e.shutdown();
  REQUIRE(rest.size() == 5);
  for (const auto& r : rest) CHECK(r.ok());
}
