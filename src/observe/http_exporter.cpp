// nexus_observe (nexus/observe/http_exporter.hpp): EngineStats -> Prometheus metric families at
// each scrape (a prometheus::Collectable), served by prometheus-cpp's pull Exposer; /healthz and
// /readyz answered by the same civetweb server through its begin_request callback.
#include "nexus/observe/http_exporter.hpp"

#include <CivetServer.h>
#include <civetweb.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <vector>

#include "nexus/core/error.hpp"

namespace nexus::observe {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

/// Appends families and samples; one place decides where a value goes for each metric type.
class Families {
 public:
  MetricFamily& family(std::string name, std::string help, MetricType type) {
    out_.push_back(MetricFamily{std::move(name), std::move(help), type, {}});
    return out_.back();
  }
  static void sample(MetricFamily& f, Labels labels, double value) {
    ClientMetric m;
    m.label = std::move(labels);
    if (f.type == MetricType::Counter) {
      m.counter.value = value;
    } else if (f.type == MetricType::Gauge) {
      m.gauge.value = value;
    } else {
      m.untyped.value = value;
    }
    f.metric.push_back(std::move(m));
  }
  /// A histogram sample from a latency summary (buckets kLatencyBucketsSeconds).
  static void latency(MetricFamily& f, Labels labels, const runtime::LatencySummary& s) {
    ClientMetric m;
    m.label = std::move(labels);
    m.histogram.sample_count = s.count;
    m.histogram.sample_sum = s.sum_seconds;
    for (std::size_t i = 0; i < runtime::kLatencyBucketsSeconds.size(); ++i)
      m.histogram.bucket.push_back({s.cumulative[i], runtime::kLatencyBucketsSeconds[i]});
    m.histogram.bucket.push_back({s.count, std::numeric_limits<double>::infinity()});
    f.metric.push_back(std::move(m));
  }
  std::vector<MetricFamily> take() { return std::move(out_); }

