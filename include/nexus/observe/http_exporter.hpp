#pragma once
// nexus_observe: a running Engine seen from outside, over HTTP (DESIGN.md "Where new parts go":
// an optional target beside runtime/, so the core library has no HTTP dependency).
//
//   nexus::runtime::Engine engine(...);
//   nexus::observe::HttpExporter exporter(engine, "127.0.0.1:9090");   // ":0" = any free port
//   // GET /metrics  Prometheus text exposition 0.0.4, built from engine.stats() at each scrape
//   // GET /healthz  200 "ok" while the exporter serves (liveness)
//   // GET /readyz   200 when models are loaded, a query is declared and the plan routes every
//   //               session; 503 with the reason otherwise (and after engine.shutdown())
//
// Metrics (all from EngineStats, the one set of counters the Engine keeps; names nexus_*):
//   per query:   requests_total{status}, query_arrivals_total, query_good_total,
//                query_not_completed_total{reason}, query_latency_seconds (histogram),
//                query_latency_quantile_seconds{quantile}
//   per session: session_{arrivals,completions,good,batches}_total, session_drops_total{reason},
//                session_batch_size (histogram), session_batch_size_mean, session_rate_rps,
//                session_latency_quantile_seconds, session_stage_budget_seconds (the plan's),
//                session_planned_rate_rps, session_admission{state}
//   per device:  device_busy_seconds_total, device_batches_total, device_items_total,
//                device_occupancy (measured: busy / elapsed), device_occupancy_planned (the
//                plan's Σ ℓ(b)/d of the slots folded onto the device)
//   engine:      in_flight, plan_gpus (slots), plan_rejected_sessions, plan_replans_total,
//                plan_kept_total, ready (0/1)
// The text is prometheus-cpp's TextSerializer; the HTTP server is a small socket server of ours
// (civetweb, prometheus-cpp's pull Exposer, cannot start its threads in a process that links
// cuBLASLt: see src/observe/http_exporter.cpp).
//
// Thread-safety: the exporter's threads call Engine::stats(), which is safe concurrently with
// every other Engine call. The Engine must outlive the exporter. Not for virtual-time engines
// driven from another thread (stats() then races with run_until()).

#include <memory>
#include <string>

#include "nexus/runtime/engine.hpp"

namespace nexus::observe {

/// The engine's metrics in the Prometheus text exposition format 0.0.4 (what /metrics serves).
std::string metrics_text(const runtime::Engine& engine);

/// Readiness of an engine to serve (what /readyz answers).
struct Readiness {
  bool ready = false;
  std::string reason;   ///< why not, or a one-line summary when ready
};
Readiness readiness(const runtime::Engine& engine);

class HttpExporter {
 public:
  /// Starts serving on `bind_address` ("host:port"; port 0 picks a free port, see port()) with
  /// `http_threads` threads, each answering one request per connection (HTTP/1.1, Connection: close).
  /// Throws nexus::Error naming the address when it cannot listen there.
  HttpExporter(const runtime::Engine& engine, const std::string& bind_address,
               int http_threads = 2);
  /// Stops the server (waits for the requests being answered).
  ~HttpExporter();
  HttpExporter(const HttpExporter&) = delete;
  HttpExporter& operator=(const HttpExporter&) = delete;

  /// The port it listens on.
  int port() const;
  /// "http://host:port".
  std::string url() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus::observe
