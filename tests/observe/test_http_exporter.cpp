// nexus_observe: a running Engine (real time, a simulated device that sleeps l(b)) exported over
// HTTP on loopback; the test scrapes /metrics, /healthz and /readyz with a plain socket client
// and checks the counters against the results the application polled.
#include <catch2/catch.hpp>

#include <map>
#include <sstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <regex>
#include <string>
#include <thread>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/standard.hpp"
#include "nexus/model/zoo/variants.hpp"
#include "nexus/observe/http_exporter.hpp"
#include "sim_helpers.hpp"

using namespace nexus;
using namespace nexus::runtime;
using namespace nexus::testing;
using namespace std::chrono_literals;

namespace {

struct HttpReply {
  int status = 0;
  std::string body;
};

/// GET http://127.0.0.1:port/path with HTTP/1.1 and Connection: close; reads to EOF.
HttpReply http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), 0) == static_cast<ssize_t>(req.size()));
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  HttpReply r;
  std::smatch m;
  REQUIRE(std::regex_search(raw, m, std::regex(R"(^HTTP/1\.[01] (\d{3}))")));
  r.status = std::stoi(m[1]);
  const auto sep = raw.find("\r\n\r\n");
  REQUIRE(sep != std::string::npos);
  r.body = raw.substr(sep + 4);
  return r;
}

/// The value of the sample `series` (name plus labels exactly as exposed), or -1 if absent.
double sample(const std::string& text, const std::string& series) {
  const std::string key = "\n" + series + " ";
  const auto at = ("\n" + text).find(key);
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + key.size() - 1));
}

/// Polls until `n` results have arrived (wall-clock bound only against a hang).
std::vector<QueryResult> poll_n(Engine& e, std::size_t n) {
  std::vector<QueryResult> out;
  const auto give_up = std::chrono::steady_clock::now() + 30s;
  while (out.size() < n && std::chrono::steady_clock::now() < give_up)
    for (auto& r : e.poll(n - out.size(), 10ms)) out.push_back(std::move(r));
  return out;
}

}  // namespace

