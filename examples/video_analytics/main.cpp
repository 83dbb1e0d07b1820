// video_analytics: a multi-stream, multi-tenant face analytics service on the Nexus Engine.
//
//   video_analytics [--streams vtest,megamind,photos] [--tenants 1] [--fps F] [--duration S]
//                   [--slo MS] [--device auto|cpu|cuda] [--policy nexus|lazy|clipper|tfserving]
//                   [--out DIR] [--allow-partial] [--check] [--find-max-streams]
//                   [--tenant-heads]
//
// Every frame goes through Engine::submit() and comes back once from poll(); the plan comes from
// the Scheduler (QueryPlanner + SquishyBinPacker) over batching profiles measured on this machine
// (cached under data/profiles/<device>/). See docs/video_analytics.md.

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <ctime>

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "nexus/core/error.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/zoo/face_recognition.hpp"
#include "nexus/version.hpp"
#ifdef NEXUS_HAVE_OBSERVE
#include "nexus/observe/http_exporter.hpp"
#endif
#include "report.hpp"
#include "va.hpp"

#ifndef VA_SOURCE_DIR
#define VA_SOURCE_DIR "."
#endif

namespace va {
namespace {

std::atomic<bool> g_interrupted{false};

void on_signal(int) {
  if (g_interrupted.exchange(true)) std::_Exit(130);  // second Ctrl-C: leave now
  const char msg[] = "\ninterrupted: stopping the streams, draining the engine, writing the report "
                     "(Ctrl-C again to quit at once)\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
}

struct Config {
  std::vector<std::string> streams;
  int tenants = 1;
  bool tenant_heads = false;    // each tenant's recognize stage runs its own identity head
  double fps = 0.0;        // 0: per device default
  double duration_s = 60;
  double slo_ms = 0.0;     // 0: per device default
  std::string device = "auto";
  std::string policy = "nexus";
  fs::path out = "out";
  fs::path data;
  fs::path profiles;
  bool loop = true;
  bool reprofile = false;
  bool find_max = false;
  int max_streams = 12;
  double step_s = 20;
  float min_score = 0.5f;
  int annotate = 3;
  int cpu_workers = 0;
  bool allow_partial = false;   // serve the streams that open when some requested ones do not
  int metrics_port = 9090;      // /metrics, /healthz, /readyz on 127.0.0.1 while serving; -1: off
  bool check_only = false;      // validate the inputs and the SLO, then exit without serving
  double match_threshold = kFaceApiMatchThreshold;
  std::string command_line;     // as typed, for report.json
  std::vector<std::string> left_out;  // "<stream>: <why>" of requested streams that did not open
};

nexus::dispatch::BatchPolicyKind policy_kind(const std::string& p) {
  using K = nexus::dispatch::BatchPolicyKind;
  if (p == "nexus") return K::kEarlyDrop;
  if (p == "lazy") return K::kLazyDrop;
  if (p == "clipper") return K::kAimd;
  if (p == "tfserving") return K::kMaxBatchTimeout;
  throw nexus::Error(fmt::format("--policy '{}': expected nexus, lazy, clipper or tfserving", p));
}

// What the loaded environment holds for every run.
struct Env {
  std::string device;          // "cpu" | "cuda"
  std::string engine_devices;  // EngineOptions::devices
  Models models;
  nexus::ProfileMap profiles;
  Gallery gallery;
  std::vector<fs::path> demo_photos;
  std::vector<TenantHead> heads;  // --tenant-heads: one per tenant, after the gallery
};

// One stream argument -> spec. Names: vtest (tiled), megamind, photos; or a path: a video file
// (whole frames; prefix "tiled:" to tile it) or a folder of photos.
StreamSpec resolve_stream(const std::string& arg, const Config& cfg, const Env& env) {
  StreamSpec s;
  std::string a = arg;
  if (auto at = a.rfind('@'); at != std::string::npos) {  // "<stream>@<fps>"
    try {
      s.fps = std::stod(a.substr(at + 1));
    } catch (const std::exception&) {
      throw nexus::Error(fmt::format("--streams '{}': expected <stream>@<frames per second>", arg));
    }
    NEXUS_CHECK(s.fps > 0 && s.fps <= 240, "--streams '{}': fps must be in (0, 240]", arg);
    a = a.substr(0, at);
  } else {
    s.fps = 0;  // the --fps value
  }
  bool tiled = false;
  if (a.rfind("tiled:", 0) == 0) {
    tiled = true;
    a = a.substr(6);
  }
  if (a == "vtest") {
    s.kind = "video";
    s.path = cfg.data / "video" / "vtest.avi";
    tiled = true;
  } else if (a == "megamind") {
    s.kind = "video";
    s.path = cfg.data / "video" / "Megamind.avi";
  } else if (a == "photos") {
    s.kind = "photos";
    s.path = cfg.data / "face-api" / "demo";
    s.photos = env.demo_photos;
  } else if (fs::is_directory(a)) {
    s.kind = "photos";
    s.path = a;
    for (const auto& e : fs::directory_iterator(a))
      if (e.is_regular_file()) s.photos.push_back(e.path());
    std::sort(s.photos.begin(), s.photos.end());
  } else {
    s.kind = "video";
    s.path = a;
  }
  s.name = a == "vtest" || a == "megamind" || a == "photos" ? a : fs::path(a).stem().string();
  s.pipeline = tiled ? PipelineKind::kTiled : PipelineKind::kWhole;
  return s;
}

std::vector<fs::path> demo_photos(const fs::path& data) {
  std::vector<fs::path> v;
  const fs::path dir = data / "face-api" / "demo";
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir)) {
      const auto n = e.path().filename().string();
      if (n.rfind("sample", 0) == 0 && (n.ends_with(".jpg") || n.ends_with(".png")))
        v.push_back(e.path());
    }
  std::sort(v.begin(), v.end());
  return v;
}