 private:
  std::vector<MetricFamily> out_;
};

// Families are kept in a deque-like vector, and `family()` returns a reference into it: fill
// each family before opening the next.
std::vector<MetricFamily> collect(const runtime::Engine& engine) {
  const runtime::EngineStats st = engine.stats();
  const Readiness ready = readiness(engine);
  Families fs;
  {
    auto& f = fs.family("nexus_requests_total", "Submitted requests by terminal status.", MetricType::Counter);
    for (const auto& [name, q] : st.queries) {
      Families::sample(f, {{"query", name}, {"status", "completed"}}, double(q.completions));
      Families::sample(f, {{"query", name}, {"status", "dropped"}}, double(q.dropped));
      Families::sample(f, {{"query", name}, {"status", "rejected"}}, double(q.rejected));
      Families::sample(f, {{"query", name}, {"status", "failed"}}, double(q.failed));
    }
  }
  {
    auto& f = fs.family("nexus_query_arrivals_total", "Requests submitted per query.", MetricType::Counter);
    for (const auto& [name, q] : st.queries) Families::sample(f, {{"query", name}}, double(q.arrivals));
  }
  {
    auto& f = fs.family("nexus_query_good_total", "Requests completed within the query SLO.", MetricType::Counter);
    for (const auto& [name, q] : st.queries) Families::sample(f, {{"query", name}}, double(q.good));
  }
  {
    auto& f = fs.family("nexus_query_not_completed_total", "Requests not completed, by reason.",
                        MetricType::Counter);
    for (const auto& [name, q] : st.queries)
      for (const auto& [reason, v] : q.reasons) Families::sample(f, {{"query", name}, {"reason", reason}}, double(v));
  }
  {
    auto& f = fs.family("nexus_query_latency_seconds", "End-to-end latency of completed requests.",
                        MetricType::Histogram);
    for (const auto& [name, q] : st.queries) Families::latency(f, {{"query", name}}, q.latency);
  }
  {
    auto& f = fs.family("nexus_query_latency_quantile_seconds",
                        "Latency quantiles of completed requests (1 = max).", MetricType::Gauge);
    for (const auto& [name, q] : st.queries) {
      Families::sample(f, {{"query", name}, {"quantile", "0.5"}}, q.latency.p50_us * 1e-6);
      Families::sample(f, {{"query", name}, {"quantile", "0.9"}}, q.latency.p90_us * 1e-6);
      Families::sample(f, {{"query", name}, {"quantile", "0.99"}}, q.latency.p99_us * 1e-6);
      Families::sample(f, {{"query", name}, {"quantile", "1"}}, q.latency.max_us * 1e-6);
    }
  }
  auto per_session = [&](const char* name, const char* help, MetricType type, auto value) {
    auto& f = fs.family(name, help, type);
    for (const auto& [id, s] : st.sessions) Families::sample(f, {{"session", id}}, value(id, s));
  };
  using S = runtime::SessionMetricsSnapshot;
  per_session("nexus_session_arrivals_total", "Stage items routed to a session.", MetricType::Counter,
              [](const std::string&, const S& s) { return double(s.arrivals); });
  per_session("nexus_session_completions_total", "Stage items that ran.", MetricType::Counter,
              [](const std::string&, const S& s) { return double(s.completions); });
  per_session("nexus_session_good_total", "Stage items finished by their stage deadline.", MetricType::Counter,
              [](const std::string&, const S& s) { return double(s.good); });
  {
    auto& f = fs.family("nexus_session_drops_total", "Stage items ended without running, by reason.",
                        MetricType::Counter);
    for (const auto& [id, s] : st.sessions)
      for (const auto& [reason, v] : s.drops) Families::sample(f, {{"session", id}, {"reason", reason}}, double(v));
  }
  per_session("nexus_session_batches_total", "Batches run per session.", MetricType::Counter,
              [](const std::string&, const S& s) { return double(s.batches); });
  {
    // Batch sizes as a histogram over powers of two (the exact counts are in stats()).
    auto& f = fs.family("nexus_session_batch_size", "Achieved batch sizes.", MetricType::Histogram);
    for (const auto& [id, s] : st.sessions) {
      ClientMetric m;
      m.label = {{"session", id}};
      std::uint64_t items = 0;
      for (const auto& [b, n] : s.batch_sizes) items += std::uint64_t(b) * n;
      m.histogram.sample_count = s.batches;
      m.histogram.sample_sum = double(items);
      for (int bound = 1; bound <= 256; bound *= 2) {
        std::uint64_t c = 0;
        for (const auto& [b, n] : s.batch_sizes)
          if (b <= bound) c += n;
        m.histogram.bucket.push_back({c, double(bound)});
      }
      m.histogram.bucket.push_back({s.batches, std::numeric_limits<double>::infinity()});
      f.metric.push_back(std::move(m));
    }
  }
  per_session("nexus_session_batch_size_mean", "Achieved mean batch size.", MetricType::Gauge,
              [](const std::string&, const S& s) { return s.mean_batch; });
  per_session("nexus_session_rate_rps", "EWMA arrival rate measured by the epoch loop (req/s).",
              MetricType::Gauge, [](const std::string&, const S& s) { return s.rate_rps; });
  {
    auto& f = fs.family("nexus_session_latency_quantile_seconds",
                        "Stage item latency (enqueue to post-processed).", MetricType::Gauge);
    for (const auto& [id, s] : st.sessions) {
      Families::sample(f, {{"session", id}, {"quantile", "0.5"}}, s.latency.p50_us * 1e-6);
      Families::sample(f, {{"session", id}, {"quantile", "0.99"}}, s.latency.p99_us * 1e-6);
    }
  }
  {
    auto& f = fs.family("nexus_session_stage_budget_seconds",
                        "The plan's latency budget of the stage (its share of the query SLO).",
                        MetricType::Gauge);
    for (const auto& [id, budget] : st.plan.stage_budgets)
      Families::sample(f, {{"session", id}}, std::chrono::duration<double>(budget).count());
  }
  per_session("nexus_session_planned_rate_rps", "Rate the plan provisions for the session (req/s).",
              MetricType::Gauge,
              [&](const std::string& id, const S&) { return st.plan.planned_rate(id); });
  {
    auto& f = fs.family("nexus_session_admission",
                        "Admission control's decision for the session: 1 on its state (served, partial "
                        "or rejected), with the planner's reason.",
                        MetricType::Gauge);
    for (const auto& [id, s] : st.sessions)
      Families::sample(f, {{"session", id}, {"state", s.admission}, {"reason", s.admission_reason}}, 1.0);
  }
  {
    auto& f = fs.family("nexus_device_busy_seconds_total", "Time the device spent running batches.",
                        MetricType::Counter);
    for (const auto& d : st.devices) Families::sample(f, {{"device", d.name}}, d.busy_seconds);
  }
  {
    auto& f = fs.family("nexus_device_batches_total", "Batches run on the device.", MetricType::Counter);
    for (const auto& d : st.devices) Families::sample(f, {{"device", d.name}}, double(d.batches));
  }
  {
    auto& f = fs.family("nexus_device_items_total", "Items run on the device.", MetricType::Counter);
    for (const auto& d : st.devices) Families::sample(f, {{"device", d.name}}, double(d.items));
  }
  {
    auto& f = fs.family("nexus_device_occupancy",
                        "Measured occupancy: busy time / elapsed time since the engine started.",
                        MetricType::Gauge);
    for (const auto& d : st.devices) Families::sample(f, {{"device", d.name}}, d.occupancy);
  }
  {
    // Plan slot g runs on device g mod N (the Engine folds a plan larger than the machine).
    const auto& devices = engine.devices();
    std::vector<double> planned(devices.size(), 0.0);
    for (const auto& g : st.plan.gpus)
      if (!devices.empty()) planned[static_cast<std::size_t>(g.gpu) % devices.size()] += g.occupancy;
    auto& f = fs.family("nexus_device_occupancy_planned",
                        "Planned occupancy: sum of l(b)/d of the plan slots on the device (> 1: oversubscribed).",
                        MetricType::Gauge);
    for (std::size_t i = 0; i < devices.size(); ++i) Families::sample(f, {{"device", devices[i].name}}, planned[i]);
  }
  Families::sample(fs.family("nexus_in_flight", "Requests submitted and not yet terminal.", MetricType::Gauge),
                   {}, double(st.in_flight));
  Families::sample(fs.family("nexus_plan_gpus", "Device slots of the current plan.", MetricType::Gauge), {},
                   double(st.plan.num_gpus()));
  Families::sample(fs.family("nexus_plan_rejected_sessions", "Sessions the current plan gives no device.",
                             MetricType::Gauge),
                   {}, double(st.plan.rejected.size()));
  Families::sample(fs.family("nexus_ready", "1 when /readyz answers 200.", MetricType::Gauge), {},
                   ready.ready ? 1.0 : 0.0);
  return fs.take();
}

class EngineCollectable final : public prometheus::Collectable {
 public:
  explicit EngineCollectable(const runtime::Engine& engine) : engine_(engine) {}
  std::vector<MetricFamily> Collect() const override { return collect(engine_); }