TEST_CASE("observe: live /metrics, /healthz and /readyz of a running engine", "[observe]") {
  Engine e({.devices = "sim:1", .epoch = 0us});
  observe::HttpExporter exporter(e, "127.0.0.1:0");
  REQUIRE(exporter.port() > 0);
  CHECK(exporter.url() == "http://127.0.0.1:" + std::to_string(exporter.port()));

  auto health = http_get(exporter.port(), "/healthz");
  CHECK(health.status == 200);
  auto ready = http_get(exporter.port(), "/readyz");
  CHECK(ready.status == 503);
  CHECK(ready.body.find("no query") != std::string::npos);

  e.load_model({.name = "m", .profile = linear_profile("m", 200, 1000, 16)});
  e.add_query({.name = "q", .slo = 100ms, .expected_rate_rps = 200, .stages = {{.name = "s", .model = "m"}}});
  ready = http_get(exporter.port(), "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body.find("ready: 1 queries, 1 sessions") != std::string::npos);

  auto m0 = http_get(exporter.port(), "/metrics");
  REQUIRE(m0.status == 200);
  CHECK(sample(m0.body, "nexus_query_arrivals_total{query=\"q\"}") == 0);
  CHECK(sample(m0.body, "nexus_requests_total{query=\"q\",status=\"completed\"}") == 0);
  CHECK(sample(m0.body, "nexus_ready") == 1);
  CHECK(sample(m0.body, "nexus_session_admission{session=\"q/s\",state=\"served\"}") == 1);
  CHECK(sample(m0.body, "nexus_session_admission{session=\"q/s\",state=\"rejected\"}") == 0);
  CHECK(sample(m0.body, "nexus_plan_replans_total") == double(e.stats().replans));
  // The plan's stage budget, as the engine reports it (the same figure everywhere).
  const double budget_s = std::chrono::duration<double>(e.plan().stage_budgets.at("q/s")).count();
  CHECK(sample(m0.body, "nexus_session_stage_budget_seconds{session=\"q/s\"}") == Approx(budget_s));

  // Counters move as requests complete: two rounds, each scraped after its results are polled.
  std::size_t completed = 0, total = 0;
  for (int round = 1; round <= 2; ++round) {
    const int n = 40;
    for (int i = 0; i < n; ++i) {
      e.submit("q", Tensor());
      std::this_thread::sleep_for(1ms);
    }
    const auto rs = poll_n(e, n);
    REQUIRE(rs.size() == std::size_t(n));
    total += rs.size();
    for (const auto& r : rs) completed += r.ok() ? 1 : 0;
    const auto m = http_get(exporter.port(), "/metrics");
    REQUIRE(m.status == 200);
    CHECK(sample(m.body, "nexus_query_arrivals_total{query=\"q\"}") == double(total));
    CHECK(sample(m.body, "nexus_requests_total{query=\"q\",status=\"completed\"}") == double(completed));
    CHECK(sample(m.body, "nexus_query_latency_seconds_count{query=\"q\"}") == double(completed));
    CHECK(sample(m.body, "nexus_query_latency_seconds_bucket{query=\"q\",le=\"+Inf\"}") == double(completed));
    CHECK(sample(m.body, "nexus_session_completions_total{session=\"q/s\"}") == double(completed));
    CHECK(sample(m.body, "nexus_device_batches_total{device=\"sim:0\"}") > 0);
    CHECK(sample(m.body, "nexus_in_flight") == 0);
  }
  CHECK(completed > 0);

  e.shutdown();
  ready = http_get(exporter.port(), "/readyz");
  CHECK(ready.status == 503);
  CHECK(ready.body.find("shut down") != std::string::npos);
  CHECK(http_get(exporter.port(), "/healthz").status == 200);
}

TEST_CASE("observe: metrics_text is Prometheus exposition with exact bucket bounds", "[observe]") {
  SimRig rig({.devices = "sim:1", .epoch = 0us});
  rig.engine->load_model({.name = "m", .profile = linear_profile("m", 1500, 5000, 32)});
  rig.engine->add_query({.name = "q", .slo = 100ms, .expected_rate_rps = 100, .stages = {{.name = "s", .model = "m"}}});
  rig.run("q", sim::poisson_arrivals(100, 1s, 1), Tensor());
  const std::string text = observe::metrics_text(*rig.engine);
  CHECK(text.find("# TYPE nexus_requests_total counter") != std::string::npos);
  CHECK(text.find("# TYPE nexus_query_latency_seconds histogram") != std::string::npos);
  CHECK(text.find("nexus_device_occupancy{device=\"sim:0\"}") != std::string::npos);
  CHECK(text.find("nexus_device_occupancy_planned{device=\"sim:0\"}") != std::string::npos);
  // Bucket bounds print as written in kLatencyBucketsSeconds: no float noise such as
  // le="0.049999999999999996".
  for (const char* le : {"0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"})
    CHECK(text.find(std::string("nexus_query_latency_seconds_bucket{query=\"q\",le=\"") + le + "\"}") != std::string::npos);
  // Every sample line is `name{labels} value` with a numeric value; buckets are cumulative.
  const std::regex line_re(R"(^(nexus_[a-z_]+)(\{[^}]*\})? ([-+0-9.eE]+|[-+]?Inf|NaN)$)");
  std::size_t pos = 0, lines = 0;
  double last_bucket = -1;
  while (pos < text.size()) {
    const auto end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    ++lines;
    INFO(line);
    CHECK(std::regex_match(line, line_re));
    if (line.rfind("nexus_query_latency_seconds_bucket{query=\"q\"", 0) == 0) {
      const double v = std::stod(line.substr(line.rfind(' ') + 1));
      CHECK(v >= last_bucket);
      last_bucket = v;
    }
  }
  CHECK(lines > 20);
  const auto st = rig.engine->stats();
  CHECK(sample(text, "nexus_query_arrivals_total{query=\"q\"}") == double(st.queries.at("q").arrivals));
  CHECK(last_bucket == double(st.queries.at("q").completions));
}

TEST_CASE("observe: admission control's decisions and reasons are in the exposition", "[observe]") {
  // Two sessions at 500 req/s that need a device each; one device: one is served, the other
  // rejected (admission_min_share 0), each with its state and the planner's reason.
  SimRig rig({.devices = "sim:1", .epoch = 0us, .packer = {.admission_min_share = 0.0}});
  rig.engine->load_model({.name = "a", .profile = linear_profile("a", 1500, 5000, 32)});
  rig.engine->load_model({.name = "b", .profile = linear_profile("b", 1500, 5000, 32)});
  rig.engine->add_query({.name = "qa", .slo = 100ms, .expected_rate_rps = 500, .stages = {{.name = "s", .model = "a"}}});
  rig.engine->add_query({.name = "qb", .slo = 100ms, .expected_rate_rps = 500, .stages = {{.name = "s", .model = "b"}}});
  const auto st = rig.engine->stats();
  const std::string text = observe::metrics_text(*rig.engine);
  int served = 0, rejected = 0;
  for (const auto& [id, s] : st.sessions) {
    const std::string head = "nexus_session_admission{session=\"" + id + "\",state=\"" + s.admission + "\"";
    CHECK(text.find(head) != std::string::npos);
    if (s.admission == "served") ++served;
    if (s.admission == "rejected") {
      ++rejected;
      CHECK(text.find(head + ",reason=\"cluster limit of 1 GPUs") != std::string::npos);
    }
  }
  CHECK(served == 1);
  CHECK(rejected == 1);
  // Valid exposition: each family has one HELP and one TYPE line (a family defined twice, as
  // nexus_session_admission once was, repeats them and scrapers reject the text).
  std::map<std::string, int> help, type;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream w(line);
    std::string hash, kind, name;
    w >> hash >> kind >> name;
    if (hash != "#") continue;
    if (kind == "HELP") ++help[name];
    if (kind == "TYPE") ++type[name];
  }
  CHECK(help.count("nexus_session_admission"));
  for (const auto& [name, n] : help) CHECK(n == 1);
  for (const auto& [name, n] : type) {
    INFO(name);
    CHECK(n == 1);
  }
  CHECK(help.size() == type.size());
}