// The engine plans with its own Scheduler parts: the QueryPlanner's DP split of each query's SLO
// and squishy bin packing, with admission control when the load does not fit this machine.
nexus::runtime::EngineOptions engine_options(const Config& cfg, const Env& env,
                                             const std::string& policy) {
  nexus::runtime::EngineOptions o;
  o.devices = env.engine_devices;
  o.batch_policy.kind = policy_kind(policy);
  o.batch_policy.batch_timeout = std::chrono::milliseconds(env.device == "cpu" ? 20 : 5);
  o.cpu_workers = cfg.cpu_workers > 0 ? cfg.cpu_workers : (env.device == "cpu" ? 1 : 4);
  o.epoch = std::chrono::seconds(10);
  return o;
}

// Devices the engine will serve on (the pre-check's rule (2) depends on it).
int device_count(const Env& env) {
  return env.device == "cuda" ? std::max(1, nexus::cuda_device_count()) : 1;
}

// Expected faces per frame (the Scheduler's fan-out of the detector): measured on the videos and
// photos at the defaults; the epoch loop re-plans with the measured rates anyway.
double expected_faces(PipelineKind kind) { return kind == PipelineKind::kTiled ? 0.5 : 1.5; }

// The Scheduler's queries: one per tenant and pipeline kind; its rate is the sum of its streams'.
std::map<std::string, nexus::QuerySpec> schedule_queries(const std::vector<StreamSpec>& specs,
                                                         std::chrono::microseconds slo) {
  std::map<std::string, std::pair<PipelineKind, double>> queries;
  for (const auto& s : specs) {
    auto& q = queries[s.query];
    q.first = s.pipeline;
    q.second += s.fps;
  }
  std::map<std::string, nexus::QuerySpec> sched;
  for (const auto& [name, q] : queries)
    sched[name] = make_schedule_query(name, q.first, slo, q.second, expected_faces(q.first));
  return sched;
}

// The SLO pre-check of every query (see explain_infeasible_slo). Prints why and the smallest
// --slo accepted for all of them; returns false when one is not accepted.
bool check_slo(const std::map<std::string, nexus::QuerySpec>& sched, const Env& env) {
  std::int64_t need = 0;
  bool ok = true;
  for (const auto& [name, q] : sched) {
    const std::string why = explain_infeasible_slo(q, env.profiles, device_count(env));
    if (why.empty()) continue;
    std::cerr << "error: " << why << "\n";
    ok = false;
    need = std::max(need, smallest_accepted_slo_ms(q, env.profiles, device_count(env)));
  }
  if (!ok && sched.size() > 1)
    std::cerr << fmt::format("error: the smallest SLO accepted for all {} queries is --slo {}\n",
                             sched.size(), need);
  return ok;
}

// The models every query uses. With `heads` (--tenant-heads) each tenant's identity model takes
// the place of FaceRecognitionNet: one load_model per tenant, nothing else; the Engine finds that
// they share the backbone and forms the prefix group itself (docs/prefix_batching.md).
void load_models_into(nexus::runtime::Engine& engine, const Env& env,
                      const std::vector<TenantHead>& heads = {}) {
  for (const auto& [name, graph] : env.models.graphs) {
    if (name == kModelRecognition && !heads.empty()) continue;
    nexus::runtime::ModelSpec m;
    m.name = name;
    m.profile = env.profiles.at(name);
    m.graph = graph;
    m.max_batch = env.models.max_batch.at(name);
    engine.load_model(std::move(m));
  }
  for (const auto& h : heads) {
    // The backbone's measured profile: the head (one FC of C x 128) adds well under 0.1% of its
    // work, and the Engine splits ℓ(b) into prefix and suffix by their MACs.
    nlohmann::json pj = env.profiles.at(kModelRecognition).to_json();
    pj["model"] = h.model;
    nexus::BatchProfile p = nexus::BatchProfile::from_json(pj, h.model);
    p.set_latency_model(env.profiles.at(kModelRecognition).latency_model());
    nexus::runtime::ModelSpec m;
    m.name = h.model;
    m.profile = std::move(p);
    m.graph = h.graph;
    m.max_batch = env.models.max_batch.at(kModelRecognition);
    engine.load_model(std::move(m));
  }
}