 private:
  const runtime::Engine& engine_;
};

}  // namespace

std::string metrics_text(const runtime::Engine& engine) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, collect(engine));
  return out.str();
}

Readiness readiness(const runtime::Engine& engine) {
  if (!engine.accepting()) return {false, "the engine is shut down"};
  const runtime::EngineStats st = engine.stats();
  if (st.queries.empty()) return {false, "no query declared (models loaded: call add_query)"};
  std::string unrouted;
  for (const auto& [id, s] : st.sessions)
    if (st.plan.route(id).empty()) unrouted += (unrouted.empty() ? "" : ", ") + id;
  if (!unrouted.empty()) {
    std::string why;
    for (const auto& r : st.plan.rejected) why += fmt::format("; {}: {}", r.session, r.reason);
    return {false, fmt::format("the plan gives no device to {}{}", unrouted, why)};
  }
  return {true, fmt::format("ready: {} queries, {} sessions on {} plan slots over {} devices",
                            st.queries.size(), st.sessions.size(), st.plan.num_gpus(),
                            engine.devices().size())};
}

// ---------------------------------------------------------------------------------------------
// HTTP

class HttpExporter::Impl {
 public:
  Impl(const runtime::Engine& engine, const std::string& bind_address, int threads);
  ~Impl();

  const runtime::Engine& engine;
  std::shared_ptr<EngineCollectable> collectable;
  std::unique_ptr<prometheus::Exposer> exposer;
  std::string host;
  int port = 0;

