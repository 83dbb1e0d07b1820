// The README's 30-line tour of the C++ API: profile a model on this machine's CPU, serve it
// behind the Engine under a 500 ms SLO, submit 40 requests, poll every result exactly once.
#include <nexus/exec/cpu_backend.hpp>
#include <nexus/model/zoo/standard.hpp>
#include <nexus/profile/profiler.hpp>
#include <nexus/runtime/engine.hpp>

#include <fmt/core.h>
#include <memory>

int main() {
  using namespace nexus;
  using namespace std::chrono_literals;
  auto graph = std::make_shared<model::Graph>(model::zoo::mobilenet_v1());   // seeded weights
  ProfilerOptions popt{.max_batch = 8, .batches = {1, 2, 4, 8}};
  Profiler profiler([] { return std::make_unique<CpuBackend>(); }, popt);
  BatchProfile profile = profiler.profile(*graph, "mobilenet_v1");      // ℓ(b), memory

  runtime::Engine engine({.devices = "cpu"});
  engine.load_model({.name = "mobilenet_v1", .profile = profile, .graph = graph});
  engine.add_query({.name = "classify", .slo = 500ms, .expected_rate_rps = 10,
                    .stages = {{.name = "cnn", .model = "mobilenet_v1"}}});
  for (int i = 0; i < 40; ++i) engine.submit("classify", Tensor(Shape{3, 224, 224}));
  engine.shutdown();                                         // drains: every request ends
  int good = 0, total = 0;
  for (const runtime::QueryResult& r : engine.poll()) {
    ++total;
    good += r.met_slo;
    if (!r.ok()) fmt::print("request {}: {} ({})\n", r.id, runtime::to_string(r.status), r.message);
  }
  fmt::print("{} of {} requests within the SLO; plan: {} device slot(s)\n", good, total,
             engine.plan().gpus.size());
}