// The gallery: the demo photos through the same query on a private Engine with a generous SLO;
// every face found becomes an identity "<photo>#<k>" (k from left to right).
Gallery enroll(const Config& cfg, Env& env) {
  Gallery g;
  std::vector<std::pair<std::string, std::shared_ptr<const Image>>> photos;
  for (const auto& p : env.demo_photos) {
    try {
      photos.emplace_back(p.filename().string(),
                          std::make_shared<Image>(nexus::model::zoo::read_image(p)));
    } catch (const nexus::Error& e) {
      std::cerr << "gallery: " << e.what() << " - skipped\n";
    }
  }
  if (photos.empty()) {
    std::cerr << "gallery: no readable demo photo under " << (cfg.data / "face-api/demo").string()
              << "; identities will all be 'unknown'\n";
    return g;
  }
  const auto t0 = Clock::now();
  FrameStore store;
  const auto slo = std::chrono::microseconds(std::chrono::seconds(30));
  auto opts = engine_options(cfg, env, "nexus");
  nexus::runtime::Engine engine(opts);
  load_models_into(engine, env);
  engine.add_query(make_query("enroll", PipelineKind::kWhole, slo, 1.0, env.models, store,
                              cfg.min_score));
  std::map<nexus::runtime::RequestId, std::size_t> ids;
  for (std::size_t i = 0; i < photos.size(); ++i) {
    auto f = std::make_shared<Frame>();
    f->id = i + 1;
    f->image = photos[i].second;
    f->source = photos[i].first;
    store.put(f);
    ids[engine.submit("enroll", make_handle(f->id, FaceRect{0, 0, double(f->image->width),
                                                             double(f->image->height)}))] = i;
  }
  std::size_t got = 0;
  std::vector<std::vector<FaceResult>> found(photos.size());
  while (got < ids.size() && !g_interrupted) {
    for (auto& r : engine.poll(16, std::chrono::milliseconds(100))) {
      ++got;
      const std::size_t i = ids.at(r.id);
      if (!r.ok()) {
        std::cerr << "gallery: " << photos[i].first << ": " << nexus::runtime::to_string(r.status)
                  << " (" << r.message << ")\n";
        continue;
      }
      found[i] = faces_of(r);
    }
  }
  engine.shutdown();
  for (auto& r : engine.poll()) (void)r;
  for (std::size_t i = 0; i < photos.size(); ++i) {
    int k = 0;
    for (const auto& f : found[i]) {  // faces_of sorts left to right
      if (!f.has_descriptor) continue;
      GalleryEntry e;
      e.photo = photos[i].first;
      e.label = fmt::format("{}#{}", fs::path(e.photo).stem().string(), k++);
      e.box = f.box;
      e.descriptor = f.descriptor;
      g.entries.push_back(std::move(e));
    }
  }
  std::cout << fmt::format("gallery: {} faces on {} demo photos, enrolled through the engine in "
                           "{:.1f} s\n",
                           g.entries.size(), photos.size(),
                           std::chrono::duration<double>(Clock::now() - t0).count());
  return g;
}

struct RunOutcome {
  Collector::Summary summary;
  double offered_fps = 0.0, served_fps = 0.0;
  bool interrupted = false;
  int exit_code = 0;
};

// One service run: streams -> engine -> collector; report files when `report` is set.
RunOutcome run_service(const Config& cfg, const Env& env, const std::vector<StreamSpec>& specs_in,
                       const std::string& policy, double fps, std::chrono::microseconds slo,
                       double duration_s, bool report, bool live) {
  RunOutcome out;
  // Open the sources. preflight() has opened each once already and left out (or refused) those
  // that failed, so a failure here is new (the file changed meanwhile): reported and left out.
  std::vector<StreamSpec> specs;
  std::vector<std::unique_ptr<FrameSource>> sources;
  std::vector<std::string> errors = cfg.left_out;
  for (auto s : specs_in) {
    if (s.fps <= 0) s.fps = fps;
    try {
      auto src = std::make_unique<FrameSource>(s, cfg.loop);
      for (const auto& w : src->warnings) {
        if (report) std::cerr << "warning: " << w << "\n";
        errors.push_back(w);
      }
      sources.push_back(std::move(src));
      specs.push_back(s);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << " - stream left out\n";
      errors.push_back(e.what());
    }
  }
  if (specs.empty()) {
    std::cerr << "error: no stream could be opened; nothing to serve\n";
    out.exit_code = 2;
    return out;
  }
  const auto sched = schedule_queries(specs, slo);
  if (!check_slo(sched, env)) {
    out.exit_code = 3;
    return out;
  }
  std::map<std::string, std::pair<PipelineKind, double>> queries;
  for (const auto& [name, q] : sched)
    queries[name] = {q.stages.front().id == "tile" ? PipelineKind::kTiled : PipelineKind::kWhole,
                     q.rate_rps};
  std::map<std::string, int> tenant_of;  // query -> tenant
  for (const auto& s : specs) tenant_of[s.query] = s.tenant;
  FrameStore store;
  std::vector<StreamRecord> recs;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    StreamRecord r;
    r.name = specs[i].name;
    r.kind = specs[i].kind;
    r.query = specs[i].query;
    r.source = specs[i].path.string();
    r.pipeline = specs[i].pipeline == PipelineKind::kTiled ? "tiled" : "whole";
    r.fps = specs[i].fps;
    r.tenant = specs[i].tenant;
    r.describe = sources[i]->describe();
    recs.push_back(r);
  }
  const fs::path frames_dir = report ? cfg.out / "frames" : fs::path();
  if (report) {
    fs::create_directories(cfg.out);
    fs::remove_all(frames_dir);
  }
  Collector col(recs, &env.gallery, &store, frames_dir, cfg.annotate, slo, cfg.match_threshold,
                env.heads);

  nexus::runtime::Engine engine(engine_options(cfg, env, policy));
#ifdef NEXUS_HAVE_OBSERVE
  std::unique_ptr<nexus::observe::HttpExporter> exporter;  // /readyz turns 200 once planned
  if (live && cfg.metrics_port >= 0) {
    try {
      exporter = std::make_unique<nexus::observe::HttpExporter>(engine, fmt::format("127.0.0.1:{}", cfg.metrics_port));
      std::cout << fmt::format("metrics: {}/metrics (and /healthz, /readyz)\n", exporter->url());
    } catch (const nexus::Error& e) {
      std::cerr << "warning: " << e.what() << "; serving without /metrics (--metrics-port)\n";
    }
  }