TEST_CASE("observe: prefix groups are in the exposition (members, batches, merged sizes)", "[observe][prefix]") {
  SimRig rig({.devices = "sim:1", .epoch = 0us});
  for (const char* m : {"a", "b"}) {
    rig.engine->load_model({.name = m, .profile = linear_profile(m, 500, 10000, 32),
                            .declared_prefix = {.key = "backbone", .fraction = 0.9}});
    rig.engine->add_query({.name = std::string("q") + m, .slo = 100ms, .expected_rate_rps = 200,
                           .stages = {{.name = "s", .model = m}}});
  }
  std::vector<std::pair<TimePoint, std::string>> arrivals;
  for (const char* q : {"qa", "qb"})
    for (TimePoint t : sim::poisson_arrivals(200, 1s, q[1])) arrivals.emplace_back(t, q);
  std::sort(arrivals.begin(), arrivals.end());
  for (const auto& [t, q] : arrivals) {
    rig.engine->run_until(t);
    rig.engine->submit(q, Tensor());
  }
  rig.engine->run_until_idle();
  const auto st = rig.engine->stats();
  REQUIRE(st.prefix_groups.count("backbone"));
  const auto& g = st.prefix_groups.at("backbone");
  REQUIRE(g.batches > 0);
  const std::string text = observe::metrics_text(*rig.engine);
  CHECK(sample(text, "nexus_prefix_group_members{group=\"backbone\",model=\"a\"}") == 1.0);
  CHECK(sample(text, "nexus_prefix_group_members{group=\"backbone\",model=\"b\"}") == 1.0);
  CHECK(sample(text, "nexus_prefix_group_batches_total{group=\"backbone\"}") == double(g.batches));
  CHECK(sample(text, "nexus_prefix_group_batch_size_count{group=\"backbone\"}") == double(g.batches));
  CHECK(sample(text, "nexus_prefix_group_batch_size_sum{group=\"backbone\"}") == double(g.items));
  CHECK(sample(text, "nexus_prefix_group_batch_size_bucket{group=\"backbone\",le=\"+Inf\"}") == double(g.batches));
}

TEST_CASE("observe: device bytes of models and prefix groups are in the exposition", "[observe][prefix]") {
  // Two LeNet variants (new FC heads on one backbone) form a group whose runner holds the
  // backbone once; a third LeNet with other weights is served by its own backend.
  Engine e({.devices = "cpu", .cpu_workers = 1, .epoch = 0us});
  const model::Graph base = model::zoo::lenet(1);
  std::vector<std::shared_ptr<const model::Graph>> graphs;
  for (int i = 0; i < 2; ++i)
    graphs.push_back(std::make_shared<const model::Graph>(
        model::zoo::with_new_head(base, 100 + static_cast<std::uint64_t>(i), 0, "v" + std::to_string(i))));
  graphs.push_back(std::make_shared<const model::Graph>(model::zoo::lenet(7)));
  for (const auto& g : graphs)
    e.load_model({.name = g->name(), .profile = linear_profile(g->name(), 100, 200, 4), .graph = g});
  const auto st = e.stats();
  REQUIRE(st.prefix_groups.size() == 1);
  const auto& [key, group] = *st.prefix_groups.begin();
  REQUIRE(group.members.size() == 2);
  REQUIRE(group.device_bytes > 0);
  REQUIRE(st.models.at("lenet").device_bytes > 0);
  const std::string text = observe::metrics_text(e);
  CHECK(sample(text, "nexus_prefix_group_device_bytes{group=\"" + key + "\"}") == double(group.device_bytes));
  CHECK(sample(text, "nexus_model_device_bytes{model=\"v0\"}") == 0.0);  // the runner serves it
  CHECK(sample(text, "nexus_model_device_bytes{model=\"lenet\"}") == double(st.models.at("lenet").device_bytes));
  CHECK(sample(text, "nexus_model_load_seconds{model=\"lenet\"}") > 0.0);
}

TEST_CASE("observe: a bad or busy address is a nexus::Error naming it", "[observe]") {
  Engine e({.devices = "sim:1", .epoch = 0us});
  CHECK_THROWS_WITH(observe::HttpExporter(e, "no-port"), Catch::Contains("'no-port' is not host:port"));
  observe::HttpExporter first(e, "127.0.0.1:0");
  const std::string busy = "127.0.0.1:" + std::to_string(first.port());
  CHECK_THROWS_WITH(observe::HttpExporter(e, busy), Catch::Contains("cannot listen on '" + busy + "'"));
}
