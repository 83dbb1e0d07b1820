// Faults on the real threaded Engine (SteadyClock: executor, CPU-pool and epoch threads run; the
// test backend sleeps ℓ(b) like a device). Each fault: every request ends exactly once, the
// executor keeps serving after the fault, and the metrics count the failures.
// Faults: a backend throwing on every Nth batch, batches taking 10x their profile, a model failing
// to load on one of several devices, a stage function throwing, a consumer polling slowly.
// No timed assertions; run under ThreadSanitizer by scripts/test_tsan.sh (label runtime).
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "nexus/core/error.hpp"
#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace nexus::testing;
using namespace std::chrono_literals;

namespace {

struct FaultOptions {
  int throw_every = 0;           ///< run() number k·throw_every throws nexus::Error
  int slow_every = 0;            ///< run() number k·slow_every takes slow_factor × ℓ(b)
  double slow_factor = 10.0;
  int fail_load_on_device = -1;  ///< load() throws on this device index
};

// A device that sleeps the profile's ℓ(b) on the steady clock (SimBackend) and injects faults.
class FaultyBackend final : public Backend {
 public:
  FaultyBackend(const BatchProfile& profile, const DeviceInfo& device, FaultOptions o)
      : inner_(profile, std::make_shared<SteadyClock>(), sim::SimBackendOptions{.device = device.name}),
        device_(device),
        o_(o) {}
  std::string device_name() const override { return inner_.device_name(); }
  void load(const model::Graph& g, int max_batch) override {
    fail_load_here();
    inner_.load(g, max_batch);
  }
  // The Engine prepares every batch size at load_model (graph or not): a load failure there.
  void prepare(const std::vector<int>& sizes) override {
    fail_load_here();
    inner_.prepare(sizes);
  }
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override {
    const int n = runs_.fetch_add(1) + 1;
    if (o_.throw_every > 0 && n % o_.throw_every == 0)
      throw_error("injected backend fault in batch {} on {}", n, device_.name);
    if (o_.slow_every > 0 && n % o_.slow_every == 0) {
      const int b = inputs.empty() ? 1 : static_cast<int>(inputs[0].shape().rank() ? inputs[0].shape()[0] : 1);
      std::this_thread::sleep_for((o_.slow_factor - 1.0) * inner_.batch_time(std::max(1, b)));
    }
    return inner_.run(inputs);
  }
  int max_batch() const override { return inner_.max_batch(); }
  Shape input_shape(int i = 0) const override { return inner_.input_shape(i); }
  std::size_t weights_bytes() const override { return inner_.weights_bytes(); }
  std::size_t activation_bytes(int b) const override { return inner_.activation_bytes(b); }

 private:
  void fail_load_here() const {
    if (device_.index == o_.fail_load_on_device)
      throw_error("injected load failure: out of device memory on {}", device_.name);
  }
  sim::SimBackend inner_;
  DeviceInfo device_;
  FaultOptions o_;
  std::atomic<int> runs_{0};
};

BackendFactory faulty(const BatchProfile& p, FaultOptions o) {
  return [p, o](const DeviceInfo& d) -> std::unique_ptr<Backend> {
    return std::make_unique<FaultyBackend>(p, d, o);
  };
}

// Polls on its own thread; `per_poll` and `pause` make it a slow consumer.
struct Consumer {
  Engine& engine;
  std::size_t per_poll;
  Duration pause;
  std::mutex mu;
  std::vector<QueryResult> results;
  std::atomic<bool> stop{false};
  std::thread thread;
  Consumer(Engine& e, std::size_t n = 256, Duration p = Duration::zero()) : engine(e), per_poll(n), pause(p) {
    thread = std::thread([this] {
      while (!stop.load()) {
        auto rs = engine.poll(per_poll, 2ms);
        {
          std::lock_guard lock(mu);
          for (auto& r : rs) results.push_back(std::move(r));
        }
        if (pause > Duration::zero()) std::this_thread::sleep_for(pause);
      }
    });
  }
  std::vector<QueryResult> finish() {
    stop = true;
    thread.join();
    for (auto& r : engine.poll()) results.push_back(std::move(r));
    return std::move(results);
  }
  ~Consumer() {  // a failed REQUIRE leaves the test early: still join
    stop = true;
    if (thread.joinable()) thread.join();
  }
};

// Submits `n` requests from `threads` producers, `gap` apart per producer.
std::vector<RequestId> produce(Engine& e, const std::string& q, int threads, int n, Duration gap) {
  std::mutex mu;
  std::vector<RequestId> ids;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&] {
      std::vector<RequestId> mine;
      for (int i = 0; i < n / threads; ++i) {
        mine.push_back(e.submit(q, Tensor()));
        std::this_thread::sleep_for(gap);
      }
      std::lock_guard lock(mu);
      ids.insert(ids.end(), mine.begin(), mine.end());
    });
  for (auto& t : ts) t.join();
  return ids;
}