#endif
  load_models_into(engine, env, env.heads);
  for (const auto& [name, q] : queries)
    engine.add_query(make_query(
        name, q.first, slo, q.second, env.models, store, cfg.min_score,
        env.heads.empty() ? std::string(kModelRecognition)
                          : env.heads.at(static_cast<std::size_t>(tenant_of.at(name))).model));
  if (live) {
    std::cout << fmt::format("serving {} stream(s) on {} ({}), policy {}, SLO {:.0f} ms per frame "
                             "(whole query), {:.0f} s\n",
                             specs.size(), env.device, engine.devices().front().name, policy,
                             slo.count() / 1e3, duration_s);
    for (std::size_t i = 0; i < specs.size(); ++i)
      std::cout << fmt::format("  {:<12} {:5.2f} fps -> query {:<9} {} ({})\n", specs[i].name,
                               specs[i].fps, specs[i].query, specs[i].path.string(),
                               sources[i]->describe());
    for (const auto& h : env.heads)
      std::cout << fmt::format("  tenant t{}: model {} (FaceRecognitionNet + identity head, {} "
                               "enrolled face(s))\n",
                               h.tenant, h.model, h.labels.size());
    for (const auto& [key, g] : engine.stats().prefix_groups) {
      std::string members;
      for (const auto& m : g.members) members += (members.empty() ? "" : ", ") + m;
      std::cout << fmt::format("  prefix group {}: {} (shared weights {:.1f} MB)\n", key, members,
                               g.shared_weight_bytes / 1e6);
    }
    std::cout << std::flush;
  }

  const TimePoint t0 = std::chrono::time_point_cast<Duration>(Clock::now());
  col.start(t0);
  std::atomic<bool> stop_streams{false}, stop_poll{false};
  std::atomic<std::uint64_t> next_frame{1};
  std::thread poller([&] {
    std::optional<Clock::time_point> give_up;
    while (true) {
      for (auto& r : engine.poll(64, std::chrono::milliseconds(50))) col.on_result(std::move(r));
      if (stop_poll && col.finished() >= col.submitted()) break;
      if (stop_poll && !give_up) give_up = Clock::now() + std::chrono::seconds(30);
      if (give_up && Clock::now() > *give_up) {  // the engine owes results: say so, do not hang
        std::cerr << fmt::format("error: {} submitted frame(s) got no result from the engine\n",
                                 col.submitted() - col.finished());
        break;
      }
    }
  });
  // Stagger the streams over one period so their frames do not all arrive at once. With tenant
  // heads the tenants watch the same cameras: the tenants' copies of a stream ("megamind#0",
  // "megamind#1", ...) submit together, so their faces reach the recognize stage together and the
  // prefix group can merge them.
  std::vector<double> phase(specs.size());
  {
    std::map<std::string, int> slot;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const std::string key = cfg.tenant_heads ? specs[i].name.substr(0, specs[i].name.rfind('#'))
                                               : std::to_string(i);
      phase[i] = slot.emplace(key, static_cast<int>(slot.size())).first->second;
    }
    for (double& p : phase) p /= double(slot.size());
  }
  std::vector<std::thread> streamers;
  std::atomic<int> ended{0};
  for (std::size_t i = 0; i < specs.size(); ++i)
    streamers.emplace_back([&, i] {
      const auto period = std::chrono::duration<double>(1.0 / specs[i].fps);
      auto next = Clock::now() + std::chrono::duration_cast<Clock::duration>(period * phase[i]);
      while (!stop_streams && !g_interrupted) {
        while (Clock::now() < next && !stop_streams && !g_interrupted)
          std::this_thread::sleep_for(std::min<Clock::duration>(
              next - Clock::now(), std::chrono::milliseconds(20)));
        if (stop_streams || g_interrupted) break;
        next += std::chrono::duration_cast<Clock::duration>(period);
        if (next < Clock::now()) next = Clock::now();  // decoding fell behind: no burst
        std::optional<std::pair<std::int64_t, std::shared_ptr<const Image>>> fr;
        try {
          fr = sources[i]->next();
        } catch (const std::exception& e) {
          std::cerr << "\nerror: " << e.what() << " - stream stopped\n";
          break;
        }
        if (!fr) {
          std::cerr << fmt::format("\nstream {} ended (--no-loop)\n", specs[i].name);
          break;
        }
        auto f = std::make_shared<Frame>();
        f->id = next_frame++;
        f->stream = static_cast<int>(i);
        f->index = fr->first;
        f->source = sources[i]->source_name(fr->first);
        f->image = fr->second;
        store.put(f);
        const FaceRect whole{0, 0, double(f->image->width), double(f->image->height)};
        try {
          const auto id = engine.submit(specs[i].query, make_handle(f->id, whole));
          col.on_submit(id, f, std::chrono::time_point_cast<Duration>(Clock::now()));
        } catch (const std::exception& e) {
          store.erase(f->id);
          std::cerr << "\nsubmit failed: " << e.what() << "\n";
          break;
        }
      }
      ++ended;
    });

  // Live progress line.
  const bool tty = ::isatty(2);
  auto last = Clock::now();
  auto prev = col.totals();
  std::vector<double> prev_busy;
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(duration_s));
  while (!g_interrupted && Clock::now() < deadline && ended < static_cast<int>(specs.size())) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    // Every second on a terminal (one line rewritten), every 5 s into a log; rates are over
    // the interval since the last line.
    if (Clock::now() - last < std::chrono::seconds(tty ? 1 : 5)) continue;
    const double dt = std::chrono::duration<double>(Clock::now() - last).count();
    last = Clock::now();
    const auto t = col.totals();
    const auto st = engine.stats();
    std::string occ;
    for (std::size_t d = 0; d < st.devices.size(); ++d) {
      const double busy = st.devices[d].busy_seconds;
      if (prev_busy.size() <= d) prev_busy.push_back(0.0);
      occ += fmt::format(" {} {:3.0f}%", st.devices[d].name,
                         std::min(100.0, 100.0 * (busy - prev_busy[d]) / dt));
      prev_busy[d] = busy;
    }
    const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
    const std::string line = fmt::format(
        "[{:6.1f}s] offered {:5.2f} fr/s  served {:5.2f} fr/s  good {:5.1f}%  dropped {}  "
        "rejected {}  failed {}  in flight {}  occupancy{}",
        elapsed, double(t.submitted - prev.submitted) / dt,
        double(t.completed - prev.completed) / dt,
        t.finished ? 100.0 * double(t.good) / double(t.finished) : 100.0, t.dropped, t.rejected,
        t.failed, t.submitted - t.finished, occ);
    prev = t;
    if (live) {
      if (tty)
        std::cerr << "\r" << line << "\033[K" << std::flush;
      else
        std::cerr << line << "\n";
    }
  }
  out.interrupted = g_interrupted;
  stop_streams = true;
  for (auto& th : streamers) th.join();
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  if (live) std::cerr << (tty ? "\n" : "") << "draining the engine ...\n";
  engine.shutdown();  // runs or drops (shutdown) what is queued; every request gets its result
  stop_poll = true;
  poller.join();
  out.summary = col.summary();
  out.offered_fps = double(out.summary.totals.submitted) / wall;
  out.served_fps = double(out.summary.totals.completed) / wall;
  const auto stats = engine.stats();
  const auto plan = engine.plan();
  if (report) {
    std::ostringstream table;
    col.print_table(table, stats, plan, env.device, cfg.left_out);
    const auto& tt = out.summary.totals;
    table << fmt::format(
        "\nFrames: {} submitted = {} completed + {} dropped + {} rejected + {} failed {}\n"
        "Good rate (completed within the {:.0f} ms SLO / submitted): {:.1f}%   end-to-end "
        "latency p50 {:.0f} ms, p99 {:.0f} ms\n",
        tt.submitted, tt.completed, tt.dropped, tt.rejected, tt.failed,
        tt.completed + tt.dropped + tt.rejected + tt.failed == tt.submitted ? "(all accounted)"
                                                                             : "(MISMATCH)",
        slo.count() / 1e3, 100 * out.summary.good_rate, out.summary.p50_ms, out.summary.p99_ms);
    const auto warnings = col.warnings();
    for (const auto& w : warnings) table << "warning: " << w << "\n";
    const std::string headline = col.headline(stats, wall, env.device);
    table << "\n" << headline << "\n";
    std::cout << table.str();
    nlohmann::json j = col.to_json(stats, plan);
    j["nexus_version"] = nexus::version();
    j["timestamp_utc"] = [] {
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      gmtime_r(&now, &tm);
      char buf[32];
      std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
      return std::string(buf);
    }();
    j["command_line"] = cfg.command_line;
    j["headline"] = headline;
    j["warnings"] = warnings;
    j["device"] = env.device;
    j["engine_devices"] = nlohmann::json::array();
    for (const auto& d : engine.devices()) j["engine_devices"].push_back(d.name);
    j["policy"] = policy;
    j["query_slo_ms"] = slo.count() / 1e3;  // end to end, per frame; stage budgets: sessions
    j["match_threshold"] = cfg.match_threshold;
    nlohmann::json fps_of = nlohmann::json::object();
    for (const auto& s : specs) fps_of[s.name] = s.fps;
    j["fps_per_stream"] = fps_of;
    j["duration_s"] = wall;
    j["tenants"] = cfg.tenants;
    j["tenant_heads_mode"] = cfg.tenant_heads;
    j["interrupted"] = out.interrupted;
    j["errors"] = errors;
    j["streams_left_out"] = cfg.left_out;
    auto plots = col.write_plots(cfg.out / "plots");
    j["plots"] = plots;
    std::ofstream(cfg.out / "report.json") << j.dump(2) << "\n";
    std::ofstream(cfg.out / "summary.txt") << table.str();
#ifdef NEXUS_HAVE_OBSERVE
    std::ofstream(cfg.out / "metrics.prom") << nexus::observe::metrics_text(engine);
#endif
    std::cout << fmt::format("\nwrote {}/report.json, summary.txt, metrics.prom, {} plot(s) in "
                             "plots/, {} annotated frame(s) in frames/\n",
                             cfg.out.string(), plots.size(), col.annotated_files().size());
  }
  return out;
}

