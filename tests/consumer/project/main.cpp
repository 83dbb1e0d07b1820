// A tiny outside project: links the installed nexus, serves a few requests on a simulated device
// in virtual time, takes over the library's log records, and (with the observe component)
// renders the metrics; with the onnx component it lists the ONNX ops.
#include <nexus/core/log.hpp>
#include <nexus/runtime/engine.hpp>
#ifdef NEXUS_HAVE_OBSERVE
#include <nexus/observe/http_exporter.hpp>
#endif
#ifdef NEXUS_WITH_ONNX
#include <nexus/model/onnx.hpp>
#endif

#include <cstdio>
#include <memory>

int main() {
  using namespace std::chrono_literals;
  int records = 0;
  nexus::log::set_handler([&](const nexus::log::Record&) { ++records; });
  nexus::log::emit(nexus::log::Level::kInfo, "consumer_start", {{"pid", 1}});

  auto clock = std::make_shared<nexus::VirtualClock>();
  nexus::runtime::Engine engine({.devices = "sim:1", .clock = clock});
  engine.load_model({.name = "m", .profile = nexus::BatchProfile("m", "sim", {1, 2, 4}, {1000, 1500, 2500})});
  engine.add_query({.name = "q", .slo = 50ms, .stages = {{.name = "s", .model = "m"}}});
  for (int i = 0; i < 10; ++i) engine.submit("q", nexus::Tensor());
  engine.run_until_idle();
  const auto results = engine.poll();
  std::printf("results=%zu completed=%llu log_records=%d\n", results.size(),
              static_cast<unsigned long long>(engine.stats().completed), records);
  bool ok = results.size() == 10 && records >= 1;
#ifdef NEXUS_HAVE_OBSERVE
  const std::string text = nexus::observe::metrics_text(engine);
  std::printf("metrics_text: %zu bytes\n", text.size());
  ok = ok && text.find("nexus_query_arrivals_total{query=\"q\"} 10") != std::string::npos;
#endif
#ifdef NEXUS_WITH_ONNX
  std::printf("onnx ops: %zu\n", nexus::model::onnx_supported_ops().size());
  ok = ok && !nexus::model::onnx_supported_ops().empty();
#endif
  return ok ? 0 : 1;
}