struct Tally {
  std::size_t completed = 0, dropped = 0, rejected = 0, failed = 0;
  RequestId last_completed = 0, first_failed = 0;
};

Tally tally(const std::vector<QueryResult>& rs) {
  Tally t;
  for (const auto& r : rs) {
    switch (r.status) {
      case RequestStatus::kCompleted:
        ++t.completed;
        t.last_completed = std::max(t.last_completed, r.id);
        break;
      case RequestStatus::kDropped: ++t.dropped; break;
      case RequestStatus::kRejected: ++t.rejected; break;
      case RequestStatus::kFailed:
        ++t.failed;
        if (t.first_failed == 0 || r.id < t.first_failed) t.first_failed = r.id;
        break;
    }
  }
  return t;
}

// The engine's counters agree with what the consumer received, and nothing is in flight.
void check_counters(const Engine& e, const std::vector<QueryResult>& rs, const std::string& query) {
  const Tally t = tally(rs);
  const EngineStats st = e.stats();
  CHECK(st.submitted == rs.size());
  CHECK(st.completed == t.completed);
  CHECK(st.dropped == t.dropped);
  CHECK(st.rejected == t.rejected);
  CHECK(st.failed == t.failed);
  CHECK(st.in_flight == 0);
  const auto& qm = st.queries.at(query);
  CHECK(qm.failed == t.failed);
  CHECK(qm.completions == t.completed);
}

const BatchProfile kProfile = linear_profile("m", 20, 100, 16);  // ℓ(b) = 20b + 100 µs

}  // namespace

TEST_CASE("faults: a backend throwing on every 4th batch fails those requests, serves the rest",
          "[runtime][faults]") {
  Engine e({.devices = "sim:2", .cpu_workers = 2});
  e.load_model({.name = "m", .profile = kProfile, .make_backend = faulty(kProfile, {.throw_every = 4})});
  e.add_query({.name = "q", .slo = 50ms, .expected_rate_rps = 4000, .stages = {{.name = "s", .model = "m"}}});
  Consumer c(e);
  const auto ids = produce(e, "q", 2, 2000, 200us);
  e.shutdown();
  const auto rs = c.finish();
  REQUIRE(each_exactly_once(ids, rs));
  const Tally t = tally(rs);
  CHECK(t.failed > 0);
  CHECK(t.completed > 0);
  // The executor keeps serving: requests submitted after the first failure still complete.
  CHECK(t.last_completed > t.first_failed);
  for (const auto& r : rs)
    if (r.status == RequestStatus::kFailed) {
      CHECK(r.reason == Reason::kBackendError);
      CHECK_THAT(r.message, Catch::Contains("injected backend fault"));
    }
  check_counters(e, rs, "q");
}

TEST_CASE("faults: batches taking 10x their profile end every request once and serving goes on",
          "[runtime][faults]") {
  Engine e({.devices = "sim:2", .cpu_workers = 1});
  e.load_model({.name = "m", .profile = kProfile,
                .make_backend = faulty(kProfile, {.slow_every = 5, .slow_factor = 10.0})});
  e.add_query({.name = "q", .slo = 20ms, .expected_rate_rps = 4000, .stages = {{.name = "s", .model = "m"}}});
  Consumer c(e);
  const auto ids = produce(e, "q", 2, 2000, 200us);
  e.shutdown();
  const auto rs = c.finish();
  REQUIRE(each_exactly_once(ids, rs));
  const Tally t = tally(rs);
  CHECK(t.completed > 0);
  CHECK(t.failed == 0);
  CHECK(t.completed + t.dropped + t.rejected == ids.size());
  // Requests late because of a slow batch are counted as not good (or dropped), never lost.
  const EngineStats st = e.stats();
  std::size_t late = 0;
  for (const auto& r : rs)
    if (r.ok() && !r.met_slo) ++late;
  CHECK(st.good + late == t.completed);
  check_counters(e, rs, "q");
}

