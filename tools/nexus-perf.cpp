// nexus-perf: the project's perf_analyzer + model_analyzer. For one model on one device under
// one latency SLO it
//   1. profiles the model (nexus::Profiler: max batch, ℓ(b)) or reads a profile (--profile);
//   2. for each batch policy (nexus = squishy plan + early drop; lazy = squishy plan + lazy drop;
//      tfserving = the simulator's TF-Serving baseline: batch-oblivious allocation, the profile's
//      largest batch, max-batch-or-timeout batching, never drops; clipper = batch-oblivious, AIMD):
//      serves real requests through the Engine (open-loop Poisson arrivals, or a trace scaled
//      to each rate), one fresh Engine per step, stepping up the rate ramp until the good rate
//      falls below the target (99%), then bisects between the last good and the first bad rate;
//   3. prints a table per policy and a summary, and writes JSON (--json): per step the offered
//      rate, goodput, good rate, p50/p99 latency, batch sizes and drops by reason — all read
//      from EngineStats, the counters /metrics exports.
//
//   nexus-perf --model face_recognition --device cpu --slo 100 --rates 10:60:10 --json out.json
//   nexus-perf --profile tests/fixtures/profiles/lecture/A.json --device sim --slo 50 --rates 50:400:50
//
// Models: the standard zoo (resnet50, mobilenet_v1, vgg16, googlenet, inception_v3,
// ssd_mobilenet_v1_300; seeded random weights), the face-api nets (face_recognition,
// face_landmarks, face_expression, age_gender, face_detector; weights from --face-models), or an
// ONNX file (--onnx, when built with nexus::onnx). Requests carry the model's input tensor
// (random values); no pre/post-processing is timed.
// Devices: cpu (CpuBackend), cuda (CudaBackend on GPU 0), sim (a SimBackend that takes ℓ(b)
// from the profile, in virtual time: needs --profile; fast and deterministic).
// Good = completed within the SLO. Max throughput = the highest offered rate whose good rate is
// >= --target (the serving figure of merit, DESIGN.md glossary).
//
// Exit status: 0 done, 1 a model/profile/engine error (message on stderr), 2 bad flags.

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "nexus/core/clock.hpp"
#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/zoo/standard.hpp"
#include "nexus/profile/profiler.hpp"
#include "nexus/runtime/engine.hpp"
#include "nexus/sim/baselines.hpp"
#include "nexus/sim/traffic.hpp"
#include "nexus/version.hpp"
#include "named_models.hpp"
#ifdef NEXUS_WITH_ONNX
#include "nexus/model/onnx.hpp"
#endif

namespace fs = std::filesystem;
using nexus::Duration;
using nexus::TimePoint;
using nexus::runtime::Engine;
using nexus::runtime::EngineOptions;
using nexus::runtime::EngineStats;
using json = nlohmann::json;

namespace {

struct BadFlag : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Config {
  std::string model, onnx, device = "cpu", profile_path, save_profile, trace_path, json_path;
  fs::path face_models = "data/face-api/model";
  std::chrono::microseconds slo{0};
  std::vector<double> rates;
  std::vector<std::int64_t> input_shape;  ///< --input-shape for ONNX inputs with symbolic dims
  double duration_s = 5, target = 0.99;
  int bisect = 3, max_batch = 16, repeats = 10, threads = 0, cpu_workers = 1;
  std::chrono::microseconds batch_timeout{0};
  std::vector<std::string> policies{"nexus", "lazy", "tfserving"};
  std::uint64_t seed = 1;
};

std::vector<std::string> split(const std::string& s, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

double parse_number(const std::string& s, const char* flag) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(v > 0) || !std::isfinite(v))
    throw BadFlag(fmt::format("--{} '{}': expected a positive number", flag, s));
  return v;
}