// Checks before the (slow) enrolment: can every requested stream be opened, can the SLO be met?
// A stream that cannot be opened is reported once; the run stops (exit 2) unless --allow-partial,
// which leaves it out (named in the summary and report.json). Returns an exit code (0 = go on).
int preflight(Config& cfg, const Env& env, std::vector<StreamSpec>& specs,
              std::chrono::microseconds slo) {
  std::vector<StreamSpec> opened;
  for (const auto& s : specs) {
    try {
      FrameSource src(s, cfg.loop);
      opened.push_back(s);
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      cfg.left_out.push_back(fmt::format("{}: {}", s.name, e.what()));
    }
  }
  if (opened.empty()) {
    std::cerr << "error: no stream could be opened; nothing to serve\n";
    return 2;
  }
  if (!cfg.left_out.empty() && !cfg.allow_partial) {
    std::cerr << fmt::format("error: {} of {} requested stream(s) cannot be opened (above); fix "
                             "them, or pass --allow-partial to serve the other {}\n",
                             cfg.left_out.size(), specs.size(), opened.size());
    return 2;
  }
  for (const auto& l : cfg.left_out) std::cerr << "warning: left out (--allow-partial): " << l << "\n";
  specs = std::move(opened);
  return check_slo(schedule_queries(specs, slo), env) ? 0 : 3;
}