TEST_CASE("faults: a model failing to load on one of several devices is an error; the engine serves on",
          "[runtime][faults]") {
  Engine e({.devices = "sim:3", .cpu_workers = 1});
  e.load_model({.name = "good", .profile = kProfile});
  e.add_query({.name = "q", .slo = 50ms, .expected_rate_rps = 2000, .stages = {{.name = "s", .model = "good"}}});
  // "bad" loads on sim:0, then fails on sim:1: load_model throws, nothing of "bad" stays.
  CHECK_THROWS_WITH(e.load_model({.name = "bad", .profile = kProfile,
                                  .make_backend = faulty(kProfile, {.fail_load_on_device = 1})}),
                    Catch::Contains("injected load failure") && Catch::Contains("sim:1"));
  CHECK_THROWS_AS(e.add_query({.name = "q2", .slo = 50ms, .stages = {{.name = "s", .model = "bad"}}}),
                  nexus::Error);
  Consumer c(e);
  auto ids = produce(e, "q", 2, 1000, 200us);
  // The name is free again: a working load of "bad" succeeds and serves.
  e.load_model({.name = "bad", .profile = kProfile});
  e.add_query({.name = "q2", .slo = 50ms, .expected_rate_rps = 1000, .stages = {{.name = "s", .model = "bad"}}});
  const auto ids2 = produce(e, "q2", 1, 300, 200us);
  e.shutdown();
  auto rs = c.finish();
  ids.insert(ids.end(), ids2.begin(), ids2.end());
  REQUIRE(each_exactly_once(ids, rs));
  const Tally t = tally(rs);
  CHECK(t.failed == 0);
  CHECK(t.completed > 0);
  const EngineStats st = e.stats();
  CHECK(st.queries.at("q2").completions > 0);
  CHECK(st.submitted == ids.size());
  CHECK(st.in_flight == 0);
}

TEST_CASE("faults: stage functions throwing fail their requests with the message; others complete",
          "[runtime][faults]") {
  Engine e({.devices = "sim:2", .cpu_workers = 2});
  e.load_model({.name = "det", .profile = kProfile});
  e.load_model({.name = "rec", .profile = linear_profile("rec", 10, 100, 32)});
  std::atomic<int> pre{0}, post{0}, fan{0};
  e.add_query(
      {.name = "faces", .slo = 100ms, .expected_rate_rps = 2000,
       .stages = {{.name = "detect", .model = "det",
                   .preprocess = [&](const Tensor& t) {
                     if (++pre % 7 == 0) throw std::runtime_error("injected preprocess fault");
                     return t;
                   },
                   .postprocess = [&](std::vector<Tensor> out, const Tensor&) {
                     if (++post % 11 == 0) throw nexus::Error("injected postprocess fault");
                     return out;
                   },
                   .children = {{.stage = "recognize",
                                 .fanout = [&](const StageView& v) {
                                   if (++fan % 13 == 0) throw std::runtime_error("injected fan-out fault");
                                   return std::vector<Tensor>(2, v.outputs.at(0));
                                 },
                                 .expected_fanout = 2}}},
                  {.name = "recognize", .model = "rec"}}});
  Consumer c(e);
  const auto ids = produce(e, "faces", 2, 1500, 300us);
  e.shutdown();
  const auto rs = c.finish();
  REQUIRE(each_exactly_once(ids, rs));
  const Tally t = tally(rs);
  CHECK(t.failed > 0);
  CHECK(t.completed > 0);
  CHECK(t.last_completed > t.first_failed);
  int pre_seen = 0, post_seen = 0, fan_seen = 0;
  for (const auto& r : rs)
    if (r.status == RequestStatus::kFailed) {
      CHECK(r.reason == Reason::kStageError);
      CHECK(r.stage == "detect");
      pre_seen += r.message.find("injected preprocess fault") != std::string::npos;
      post_seen += r.message.find("injected postprocess fault") != std::string::npos;
      fan_seen += r.message.find("injected fan-out fault") != std::string::npos;
    }
  CHECK(pre_seen > 0);
  CHECK(post_seen > 0);
  CHECK(fan_seen > 0);
  CHECK(pre_seen + post_seen + fan_seen == static_cast<int>(t.failed));
  check_counters(e, rs, "faces");
}

TEST_CASE("faults: a consumer polling slowly does not stall the executors or lose results",
          "[runtime][faults]") {
  Engine e({.devices = "sim:2", .cpu_workers = 1});
  e.load_model({.name = "m", .profile = kProfile});
  e.add_query({.name = "q", .slo = 50ms, .expected_rate_rps = 4000, .stages = {{.name = "s", .model = "m"}}});
  Consumer c(e, /*per_poll=*/4, /*pause=*/5ms);  // <= 800 results/s
  const auto ids = produce(e, "q", 2, 2000, 100us);
  // The executors finish everything while the consumer still lags far behind.
  for (int i = 0; i < 2000 && e.stats().in_flight > 0; ++i) std::this_thread::sleep_for(1ms);
  const EngineStats st = e.stats();
  CHECK(st.in_flight == 0);
  std::size_t received = 0;
  {
    std::lock_guard lock(c.mu);
    received = c.results.size();
  }
  CHECK(received < ids.size());
  // Served requests met their SLO although nobody collected them yet: results wait in the
  // completion queue, the executors do not.
  CHECK(st.good > 0);
  e.shutdown();
  const auto rs = c.finish();
  REQUIRE(each_exactly_once(ids, rs));
  check_counters(e, rs, "q");
}