/// "5:40:5" (start:stop:step) or "5,10,20": increasing positive rates in req/s.
std::vector<double> parse_rates(const std::string& s) {
  std::vector<double> out;
  if (s.find(':') != std::string::npos) {
    const auto p = split(s, ':');
    if (p.size() != 3) throw BadFlag(fmt::format("--rates '{}': expected start:stop:step or a list a,b,c", s));
    const double a = parse_number(p[0], "rates"), b = parse_number(p[1], "rates"), d = parse_number(p[2], "rates");
    if (b < a) throw BadFlag(fmt::format("--rates '{}': stop is below start", s));
    for (double r = a; r <= b * (1 + 1e-9) && out.size() < 1000; r += d) out.push_back(r);
  } else {
    for (const auto& x : split(s)) out.push_back(parse_number(x, "rates"));
  }
  if (out.empty()) throw BadFlag(fmt::format("--rates '{}': no rate", s));
  for (std::size_t i = 1; i < out.size(); ++i)
    if (out[i] <= out[i - 1]) throw BadFlag(fmt::format("--rates '{}': rates must increase", s));
  return out;
}

/// A trace: arrival times in seconds, one per line (increasing; '#' comments). Returned as
/// offsets from the first arrival.
std::vector<double> read_trace(const fs::path& path) {
  std::ifstream in(path);
  NEXUS_CHECK(in.good(), "--trace '{}': cannot read the file", path.string());
  std::vector<double> t;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty() || line[0] == '#') continue;
    try {
      t.push_back(std::stod(line));
    } catch (const std::exception&) {
      nexus::throw_error("--trace '{}' line {}: '{}' is not a time in seconds", path.string(), n, line);
    }
    NEXUS_CHECK(t.size() < 2 || t.back() >= t[t.size() - 2],
                "--trace '{}' line {}: arrival times must not decrease", path.string(), n);
  }
  NEXUS_CHECK(t.size() >= 2, "--trace '{}': needs at least 2 arrival times", path.string());
  const double t0 = t.front();
  for (auto& x : t) x -= t0;
  NEXUS_CHECK(t.back() > 0, "--trace '{}': all arrivals at the same time", path.string());
  return t;
}

// ---------------------------------------------------------------------------------------------
// The model and its profile

struct Target {
  std::string name;
  std::shared_ptr<const nexus::model::Graph> graph;  ///< null on sim
  nexus::Shape input_shape;                          ///< per item
  nexus::BatchProfile profile;
};

std::shared_ptr<const nexus::model::Graph> load_graph(const Config& cfg) {
  using G = nexus::model::Graph;
  if (!cfg.onnx.empty()) {
#ifdef NEXUS_WITH_ONNX
    nexus::model::OnnxOptions o;
    o.input_shape = cfg.input_shape;
    return std::make_shared<G>(nexus::model::load_onnx(cfg.onnx, o));
#else
    throw nexus::Error("--onnx: this build has no ONNX import (install libonnx-dev libprotobuf-dev, rebuild)");
#endif
  }
  return std::make_shared<G>(nexus::tools::load_named_model(cfg.model, cfg.face_models));
}

std::unique_ptr<nexus::Backend> make_backend(const Config& cfg) {
  if (cfg.device == "cuda") return nexus::make_cuda_backend();
  return std::make_unique<nexus::CpuBackend>(nexus::CpuBackendOptions{cfg.threads});
}

