// libFuzzer target: an Engine API sequence in virtual time (VirtualClock, sim devices): random
// devices, models, one- and two-stage queries with fan-out, every batch policy, round-robin or
// contending executors, submits with right and wrong input shapes, time steps, polls, re-plans,
// late add_query calls and shutdown. After each sequence it checks the invariant of DESIGN.md:
// every issued RequestId ends in exactly one QueryResult, no result is for an unknown id, and
// EngineStats agrees (submitted = issued, completed + dropped + rejected + failed = submitted,
// nothing in flight). A violation aborts (a libFuzzer crash).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "nexus/core/clock.hpp"
#include "nexus/core/error.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/runtime/engine.hpp"

using namespace nexus;
using namespace nexus::runtime;

namespace {

[[noreturn]] void violated(const char* what, long long a, long long b) {
  std::fprintf(stderr, "engine invariant violated: %s (%lld vs %lld)\n", what, a, b);
  std::abort();
}

BatchProfile profile(const std::string& name, FuzzedDataProvider& in) {
  const double alpha = in.ConsumeIntegralInRange<int>(1, 20000);   // µs per item
  const double beta = in.ConsumeIntegralInRange<int>(0, 50000);    // µs per batch
  const int bmax = in.ConsumeIntegralInRange<int>(1, 32);
  std::vector<int> b;
  std::vector<double> l;
  for (int i = 1; i <= bmax; ++i) {
    b.push_back(i);
    l.push_back(alpha * i + beta);
  }
  return BatchProfile(name, "sim", b, l);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  auto clock = std::make_shared<VirtualClock>();
  EngineOptions o;
  o.clock = clock;
  o.devices = "sim:" + std::to_string(in.ConsumeIntegralInRange<int>(1, 3));
  o.max_queue_per_session = in.ConsumeIntegralInRange<std::size_t>(1, 64);
  // Epoch loop off, 100 ms or 1 s of virtual time; a coarse SLO split (the DP's cost grows with
  // the segments, and the fuzzer needs many sequences per second).
  const int epochs_ms[] = {0, 100, 1000};
  o.epoch = std::chrono::milliseconds(epochs_ms[in.ConsumeIntegralInRange<int>(0, 2)]);
  o.slo_split_segments = 20;
  if (in.ConsumeBool()) o.slo_split = SloSplit::kProportional;
  if (in.ConsumeBool()) o.planner_kind = PlannerKind::kReplicate;
  // The baselines' batch policies, and their executor mode (co-located sessions contend; it
  // refuses prefix batching), under the same exactly-once invariant.
  const dispatch::BatchPolicyKind kinds[] = {dispatch::BatchPolicyKind::kEarlyDrop, dispatch::BatchPolicyKind::kLazyDrop,
                                             dispatch::BatchPolicyKind::kAimd, dispatch::BatchPolicyKind::kMaxBatchTimeout,
                                             dispatch::BatchPolicyKind::kTritonDynamic};
  o.batch_policy.kind = kinds[in.ConsumeIntegralInRange<int>(0, 4)];
  if (in.ConsumeBool()) {
    o.executor.concurrent_sessions = true;
    o.prefix_batching = false;
  }
  Engine e(o);

  const int item = in.ConsumeIntegralInRange<int>(1, 4);  // per-item input shape [item]
  const int n_models = in.ConsumeIntegralInRange<int>(1, 3);
  // Prefix batching: some models declare a shared prefix ("p"), so groups form, re-form when
  // extra members are loaded or unloaded mid-sequence, and serve merged batches.
  auto declared = [&]() -> ModelSpec::DeclaredPrefix {
    if (!in.ConsumeBool()) return {};
    return {"p", in.ConsumeIntegralInRange<int>(0, 100) / 100.0};
  };
  for (int m = 0; m < n_models; ++m)
    e.load_model({.name = "m" + std::to_string(m), .profile = profile("m" + std::to_string(m), in),
                  .input_shape = Shape{item}, .declared_prefix = declared()});
  std::vector<std::string> extra;  // models no query uses: loaded and unloaded at random

  std::vector<std::string> queries;
  auto add_query = [&](int k) {
    QuerySpec q;
    q.name = "q" + std::to_string(k);
    q.slo = std::chrono::microseconds(in.ConsumeIntegralInRange<int>(1, 2000000));
    q.expected_rate_rps = in.ConsumeIntegralInRange<int>(1, 5000);
    const std::string root_model = "m" + std::to_string(in.ConsumeIntegralInRange<int>(0, n_models - 1));
    if (in.ConsumeBool()) {
      const int fanout = in.ConsumeIntegralInRange<int>(0, 3);
      q.stages = {{.name = "a", .model = root_model,
                   .children = {{.stage = "b",
                                 .fanout = [fanout](const StageView& v) {
                                   return std::vector<Tensor>(static_cast<std::size_t>(fanout), v.input);
                                 },
                                 .expected_fanout = double(fanout)}}},
                  {.name = "b", .model = "m" + std::to_string(n_models - 1)}};
    } else {
      q.stages = {{.name = "a", .model = root_model}};
    }
    try {
      e.add_query(std::move(q));
      queries.push_back("q" + std::to_string(k));
    } catch (const Error&) {  // e.g. an SLO no split can meet: declared nothing
    }
  };
  add_query(0);

  std::vector<RequestId> ids;
  std::vector<QueryResult> results;
  bool shut = false;
  int steps = 0;
  while (in.remaining_bytes() > 0 && steps++ < 2000) {
    switch (in.ConsumeIntegralInRange<int>(0, 9)) {
      case 0:
      case 1:
      case 2: {  // submit, mostly with a valid shape
        const std::string q = queries.empty() ? "nope" : queries[in.ConsumeIntegralInRange<std::size_t>(0, queries.size() - 1)];
        Shape s{item};
        const int shape_kind = in.ConsumeIntegralInRange<int>(0, 5);
        if (shape_kind == 1) s = Shape{1, item};
        if (shape_kind == 2) s = Shape{item + 1};
        if (shape_kind == 3) s = Shape{2, item};
        const bool valid = !queries.empty() && !shut && shape_kind != 2 && shape_kind != 3;
        try {
          ids.push_back(e.submit(q, Tensor(s)));
          if (!valid) violated("submit accepted an invalid call", shape_kind, shut);
        } catch (const Error&) {
          if (valid) violated("submit refused a valid call", shape_kind, 0);
        }
        break;
      }
      case 3:  // time passes
        e.run_until(clock->now() + std::chrono::microseconds(in.ConsumeIntegralInRange<int>(0, 100000)));
        break;
      case 4:
        for (auto& r : e.poll(in.ConsumeIntegralInRange<std::size_t>(1, 64))) results.push_back(std::move(r));
        break;
      case 5:
        if (!shut) e.replan();
        break;
      case 6:
        if (!shut && queries.size() < 4) add_query(static_cast<int>(queries.size()) + 1000 * steps);
        break;
      case 8:  // another prefix member (or, with a different input shape, a load-time error)
        if (!shut && extra.size() < 3) {
          const std::string name = "x" + std::to_string(steps);
          const bool mismatched = in.ConsumeIntegralInRange<int>(0, 7) == 0;
          try {
            e.load_model({.name = name, .profile = profile(name, in),
                          .input_shape = Shape{mismatched ? item + 1 : item},
                          .declared_prefix = {"p", in.ConsumeIntegralInRange<int>(1, 100) / 100.0}});
            extra.push_back(name);
          } catch (const Error&) {
          }
        }
        break;
      case 9:  // unload: an extra model (always allowed) or m0 (refused while a query uses it)
        if (!shut) {
          const bool used = extra.empty() || in.ConsumeBool();
          const std::string name = used ? "m0" : extra.back();
          try {
            e.unload_model(name);
            if (!used) extra.pop_back();
          } catch (const Error&) {
            if (!used) violated("unload_model of an unused model refused", 0, 0);
          }
        }
        break;
      case 7:
        if (in.ConsumeIntegralInRange<int>(0, 9) == 0) {
          e.shutdown();
          shut = true;
        }
        break;
    }
  }
  if (!shut) e.run_until_idle();
  e.shutdown();
  for (auto& r : e.poll()) results.push_back(std::move(r));

  std::map<RequestId, int> seen;
  for (const auto& r : results) ++seen[r.id];
  for (RequestId id : ids)
    if (seen[id] != 1) violated("request not ended exactly once", static_cast<long long>(id), seen[id]);
  if (seen.size() != ids.size() || results.size() != ids.size())
    violated("results for unknown requests", static_cast<long long>(results.size()), static_cast<long long>(ids.size()));
  const EngineStats st = e.stats();
  if (st.submitted != ids.size()) violated("stats.submitted", st.submitted, ids.size());
  if (st.completed + st.dropped + st.rejected + st.failed != st.submitted)
    violated("terminal counters do not add up", st.completed + st.dropped + st.rejected + st.failed, st.submitted);
  if (st.in_flight != 0) violated("in flight after shutdown", st.in_flight, 0);
  std::uint64_t completed = 0, failed = 0;
  for (const auto& r : results) {
    completed += r.status == RequestStatus::kCompleted;
    failed += r.status == RequestStatus::kFailed;
  }
  if (completed != st.completed) violated("stats.completed", st.completed, completed);
  if (failed != 0) violated("a sim request failed", failed, 0);
  return 0;
}