  /// civetweb calls begin_request (a plain function) for every request; it finds the exporter
  /// by the port the request came in on. /metrics and everything else fall through to the
  /// Exposer's handlers.
  static int begin_request(mg_connection* conn);
  static std::shared_mutex registry_mu;
  static std::map<int, Impl*> registry;
};

std::shared_mutex HttpExporter::Impl::registry_mu;
std::map<int, HttpExporter::Impl*> HttpExporter::Impl::registry;

namespace {

int reply(mg_connection* conn, int status, const char* status_text, const std::string& body) {
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            status, status_text, body.size());
  mg_write(conn, body.data(), body.size());
  return status;
}

}  // namespace

int HttpExporter::Impl::begin_request(mg_connection* conn) {
  const mg_request_info* ri = mg_get_request_info(conn);
  if (ri == nullptr || ri->local_uri == nullptr) return 0;
  const std::string_view uri = ri->local_uri;
  if (uri != "/healthz" && uri != "/readyz") return 0;
  std::shared_lock lock(registry_mu);
  const auto it = registry.find(ri->server_port);
  if (it == registry.end()) return 0;
  if (uri == "/healthz") return reply(conn, 200, "OK", "ok\n");
  Readiness r;
  try {
    r = readiness(it->second->engine);
  } catch (const std::exception& e) {
    r = {false, e.what()};
  }
  return r.ready ? reply(conn, 200, "OK", r.reason + "\n")
                 : reply(conn, 503, "Service Unavailable", "not ready: " + r.reason + "\n");
}

HttpExporter::Impl::Impl(const runtime::Engine& e, const std::string& bind_address, int threads)
    : engine(e), collectable(std::make_shared<EngineCollectable>(e)) {
  const auto colon = bind_address.rfind(':');
  NEXUS_CHECK(colon != std::string::npos && colon + 1 < bind_address.size(),
              "HttpExporter: bind address '{}' is not host:port (e.g. 127.0.0.1:9090)", bind_address);
  NEXUS_CHECK(threads >= 1, "HttpExporter: http_threads must be >= 1, got {}", threads);
  host = bind_address.substr(0, colon);
  static const CivetCallbacks callbacks = [] {
    CivetCallbacks cb{};
    cb.begin_request = &Impl::begin_request;
    return cb;
  }();
  try {
    exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", bind_address, "num_threads", std::to_string(threads)},
        &callbacks);
  } catch (const std::exception& ex) {
    throw_error("HttpExporter: cannot listen on '{}': {}", bind_address, ex.what());
  }
  const auto ports = exposer->GetListeningPorts();
  NEXUS_CHECK(!ports.empty(), "HttpExporter: no listening port for '{}'", bind_address);
  port = ports.front();
  {
    std::unique_lock lock(registry_mu);
    registry[port] = this;
  }
  exposer->RegisterCollectable(collectable);
}

HttpExporter::Impl::~Impl() {
  {
    std::unique_lock lock(registry_mu);  // waits for /readyz answers in progress
    registry.erase(port);
  }
  exposer.reset();  // stops the server threads before the collectable goes
}

HttpExporter::HttpExporter(const runtime::Engine& engine, const std::string& bind_address, int http_threads)
    : impl_(std::make_unique<Impl>(engine, bind_address, http_threads)) {}
HttpExporter::~HttpExporter() = default;
int HttpExporter::port() const { return impl_->port; }
std::string HttpExporter::url() const {
  return fmt::format("http://{}:{}", impl_->host.empty() ? "127.0.0.1" : impl_->host, impl_->port);
}

}  // namespace nexus::observe