Target load_target(const Config& cfg) {
  Target t;
  if (!cfg.profile_path.empty()) t.profile = nexus::BatchProfile::load(cfg.profile_path);
  if (cfg.device == "sim") {
    t.name = t.profile.model();
    return t;
  }
  t.graph = load_graph(cfg);
  t.name = cfg.onnx.empty() ? cfg.model : fs::path(cfg.onnx).stem().string();
  const auto& in = t.graph->node(t.graph->inputs().at(0));
  t.input_shape = in.shape;
  if (t.profile.empty()) {
    nexus::ProfilerOptions po;
    po.max_batch = cfg.max_batch;
    po.repeats = cfg.repeats;
    po.batches = nexus::sparse_batches(cfg.max_batch);
    nexus::Profiler profiler([&cfg] { return make_backend(cfg); }, po);
    std::cerr << fmt::format("nexus-perf: profiling {} on {} (batches up to {}) ...\n", t.name,
                             cfg.device, cfg.max_batch);
    t.profile = profiler.profile(*t.graph, t.name);
    if (!cfg.save_profile.empty()) t.profile.save(cfg.save_profile);
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// One step: a fresh Engine serves `rate` req/s for the duration under one policy.

EngineOptions engine_options(const Config& cfg, const std::string& policy) {
  using nexus::dispatch::BatchPolicyKind;
  EngineOptions o;
  o.devices = cfg.device == "sim" ? "sim:1" : cfg.device == "cuda" ? "auto" : "cpu";
  o.cpu_workers = cfg.cpu_workers;
  o.epoch = std::chrono::microseconds(0);  // plan once, from the offered rate
  o.seed = cfg.seed;
  if (policy == "nexus") {
    o.batch_policy.kind = BatchPolicyKind::kEarlyDrop;
  } else if (policy == "lazy") {
    o.batch_policy.kind = BatchPolicyKind::kLazyDrop;
  } else if (policy == "tfserving") {
    // The simulator's TF-Serving baseline (nexus/sim/baselines.hpp): the batch-oblivious
    // allocator, a fixed max batch (the profile's largest), max-batch-or-timeout batching.
    o.batch_policy.kind = BatchPolicyKind::kMaxBatchTimeout;
    o.planner = nexus::sim::make_batch_oblivious_planner({.fixed_batch = 1 << 20});
  } else if (policy == "clipper") {
    o.batch_policy.kind = BatchPolicyKind::kAimd;
    o.planner = nexus::sim::make_batch_oblivious_planner({.one_model_per_gpu = true});
  } else {
    throw BadFlag(fmt::format("--policies: '{}' is not one of nexus, lazy, tfserving, clipper", policy));
  }
  if (cfg.batch_timeout.count() > 0) o.batch_policy.batch_timeout = cfg.batch_timeout;
  return o;
}

struct Step {
  double rate = 0;             ///< offered, req/s
  double seconds = 0;          ///< span of the arrivals
  EngineStats stats;
  double good_rate() const {
    const auto& q = stats.queries.begin()->second;
    return q.arrivals ? double(q.good) / double(q.arrivals) : 0.0;
  }
  double goodput() const { return double(stats.queries.begin()->second.good) / seconds; }
  /// Arrivals actually submitted per second of the window (Poisson counts vary around `rate`).
  double offered() const { return double(stats.queries.begin()->second.arrivals) / seconds; }
  json to_json() const {
    const auto& q = stats.queries.begin()->second;
    const auto& s = stats.sessions.begin()->second;
    json batches = json::object();
    for (const auto& [b, n] : s.batch_sizes) batches[std::to_string(b)] = n;
    return {{"rate_rps", rate},
            {"offered_rps", offered()},
            {"window_s", seconds},
            {"goodput_rps", goodput()},
            {"good_rate", good_rate()},
            {"submitted", q.arrivals},
            {"completed", q.completions},
            {"good", q.good},
            {"not_completed_by_reason", q.reasons},
            {"latency_ms", {{"p50", q.latency.p50_us / 1e3}, {"p99", q.latency.p99_us / 1e3},
                            {"max", q.latency.max_us / 1e3}}},
            {"mean_batch", s.mean_batch},
            {"batches_by_size", batches},
            {"device_occupancy_measured", stats.devices.empty() ? 0.0 : stats.devices[0].occupancy}};
  }
};

std::vector<TimePoint> arrivals(const Config& cfg, const std::vector<double>& trace, double rate,
                                TimePoint start) {
  if (trace.empty())
    return nexus::sim::poisson_arrivals(rate, std::chrono::duration_cast<Duration>(std::chrono::duration<double>(cfg.duration_s)),
                                        cfg.seed, start);
  // The trace, time-scaled so that its mean rate is `rate`.
  const double scale = (double(trace.size() - 1) / trace.back()) / rate;
  std::vector<TimePoint> out;
  for (double t : trace)
    out.push_back(start + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(t * scale)));
  return out;
}

Step run_step(const Config& cfg, const Target& target, const std::vector<double>& trace,
              const std::string& policy, double rate) {
  EngineOptions o = engine_options(cfg, policy);
  std::shared_ptr<nexus::VirtualClock> vclock;
  if (cfg.device == "sim") o.clock = vclock = std::make_shared<nexus::VirtualClock>();
  Engine engine(o);
  nexus::runtime::ModelSpec m;
  m.name = target.name;
  m.profile = target.profile;
  m.graph = target.graph;
  engine.load_model(std::move(m));
  engine.add_query({.name = "perf", .slo = cfg.slo, .expected_rate_rps = rate,
                    .stages = {{.name = target.name, .model = target.name}}});
  nexus::Tensor input;
  if (target.input_shape.rank() > 0) {
    input = nexus::Tensor(target.input_shape);
    std::mt19937 g(static_cast<std::uint32_t>(cfg.seed));
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& x : input.values()) x = u(g);
  }
  const TimePoint start = engine.clock().now();
  const auto times = arrivals(cfg, trace, rate, start);
  Step step;
  step.rate = rate;
  // The arrival window: the Poisson duration, or the scaled trace's span plus one mean gap.
  step.seconds = trace.empty() ? cfg.duration_s : double(times.size()) / rate;
  if (vclock) {
    for (TimePoint t : times) {
      engine.run_until(t);
      engine.submit("perf", input);
      (void)engine.poll();
    }
    engine.run_until_idle();
  } else {
    // Open loop: one producer keeps the schedule; this thread drains results meanwhile.
    std::thread producer([&] {
      for (TimePoint t : times) {
        std::this_thread::sleep_until(t);
        engine.submit("perf", input);
      }
    });
    while (engine.stats().submitted < times.size() || engine.stats().in_flight > 0) (void)engine.poll(1024, std::chrono::milliseconds(20));
    producer.join();
  }
  engine.shutdown();
  (void)engine.poll();
  step.stats = engine.stats();
  const auto& st = step.stats;
  NEXUS_CHECK(st.completed + st.dropped + st.rejected + st.failed == st.submitted,
              "accounting: {} submitted but {} completed + {} dropped + {} rejected + {} failed",
              st.submitted, st.completed, st.dropped, st.rejected, st.failed);
  return step;
}

