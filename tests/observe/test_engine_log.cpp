// The Engine's structured log records (nexus/core/log.hpp), taken over by the application's
// handler: a plan swap when a query is declared, a rejected session, rate-limited records of
// requests not completed (by session and reason) and one record per failed batch.
#include <catch2/catch.hpp>

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "nexus/core/log.hpp"
#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace nexus::testing;
using namespace std::chrono_literals;

namespace {

struct Rec {
  log::Level level;
  std::string event;
  std::map<std::string, std::string> fields;
};

/// Captures every record at >= `level` for the lifetime of the object.
struct Capture {
  std::mutex mu;
  std::vector<Rec> recs;
  log::Level saved = log::level();
  explicit Capture(log::Level level) {
    log::set_level(level);
    log::set_handler([this](const log::Record& r) {
      Rec x{r.level, std::string(r.event), {}};
      for (const auto& f : r.fields) x.fields[std::string(f.key)] = f.value;
      std::lock_guard lock(mu);
      recs.push_back(std::move(x));
    });
  }
  ~Capture() {
    log::set_handler({});
    log::set_level(saved);
  }
  std::vector<Rec> of(const std::string& event) {
    std::vector<Rec> out;
    for (const auto& r : recs)
      if (r.event == event) out.push_back(r);
    return out;
  }
};

}  // namespace

TEST_CASE("log: the engine reports plan swaps, drops by reason and backend failures", "[observe][log]") {
  Capture cap(log::Level::kInfo);
  SimRig rig({.devices = "sim:1", .max_queue_per_session = 64, .epoch = 0us});
  const auto prof = linear_profile("m", 1500, 5000, 32);
  rig.engine->load_model({.name = "m", .profile = prof,
                          .make_backend = [&](const DeviceInfo& d) -> std::unique_ptr<Backend> {
                            return std::make_unique<sim::SimBackend>(
                                prof, rig.clock, sim::SimBackendOptions{.fail_every = 20, .device = d.name});
                          }});
  rig.engine->add_query({.name = "q", .slo = 100ms, .expected_rate_rps = 300, .stages = {{.name = "s", .model = "m"}}});
  const auto swaps = cap.of("plan_swap");
  REQUIRE(swaps.size() == 1);
  CHECK(swaps[0].level == log::Level::kInfo);
  CHECK(swaps[0].fields.at("gpus") == std::to_string(rig.engine->plan().num_gpus()));
  CHECK(swaps[0].fields.at("sessions") == "1");
  CHECK(swaps[0].fields.at("rejected") == "0");

  // 10x overload: deadline drops and queue-full rejections; every 20th batch throws.
  const auto rs = rig.run("q", sim::poisson_arrivals(3000, 2s, 1), Tensor());
  const auto st = rig.engine->stats();
  const auto& s = st.sessions.at("q/s");
  REQUIRE(s.drops.count("deadline"));
  REQUIRE(s.drops.count("backend_error"));
  // One record per power of two of each reason's count: 1, 2, 4, ... <= total.
  std::map<std::string, std::vector<std::uint64_t>> totals;
  for (const auto& r : cap.of("requests_not_completed")) {
    CHECK(r.level == log::Level::kWarn);
    CHECK(r.fields.at("session") == "q/s");
    totals[r.fields.at("reason")].push_back(std::stoull(r.fields.at("total")));
  }
  for (const auto& [reason, n] : s.drops) {
    INFO(reason);
    std::vector<std::uint64_t> want;
    for (std::uint64_t k = 1; k <= n; k *= 2) want.push_back(k);
    CHECK(totals[reason] == want);
  }
  // Failed batches: one error record each, naming the device and the backend's message.
  const auto errors = cap.of("backend_error");
  REQUIRE(!errors.empty());
  CHECK(errors.size() <= s.drops.at("backend_error"));
  CHECK(errors[0].level == log::Level::kError);
  CHECK(errors[0].fields.at("device") == "sim:0");
  CHECK(!errors[0].fields.at("error").empty());
  CHECK(rs.size() == st.submitted);
}

TEST_CASE("log: a session the plan cannot serve is a warning naming it", "[observe][log]") {
  Capture cap(log::Level::kInfo);
  // A planner that refuses every session, as a packer does when nothing fits.
  PlannerFn refuse = [](const PlanRequest& r) {
    Plan p;
    for (const auto& s : r.sessions) p.rejected.push_back({s.id, "no device has room (test planner)", {}});
    return p;
  };
  SimRig rig({.devices = "sim:1", .epoch = 0us, .planner = refuse});
  rig.engine->load_model({.name = "m", .profile = linear_profile("m", 1500, 5000, 32)});
  rig.engine->add_query({.name = "q", .slo = 100ms, .stages = {{.name = "s", .model = "m"}}});
  const auto rej = cap.of("session_rejected");
  REQUIRE(rej.size() == 1);
  CHECK(rej[0].level == log::Level::kWarn);
  CHECK(rej[0].fields.at("session") == "q/s");
  CHECK(rej[0].fields.at("reason") == "no device has room (test planner)");
  // A request for it is rejected (no route) and logged once, as the first of its reason.
  (void)rig.run("q", {rig.clock->now()}, Tensor());
  const auto nc = cap.of("requests_not_completed");
  REQUIRE(nc.size() == 1);
  CHECK(nc[0].fields.at("reason") == "no_route");
  CHECK(nc[0].fields.at("status") == "rejected");
  // Re-planning to the same plan is not news: debug only, so nothing more at info.
  rig.engine->replan();
  CHECK(cap.of("session_rejected").size() == 1);
  CHECK(cap.of("plan_swap").size() == 1);
}