// --out must be a directory we can create and write in: checked before anything slow.
int validate_out(const fs::path& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || !fs::is_directory(out)) {
    std::cerr << fmt::format("error: --out '{}': cannot create the directory ({}); expected a "
                             "writable directory path\n",
                             out.string(), ec ? ec.message() : "exists and is not a directory");
    return 2;
  }
  const fs::path probe = out / ".video_analytics_write_test";
  {
    std::ofstream o(probe);
    o << "ok\n";
    if (!o.flush()) {
      std::cerr << fmt::format("error: --out '{}': the directory is not writable; expected a "
                               "writable directory path\n",
                               out.string());
      return 2;
    }
  }
  fs::remove(probe, ec);
  return 0;
}

int find_max_streams(const Config& cfg, const Env& env, double fps,
                     std::chrono::microseconds slo) {
  std::vector<std::string> policies{cfg.policy};
  for (const char* p : {"nexus", "lazy", "tfserving"})
    if (std::find(policies.begin(), policies.end(), p) == policies.end()) policies.push_back(p);
  nlohmann::json res;
  res["machine"] = fmt::format("{} hardware threads, device {}", std::thread::hardware_concurrency(),
                               env.device);
  res["fps_per_stream"] = fps;
  res["slo_ms"] = slo.count() / 1e3;
  res["step_duration_s"] = cfg.step_s;
  res["streams_cycle"] = cfg.streams;
  res["criterion"] = "largest number of streams with good rate >= 99% (good = completed within SLO)";
  std::map<std::string, int> best;
  std::cout << fmt::format("finding the max streams at >= 99% good rate: {:.2f} fps per stream, "
                           "SLO {:.0f} ms, {:.0f} s per step\n",
                           fps, slo.count() / 1e3, cfg.step_s);
  for (const auto& p : policies) {
    nlohmann::json steps = nlohmann::json::array();
    int ok_n = 0;
    for (int n = 1; n <= cfg.max_streams && !g_interrupted; ++n) {
      std::vector<StreamSpec> specs;
      for (int k = 0; k < n; ++k) {
        StreamSpec s = resolve_stream(cfg.streams[static_cast<std::size_t>(k) % cfg.streams.size()],
                                      cfg, env);
        s.name += fmt::format("#{}", k);
        s.query = s.pipeline == PipelineKind::kTiled ? "tiled" : "whole";
        specs.push_back(s);
      }
      const auto o = run_service(cfg, env, specs, p, fps, slo, cfg.step_s, false, false);
      if (o.exit_code) return o.exit_code;
      if (o.interrupted) break;  // a cut-short step proves nothing
      std::cout << fmt::format("  {:<9} {:2d} stream(s): offered {:5.2f} fr/s, served {:5.2f} fr/s, "
                               "good rate {:6.2f}%, p99 {:6.0f} ms\n",
                               p, n, o.offered_fps, o.served_fps, 100 * o.summary.good_rate,
                               o.summary.p99_ms)
                << std::flush;
      steps.push_back({{"streams", n}, {"offered_fps", o.offered_fps},
                       {"served_fps", o.served_fps}, {"good_rate", o.summary.good_rate},
                       {"latency_ms_p99", o.summary.p99_ms},
                       {"frames_submitted", o.summary.totals.submitted}});
      if (o.summary.good_rate < 0.99) break;
      ok_n = n;
    }
    best[p] = ok_n;
    res["policies"][p] = {{"max_streams", ok_n}, {"steps", steps}};
  }
  std::cout << "\nmax sustainable streams at >= 99% good rate (" << env.device << "):\n";
  for (const auto& p : policies)
    std::cout << fmt::format("  {:<10} {:2d}{}\n", p, best[p],
                             p != "nexus" && best[p] > 0
                                 ? fmt::format("   (nexus / {} = {:.2f}x)", p,
                                               double(best["nexus"]) / double(best[p]))
                                 : std::string());
  fs::create_directories(cfg.out);
  std::ofstream(cfg.out / "max_streams.json") << res.dump(2) << "\n";
  std::cout << "wrote " << (cfg.out / "max_streams.json").string() << "\n";
  return 0;
}