std::string reasons_text(const Step& s) {
  std::string out;
  for (const auto& [r, n] : s.stats.queries.begin()->second.reasons) out += fmt::format("{}{}={}", out.empty() ? "" : " ", r, n);
  return out.empty() ? "-" : out;
}

void print_step(const std::string& policy, const Step& s, bool ok) {
  const auto& q = s.stats.queries.begin()->second;
  const auto& sess = s.stats.sessions.begin()->second;
  std::cout << fmt::format("  {:<10} {:8.1f} {:8.1f} {:9.1f} {:7.2f}% {:8.1f} {:8.1f} {:6.2f} {:4} {}\n", policy,
                           s.rate, s.offered(), s.goodput(), 100 * s.good_rate(), q.latency.p50_us / 1e3, q.latency.p99_us / 1e3,
                           sess.mean_batch, ok ? "ok" : "--", reasons_text(s))
            << std::flush;
}

/// Ramp, then bisection between the last good and the first bad rate.
json find_max(const Config& cfg, const Target& target, const std::vector<double>& trace, const std::string& policy,
              double& best_rate, double& best_goodput) {
  json steps = json::array();
  best_rate = 0;
  best_goodput = 0;
  double lo = 0, hi = 0;
  auto measure = [&](double rate) {
    Step s = run_step(cfg, target, trace, policy, rate);
    const bool ok = s.good_rate() >= cfg.target;
    print_step(policy, s, ok);
    json j = s.to_json();
    j["ok"] = ok;
    steps.push_back(j);
    if (ok && rate > best_rate) {
      best_rate = rate;
      best_goodput = s.goodput();
    }
    return ok;
  };
  for (double r : cfg.rates) {
    if (!measure(r)) {
      hi = r;
      break;
    }
    lo = r;
  }
  if (hi > 0)
    for (int i = 0; i < cfg.bisect; ++i) {
      const double mid = lo > 0 ? 0.5 * (lo + hi) : 0.5 * hi;
      if (measure(mid)) {
        lo = mid;
      } else {
        hi = mid;
      }
    }
  return {{"max_rate_rps", best_rate}, {"goodput_at_max_rps", best_goodput},
          {"first_bad_rate_rps", hi > 0 ? json(hi) : json(nullptr)}, {"steps", steps}};
}

