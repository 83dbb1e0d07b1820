// nexus_observe (nexus/observe/http_exporter.hpp): EngineStats -> Prometheus metric families at
// each scrape, serialized by prometheus-cpp's TextSerializer and served with /healthz and /readyz
// by a small socket server (see "HTTP" below for why not civetweb).
#include "nexus/observe/http_exporter.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <sstream>
#include <string_view>
#include <thread>
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
  {
    auto& f = fs.family("nexus_model_device_bytes",
                        "Device bytes of a model's own backends, summed over devices (0 where a prefix "
                        "group's runner serves it: those are in nexus_prefix_group_device_bytes).",
                        MetricType::Gauge);
    for (const auto& [name, m] : st.models) Families::sample(f, {{"model", name}}, double(m.device_bytes));
  }
  {
    auto& f = fs.family("nexus_model_load_seconds",
                        "Wall time of loading and preparing a model's own backends (re-loads included).",
                        MetricType::Gauge);
    for (const auto& [name, m] : st.models) Families::sample(f, {{"model", name}}, m.load_seconds);
  }
  {
    // Prefix groups (paper §6.3): members, shared weights, merged batches.
    auto& f = fs.family("nexus_prefix_group_members", "Member models of a prefix group (1 per member).",
                        MetricType::Gauge);
    for (const auto& [key, g] : st.prefix_groups)
      for (const auto& m : g.members) Families::sample(f, {{"group", key}, {"model", m}}, 1.0);
  }
  {
    auto& f = fs.family("nexus_prefix_group_shared_weight_bytes",
                        "Weight bytes of a prefix group's shared prefix, held once.", MetricType::Gauge);
    for (const auto& [key, g] : st.prefix_groups)
      Families::sample(f, {{"group", key}}, double(g.shared_weight_bytes));
  }
  {
    auto& f = fs.family("nexus_prefix_group_device_bytes",
                        "Device bytes of a prefix group's runners (the prefix once plus every suffix), "
                        "summed over devices.",
                        MetricType::Gauge);
    for (const auto& [key, g] : st.prefix_groups) Families::sample(f, {{"group", key}}, double(g.device_bytes));
  }
  {
    auto& f = fs.family("nexus_prefix_group_batches_total", "Merged batches a prefix group ran.",
                        MetricType::Counter);
    for (const auto& [key, g] : st.prefix_groups) Families::sample(f, {{"group", key}}, double(g.batches));
  }
  {
    // Merged batch sizes as a histogram over powers of two (the exact counts are in stats()).
    auto& f = fs.family("nexus_prefix_group_batch_size", "Merged batch sizes of a prefix group.",
                        MetricType::Histogram);
    for (const auto& [key, g] : st.prefix_groups) {
      ClientMetric m;
      m.label = {{"group", key}};
      m.histogram.sample_count = g.batches;
      m.histogram.sample_sum = double(g.items);
      for (int bound = 1; bound <= 1024; bound *= 2) {
        std::uint64_t c = 0;
        for (const auto& [b, n] : g.batch_sizes)
          if (b <= bound) c += n;
        m.histogram.bucket.push_back({c, double(bound)});
      }
      m.histogram.bucket.push_back({g.batches, std::numeric_limits<double>::infinity()});
      f.metric.push_back(std::move(m));
    }
  }
  Families::sample(fs.family("nexus_in_flight", "Requests submitted and not yet terminal.", MetricType::Gauge),
                   {}, double(st.in_flight));
  Families::sample(fs.family("nexus_plan_gpus", "Device slots of the current plan.", MetricType::Gauge), {},
                   double(st.plan.num_gpus()));
  Families::sample(fs.family("nexus_plan_rejected_sessions", "Sessions the current plan gives no device.",
                             MetricType::Gauge),
                   {}, double(st.plan.rejected.size()));
  Families::sample(fs.family("nexus_plan_replans_total", "Re-plans the Scheduler ran (add_query, replan(), epochs).",
                             MetricType::Counter),
                   {}, double(st.replans));
  Families::sample(fs.family("nexus_plan_kept_total", "Re-plans that kept the running plan (no device saved).",
                             MetricType::Counter),
                   {}, double(st.plans_kept));
  {
    // Admission control's verdict per session (one family): 1 on the series of its state, which
    // carries the planner's reason when there is one; 0 on the other states.
    auto& f = fs.family("nexus_session_admission",
                        "Admission control's decision for the session by the current plan: 1 on its state "
                        "(served in full, partial or rejected, with the planner's reason), 0 on the others.",
                        MetricType::Gauge);
    for (const auto& [id, s] : st.sessions)
      for (const char* state : {"served", "partial", "rejected"}) {
        const bool on = s.admission == state;
        Labels labels{{"session", id}, {"state", state}};
        if (on && !s.admission_reason.empty()) labels.push_back({"reason", s.admission_reason});
        Families::sample(f, std::move(labels), on ? 1.0 : 0.0);
      }
  }
  Families::sample(fs.family("nexus_ready", "1 when /readyz answers 200.", MetricType::Gauge), {},
                   ready.ready ? 1.0 : 0.0);
  return fs.take();
}


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
// HTTP: a small blocking server on POSIX sockets. prometheus-cpp's pull Exposer (civetweb) was
// used before, but civetweb creates its worker threads with ~100 KB stacks, and in a process that
// links cuBLASLt (94 KB of static TLS) glibc refuses those threads (EINVAL): the exporter could not
// start in any CUDA build. Scrapes are rare and small, so `threads` acceptors that each answer one
// request per connection are enough.