int run(int argc, char** argv) {
  cxxopts::Options opts("video_analytics",
                        "Multi-stream, multi-tenant face analytics on the Nexus engine "
                        "(docs/video_analytics.md)");
  Config cfg;
  // clang-format off
  opts.add_options()
    ("streams", "comma list: vtest (tiled 2x2), megamind, photos, a video file, tiled:<video>, "
                "or a folder of photos; <stream>@<fps> sets its rate (default: vtest@0.25,megamind@1.5,"
                "photos@0.5 on cpu, vtest,megamind,photos on cuda)", cxxopts::value<std::string>()->default_value(""))
    ("tenants", "copies of the stream set, each tenant with its own queries", cxxopts::value<int>()->default_value("1"))
    ("tenant-heads", "each tenant recognizes faces with its own model: FaceRecognitionNet + an "
                     "identity head over the demo faces it enrolled; the Engine serves the "
                     "tenants' models as one prefix group (needs --tenants >= 2)")
    ("fps", "frames submitted per second per stream (0 = device default: 1 on cpu, 10 on cuda)",
                cxxopts::value<double>()->default_value("0"))
    ("duration", "seconds to serve", cxxopts::value<double>()->default_value("60"))
    ("slo", "whole-query latency SLO in ms (0 = device default)", cxxopts::value<double>()->default_value("0"))
    ("device", "auto | cpu | cuda", cxxopts::value<std::string>()->default_value("auto"))
    ("policy", "batch policy: nexus (early drop) | lazy | clipper | tfserving",
                cxxopts::value<std::string>()->default_value("nexus"))
    ("out", "output directory", cxxopts::value<std::string>()->default_value("out"))
    ("data", "data directory (face-api models and demo photos, videos)",
                cxxopts::value<std::string>()->default_value(""))
    ("profiles", "batching profile cache (default <data>/profiles)", cxxopts::value<std::string>()->default_value(""))
    ("reprofile", "measure the batching profiles again")
    ("no-loop", "stop a stream at the end of its video instead of looping")
    ("find-max-streams", "step the number of streams to find the max at >= 99% good rate, for "
                         "nexus, lazy and tfserving")
    ("max-streams", "upper bound of the search", cxxopts::value<int>()->default_value("12"))
    ("step-duration", "seconds per step of the search", cxxopts::value<double>()->default_value("20"))
    ("min-score", "face detector threshold", cxxopts::value<float>()->default_value("0.5"))
    ("annotate", "annotated frames per stream", cxxopts::value<int>()->default_value("3"))
    ("cpu-workers", "engine CPU pool threads (0 = device default)", cxxopts::value<int>()->default_value("0"))
    ("allow-partial", "serve the streams that open when some requested ones cannot be opened "
                      "(default: exit 2)")
    ("check", "check the inputs (--out, streams, models, SLO) and exit without serving")
    ("match-threshold", "gallery match: descriptor distance strictly below this (face-api's "
                        "FaceMatcher: 0.6)", cxxopts::value<double>()->default_value("0.6"))
    ("metrics-port", "serve /metrics (Prometheus), /healthz, /readyz on 127.0.0.1:PORT while serving "
                     "(0 = any free port, -1 = off)", cxxopts::value<int>()->default_value("9090"))
    ("h,help", "this help");
  // clang-format on
  for (int i = 0; i < argc; ++i) {
    const std::string w = argv[i];
    const bool plain = w.find_first_of(" '\"$\\;&|<>*?()") == std::string::npos && !w.empty();
    cfg.command_line += (i ? " " : "") + (plain ? w : "'" + w + "'");
  }
  cxxopts::ParseResult a;
  try {
    a = opts.parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n" << opts.help() << "\n";
    return 2;
  }
  if (a.count("help")) {
    std::cout << opts.help() << "\n";
    return 0;
  }
  std::string stream_arg = a["streams"].as<std::string>();
  {
    std::string s = stream_arg;
    std::size_t p = 0;
    while (p <= s.size()) {
      auto q = s.find(',', p);
      if (q == std::string::npos) q = s.size();
      if (q > p) cfg.streams.push_back(s.substr(p, q - p));
      p = q + 1;
    }
  }
  cfg.tenants = a["tenants"].as<int>();
  cfg.tenant_heads = a.count("tenant-heads") > 0;
  cfg.fps = a["fps"].as<double>();
  cfg.duration_s = a["duration"].as<double>();
  cfg.slo_ms = a["slo"].as<double>();
  cfg.device = a["device"].as<std::string>();
  cfg.policy = a["policy"].as<std::string>();
  cfg.out = a["out"].as<std::string>();
  cfg.data = a["data"].as<std::string>();
  if (cfg.data.empty()) cfg.data = fs::is_directory("data/face-api") ? fs::path("data")
                                                                      : fs::path(VA_SOURCE_DIR) / "data";
  cfg.profiles = a["profiles"].as<std::string>();
  if (cfg.profiles.empty()) cfg.profiles = cfg.data / "profiles";
  cfg.reprofile = a.count("reprofile") > 0;
  cfg.loop = a.count("no-loop") == 0;
  cfg.find_max = a.count("find-max-streams") > 0;
  cfg.max_streams = a["max-streams"].as<int>();
  cfg.step_s = a["step-duration"].as<double>();
  cfg.min_score = a["min-score"].as<float>();
  cfg.annotate = a["annotate"].as<int>();
  cfg.cpu_workers = a["cpu-workers"].as<int>();
  cfg.allow_partial = a.count("allow-partial") > 0;
  cfg.metrics_port = a["metrics-port"].as<int>();
  cfg.check_only = a.count("check") > 0;
  cfg.match_threshold = a["match-threshold"].as<double>();
  (void)policy_kind(cfg.policy);
  NEXUS_CHECK(cfg.tenants >= 1 && cfg.tenants <= 16, "--tenants {}: expected 1..16", cfg.tenants);
  NEXUS_CHECK(!cfg.tenant_heads || cfg.tenants >= 2,
              "--tenant-heads with --tenants {}: expected --tenants 2..16 (a prefix group needs "
              "two or more tenants' models)",
              cfg.tenants);
  NEXUS_CHECK(!cfg.tenant_heads || !a.count("find-max-streams"),
              "--tenant-heads: not with --find-max-streams (its steps have no tenants)");
  NEXUS_CHECK(cfg.fps >= 0 && cfg.fps <= 240, "--fps {}: expected 0..240", cfg.fps);
  NEXUS_CHECK(cfg.duration_s > 0, "--duration {}: expected > 0 seconds", cfg.duration_s);
  NEXUS_CHECK(cfg.slo_ms >= 0, "--slo {}: expected a positive number of ms", cfg.slo_ms);
  NEXUS_CHECK(cfg.min_score > 0 && cfg.min_score < 1, "--min-score {}: expected (0, 1)",
              cfg.min_score);
  NEXUS_CHECK(cfg.match_threshold > 0 && cfg.match_threshold <= 2,
              "--match-threshold {}: expected (0, 2] (a Euclidean distance of unit descriptors)",
              cfg.match_threshold);
  if (int rc = validate_out(cfg.out)) return rc;

  Env env;
  const int gpus = nexus::cuda_device_count();
  if (cfg.device == "auto") {
    env.device = gpus > 0 ? "cuda" : "cpu";
  } else if (cfg.device == "cuda") {
    NEXUS_CHECK(gpus > 0, "--device cuda: no CUDA device found (built without CUDA, no driver or "
                          "no GPU); use --device cpu or auto");
    env.device = "cuda";
  } else if (cfg.device == "cpu") {
    env.device = "cpu";
  } else {
    throw nexus::Error(fmt::format("--device '{}': expected auto, cpu or cuda", cfg.device));
  }
  env.engine_devices = env.device == "cuda" ? "auto" : "cpu";
  if (cfg.streams.empty()) {
    // The default demo on a CPU: 2.25 frames/s, 3 detector runs a second (a tiled vtest frame
    // needs four), near what a 2-core CPU runs (the 512 x 512 detector takes 0.15-0.3 s a run),
    // so queues form, the detector batches and early drop drops what cannot make the SLO. (At
    // 3.25 frames/s a busy shared 2-core box completed only 21% of the frames in time.)
    if (env.device == "cpu" && stream_arg.empty() && !cfg.find_max)
      cfg.streams = {"vtest@0.25", "megamind@1.5", "photos@0.5"};
    else
      cfg.streams = {"vtest", "megamind", "photos"};
  }
  const double fps = cfg.fps > 0 ? cfg.fps : (env.device == "cpu" ? 0.5 : 10.0);
  const auto slo = std::chrono::microseconds(static_cast<std::int64_t>(
      1000.0 * (cfg.slo_ms > 0 ? cfg.slo_ms : (env.device == "cpu" ? 5000.0 : 400.0))));
  std::cout << fmt::format("device {} ({} CUDA device(s)); SLO {:.0f} ms per frame{}\n", env.device,
                           gpus, slo.count() / 1e3,
                           cfg.slo_ms > 0 ? "" : " (the device default; --slo to change)")
            << std::flush;  // the phase lines reach a log file at once (tests/video waits on them)

  env.models = load_models(cfg.data / "face-api" / "model");
  env.profiles = load_or_measure_profiles(env.models, env.device, cfg.profiles, cfg.reprofile);
  env.demo_photos = demo_photos(cfg.data);

  std::vector<StreamSpec> specs;
  for (int t = 0; t < cfg.tenants; ++t)
    for (const auto& arg : cfg.streams) {
      StreamSpec s = resolve_stream(arg, cfg, env);
      s.tenant = t;
      s.name += fmt::format("#{}", t);
      s.query = fmt::format("t{}-{}", t, s.pipeline == PipelineKind::kTiled ? "tiled" : "whole");
      if (s.fps <= 0) s.fps = fps > 0 ? fps : 10.0;
      specs.push_back(s);
    }
  if (int rc = preflight(cfg, env, specs, slo)) return rc;
  if (cfg.check_only) {
    std::cout << fmt::format("check: --out, {} stream(s) and the SLO of {:.0f} ms are accepted\n",
                             specs.size(), slo.count() / 1e3);
    return 0;
  }
  env.gallery = enroll(cfg, env);
  if (cfg.tenant_heads && !g_interrupted) {
    env.heads = make_tenant_heads(env.gallery, cfg.tenants,
                                  *env.models.graphs.at(kModelRecognition));
    for (const auto& h : env.heads) {
      std::string who;
      for (const auto& l : h.labels) who += (who.empty() ? "" : " ") + l;
      std::cout << fmt::format("tenant t{}: identity head {} over {} enrolled face(s): {}\n",
                               h.tenant, h.model, h.labels.size(), who);
    }
  }

  if (cfg.find_max) {
    if (g_interrupted) return 130;
    return find_max_streams(cfg, env, fps > 0 ? fps : 10.0, slo);
  }
  // A Ctrl-C before serving (model loading, profiling, enrolment) still ends in the complete
  // report: run_service sees the interrupt at once, starts no stream, drains an empty engine and
  // writes report.json with "interrupted": true and zero frames.
  // fps 0 on a GPU: each video at its own frame rate (photos at 1 per second).
  double run_fps = fps;
  if (run_fps <= 0) run_fps = 10.0;
  const auto o = run_service(cfg, env, specs, cfg.policy, run_fps, slo, cfg.duration_s, true, true);
  if (o.exit_code) return o.exit_code;
  return o.interrupted ? 130 : 0;
}

}  // namespace
}  // namespace va

int main(int argc, char** argv) {
  std::signal(SIGINT, va::on_signal);
  std::signal(SIGTERM, va::on_signal);
  try {
    return va::run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