double load_average() {
  std::ifstream in("/proc/loadavg");
  double l = -1;
  in >> l;
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("nexus-perf", "Max throughput at >= 99% good rate of one model through the Engine");
  options.add_options()
    ("model", "zoo or face-api model name", cxxopts::value<std::string>())
    ("onnx", "an .onnx model file instead of --model", cxxopts::value<std::string>())
    ("input-shape", "--onnx: per-item input shape C,H,W (for symbolic dimensions)", cxxopts::value<std::string>())
    ("device", "cpu | cuda | sim (sim needs --profile)", cxxopts::value<std::string>()->default_value("cpu"))
    ("slo", "latency SLO in ms", cxxopts::value<std::string>())
    ("rates", "rate ramp in req/s: start:stop:step or a,b,c", cxxopts::value<std::string>())
    ("trace", "arrival times (s, one per line), scaled to each rate instead of Poisson", cxxopts::value<std::string>())
    ("duration", "seconds of arrivals per step", cxxopts::value<std::string>()->default_value("5"))
    ("bisect", "bisection steps after the ramp", cxxopts::value<int>()->default_value("3"))
    ("target", "good-rate target", cxxopts::value<std::string>()->default_value("0.99"))
    ("policies", "comma list of nexus, lazy, tfserving, clipper",
     cxxopts::value<std::string>()->default_value("nexus,lazy,tfserving"))
    ("batch-timeout", "tfserving: ms to wait for a full batch (default: the engine's)", cxxopts::value<std::string>())
    ("profile", "a BatchProfile JSON to use instead of profiling", cxxopts::value<std::string>())
    ("save-profile", "write the measured profile here", cxxopts::value<std::string>())
    ("max-batch", "profiler: largest batch to try", cxxopts::value<int>()->default_value("16"))
    ("repeats", "profiler: timed runs per batch size (>= 10)", cxxopts::value<int>()->default_value("10"))
    ("threads", "CpuBackend threads (0 = all cores)", cxxopts::value<int>()->default_value("0"))
    ("cpu-workers", "engine CPU pool threads", cxxopts::value<int>()->default_value("1"))
    ("face-models", "face-api model directory", cxxopts::value<std::string>()->default_value("data/face-api/model"))
    ("json", "write the results as JSON here", cxxopts::value<std::string>())
    ("seed", "arrivals and input values", cxxopts::value<std::uint64_t>()->default_value("1"))
    ("h,help", "show this help");
  Config cfg;
  try {
    const auto a = options.parse(argc, argv);
    if (a.count("help")) {
      std::cout << options.help() << "\nmodels: " << fmt::format("{}", fmt::join(nexus::tools::named_model_names(), " "))
                << "\n";
      return 0;
    }
    cfg.device = a["device"].as<std::string>();
    if (cfg.device != "cpu" && cfg.device != "cuda" && cfg.device != "sim")
      throw BadFlag(fmt::format("--device '{}': expected cpu, cuda or sim", cfg.device));
    if (a.count("model")) cfg.model = a["model"].as<std::string>();
    if (a.count("onnx")) cfg.onnx = a["onnx"].as<std::string>();
    if (a.count("input-shape"))
      for (const auto& d : split(a["input-shape"].as<std::string>()))
        cfg.input_shape.push_back(std::llround(parse_number(d, "input-shape")));
    if (a.count("profile")) cfg.profile_path = a["profile"].as<std::string>();
    if (cfg.device == "sim" && cfg.profile_path.empty())
      throw BadFlag("--device sim: needs --profile (the simulated device takes l(b) from it)");
    if (cfg.device != "sim" && cfg.model.empty() == cfg.onnx.empty())
      throw BadFlag("give exactly one of --model NAME or --onnx FILE");
    if (!a.count("slo")) throw BadFlag("--slo MS is required");
    cfg.slo = std::chrono::microseconds(std::llround(parse_number(a["slo"].as<std::string>(), "slo") * 1e3));
    if (!a.count("rates")) throw BadFlag("--rates is required (e.g. 10:100:10 or 10,20,40)");
    cfg.rates = parse_rates(a["rates"].as<std::string>());
    cfg.duration_s = parse_number(a["duration"].as<std::string>(), "duration");
    cfg.target = parse_number(a["target"].as<std::string>(), "target");
    if (cfg.target > 1) throw BadFlag(fmt::format("--target {}: expected a fraction in (0, 1]", cfg.target));
    cfg.bisect = a["bisect"].as<int>();
    if (cfg.bisect < 0) throw BadFlag("--bisect: expected >= 0");
    cfg.policies = split(a["policies"].as<std::string>());
    for (const auto& p : cfg.policies) (void)engine_options(cfg, p);  // names checked before any work
    if (a.count("batch-timeout"))
      cfg.batch_timeout = std::chrono::microseconds(std::llround(parse_number(a["batch-timeout"].as<std::string>(), "batch-timeout") * 1e3));
    if (a.count("trace")) cfg.trace_path = a["trace"].as<std::string>();
    if (a.count("save-profile")) cfg.save_profile = a["save-profile"].as<std::string>();
    if (a.count("json")) cfg.json_path = a["json"].as<std::string>();
    cfg.max_batch = a["max-batch"].as<int>();
    cfg.repeats = a["repeats"].as<int>();
    cfg.threads = a["threads"].as<int>();
    cfg.cpu_workers = a["cpu-workers"].as<int>();
    cfg.face_models = a["face-models"].as<std::string>();
    cfg.seed = a["seed"].as<std::uint64_t>();
    if (!cfg.json_path.empty()) {  // checked before the (long) work
      std::ofstream probe(cfg.json_path, std::ios::app);
      if (!probe) throw BadFlag(fmt::format("--json '{}': cannot write there", cfg.json_path));
    }
  } catch (const std::exception& e) {  // cxxopts' and ours
    std::cerr << "nexus-perf: " << e.what() << "\n(see nexus-perf --help)\n";
    return 2;
  }

  try {
    const auto trace = cfg.trace_path.empty() ? std::vector<double>{} : read_trace(cfg.trace_path);
    const double load_before = load_average();
    const Target target = load_target(cfg);
    const auto& p = target.profile;
    std::cout << fmt::format("nexus-perf {}: {} on {}, SLO {:.1f} ms, {} s per step, target good rate {:.1f}%\n",
                             nexus::version(), target.name, cfg.device, cfg.slo.count() / 1e3, cfg.duration_s,
                             100 * cfg.target);
    std::cout << fmt::format("profile: max batch {}, l(1) = {:.2f} ms, l({}) = {:.2f} ms ({:.1f} req/s at max batch)\n",
                             p.max_batch(), p.mean_latency(1).count() / 1e3, p.max_batch(),
                             p.mean_latency(p.max_batch()).count() / 1e3, p.throughput(p.max_batch()));
    std::cout << fmt::format("  {:<10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6} {:>4} {}\n", "policy", "rate/s",
                             "offered", "goodput/s",
                             "good", "p50 ms", "p99 ms", "batch", "", "not completed");
    json result;
    result["tool"] = "nexus-perf";
    result["version"] = nexus::version();
    result["model"] = target.name;
    result["device"] = cfg.device;
    result["slo_ms"] = cfg.slo.count() / 1e3;
    result["step_duration_s"] = cfg.duration_s;
    result["arrivals"] = cfg.trace_path.empty() ? "poisson" : "trace " + cfg.trace_path;
    result["target_good_rate"] = cfg.target;
    result["criterion"] = "max offered rate with good rate >= target (good = completed within the SLO)";
    result["profile"] = p.to_json();
    struct Row {
      std::string policy;
      double best = 0, goodput = 0;
      bool saturated = false;  ///< some rate fell below the target
    };
    std::vector<Row> summary;
    for (const auto& policy : cfg.policies) {
      Row r{policy};
      result["policies"][policy] = find_max(cfg, target, trace, policy, r.best, r.goodput);
      r.saturated = !result["policies"][policy]["first_bad_rate_rps"].is_null();
      summary.push_back(r);
    }
    const double load_after = load_average();
    result["machine"] = {{"hardware_threads", std::thread::hardware_concurrency()},
                         {"load_average_1min_before", load_before},
                         {"load_average_1min_after", load_after}};
    std::cout << fmt::format("\nmax throughput at >= {:.0f}% good ({} on {}, SLO {:.1f} ms):\n", 100 * cfg.target,
                             target.name, cfg.device, cfg.slo.count() / 1e3);
    for (const auto& r : summary)
      std::cout << fmt::format("  {:<10} {}{:8.1f} req/s offered, {:8.1f} req/s good{}\n", r.policy,
                               r.saturated ? "  " : ">=", r.best, r.goodput,
                               r.saturated ? "" : "  (every rate passed: raise --rates)");
    if (!cfg.json_path.empty()) {
      std::ofstream out(cfg.json_path);
      out << result.dump(2) << "\n";
      NEXUS_CHECK(out.good(), "--json '{}': write failed", cfg.json_path);
      std::cout << "wrote " << cfg.json_path << "\n";
    }
  } catch (const BadFlag& e) {
    std::cerr << "nexus-perf: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "nexus-perf: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