class HttpExporter::Impl {
 public:
  Impl(const runtime::Engine& engine, const std::string& bind_address, int threads);
  ~Impl();

  const runtime::Engine& engine;
  std::string host;
  int port = 0;

 private:
  void serve();
  void answer(int fd);

  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::vector<std::thread> threads_;
};

namespace {

/// The response to one request target; `head` answers HEAD requests without the body.
std::string response(int status, std::string_view status_text, std::string_view content_type,
                     const std::string& body, bool head) {
  std::string out = fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n"
      "Connection: close\r\n\r\n",
      status, status_text, content_type, body.size());
  if (!head) out += body;
  return out;
}

void send_all(int fd, const std::string& data) {
  std::size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // the client went away: nothing to report to anyone
    sent += static_cast<std::size_t>(n);
  }
}

}  // namespace

void HttpExporter::Impl::answer(int fd) {
  // Read the request head (up to 8 KiB, 2 s): only its first line matters.
  timeval tv{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string req;
  char buf[1024];
  while (req.find("\r\n\r\n") == std::string::npos && req.size() < 8192) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    req.append(buf, static_cast<std::size_t>(n));
  }
  const auto eol = req.find("\r\n");
  const std::string line = req.substr(0, eol);
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp1 == std::string::npos || sp2 == std::string::npos) {
    send_all(fd, response(400, "Bad Request", "text/plain; charset=utf-8", "bad request\n", false));
    return;
  }
  const std::string method = line.substr(0, sp1);
  std::string target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  target = target.substr(0, target.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    send_all(fd, response(405, "Method Not Allowed", "text/plain; charset=utf-8", "GET or HEAD only\n", false));
    return;
  }
  constexpr std::string_view kText = "text/plain; charset=utf-8";
  if (target == "/metrics") {
    std::string body;
    try {
      body = metrics_text(engine);
    } catch (const std::exception& e) {
      send_all(fd, response(500, "Internal Server Error", kText, std::string(e.what()) + "\n", head));
      return;
    }
    send_all(fd, response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head));
  } else if (target == "/healthz") {
    send_all(fd, response(200, "OK", kText, "ok\n", head));
  } else if (target == "/readyz") {
    Readiness r;
    try {
      r = readiness(engine);
    } catch (const std::exception& e) {
      r = {false, e.what()};
    }
    send_all(fd, r.ready ? response(200, "OK", kText, r.reason + "\n", head)
                         : response(503, "Service Unavailable", kText, "not ready: " + r.reason + "\n", head));
  } else {
    send_all(fd, response(404, "Not Found", kText, "not found: try /metrics, /healthz, /readyz\n", head));
  }
}

void HttpExporter::Impl::serve() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
  for (;;) {
    fds[0].revents = fds[1].revents = 0;
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;  // stop: the pipe's write end was closed
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // another acceptor took it (non-blocking listener), or a transient error
    answer(fd);
    ::close(fd);
  }
}

HttpExporter::Impl::Impl(const runtime::Engine& e, const std::string& bind_address, int threads)
    : engine(e) {
  const auto colon = bind_address.rfind(':');
  NEXUS_CHECK(colon != std::string::npos && colon + 1 < bind_address.size(),
              "HttpExporter: bind address '{}' is not host:port (e.g. 127.0.0.1:9090)", bind_address);
  NEXUS_CHECK(threads >= 1, "HttpExporter: http_threads must be >= 1, got {}", threads);
  host = bind_address.substr(0, colon);
  const std::string port_text = bind_address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  const std::string node = host.empty() ? "0.0.0.0" : host;
  if (const int rc = ::getaddrinfo(node.c_str(), port_text.c_str(), &hints, &res); rc != 0)
    throw_error("HttpExporter: cannot listen on '{}': {}", bind_address, ::gai_strerror(rc));
  std::string why = "no address";
  for (addrinfo* ai = res; ai != nullptr && listen_fd_ < 0; ai = ai->ai_next) {
    const int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 64) != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
  }
  ::freeaddrinfo(res);
  if (listen_fd_ < 0) throw_error("HttpExporter: cannot listen on '{}': {}", bind_address, why);
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port = addr.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port)
                                    : ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) {
    ::close(listen_fd_);
    throw_error("HttpExporter: cannot create its stop pipe: {}", std::strerror(errno));
  }
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { serve(); });
}

HttpExporter::Impl::~Impl() {
  ::close(stop_pipe_[1]);  // wakes every acceptor; each finishes the request it is answering
  for (auto& t : threads_) t.join();
  ::close(stop_pipe_[0]);
  ::close(listen_fd_);
}

HttpExporter::HttpExporter(const runtime::Engine& engine, const std::string& bind_address, int http_threads)
    : impl_(std::make_unique<Impl>(engine, bind_address, http_threads)) {}
HttpExporter::~HttpExporter() = default;
int HttpExporter::port() const { return impl_->port; }
std::string HttpExporter::url() const {
  return fmt::format("http://{}:{}", impl_->host.empty() ? "127.0.0.1" : impl_->host, impl_->port);
}

}  // namespace nexus::observe
