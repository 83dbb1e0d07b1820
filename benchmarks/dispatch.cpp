// Data-plane overhead: submit() latency and sustained requests/s through the Dispatcher,
// BatchPolicy (early drop) and GpuExecutor with a zero-latency backend (NullBackend), on the
// steady clock, results drained by a poll() thread. Prints one JSON object:
//   {"submit_median_ns", "submit_p99_ns", "throughput_rps_1_producer",
//    "throughput_rps_4_producers", ...context}
// Post-processing runs on the executor thread (cpu_workers = 0): there is none to overlap.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "nexus/runtime/engine.hpp"
#include "nexus/sim/sim_backend.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Engine> make_engine() {
  auto e = std::make_unique<Engine>(EngineOptions{.devices = "cpu", .max_queue_per_session = 1u << 20,
                                                  .cpu_workers = 0, .epoch = std::chrono::microseconds(0)});
  std::vector<int> b;
  std::vector<double> l;
  for (int i = 1; i <= 64; ++i) {
    b.push_back(i);
    l.push_back(1.0);  // 1 µs: the policy sees a device that is never the bottleneck
  }
  e->load_model({.name = "null", .profile = BatchProfile("null", "cpu", b, l),
                 .make_backend = [](const DeviceInfo&) { return std::make_unique<sim::NullBackend>(64); }});
  e->add_query({.name = "q", .slo = 1s, .stages = {{.name = "s", .model = "null"}}});
  return e;
}

struct Drain {
  Engine& e;
  std::atomic<std::uint64_t> got{0};
  std::atomic<bool> stop{false};
  std::thread t;
  explicit Drain(Engine& engine) : e(engine) {
    t = std::thread([this] {
      while (!stop.load(std::memory_order_relaxed)) {
        auto rs = e.poll(4096, 1ms);
        got.fetch_add(rs.size(), std::memory_order_relaxed);
      }
    });
  }
  void finish() {
    stop = true;
    t.join();
  }
};

// Sustained throughput with `producers` threads, `total` requests, at most `window` in flight.
double throughput(int producers, std::uint64_t total) {
  auto e = make_engine();
  Drain d(*e);
  std::atomic<std::uint64_t> sent{0};
  const std::uint64_t window = 1u << 16;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int p = 0; p < producers; ++p)
    ts.emplace_back([&] {
      const Tensor empty;
      while (true) {
        const auto k = sent.fetch_add(1, std::memory_order_relaxed);
        if (k >= total) break;
        while (k > d.got.load(std::memory_order_relaxed) + window) std::this_thread::yield();
        e->submit(0, empty);
      }
    });
  for (auto& t : ts) t.join();
  while (d.got.load() < total) std::this_thread::sleep_for(50us);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  d.finish();
  e->shutdown();
  return double(total) / secs;
}

}  // namespace

int main() {
  // submit() latency: one producer, each call timed, with the engine draining behind it.
  std::vector<std::int64_t> ns;
  {
    auto e = make_engine();
    Drain d(*e);
    const Tensor empty;
    const int n = 200000;
    ns.reserve(n);
    for (int i = 0; i < n; ++i) {
      while (std::uint64_t(i) > d.got.load(std::memory_order_relaxed) + (1u << 16)) std::this_thread::yield();
      const auto a = std::chrono::steady_clock::now();
      e->submit(0, empty);
      const auto b = std::chrono::steady_clock::now();
      ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(b - a).count());
    }
    while (d.got.load() < std::uint64_t(n)) std::this_thread::sleep_for(50us);
    d.finish();
    e->shutdown();
  }
  std::sort(ns.begin(), ns.end());
  const auto median = ns[ns.size() / 2];
  const auto p99 = ns[ns.size() * 99 / 100];
  std::fprintf(stderr, "submit: median %lld ns\n", static_cast<long long>(median));
  const double rps1 = throughput(1, 2000000);
  std::fprintf(stderr, "1 producer: %.0f req/s\n", rps1);
  const double rps4 = throughput(4, 2000000);
  // The machine's 1-minute load average: other processes share these cores.
  double load = -1;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &load) != 1) load = -1;
    std::fclose(f);
  }
  std::printf(
      "{\"submit_median_ns\": %lld, \"submit_p99_ns\": %lld, \"throughput_rps_1_producer\": %.0f, "
      "\"throughput_rps_4_producers\": %.0f, \"requests\": 2000000, \"backend\": \"NullBackend\", "
      "\"policy\": \"early_drop\", \"cpu_workers\": 0, \"hardware_threads\": %u, "
      "\"load_average_1min\": %.2f}\n",
      static_cast<long long>(median), static_cast<long long>(p99), rps1, rps4,
      std::thread::hardware_concurrency(), load);
  return 0;
}
