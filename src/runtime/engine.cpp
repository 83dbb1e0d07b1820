#include "nexus/runtime/engine.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "gpu_executor.hpp"
#include "nexus/core/log.hpp"
#include "nexus/exec/cuda_backend.hpp"
#include "nexus/model/graph.hpp"
#include "nexus/model/prefix.hpp"
#include "nexus/schedule/prefix_group.hpp"
#include "nexus/runtime/planner.hpp"
#include "nexus/schedule/query_planner.hpp"
#include "nexus/schedule/scheduler.hpp"
#include "nexus/sim/sim_backend.hpp"

#if __has_include("nexus/exec/cpu_backend.hpp")
#include "nexus/exec/cpu_backend.hpp"
#define NEXUS_RUNTIME_HAVE_CPU_BACKEND 1
#endif

namespace nexus::runtime {

namespace {
/// A stage budget as the Scheduler takes it (whole µs, > 0): rounded up, so that a budget under
/// 1 µs (a query of near-zero-latency models) is not refused as "SLO must be > 0".
std::chrono::microseconds scheduler_budget(std::int64_t budget_ns) {
  return std::max(std::chrono::microseconds(1),
                  std::chrono::ceil<std::chrono::microseconds>(std::chrono::nanoseconds(budget_ns)));
}
}  // namespace

std::string_view to_string(RequestStatus s) {
  switch (s) {
    case RequestStatus::kCompleted: return "completed";
    case RequestStatus::kDropped: return "dropped";
    case RequestStatus::kRejected: return "rejected";
    case RequestStatus::kFailed: return "failed";
  }
  return "?";
}

std::string_view to_string(Reason r) {
  switch (r) {
    case Reason::kNone: return "none";
    case Reason::kDeadline: return "deadline";
    case Reason::kQueueFull: return "queue_full";
    case Reason::kNoRoute: return "no_route";
    case Reason::kShutdown: return "shutdown";
    case Reason::kBackendError: return "backend_error";
    case Reason::kStageError: return "stage_error";
  }
  return "?";
}

namespace {

std::vector<DeviceInfo> parse_devices(const std::string& spec) {
  std::vector<DeviceInfo> out;
  auto count_after = [&](std::string_view prefix) -> int {
    if (spec.size() == prefix.size()) return 1;
    const std::string rest = spec.substr(prefix.size() + 1);
    int n = 0;
    try {
      n = std::stoi(rest);
    } catch (...) {
      n = 0;
    }
    NEXUS_CHECK(n >= 1 && n <= 4096, "EngineOptions::devices '{}': expected a count >= 1 after ':'",
                spec);
    return n;
  };
  auto starts = [&](std::string_view p) {
    return spec.rfind(p, 0) == 0 && (spec.size() == p.size() || spec[p.size()] == ':');
  };
  if (spec == "auto") {
    const int n = cuda_device_count();
    if (n > 0) {
      for (int i = 0; i < n; ++i) out.push_back({i, DeviceKind::kCuda, fmt::format("cuda:{}", i)});
    } else {
      out.push_back({0, DeviceKind::kCpu, "cpu"});
    }
  } else if (starts("sim")) {
    const int n = count_after("sim");
    for (int i = 0; i < n; ++i) out.push_back({i, DeviceKind::kSim, fmt::format("sim:{}", i)});
  } else if (starts("cpu")) {
    const int n = count_after("cpu");
    for (int i = 0; i < n; ++i)
      out.push_back({i, DeviceKind::kCpu, n == 1 ? std::string("cpu") : fmt::format("cpu:{}", i)});
  } else if (starts("cuda")) {
    const int n = cuda_device_count();
    NEXUS_CHECK(n > 0, "EngineOptions::devices 'cuda': no CUDA device found");
    for (int i = 0; i < n; ++i) out.push_back({i, DeviceKind::kCuda, fmt::format("cuda:{}", i)});
  } else {
    throw_error("EngineOptions::devices '{}': expected auto, cpu, cpu:N, sim:N or cuda", spec);
  }
  return out;
}

std::size_t reason_index(Reason r) { return static_cast<std::size_t>(r); }

}  // namespace

// ---------------------------------------------------------------------------------------------
// Construction, models, queries

Engine::Impl::Impl(EngineOptions options) : options_(std::move(options)) {
  clock_ = options_.clock ? options_.clock : std::make_shared<SteadyClock>();
  virtual_ = clock_->is_virtual();
  devices_ = parse_devices(options_.devices);
  NEXUS_CHECK(options_.max_queue_per_session >= 1, "EngineOptions::max_queue_per_session must be >= 1");
  if (options_.executor.concurrent_sessions) {
    NEXUS_CHECK(virtual_, "ExecutorOptions::concurrent_sessions: simulated devices in virtual time only "
                          "(expected EngineOptions::clock a VirtualClock)");
    for (const auto& d : devices_)
      NEXUS_CHECK(d.kind == DeviceKind::kSim, "ExecutorOptions::concurrent_sessions: device '{}' is not simulated "
                                              "(expected EngineOptions::devices \"sim:N\")", d.name);
    NEXUS_CHECK(!options_.prefix_batching, "ExecutorOptions::concurrent_sessions: expected "
                                           "EngineOptions::prefix_batching = false (a prefix group's merged "
                                           "batch is Nexus's round robin, paper §6.3)");
  }
  NEXUS_CHECK(options_.slo_split_segments >= 1, "EngineOptions::slo_split_segments must be >= 1 (got {})",
              options_.slo_split_segments);
  NEXUS_CHECK(std::isfinite(options_.slo_split_slack_tolerance) && options_.slo_split_slack_tolerance >= 0,
              "EngineOptions::slo_split_slack_tolerance must be >= 0 (got {})", options_.slo_split_slack_tolerance);
  NEXUS_CHECK(options_.epoch.count() >= 0, "EngineOptions::epoch must be >= 0 (got {} us)", options_.epoch.count());
  NEXUS_CHECK(options_.epoch.count() == 0 || options_.min_epoch.count() > 0,
              "EngineOptions::min_epoch must be > 0 (got {} us)", options_.min_epoch.count());
  {
    SchedulerOptions so;
    so.packer = options_.packer;
    so.epoch = options_.epoch.count() > 0 ? options_.epoch : std::chrono::hours(24 * 365 * 100);
    so.min_epoch = options_.epoch.count() > 0 ? std::min(options_.min_epoch, options_.epoch) : so.epoch;
    so.ewma_alpha = options_.rate_ewma_alpha;
    so.low_watermark = options_.low_watermark;
    so.high_watermark = options_.high_watermark;
    so.min_rate_rps = 1e-3;
    so.stabilize = !options_.planner && options_.planner_kind == PlannerKind::kSquishy;
    so.planner = [this](const std::vector<Session>& s, const Plan* running) { return plan_sessions(s, running); };
    try {
      scheduler_ = std::make_unique<Scheduler>(ProfileMap{}, so);
    } catch (const nexus::Error& e) {
      throw_error("EngineOptions (epoch, min_epoch, rate_ewma_alpha, watermarks): {}", e.what());
    }
    if (options_.epoch.count() > 0) tick_ = std::chrono::duration_cast<Duration>(so.min_epoch);
  }
  started_at_ = clock_->now();
  last_epoch_ = started_at_;
  for (const auto& d : devices_) executors_.push_back(std::make_unique<Executor>(*this, d.index));
  device_memory_.resize(devices_.size());
  sim_next_.resize(devices_.size());
  sim_dirty_flag_.assign(devices_.size(), 0);
  if (!virtual_) {
    for (int i = 0; i < options_.cpu_workers; ++i)
      pool_.threads.emplace_back([this] {
        while (true) {
          std::function<void()> task;
          {
            std::unique_lock lock(pool_.mu);
            pool_.cv.wait(lock, [&] { return pool_.stop || !pool_.tasks.empty(); });
            if (pool_.tasks.empty()) return;
            task = std::move(pool_.tasks.front());
            pool_.tasks.pop_front();
          }
          task();
          pool_.pending.fetch_sub(1, std::memory_order_acq_rel);
        }
      });
    for (auto& e : executors_) e->start();
    if (tick_.count() > 0)
      epoch_thread_ = std::thread([this] {
        std::unique_lock lock(epoch_mu_);
        while (!stopping_) {
          epoch_cv_.wait_for(lock, tick_, [&] { return stopping_; });
          if (stopping_) break;
          lock.unlock();
          try {
            epoch_tick(clock_->now());
          } catch (const std::exception& e) {
            // A custom planner or rate source that fails keeps the running plan; the error is
            // in stats().plan_error.
            std::lock_guard cl(control_mu_);
            plan_error_ = e.what();
          }
          lock.lock();
        }
      });
  }
}

Engine::Impl::~Impl() { shutdown(); }

void Engine::Impl::load_model(ModelSpec spec) {
  std::lock_guard lock(control_mu_);
  NEXUS_CHECK(!shut_down_, "load_model('{}'): the engine is shut down", spec.name);
  NEXUS_CHECK(!spec.name.empty(), "load_model: empty model name");
  NEXUS_CHECK(!model_index_.count(spec.name), "load_model('{}'): a model of that name is loaded",
              spec.name);
  NEXUS_CHECK(!spec.profile.empty(), "load_model('{}'): empty batching profile (expected ℓ(b))",
              spec.name);
  NEXUS_CHECK(std::isfinite(spec.declared_prefix.fraction) && spec.declared_prefix.fraction >= 0 &&
                  spec.declared_prefix.fraction <= 1,
              "load_model('{}'): declared_prefix.fraction {} (expected a share of ℓ(b) in 0..1)", spec.name,
              spec.declared_prefix.fraction);
  auto m = std::make_unique<ModelState>();
  NEXUS_CHECK(model_store_.size() < kMaxModels, "load_model('{}'): more than {} models", spec.name, kMaxModels);
  m->index = static_cast<int>(model_store_.size());
  m->max_batch = spec.max_batch > 0 ? std::min(spec.max_batch, spec.profile.max_batch())
                                    : spec.profile.max_batch();
  std::vector<Duration> plan_lat;
  for (int b = 1; b <= m->max_batch; ++b) {
    plan_lat.push_back(std::chrono::duration_cast<Duration>(spec.profile.latency(b)));
    m->sim_latency.push_back(std::chrono::duration_cast<Duration>(spec.profile.mean_latency(b)));
  }
  m->plan_latency = dispatch::LatencyTable(plan_lat);
  m->spec = std::move(spec);
  m->backends.resize(devices_.size());
  m->device_bytes.assign(devices_.size(), 0);
  m->load.prepared_batches = m->max_batch;
  try {
    for (const auto& d : devices_) load_own_backend(*m, d);
  } catch (...) {
    for (std::size_t d = 0; d < m->device_bytes.size(); ++d)
      device_memory_[d].used -= std::min(device_memory_[d].used, m->device_bytes[d]);
    throw;
  }
  const ModelSpec& spec_ref = m->spec;
  m->item_shape = spec_ref.input_shape;
  if (m->item_shape.rank() == 0 && !m->backends.empty()) {
    try {
      m->item_shape = m->backends[0]->input_shape(0);
    } catch (...) {
      m->item_shape = Shape{};
    }
  }
  // A declared prefix (models without a graph) is the application's claim that the members
  // run the same first layers: they must take the same input.
  if (options_.prefix_batching && !spec_ref.graph && !spec_ref.declared_prefix.key.empty()) {
    for (const auto& o : model_store_) {
      if (o->unloaded || o->spec.graph || o->spec.declared_prefix.key != spec_ref.declared_prefix.key) continue;
      if (o->item_shape == m->item_shape && o->spec.input_dtype == spec_ref.input_dtype) continue;
      for (std::size_t d = 0; d < m->device_bytes.size(); ++d) device_memory_[d].used -= m->device_bytes[d];
      throw_error(
          "load_model('{}'): mismatched input shapes in declared prefix '{}': model '{}' takes {} {}, "
          "model '{}' takes {} {} (the members of a prefix must take the same input)",
          spec_ref.name, spec_ref.declared_prefix.key, o->spec.name, o->item_shape, name_of(o->spec.input_dtype),
          spec_ref.name, m->item_shape, name_of(spec_ref.input_dtype));
    }
  }
  scheduler_->add_profile(m->spec.name, m->spec.profile);
  model_index_[m->spec.name] = m->index;
  models_[static_cast<std::size_t>(m->index)].store(m.get(), std::memory_order_release);
  model_store_.push_back(std::move(m));
  // Prefix groups form (or grow) with every load; a change re-plans the running queries.
  if (regroup() && num_sessions_.load() > 0) {
    scheduler_->invalidate_plan();
    plan_now(clock_->now(), true);
  }
}

void Engine::Impl::load_own_backend(ModelState& m, const DeviceInfo& d) {
  const ModelSpec& spec = m.spec;
  std::unique_ptr<Backend> be;
  if (spec.make_backend) {
    be = spec.make_backend(d);
  } else if (d.kind == DeviceKind::kSim) {
    sim::SimBackendOptions so;
    so.input_shape = spec.input_shape;
    so.device = d.name;
    so.latency = options_.sim_latency;
    // One stream per (model, device), fixed by the engine's seed.
    so.latency.seed = options_.sim_latency.seed * 0x9E3779B97F4A7C15ULL + options_.seed * 1000003ULL +
                      static_cast<std::uint64_t>(m.index) * 4099ULL + static_cast<std::uint64_t>(d.index);
    be = std::make_unique<sim::SimBackend>(spec.profile, clock_, so);
  } else if (d.kind == DeviceKind::kCuda) {
    NEXUS_CHECK(spec.graph, "load_model('{}'): no graph and no make_backend for {}", spec.name, d.name);
    CudaBackendOptions co;
    co.device_index = d.index;
    be = make_cuda_backend(co);
  } else {
#ifdef NEXUS_RUNTIME_HAVE_CPU_BACKEND
    NEXUS_CHECK(spec.graph, "load_model('{}'): no graph and no make_backend for {}", spec.name, d.name);
    be = std::make_unique<CpuBackend>();
#else
    throw_error("load_model('{}'): no make_backend given and no CpuBackend in this build", spec.name);
#endif
  }
  NEXUS_CHECK(be != nullptr, "load_model('{}'): make_backend returned null for {}", spec.name, d.name);
  const auto t0 = std::chrono::steady_clock::now();
  if (spec.graph) be->load(*spec.graph, m.max_batch);
  // Ready before the first request: every batch size the executor may form (1..max_batch).
  std::vector<int> sizes(static_cast<std::size_t>(m.max_batch));
  for (int b = 1; b <= m.max_batch; ++b) sizes[static_cast<std::size_t>(b - 1)] = b;
  be->prepare(sizes);
  m.load.load_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto di = static_cast<std::size_t>(d.index);
  m.device_bytes[di] = be->device_bytes();
  // The device's memory as the planner sees it: what is free now plus what the models loaded
  // on it hold (Backend::free_memory; 0 = unknown).
  auto& dm = device_memory_[di];
  dm.used += be->device_bytes();
  if (const std::size_t f = be->free_memory(); f > 0) dm.capacity = f + dm.used;
  m.backends[di] = std::move(be);
}

void Engine::Impl::unload_model(const std::string& name) {
  std::lock_guard lock(control_mu_);
  NEXUS_CHECK(!shut_down_, "unload_model('{}'): the engine is shut down", name);
  auto it = model_index_.find(name);
  NEXUS_CHECK(it != model_index_.end(), "unload_model('{}'): no model of that name is loaded", name);
  ModelState& m = *model_store_[static_cast<std::size_t>(it->second)];
  std::string users;
  for (const auto& q : query_store_)
    for (const auto& st : q->stages)
      if (st.model == m.index) {
        users += fmt::format("{}'{}'", users.empty() ? "" : ", ", q->name);
        break;
      }
  NEXUS_CHECK(users.empty(), "unload_model('{}'): the model is used by query {} (queries cannot be removed)",
              name, users);
  // No session uses the model, so no executor touches its backends: free them.
  for (std::size_t d = 0; d < m.device_bytes.size() && d < device_memory_.size(); ++d)
    device_memory_[d].used -= std::min(device_memory_[d].used, m.device_bytes[d]);
  m.backends.clear();
  m.device_bytes.clear();
  m.unloaded = true;
  model_index_.erase(it);
  NEXUS_LOG(kInfo, "model_unloaded", {"model", name});
  // A group it was in is re-formed or dissolved; the others keep serving under the new plan (the
  // running batches keep their own reference to the old group).
  if (regroup() && num_sessions_.load() > 0) {
    scheduler_->invalidate_plan();
    plan_now(clock_->now(), true);
  }
}

// ---------------------------------------------------------------------------------------------
// Prefix groups (paper §6.3; docs/prefix_batching.md)

std::shared_ptr<const PrefixGroupRuntime> Engine::Impl::build_group(std::string key, bool declared,
                                                                    std::vector<int> models) {
  auto rt = std::make_shared<PrefixGroupRuntime>();
  rt->key = std::move(key);
  rt->declared = declared;
  rt->models = std::move(models);
  // Each member's share of its ℓ(b) and m(b) that is prefix. Declared: the application's
  // fraction. Hashed graphs: an estimate from the graphs — ℓ split by the share of per-item MACs
  // in the prefix, m(b) by the share of weight bytes (nexus::Profiler can measure the prefix and
  // suffix graphs of model::split_prefix for real).
  std::vector<double> lat_share, mem_share;
  std::vector<const model::Graph*> graphs;
  if (!declared) {
    for (int i : rt->models) graphs.push_back(model(i).spec.graph.get());
    const model::CommonPrefix cp = model::longest_common_prefix(graphs);
    // The engine keeps each member's graph (to re-form groups, and to load its own backend
    // again when it leaves): the members' prefix weights (verified equal) are made to share
    // member 0's storage, so that once the application drops its graphs the process holds
    // them once (the CpuBackend and split_prefix share a graph's weight storage).
    for (std::size_t k = 1; k < graphs.size() && !cp.nodes.empty(); ++k) {
      std::vector<model::Node> nodes = graphs[k]->nodes();
      bool copied = false;
      for (std::size_t j = 0; j < cp.nodes[k].size(); ++j) {
        const model::Node& from = graphs[0]->node(cp.nodes[0][j]);
        model::Node& to = nodes[static_cast<std::size_t>(cp.nodes[k][j])];
        for (auto [src, dst] : {std::pair{&from.weight, &to.weight}, {&from.bias, &to.bias},
                                {&from.mean, &to.mean}, {&from.variance, &to.variance}})
          if (!src->empty() && src->raw_data() != dst->raw_data()) {
            *dst = *src;
            copied = true;
          }
      }
      if (!copied) continue;
      ModelState& mk = *model_store_[static_cast<std::size_t>(rt->models[k])];
      mk.spec.graph = std::make_shared<const model::Graph>(model::Graph::from_nodes(
          graphs[k]->name(), std::move(nodes), graphs[k]->inputs(), graphs[k]->outputs()));
      graphs[k] = mk.spec.graph.get();
    }
    rt->shared_weight_bytes = cp.shared_weight_bytes;
    for (const model::Graph* g : graphs) {
      const double macs = double(g->macs_per_item());
      const double bytes = double(g->weights_bytes());
      const double by_bytes = bytes > 0 ? double(cp.shared_weight_bytes) / bytes : 0.0;
      lat_share.push_back(std::clamp(macs > 0 ? double(cp.shared_macs_per_item) / macs : by_bytes, 0.0, 1.0));
      mem_share.push_back(std::clamp(by_bytes, 0.0, 1.0));
    }
  } else {
    for (int i : rt->models) {
      lat_share.push_back(model(i).spec.declared_prefix.fraction);
      mem_share.push_back(model(i).spec.declared_prefix.fraction);
    }
  }
  // The prefix and suffix profiles (member 0's profile × its shares; each member's × the rest),
  // up to the members' smallest max batch.
  std::vector<PrefixSplit> split;
  for (std::size_t k = 0; k < rt->models.size(); ++k) {
    const ModelState& mk = model(rt->models[k]);
    split.push_back({mk.spec.name, mk.spec.profile, lat_share[k], mem_share[k], mk.max_batch});
  }
  static_cast<PrefixGroupProfiles&>(*rt) = split_prefix_group("prefix:" + rt->key, split);
  std::uint64_t key_hash = 1469598103934665603ULL;
  for (char c : rt->key) key_hash = (key_hash ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  rt->runners.resize(devices_.size());
  rt->device_bytes.assign(devices_.size(), 0);
  rt->sim.resize(devices_.size());
  std::vector<int> sizes;
  for (int b = 1; b <= rt->max_batch; ++b) sizes.push_back(b);
  for (const DeviceInfo& d : devices_) {
    const auto di = static_cast<std::size_t>(d.index);
    if (d.kind == DeviceKind::kSim) {
      // A sim executes nothing: the prefix and each suffix draw their time (with the engine's
      // SimLatency noise, one stream per part and device) and the suffixes give the outputs.
      auto make = [&](const BatchProfile& p, std::uint64_t part) {
        sim::SimBackendOptions so;
        so.device = d.name;
        so.latency = options_.sim_latency;
        so.latency.seed = options_.sim_latency.seed * 0x9E3779B97F4A7C15ULL + options_.seed * 1000003ULL +
                          key_hash * 31ULL + part * 8191ULL + static_cast<std::uint64_t>(d.index);
        return std::make_unique<sim::SimBackend>(p, clock_, so);
      };
      rt->sim[di].prefix = make(rt->prefix, 0);
      for (std::size_t k = 0; k < rt->suffixes.size(); ++k) rt->sim[di].suffixes.push_back(make(rt->suffixes[k], k + 1));
      continue;
    }
    if (declared) continue;  // no graph: each member's own backend runs its slice
    const int device_index = d.index;
    const DeviceKind kind = d.kind;
    auto runner = std::make_unique<PrefixRunner>([kind, device_index]() -> std::unique_ptr<Backend> {
      if (kind == DeviceKind::kCuda) {
        CudaBackendOptions co;
        co.device_index = device_index;
        return make_cuda_backend(co);
      }
#ifdef NEXUS_RUNTIME_HAVE_CPU_BACKEND
      return std::make_unique<CpuBackend>();
#else
      throw_error("prefix group: no CpuBackend in this build");
#endif
    });
    runner->load(model::split_prefix(graphs), rt->max_batch);
    runner->prepare(sizes);
    rt->weights_bytes = runner->weights_bytes();
    rt->unshared_weights_bytes = runner->unshared_weights_bytes();
    rt->shared_weight_bytes = runner->shared_weights_bytes();
    rt->device_bytes[di] = runner->device_bytes();
    rt->runners[di] = std::move(runner);
  }
  // The device memory the planner sees counts the runner (regroup releases the members' own
  // backends where it runs).
  for (std::size_t d = 0; d < rt->device_bytes.size() && d < device_memory_.size(); ++d)
    device_memory_[d].used += rt->device_bytes[d];
  auto& counters = group_counters_[rt->key];
  if (!counters) counters = std::make_unique<PrefixGroupCounters>();
  rt->counters = counters.get();
  std::string names;
  for (int i : rt->models) names += fmt::format("{}{}", names.empty() ? "" : ",", model(i).spec.name);
  NEXUS_LOG(kInfo, "prefix_group_formed", {"group", rt->key}, {"members", names},
            {"shared_weight_bytes", rt->shared_weight_bytes}, {"declared", declared});
  return rt;
}

bool Engine::Impl::regroup() {
  std::vector<std::shared_ptr<const PrefixGroupRuntime>> next;
  auto find_or_build = [&](std::string key, bool declared, std::vector<int> models) {
    for (const auto& g : groups_)
      if (g->key == key && g->models == models) {
        next.push_back(g);
        return;
      }
    try {
      next.push_back(build_group(key, declared, std::move(models)));
    } catch (const std::exception& e) {
      // The members are served on their own (as without the feature); the reason is logged.
      NEXUS_LOG(kWarn, "prefix_group_failed", {"group", key}, {"error", e.what()});
    }
  };
  if (options_.prefix_batching) {
    // Hashed (model/prefix.hpp): models with a graph that the engine's own backends run.
    std::vector<const model::Graph*> graphs;
    std::vector<int> index;
    for (const auto& m : model_store_)
      if (!m->unloaded && m->spec.graph && !m->spec.make_backend) {
        graphs.push_back(m->spec.graph.get());
        index.push_back(m->index);
      }
    std::vector<model::PrefixGroup> hashed;
    try {
      if (graphs.size() >= 2) hashed = model::find_prefix_groups(graphs);
    } catch (const std::exception& e) {
      NEXUS_LOG(kWarn, "prefix_detection_failed", {"error", e.what()});  // served on their own
    }
    for (const model::PrefixGroup& g : hashed) {
      std::vector<int> models;
      for (int j : g.members) models.push_back(index[static_cast<std::size_t>(j)]);
      // The key names the prefix: a hash over its nodes' canonical hashes.
      const auto hashes = model::node_hashes(*graphs[static_cast<std::size_t>(g.members[0])]);
      std::uint64_t h = 1469598103934665603ULL;
      for (model::NodeId n : g.prefix.nodes[0]) h = (h ^ hashes[static_cast<std::size_t>(n)]) * 1099511628211ULL;
      find_or_build(fmt::format("prefix-{:016x}", h), false, std::move(models));
    }
    // Declared (models without a graph): one group per key with two or more members.
    std::vector<DeclaredPrefix> declared;
    for (const auto& m : model_store_)
      declared.push_back(!m->unloaded && !m->spec.graph ? m->spec.declared_prefix : DeclaredPrefix{});
    for (auto& [key, members] : declared_prefix_groups(declared)) {
      std::vector<int> models;
      for (std::size_t i : members) models.push_back(model_store_[i]->index);
      find_or_build(key, true, std::move(models));
    }
  }
  const bool changed = next != groups_;
  // Members' own backends (issue #12: shared weights held once). On a device where a group's
  // runner serves a model, its own backend is released; a model no runner serves there (its
  // group dissolved or re-formed without it, or a group that failed to build) gets its own back,
  // loaded and prepared before the new plan names it. The executors run what their schedules
  // hold (Serving), so a released backend serves until the new plan reaches every executor and
  // is freed then; nothing queued moves (the sessions keep their queues across the swap).
  auto served_by = [&](const std::vector<std::shared_ptr<const PrefixGroupRuntime>>& gs, int mi,
                       std::size_t d) {
    for (const auto& g : gs)
      if (d < g->runners.size() && g->runners[d] && g->member_of(mi) >= 0) return true;
    return false;
  };
  try {
    for (const auto& m : model_store_) {
      if (m->unloaded) continue;
      for (const DeviceInfo& d : devices_) {
        const auto di = static_cast<std::size_t>(d.index);
        if (!m->backends[di] && !served_by(next, m->index, di)) {
          load_own_backend(*m, d);
          NEXUS_LOG(kInfo, "model_backend_reloaded", {"model", m->spec.name}, {"device", d.name},
                    {"device_bytes", m->device_bytes[di]});
        }
      }
    }
  } catch (...) {
    // The groups stay as they were (the new ones' runners are dropped uncounted).
    for (const auto& g : next)
      if (std::find(groups_.begin(), groups_.end(), g) == groups_.end())
        for (std::size_t d = 0; d < g->device_bytes.size() && d < device_memory_.size(); ++d)
          device_memory_[d].used -= std::min(device_memory_[d].used, g->device_bytes[d]);
    throw;
  }
  for (const auto& g : groups_)
    if (std::find(next.begin(), next.end(), g) == next.end())
      for (std::size_t d = 0; d < g->device_bytes.size() && d < device_memory_.size(); ++d)
        device_memory_[d].used -= std::min(device_memory_[d].used, g->device_bytes[d]);
  groups_ = std::move(next);
  for (const auto& m : model_store_) {
    if (m->unloaded) continue;
    for (std::size_t d = 0; d < m->backends.size(); ++d)
      if (m->backends[d] && served_by(groups_, m->index, d)) {
        device_memory_[d].used -= std::min(device_memory_[d].used, m->device_bytes[d]);
        m->device_bytes[d] = 0;
        m->backends[d].reset();  // freed here, or by the last executor schedule that names it
      }
  }
  return changed;
}

std::shared_ptr<const PrefixGroupRuntime> Engine::Impl::runner_group(int mi, int d) const {
  const auto di = static_cast<std::size_t>(d);
  for (const auto& g : groups_)
    if (di < g->runners.size() && g->runners[di] && g->member_of(mi) >= 0) return g;
  return nullptr;
}

Engine::Impl::GroupedSessions Engine::Impl::group_sessions(const std::vector<Session>& sessions,
                                                           std::map<std::string, BatchProfile>& profiles) const {
  std::vector<const PrefixGroupProfiles*> groups;
  for (const auto& g : groups_) groups.push_back(g.get());
  return merge_prefix_groups(sessions, groups, profiles);
}

void Engine::Impl::expand_groups(Plan& plan, const GroupedSessions& grouped) {
  auto shares_of = [](const std::vector<Session>& ms) {
    std::vector<double> r;
    double total = 0;
    for (const auto& s : ms) total += s.rate_rps;
    for (const auto& s : ms) r.push_back(total > 0 ? s.rate_rps / total : 1.0 / double(ms.size()));
    return r;
  };
  for (auto& g : plan.gpus) {
    std::vector<SessionAllocation> out;
    for (const auto& a : g.sessions) {
      auto it = grouped.members.find(a.session);
      if (it == grouped.members.end()) {
        out.push_back(a);
        continue;
      }
      const auto& ms = it->second;
      std::vector<double> rates;
      for (const auto& s : ms) rates.push_back(s.rate_rps);
      const std::vector<int> batch = member_shares(a.batch, rates);
      const std::vector<double> share = shares_of(ms);
      for (std::size_t k = 0; k < ms.size(); ++k) {
        SessionAllocation x;
        x.session = ms[k].id;
        x.model = ms[k].model;
        x.batch = batch[k];
        x.latency = a.latency;
        x.rate_rps = a.rate_rps * share[k];
        x.slo = ms[k].slo;
        x.prefix_group = a.session;
        out.push_back(std::move(x));
      }
    }
    g.sessions = std::move(out);
  }
  for (const auto& [id, ms] : grouped.members) {
    const std::vector<double> share = shares_of(ms);
    if (auto r = plan.routes.find(id); r != plan.routes.end()) {
      const std::vector<Route> table = r->second;
      plan.routes.erase(r);
      for (std::size_t k = 0; k < ms.size(); ++k) {
        auto& t = plan.routes[ms[k].id];
        t = table;
        for (auto& e : t) e.rate_rps *= share[k];
      }
    }
    plan.stage_budgets.erase(id);
  }
  std::vector<Rejection> rejected;
  for (const auto& r : plan.rejected) {
    auto it = grouped.members.find(r.session);
    if (it == grouped.members.end()) {
      rejected.push_back(r);
      continue;
    }
    const std::vector<double> share = shares_of(it->second);
    for (std::size_t k = 0; k < it->second.size(); ++k) {
      Rejection x = r;
      x.session = it->second[k].id;
      x.reason = fmt::format("in prefix group '{}': {}", r.session, r.reason);
      x.served_rps *= share[k];
      x.demanded_rps *= share[k];
      rejected.push_back(std::move(x));
    }
  }
  plan.rejected = std::move(rejected);
}

int Engine::Impl::add_query(QuerySpec spec) {
  int handle = -1;
  {
    std::lock_guard lock(control_mu_);
    NEXUS_CHECK(!shut_down_, "add_query('{}'): the engine is shut down", spec.name);
    NEXUS_CHECK(!spec.name.empty(), "add_query: empty query name");
    NEXUS_CHECK(!find_query(spec.name), "add_query('{}'): a query of that name exists", spec.name);
    NEXUS_CHECK(query_store_.size() < kMaxQueries, "add_query('{}'): more than {} queries", spec.name, kMaxQueries);
    NEXUS_CHECK(spec.slo.count() > 0, "add_query('{}'): SLO must be > 0 (got {} µs)", spec.name,
                spec.slo.count());
    NEXUS_CHECK(!spec.stages.empty(), "add_query('{}'): no stages", spec.name);
    auto q = std::make_unique<QueryDef>();
    q->handle = static_cast<int>(query_store_.size());
    q->name = spec.name;
    q->slo = std::chrono::duration_cast<Duration>(spec.slo);
    NEXUS_CHECK(std::isfinite(spec.expected_rate_rps) && spec.expected_rate_rps >= 0,
                "add_query('{}'): expected_rate_rps must be a finite rate >= 0 req/s (got {})", spec.name,
                spec.expected_rate_rps);
    q->expected_rate = spec.expected_rate_rps > 0 ? spec.expected_rate_rps : 1.0;
    q->priority = spec.priority;
    std::map<std::string, int> idx;
    for (std::size_t i = 0; i < spec.stages.size(); ++i) {
      const auto& s = spec.stages[i];
      NEXUS_CHECK(!s.name.empty(), "add_query('{}'): stage {} has no name", spec.name, i);
      NEXUS_CHECK(idx.emplace(s.name, static_cast<int>(i)).second,
                  "add_query('{}'): duplicate stage '{}'", spec.name, s.name);
      auto mi = model_index_.find(s.model);
      NEXUS_CHECK(mi != model_index_.end(), "add_query('{}'): stage '{}' uses unknown model '{}'",
                  spec.name, s.name, s.model);
    }
    NEXUS_CHECK(num_sessions_.load() + static_cast<int>(spec.stages.size()) <= kMaxSessions,
                "add_query('{}'): more than {} sessions", spec.name, kMaxSessions);
    for (auto& s : spec.stages) {
      StageDef d;
      d.name = s.name;
      d.model = model_index_.at(s.model);
      d.pre = std::move(s.preprocess);
      d.post = std::move(s.postprocess);
      for (auto& c : s.children) {
        auto ci = idx.find(c.stage);
        NEXUS_CHECK(ci != idx.end(), "add_query('{}'): stage '{}' has unknown child '{}'", spec.name,
                    s.name, c.stage);
        NEXUS_CHECK(c.expected_fanout >= 0, "add_query('{}'): negative fan-out on {} -> {}",
                    spec.name, s.name, c.stage);
        d.children.push_back({ci->second, std::move(c.fanout), c.expected_fanout});
      }
      q->stages.push_back(std::move(d));
    }
    for (std::size_t i = 0; i < q->stages.size(); ++i)
      for (auto& c : q->stages[i].children)
        q->stages[static_cast<std::size_t>(c.stage)].parents.push_back(static_cast<int>(i));
    // Cycle and reachability check (DFS colours from the root).
    std::vector<int> colour(q->stages.size(), 0);
    std::function<void(int)> dfs = [&](int v) {
      colour[static_cast<std::size_t>(v)] = 1;
      for (auto& c : q->stages[static_cast<std::size_t>(v)].children) {
        const int w = c.stage;
        NEXUS_CHECK(colour[static_cast<std::size_t>(w)] != 1,
                    "add_query('{}'): the stage graph has a cycle through '{}'", spec.name,
                    q->stages[static_cast<std::size_t>(w)].name);
        if (colour[static_cast<std::size_t>(w)] == 0) dfs(w);
      }
      colour[static_cast<std::size_t>(v)] = 2;
    };
    dfs(0);
    for (std::size_t i = 0; i < colour.size(); ++i)
      NEXUS_CHECK(colour[i] == 2, "add_query('{}'): stage '{}' is not reachable from the root '{}'",
                  spec.name, q->stages[i].name, q->stages[0].name);
    NEXUS_CHECK(q->stages[0].parents.empty(), "add_query('{}'): the root '{}' has a parent",
                spec.name, q->stages[0].name);
    // Initial rates: the expected rate times the fan-outs on the path.
    std::vector<double> rate(q->stages.size(), 0.0);
    rate[0] = q->expected_rate;
    std::function<void(int)> push_rate = [&](int v) {
      for (auto& c : q->stages[static_cast<std::size_t>(v)].children) {
        rate[static_cast<std::size_t>(c.stage)] += rate[static_cast<std::size_t>(v)] * c.fanout_mean;
        push_rate(c.stage);
      }
    };
    push_rate(0);
    // The DP split comes first: a query whose SLO no split can meet is refused before anything
    // of it is declared.
    std::vector<Duration> dp_budget;
    if (options_.slo_split == SloSplit::kDynamicProgram) dp_budget = split_slo(*q, rate, true);
    // Sessions, one per stage.
    for (std::size_t i = 0; i < q->stages.size(); ++i) {
      auto s = std::make_unique<SessionState>();
      s->index = num_sessions_.load();
      s->id = q->name + "/" + q->stages[i].name;
      s->query = q->handle;
      s->stage = static_cast<int>(i);
      s->model = q->stages[i].model;
      s->hist_size = model(s->model).max_batch + 1;
      s->batch_hist = std::make_unique<std::atomic<std::uint64_t>[]>(static_cast<std::size_t>(s->hist_size));
      q->stages[i].session = s->index;
      for (auto& e : executors_) e->add_session(s->index);
      sessions_[static_cast<std::size_t>(s->index)].store(s.get(), std::memory_order_release);
      session_store_.push_back(std::move(s));
      num_sessions_.fetch_add(1);
    }
    if (options_.slo_split == SloSplit::kDynamicProgram) {
      for (std::size_t i = 0; i < q->stages.size(); ++i)
        session(q->stages[i].session)->budget_ns.store(dp_budget[i].count());
      recompute_downstream(*q);
    } else {
      compute_budgets(*q);
    }
    for (std::size_t i = 0; i < q->stages.size(); ++i) {
      SessionState* s = session(q->stages[i].session);
      s->rate_rps = std::max(rate[i], 1e-3);
      Session x;
      x.id = s->id;
      x.model = model(s->model).spec.name;
      x.slo = scheduler_budget(s->budget_ns.load());
      x.rate_rps = s->rate_rps;
      x.priority = q->priority;
      x.group = q->name;  // a query is admitted whole
      scheduler_->add_session(x);
    }
    auto index = std::make_unique<QueryIndex>(query_index_.load() ? *query_index_.load() : QueryIndex{});
    (*index)[q->name] = q.get();
    handle = q->handle;
    queries_[static_cast<std::size_t>(handle)].store(q.get(), std::memory_order_release);
    query_store_.push_back(std::move(q));
    query_index_.store(index.get(), std::memory_order_release);
    query_index_store_.push_back(std::move(index));  // old indexes stay valid for readers
  }
  replan();
  return handle;
}

const QueryDef* Engine::Impl::find_query(std::string_view name) const {
  const QueryIndex* idx = query_index_.load(std::memory_order_acquire);
  if (!idx) return nullptr;
  auto it = idx->find(name);
  return it == idx->end() ? nullptr : it->second;
}

// Splits the query SLO over its stages in proportion to ℓ(1) on the heaviest path through each
// stage, so every root-to-leaf path's budgets sum to at most the SLO.
// With `uniform`, every stage weighs the same: each gets SLO / (stages on its longest path).
std::vector<Duration> Engine::Impl::proportional_budgets(const QueryDef& q, bool uniform) const {
  const std::size_t n = q.stages.size();
  std::vector<double> w(n), up(n, 0), down(n, 0);
  for (std::size_t i = 0; i < n; ++i)
    w[i] = uniform ? 1.0 : std::max(1.0, double(model(q.stages[i].model).plan_latency(1).count()));
  std::function<double(int)> down_of = [&](int v) -> double {
    auto& d = down[static_cast<std::size_t>(v)];
    if (d > 0) return d;
    double best = 0;
    for (auto& c : q.stages[static_cast<std::size_t>(v)].children) best = std::max(best, down_of(c.stage));
    return d = w[static_cast<std::size_t>(v)] + best;
  };
  std::function<double(int)> up_of = [&](int v) -> double {
    auto& u = up[static_cast<std::size_t>(v)];
    if (u > 0) return u;
    double best = 0;
    for (int p : q.stages[static_cast<std::size_t>(v)].parents) best = std::max(best, up_of(p));
    return u = w[static_cast<std::size_t>(v)] + best;
  };
  std::vector<Duration> budget(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double total = up_of(static_cast<int>(i)) + down_of(static_cast<int>(i)) - w[i];
    budget[i] = Duration(static_cast<Duration::rep>(double(q.slo.count()) * w[i] / total));
  }
  return budget;
}

void Engine::Impl::compute_budgets(QueryDef& q) {
  const std::size_t n = q.stages.size();
  const std::vector<Duration> budget = proportional_budgets(q);
  std::vector<Duration> downstream(n, Duration::zero());
  std::vector<bool> done(n, false);
  std::function<Duration(int)> ds = [&](int v) -> Duration {
    if (done[static_cast<std::size_t>(v)]) return downstream[static_cast<std::size_t>(v)];
    Duration best = Duration::zero();
    for (auto& c : q.stages[static_cast<std::size_t>(v)].children)
      best = std::max(best, budget[static_cast<std::size_t>(c.stage)] + ds(c.stage));
    done[static_cast<std::size_t>(v)] = true;
    return downstream[static_cast<std::size_t>(v)] = best;
  };
  for (std::size_t i = 0; i < n; ++i) {
    SessionState* s = session(q.stages[i].session);
    s->budget_ns.store(budget[i].count());
    s->downstream_ns.store(ds(static_cast<int>(i)).count());
  }
}

void Engine::Impl::recompute_downstream(QueryDef& q) {
  const std::size_t n = q.stages.size();
  std::vector<Duration> downstream(n, Duration::zero());
  std::vector<bool> done(n, false);
  std::function<Duration(int)> ds = [&](int v) -> Duration {
    if (done[static_cast<std::size_t>(v)]) return downstream[static_cast<std::size_t>(v)];
    Duration best = Duration::zero();
    for (auto& c : q.stages[static_cast<std::size_t>(v)].children)
      best = std::max(best, Duration(session(q.stages[static_cast<std::size_t>(c.stage)].session)->budget_ns.load()) +
                                ds(c.stage));
    done[static_cast<std::size_t>(v)] = true;
    return downstream[static_cast<std::size_t>(v)] = best;
  };
  for (std::size_t i = 0; i < n; ++i)
    session(q.stages[i].session)->downstream_ns.store(ds(static_cast<int>(i)).count());
}

// ---------------------------------------------------------------------------------------------
// Planning

namespace {

// Smallest budget a stage can work with (as the DP sees it): 2ℓ(b) at the cheapest batch that
// fits the device memory, plus pre/post-processing and the fixed overhead (PackerOptions).
std::int64_t min_stage_budget_us(const BatchProfile& p, const PackerOptions& o) {
  const std::size_t cap = o.gpu_memory_bytes == 0 ? std::numeric_limits<std::size_t>::max() : o.gpu_memory_bytes;
  std::int64_t best = std::numeric_limits<std::int64_t>::max() / 4;
  for (int b = 1; b <= p.max_batch(); ++b)
    if (p.memory(b) <= cap) best = std::min<std::int64_t>(best, 2 * p.latency(b).count());
  std::int64_t overhead = o.fixed_overhead.count();
  if (o.subtract_pre_post) overhead += (p.preprocess() + p.postprocess()).count();
  return best + overhead;
}

}  // namespace

// The QueryPlanner's DP over the engine's query: stage ids and model names as declared, the
// root at `rate[0]`, each edge's fan-out the ratio of the stage rates (the declared mean at
// add_query, the measured one later; the declared mean where a stage has several parents or its
// parent has no rate). Returns budgets by stage index. InfeasibleSlo becomes nexus::Error naming
// the stages on the tightest path and an SLO verified to work (when `explain`).
std::vector<Duration> Engine::Impl::split_slo(const QueryDef& q, const std::vector<double>& rate,
                                              bool explain) const {
  const std::size_t n = q.stages.size();
  nexus::QuerySpec spec;
  spec.id = q.name;
  spec.slo = std::chrono::duration_cast<std::chrono::microseconds>(q.slo);
  spec.rate_rps = std::max(rate[0], 1e-3);
  ProfileMap profiles;
  for (std::size_t i = 0; i < n; ++i) {
    const StageDef& st = q.stages[i];
    const ModelState& m = model(st.model);
    profiles.emplace(m.spec.name, m.spec.profile);
    nexus::QueryStage qs{st.name, m.spec.name, {}};
    for (const auto& c : st.children) {
      const auto ci = static_cast<std::size_t>(c.stage);
      double f = c.fanout_mean;
      if (q.stages[ci].parents.size() == 1 && rate[i] > 1e-9) f = rate[ci] / rate[i];
      qs.children.push_back({q.stages[ci].name, std::max(f, 1e-6)});  // the DP needs γ > 0
    }
    spec.stages.push_back(std::move(qs));
  }
  const QueryPlanner planner(QueryPlannerOptions{.segments = options_.slo_split_segments,
                                                 .slack_tolerance = options_.slo_split_slack_tolerance},
                             options_.packer);
  try {
    const QuerySplit split = planner.split(spec, profiles);
    std::vector<Duration> out(n);
    for (std::size_t i = 0; i < n; ++i)
      out[i] = std::chrono::duration_cast<Duration>(split.budgets.at(q.stages[i].name));
    return out;
  } catch (const InfeasibleSlo& e) {
    if (!explain) throw;
    // The tightest root-to-leaf path of minimal stage budgets, and (with joins, where the DP
    // gives every stage of a layer one budget) the sum over layers of their largest minimum.
    std::vector<std::int64_t> need(n), below(n, 0);
    std::vector<int> next(n, -1);
    for (std::size_t i = 0; i < n; ++i) need[i] = min_stage_budget_us(profiles.at(model(q.stages[i].model).spec.name), options_.packer);
    std::vector<bool> seen(n, false);
    std::function<std::int64_t(int)> path = [&](int v) -> std::int64_t {
      const auto vi = static_cast<std::size_t>(v);
      if (seen[vi]) return below[vi];
      std::int64_t best = -1;
      for (const auto& c : q.stages[vi].children)
        if (const std::int64_t x = path(c.stage); x > best) {
          best = x;
          next[vi] = c.stage;
        }
      seen[vi] = true;
      return below[vi] = need[vi] + std::max<std::int64_t>(best, 0);
    };
    std::int64_t required = std::max<std::int64_t>(path(0), e.required_slo.count());
    std::vector<int> depth(n, 0);
    std::function<void(int)> deepen = [&](int v) {
      for (const auto& c : q.stages[static_cast<std::size_t>(v)].children)
        if (depth[static_cast<std::size_t>(c.stage)] < depth[static_cast<std::size_t>(v)] + 1) {
          depth[static_cast<std::size_t>(c.stage)] = depth[static_cast<std::size_t>(v)] + 1;
          deepen(c.stage);
        }
    };
    deepen(0);
    bool joins = false;
    for (const auto& st : q.stages) joins = joins || st.parents.size() > 1;
    if (joins) {
      std::map<int, std::int64_t> layer;
      for (std::size_t i = 0; i < n; ++i) layer[depth[i]] = std::max(layer[depth[i]], need[i]);
      std::int64_t sum = 0;
      for (auto [d, x] : layer) sum += x;
      required = std::max(required, sum);
    }
    // Budgets are whole DP steps (SLO / segments): step up until the DP accepts the SLO.
    bool verified = false;
    for (int tries = 0; tries < static_cast<int>(n) + 8 && !verified; ++tries) {
      spec.slo = std::chrono::microseconds(required);
      try {
        planner.split(spec, profiles);
        verified = true;
      } catch (const InfeasibleSlo&) {
        required += std::max<std::int64_t>(1, (required + options_.slo_split_segments - 1) / options_.slo_split_segments);
      }
    }
    std::string stages;
    for (int v = 0; v >= 0; v = next[static_cast<std::size_t>(v)]) {
      const auto vi = static_cast<std::size_t>(v);
      stages += fmt::format("{}'{}' needs >= {:.3f} ms", stages.empty() ? "" : ", ", q.stages[vi].name,
                            double(need[vi]) / 1000.0);
    }
    std::string alone;
    for (std::size_t i = 0; i < n; ++i)
      if (need[i] > std::chrono::duration_cast<std::chrono::microseconds>(q.slo).count())
        alone += fmt::format("{}'{}'", alone.empty() ? "" : ", ", q.stages[i].name);
    throw_error(
        "add_query('{}'): SLO {:.3f} ms cannot be met by any split over its stages{}: on the tightest "
        "path {} (2·ℓ(b) at the smallest batch plus pre/post-processing and overhead){}; "
        "an SLO of {:.3f} ms {}",
        q.name, double(std::chrono::duration_cast<std::chrono::microseconds>(q.slo).count()) / 1000.0,
        alone.empty() ? "" : fmt::format(" (stage {} alone exceeds it)", alone), stages,
        joins ? " (stages at one depth share one budget)" : "", double(required) / 1000.0,
        verified ? "would work" : "or more is needed");
  }
}

void Engine::Impl::replan() {
  std::lock_guard lock(control_mu_);
  plan_now(clock_->now(), true);
}

void Engine::Impl::plan_now(TimePoint now, bool force) {
  const auto t = std::chrono::duration_cast<std::chrono::microseconds>(now - started_at_);
  if (!force && !scheduler_->replan_due(t)) return;
  // Re-split every query's SLO at the measured stage rates (the DP's budgets depend on them).
  if (options_.slo_split == SloSplit::kDynamicProgram) {
    for (auto& q : query_store_) {
      std::vector<double> rate(q->stages.size());
      for (std::size_t i = 0; i < q->stages.size(); ++i) rate[i] = session(q->stages[i].session)->rate_rps;
      std::vector<Duration> budget;
      try {
        budget = split_slo(*q, rate, false);
      } catch (const nexus::Error&) {
        continue;  // cannot happen once add_query accepted it (feasibility ignores rates): keep
      }
      bool changed = false;
      for (std::size_t i = 0; i < q->stages.size(); ++i) {
        SessionState* s = session(q->stages[i].session);
        if (s->budget_ns.load() != budget[i].count()) {
          s->budget_ns.store(budget[i].count());
          changed = true;
        }
      }
      if (changed) recompute_downstream(*q);
    }
  }
  const int ns = num_sessions_.load();
  for (int i = 0; i < ns; ++i) {
    const SessionState* s = session(i);
    scheduler_->set_slo(s->id, scheduler_budget(s->budget_ns.load()));
  }
  Plan p = scheduler_->replan(t);  // the planner below, or the running plan kept
  // The budgets in use are those the running plan was made for (a fallback split, or the
  // budgets of a plan kept); planner entries in stage_budgets win (apply_plan).
  for (const auto& g : p.gpus)
    for (const auto& a : g.sessions)
      if (a.slo.count() > 0) p.stage_budgets.emplace(a.session, a.slo);
  for (int i = 0; i < ns; ++i) {
    const SessionState* s = session(i);
    p.stage_budgets.emplace(s->id, scheduler_budget(s->budget_ns.load()));
  }
  apply_plan(p);
  const bool news = p.num_gpus() != plan_.num_gpus() || p.rejected.size() != plan_.rejected.size();
  NEXUS_LOG_AT(news ? log::Level::kInfo : log::Level::kDebug, "plan_swap", {"gpus", p.num_gpus()},
               {"sessions", ns}, {"rejected", p.rejected.size()}, {"lower_bound_gpus", fmt::format("{:.3f}", p.lower_bound_gpus)});
  for (const auto& r : p.rejected)
    NEXUS_LOG_AT(news ? log::Level::kWarn : log::Level::kDebug, "session_rejected", {"session", r.session}, {"reason", r.reason});
  plan_ = std::move(p);
}

// The packer options with the devices' memory: the smallest device capacity when every device
// reports one and the application set none (PackerOptions::gpu_memory_bytes = 0).
PackerOptions Engine::Impl::planner_packer() const {
  PackerOptions o = options_.packer;
  if (o.gpu_memory_bytes > 0 || device_memory_.empty()) return o;
  std::size_t cap = std::numeric_limits<std::size_t>::max();
  for (const auto& dm : device_memory_) {
    if (dm.capacity == 0) return o;
    cap = std::min(cap, dm.capacity);
  }
  o.gpu_memory_bytes = cap;
  return o;
}

Plan Engine::Impl::plan_sessions(const std::vector<Session>& sessions, const Plan* running) {
  PlanRequest req;
  req.num_devices = static_cast<int>(devices_.size());
  std::map<std::string, BatchProfile> profiles;
  for (auto& m : model_store_)
    if (!m->unloaded) profiles.emplace(m->spec.name, m->spec.profile);
  req.profiles = &profiles;
  // Prefix batching: each group's member sessions are planned as one group session (its profile
  // joins `profiles`); the plan is expanded back to the members below.
  GroupedSessions grouped = group_sessions(sessions, profiles);
  std::map<std::string, std::string> group_of;  // member session id → group session id
  for (const auto& [gid, ms] : grouped.members)
    for (const auto& m : ms) group_of[m.id] = gid;
  req.sessions = grouped.sessions;
  if (running)
    for (const auto& [id, table] : running->routes)
      if (!table.empty()) {
        auto g = group_of.find(id);
        req.running.insert(g == group_of.end() ? id : g->second);
      }
  std::map<std::string, int> by_index;
  for (int i = 0; i < num_sessions_.load(); ++i) by_index[session(i)->id] = i;
  Plan p;
  if (options_.planner) {
    p = options_.planner(req);
    check_external_plan(p, req);
  } else if (options_.planner_kind == PlannerKind::kReplicate) {
    p = make_replicate_planner()(req);
  } else {
    p = make_squishy_planner(planner_packer())(req);
    // The DP's split minimises fractional GPUs assuming as many GPUs as it likes (§6.2); on a box
    // too small for that plan, stages with small budgets (short duty cycles) cannot share a
    // device with slow ones. When admission control had to cut load, also try the split ∝ ℓ(1)
    // (SloSplit::kProportional) and the even split (each stage SLO / stages on its longest path:
    // the largest smallest budget, so the longest common duty cycle), and run whichever plan
    // serves most of the demand.
    const auto served = [](const Plan& x) {
      double r = 0;
      for (const auto& g : x.gpus)
        for (const auto& a : g.sessions) r += a.rate_rps;
      return r;
    };
    const bool cut = std::any_of(p.rejected.begin(), p.rejected.end(),
                                 [](const Rejection& r) { return r.demanded_rps > 0; });
    if (cut && options_.slo_split == SloSplit::kDynamicProgram) {
      bool switched = false;
      for (const bool uniform : {false, true}) {
        PlanRequest alt = req;
        auto alt_slo = [&](const std::string& id) {
          const SessionState* s = session(by_index.at(id));
          const QueryDef& q = *query_store_[static_cast<std::size_t>(s->query)];
          return std::chrono::duration_cast<std::chrono::microseconds>(
              proportional_budgets(q, uniform)[static_cast<std::size_t>(s->stage)]);
        };
        for (auto& x : alt.sessions) {
          if (auto g = grouped.members.find(x.id); g != grouped.members.end()) {
            x.slo = std::chrono::microseconds::max();  // the group: its tightest member's
            for (const auto& m : g->second) x.slo = std::min(x.slo, alt_slo(m.id));
          } else {
            x.slo = alt_slo(x.id);
          }
        }
        Plan p2 = make_squishy_planner(planner_packer())(alt);
        if (served(p2) > served(p) * (1 + 1e-9)) {
          p = std::move(p2);
          req = std::move(alt);
          for (auto& [gid, ms] : grouped.members)
            for (auto& m : ms) m.slo = alt_slo(m.id);  // the members' budgets of this split
          switched = true;
        }
      }
      (void)switched;  // plan_now takes the budgets the running plan was made for
    }
  }
  expand_groups(p, grouped);
  return p;
}

// A custom planner's plan must name only known sessions and existing devices: it is refused
// (nexus::Error naming the entry) instead of being folded onto the devices.
void Engine::Impl::check_external_plan(const Plan& p, const PlanRequest& req) const {
  std::set<std::string> known;
  for (const auto& s : req.sessions) known.insert(s.id);
  NEXUS_CHECK(p.num_gpus() <= req.num_devices,
              "planner: the plan has {} GPU slots but the engine has {} device(s)", p.num_gpus(), req.num_devices);
  std::set<int> slots;
  for (std::size_t i = 0; i < p.gpus.size(); ++i) {
    const GpuPlan& g = p.gpus[i];
    NEXUS_CHECK(g.gpu >= 0 && g.gpu < req.num_devices,
                "planner: gpus[{}] names slot {}; the engine has devices 0..{}", i, g.gpu, req.num_devices - 1);
    NEXUS_CHECK(slots.insert(g.gpu).second, "planner: gpus[{}] names slot {} a second time", i, g.gpu);
    for (const auto& a : g.sessions) {
      NEXUS_CHECK(known.count(a.session), "planner: gpus[{}] (slot {}) names unknown session '{}'", i, g.gpu,
                  a.session);
      NEXUS_CHECK(a.batch >= 1, "planner: gpus[{}] (slot {}) gives session '{}' batch {} (expected >= 1)", i,
                  g.gpu, a.session, a.batch);
    }
  }
  for (const auto& [id, table] : p.routes) {
    NEXUS_CHECK(known.count(id), "planner: routes name unknown session '{}'", id);
    for (const auto& r : table)
      NEXUS_CHECK(r.gpu >= 0 && r.gpu < req.num_devices,
                  "planner: route of session '{}' names slot {}; the engine has devices 0..{}", id, r.gpu,
                  req.num_devices - 1);
  }
}

void Engine::Impl::apply_plan(const Plan& plan) {
  const int ndev = static_cast<int>(devices_.size());
  const int ns = num_sessions_.load();
  std::map<std::string, int> by_id;
  for (int i = 0; i < ns; ++i) by_id[session(i)->id] = i;
  // Slot g runs on device g: a plan never has more slots than devices (the squishy planner's
  // admission control, check_external_plan for custom planners).
  std::vector<std::map<int, int>> targets(static_cast<std::size_t>(ndev));
  std::vector<Executor::Schedule> schedules(static_cast<std::size_t>(ndev));
  for (const auto& g : plan.gpus) {
    if (g.gpu < 0 || g.gpu >= ndev) continue;
    auto& sched = schedules[static_cast<std::size_t>(g.gpu)];
    sched.duty_cycle = std::chrono::duration_cast<Duration>(g.duty_cycle);
    for (const auto& a : g.sessions) {
      auto it = by_id.find(a.session);
      if (it == by_id.end()) continue;
      auto [t, fresh] = targets[static_cast<std::size_t>(g.gpu)].try_emplace(it->second, a.batch);
      if (!fresh) continue;
      sched.sessions.emplace_back(it->second, a.batch);
      // What runs it there: its model's own backend, or the runner of the group holding its weights.
      const int mi = session(it->second)->model;
      ModelState& ms = *model_store_[static_cast<std::size_t>(mi)];
      Serving sv;
      if (static_cast<std::size_t>(g.gpu) < ms.backends.size()) sv.backend = ms.backends[static_cast<std::size_t>(g.gpu)];
      if (!sv.backend)
        if ((sv.group = runner_group(mi, g.gpu))) sv.member = sv.group->member_of(mi);
      sched.serving.push_back(std::move(sv));
    }
  }
  // Prefix groups: the members the plan runs in one group on a device form one merged batch
  // per duty cycle there, of the members' shares together (B), timed by ℓ_group at the members'
  // current rates. Members of a group that no longer exists run on their own.
  for (const auto& g : plan.gpus) {
    if (g.gpu < 0 || g.gpu >= ndev) continue;
    std::map<std::string, std::vector<std::pair<int, int>>> members;  // group id → (session, share)
    for (const auto& a : g.sessions)
      if (!a.prefix_group.empty())
        if (auto it = by_id.find(a.session); it != by_id.end()) {
          auto& list = members[a.prefix_group];
          if (std::none_of(list.begin(), list.end(), [&](const auto& x) { return x.first == it->second; }))
            list.emplace_back(it->second, a.batch);
        }
    for (const auto& [gid, ms] : members) {
      std::shared_ptr<const PrefixGroupRuntime> rt;
      for (const auto& x : groups_)
        if (x->session_id == gid) rt = x;
      if (!rt || ms.size() < 2) continue;
      Executor::Schedule::Group sg;
      std::vector<PrefixGroupMember> pm;
      int batch = 0;
      for (auto [si, b] : ms) {
        const SessionState* s = session(si);
        const int m = rt->member_of(s->model);
        if (m < 0) break;
        sg.sessions.push_back(si);
        batch += b;
        pm.push_back({Session{s->id, model(s->model).spec.name, std::chrono::microseconds(1), std::max(s->rate_rps, 1e-3), 0, {}},
                      rt->suffixes[static_cast<std::size_t>(m)]});
      }
      if (sg.sessions.size() != ms.size()) continue;
      const BatchProfile gp = group_profile(rt->session_id, rt->prefix, pm);
      std::vector<Duration> lat;
      for (int b = 1; b <= rt->max_batch; ++b) lat.push_back(std::chrono::duration_cast<Duration>(gp.latency(b)));
      sg.latency = dispatch::LatencyTable(lat);
      sg.batch = std::clamp(batch, 1, rt->max_batch);
      sg.runtime = rt;
      schedules[static_cast<std::size_t>(g.gpu)].groups.push_back(std::move(sg));
    }
  }
  // Stage budgets chosen by an external planner override ours; the downstream budgets (which
  // set each stage's deadline) follow.
  bool budgets_changed = false;
  for (const auto& [key, budget] : plan.stage_budgets) {
    auto it = by_id.find(key);
    if (it != by_id.end() && budget.count() > 0) {
      SessionState* s = session(it->second);
      s->budget_ns.store(std::chrono::duration_cast<Duration>(budget).count());
      budgets_changed = true;
    }
  }
  if (budgets_changed)
    for (auto& q : query_store_) recompute_downstream(*q);
  // New executor schedules first, then routes: an item routed by the new table finds its slot
  // active (or is re-routed once more by the executor — never lost).
  for (int d = 0; d < ndev; ++d) {
    executors_[static_cast<std::size_t>(d)]->set_plan(std::move(schedules[static_cast<std::size_t>(d)]));
    if (virtual_) sim_mark(d);
  }
  std::map<std::string, std::string> why;
  for (const auto& r : plan.rejected) why[r.session] = r.reason;
  for (int i = 0; i < ns; ++i) {
    SessionState* s = session(i);
    std::map<int, double> w;
    if (auto it = plan.routes.find(s->id); it != plan.routes.end())
      for (const auto& r : it->second)
        if (r.gpu >= 0 && r.gpu < ndev) w[r.gpu] += r.weight;
    std::vector<int> devs;
    std::vector<double> ws;
    for (auto [d, x] : w)
      if (targets[static_cast<std::size_t>(d)].count(i)) {
        devs.push_back(d);
        ws.push_back(x);
      }
    {
      // Before the routes change, so a request that finds no route finds its reason.
      std::lock_guard rl(no_route_mu_);
      if (devs.empty()) {
        auto it = why.find(s->id);
        no_route_reason_[i] = it != why.end() ? it->second : "the plan gives it no device";
      } else {
        no_route_reason_.erase(i);
      }
    }
    dispatcher_.set_routes(i, devs, ws);
  }
}

Plan Engine::Impl::plan() const {
  std::lock_guard lock(control_mu_);
  return plan_;
}

void Engine::Impl::epoch_tick(TimePoint now) {
  const double secs = std::chrono::duration<double>(now - last_epoch_).count();
  if (secs <= 0) return;
  std::lock_guard lock(control_mu_);
  const int ns = num_sessions_.load();
  for (int i = 0; i < ns; ++i) {
    SessionState* s = session(i);
    const auto arr = s->arrivals.load(std::memory_order_relaxed);
    const double r = double(arr - s->last_arrivals) / secs;
    s->last_arrivals = arr;
    scheduler_->observe(s->id, r);
    s->rate_rps = scheduler_->estimated_rate(s->id);
    s->rate_published.store(s->rate_rps, std::memory_order_relaxed);
  }
  last_epoch_ = now;
  plan_now(now, false);
}

// ---------------------------------------------------------------------------------------------
// Data path

RequestId Engine::Impl::submit(const QueryDef& q, Tensor input) {
  // Count the request in flight before checking `accepting_`, so shutdown() (which clears it
  // and then waits for in_flight_ == 0) cannot miss a request that passed the check.
  in_flight_.fetch_add(1, std::memory_order_seq_cst);
  if (!accepting_.load(std::memory_order_seq_cst)) {
    in_flight_.fetch_sub(1, std::memory_order_seq_cst);
    throw_error("submit('{}'): the engine is shut down", q.name);
  }
  struct Unwind {  // undo the count if the input check throws
    std::atomic<std::int64_t>& n;
    bool armed = true;
    ~Unwind() { if (armed) n.fetch_sub(1, std::memory_order_seq_cst); }
  } unwind{in_flight_};
  const StageDef& root = q.stages[0];
  const ModelState& m = model(root.model);
  if (!root.pre && m.item_shape.rank() > 0) {
    const Shape& s = input.shape();
    const bool ok = s == m.item_shape ||
                    (s.rank() == m.item_shape.rank() + 1 && s[0] == 1 && s.drop_front() == m.item_shape);
    NEXUS_CHECK(ok && input.dtype() == m.spec.input_dtype && !input.empty(),
                "submit('{}'): input {} {} does not match model '{}' (expected {} {})", q.name,
                s, name_of(input.dtype()), m.spec.name, m.item_shape, name_of(m.spec.input_dtype));
  }
  auto* qs = new QueryState;
  qs->id = next_id_.fetch_add(1, std::memory_order_relaxed);
  qs->query = &q;
  qs->submitted = clock_->now();
  qs->deadline = qs->submitted + q.slo;
  qs->input = std::move(input);
  unwind.armed = false;
  submitted_.fetch_add(1, std::memory_order_relaxed);
  const_cast<QueryDef&>(q).arrivals.fetch_add(1, std::memory_order_relaxed);
  const RequestId id = qs->id;
  Item it;
  it.q = qs;
  it.stage = 0;
  it.input = qs->input;
  if (!root.pre) it.enqueued = qs->submitted;  // one clock read per request on this path
  if (root.pre) {
    // Pre-processing runs on the CPU pool; the item is routed when it is ready.
    post_to_pool([this, it = std::move(it)]() mutable {
      std::vector<QueryResult> done;
      const StageDef& st = it.q->query->stages[0];
      try {
        it.model_input = st.pre(it.input);
      } catch (const std::exception& e) {
        end_item(it, RequestStatus::kFailed, Reason::kStageError,
                 fmt::format("preprocess of stage '{}' threw: {}", st.name, e.what()), &done);
        flush(done);
        return;
      }
      dispatch(std::move(it));
    });
  } else {
    it.model_input = it.input;
    dispatch(std::move(it));
  }
  return id;
}

void Engine::Impl::dispatch(Item&& it) {
  const QueryDef& q = *it.q->query;
  SessionState& s = *session(q.stages[static_cast<std::size_t>(it.stage)].session);
  const bool first = it.deadline == TimePoint{};  // not a re-route after a plan swap
  // Every arrival counts toward the session's measured rate, whatever its fate (routed,
  // rejected for no route or a full queue): a session the plan rejects is still measured at its
  // real load, so the next epoch does not re-admit it at ~0 req/s (issue #10).
  if (first) s.arrivals.fetch_add(1, std::memory_order_relaxed);
  const int dev = dispatcher_.route(s.index);
  if (dev < 0) {
    std::vector<QueryResult> done;
    std::string why;
    {
      std::lock_guard rl(no_route_mu_);
      if (auto r = no_route_reason_.find(s.index); r != no_route_reason_.end()) why = r->second;
    }
    end_item(it, RequestStatus::kRejected, Reason::kNoRoute,
             fmt::format("no device is planned for session '{}'{}{}", s.id, why.empty() ? "" : ": ", why),
             &done);
    flush(done);
    return;
  }
  if (first) {
    if (it.enqueued == TimePoint{}) it.enqueued = clock_->now();
    it.deadline = it.q->deadline - Duration(s.downstream_ns.load(std::memory_order_relaxed));
  }
  Executor& ex = *executors_[static_cast<std::size_t>(dev)];
  Slot* slot = ex.slot(s.index);
  if (slot->queued.fetch_add(1, std::memory_order_acq_rel) >= options_.max_queue_per_session) {
    slot->queued.fetch_sub(1, std::memory_order_acq_rel);
    std::vector<QueryResult> done;
    end_item(it, RequestStatus::kRejected, Reason::kQueueFull,
             fmt::format("session '{}' queue on {} is full ({} items)", s.id,
                         devices_[static_cast<std::size_t>(dev)].name, options_.max_queue_per_session),
             &done);
    flush(done);
    return;
  }
  slot->inbox.push(std::move(it));
  if (!virtual_)
    ex.notify();
  else
    sim_mark(dev);
}

void Engine::Impl::post_to_pool(std::function<void()> fn) {
  if (virtual_ || options_.cpu_workers <= 0 || pool_.threads.empty()) {
    fn();
    return;
  }
  pool_.pending.fetch_add(1, std::memory_order_acq_rel);
  {
    std::lock_guard lock(pool_.mu);
    pool_.tasks.push_back(std::move(fn));
  }
  pool_.cv.notify_one();
}

void Engine::Impl::complete_batch(Batch& b, std::vector<QueryResult>* done) {
  SessionState& ss = *session(b.session);
  const auto n = static_cast<std::int64_t>(b.items.size());
  TimePoint batch_now{};
  if (b.failed)
    NEXUS_LOG(kError, "backend_error", {"session", ss.id}, {"device", devices_[static_cast<std::size_t>(b.device)].name},
              {"batch", n}, {"error", b.error});
  for (std::int64_t i = 0; i < n; ++i) {
    Item& it = b.items[static_cast<std::size_t>(i)];
    QueryState* q = it.q;
    const StageDef& st = q->query->stages[static_cast<std::size_t>(it.stage)];
    if (b.failed) {
      end_item(it, RequestStatus::kFailed, Reason::kBackendError,
               fmt::format("backend of model '{}' on {} threw: {}",
                           model(st.model).spec.name,
                           devices_[static_cast<std::size_t>(b.device)].name, b.error),
               done);
      continue;
    }
    StageResult r;
    r.stage = st.name;
    r.parent = it.parent;
    r.enqueued = it.enqueued;
    r.started = b.started;
    r.batch_size = b.merged_size > 0 ? b.merged_size : static_cast<int>(n);
    r.device = b.device;
    std::vector<std::vector<Tensor>> child_inputs(st.children.size());
    try {
      std::vector<Tensor> outs;
      outs.reserve(b.outputs.size());
      for (const Tensor& o : b.outputs) {
        if (o.shape().rank() >= 1 && o.shape()[0] == n)
          outs.push_back(o.row(i));
        else
          outs.push_back(o);
      }
      r.outputs = st.post ? st.post(std::move(outs), it.input) : std::move(outs);
      if (!q->dead.load(std::memory_order_acquire)) {
        const StageView view{q->input, it.input, r.outputs};
        for (std::size_t c = 0; c < st.children.size(); ++c) {
          if (st.children[c].fanout)
            child_inputs[c] = st.children[c].fanout(view);
          else if (!r.outputs.empty())
            child_inputs[c] = {r.outputs[0]};
        }
      }
    } catch (const std::exception& e) {
      end_item(it, RequestStatus::kFailed, Reason::kStageError,
               fmt::format("postprocess/fan-out of stage '{}' threw: {}", st.name, e.what()), done);
      continue;
    }
    const bool per_item_work = st.post || !st.children.empty();
    if (virtual_)
      r.finished = b.finished;
    else if (per_item_work || batch_now == TimePoint{})
      r.finished = batch_now = clock_->now();
    else
      r.finished = batch_now;
    const Duration lat = r.finished - it.enqueued;
    ss.latency.record(lat);
    ss.completions.fetch_add(1, std::memory_order_relaxed);
    if (r.finished <= it.deadline) ss.good.fetch_add(1, std::memory_order_relaxed);
    int my_index;
    {
      std::lock_guard lock(q->mu);
      my_index = static_cast<int>(q->stages.size());
      q->stages.push_back(std::move(r));
    }
    // Children first, then release this item: the query cannot finish in between.
    std::size_t total = 0;
    for (auto& v : child_inputs) total += v.size();
    if (total > 0) {
      q->outstanding.fetch_add(static_cast<int>(total), std::memory_order_acq_rel);
      for (std::size_t c = 0; c < st.children.size(); ++c) {
        const StageDef& cs = q->query->stages[static_cast<std::size_t>(st.children[c].stage)];
        for (auto& in : child_inputs[c]) {
          Item ci;
          ci.q = q;
          ci.stage = st.children[c].stage;
          ci.parent = my_index;
          ci.input = std::move(in);
          if (cs.pre) {
            try {
              ci.model_input = cs.pre(ci.input);
            } catch (const std::exception& e) {
              end_item(ci, RequestStatus::kFailed, Reason::kStageError,
                       fmt::format("preprocess of stage '{}' threw: {}", cs.name, e.what()), done);
              continue;
            }
          } else {
            ci.model_input = ci.input;
          }
          const ModelState& cm = model(cs.model);
          if (cm.item_shape.rank() > 0) {
            const Shape& sh = ci.model_input.shape();
            const bool ok = sh == cm.item_shape || (sh.rank() == cm.item_shape.rank() + 1 && sh[0] == 1 &&
                                                    sh.drop_front() == cm.item_shape);
            if (!ok || ci.model_input.dtype() != cm.spec.input_dtype) {
              end_item(ci, RequestStatus::kFailed, Reason::kStageError,
                       fmt::format("stage '{}' input {} {} does not match model '{}' (expected {} {})",
                                   cs.name, sh, name_of(ci.model_input.dtype()), cm.spec.name,
                                   cm.item_shape, name_of(cm.spec.input_dtype)),
                       done);
              continue;
            }
          }
          dispatch(std::move(ci));
        }
      }
    }
    release(q, done);
  }
}

void Engine::Impl::end_item(Item& it, RequestStatus status, Reason reason, std::string message,
                            std::vector<QueryResult>* done) {
  QueryState* q = it.q;
  const QueryDef& qd = *q->query;
  const StageDef& st = qd.stages[static_cast<std::size_t>(it.stage)];
  SessionState* s = session(st.session);
  const auto nth = s->drops[reason_index(reason)].fetch_add(1, std::memory_order_relaxed) + 1;
  if ((nth & (nth - 1)) == 0)  // the 1st, 2nd, 4th, ... of this session and reason
    NEXUS_LOG(kWarn, "requests_not_completed", {"session", s->id}, {"reason", to_string(reason)},
              {"status", to_string(status)}, {"total", nth}, {"message", message});
  {
    std::lock_guard lock(q->mu);
    if (q->reason == Reason::kNone) {  // the first outcome that ends the query wins
      q->status = status;
      q->reason = reason;
      q->message = std::move(message);
      q->stage = st.name;
    }
  }
  q->dead.store(true, std::memory_order_release);
  release(q, done);
}

void Engine::Impl::release(QueryState* q, std::vector<QueryResult>* done) {
  if (q->outstanding.fetch_sub(1, std::memory_order_acq_rel) == 1) finalize(q, done);
}

void Engine::Impl::finalize(QueryState* q, std::vector<QueryResult>* done) {
  QueryResult r;
  QueryDef& qd = const_cast<QueryDef&>(*q->query);
  r.id = q->id;
  r.query = qd.name;
  r.submitted = q->submitted;
  {
    std::lock_guard lock(q->mu);
    r.status = q->status;
    r.reason = q->reason;
    r.message = std::move(q->message);
    r.stage = std::move(q->stage);
    r.stages = std::move(q->stages);
  }
  r.finished = r.submitted;
  for (const auto& s : r.stages) r.finished = std::max(r.finished, s.finished);
  if (r.status != RequestStatus::kCompleted || r.stages.empty()) r.finished = std::max(r.finished, clock_->now());
  r.met_slo = r.status == RequestStatus::kCompleted && r.finished - r.submitted <= qd.slo;
  switch (r.status) {
    case RequestStatus::kCompleted:
      completed_.fetch_add(1, std::memory_order_relaxed);
      qd.completions.fetch_add(1, std::memory_order_relaxed);
      qd.latency.record(r.finished - r.submitted);
      break;
    case RequestStatus::kDropped:
      dropped_.fetch_add(1, std::memory_order_relaxed);
      qd.dropped.fetch_add(1, std::memory_order_relaxed);
      break;
    case RequestStatus::kRejected:
      rejected_.fetch_add(1, std::memory_order_relaxed);
      qd.rejected.fetch_add(1, std::memory_order_relaxed);
      break;
    case RequestStatus::kFailed:
      failed_.fetch_add(1, std::memory_order_relaxed);
      qd.failed.fetch_add(1, std::memory_order_relaxed);
      break;
  }
  if (r.reason != Reason::kNone) qd.reasons[reason_index(r.reason)].fetch_add(1, std::memory_order_relaxed);
  if (r.met_slo) {
    good_.fetch_add(1, std::memory_order_relaxed);
    qd.good.fetch_add(1, std::memory_order_relaxed);
  }
  delete q;
  if (done)
    done->push_back(std::move(r));
  else
    results_.push(std::move(r));
  in_flight_.fetch_sub(1, std::memory_order_acq_rel);
}

void Engine::Impl::flush(std::vector<QueryResult>& done) {
  if (done.empty()) return;
  results_.push_all(done);
  done.clear();
}

std::vector<QueryResult> Engine::Impl::poll(std::size_t max, Duration timeout) {
  if (max == 0) return {};
  // (pop_some reserves for what is there)
  return results_.pop_some(max, virtual_ ? Duration::zero() : timeout);
}

// ---------------------------------------------------------------------------------------------
// Virtual time

void Engine::Impl::sim_mark(int device) {
  auto& f = sim_dirty_flag_[static_cast<std::size_t>(device)];
  if (!f) {
    f = 1;
    sim_dirty_.push_back(device);
  }
}

std::optional<TimePoint> Engine::Impl::sim_next_event() {
  const TimePoint now = clock_->now();
  for (int d : sim_dirty_) {
    const auto di = static_cast<std::size_t>(d);
    sim_dirty_flag_[di] = 0;
    const auto next = executors_[di]->next_event(now);
    // Unchanged (a push to a busy device): its heap entry is still the valid one.
    if (next == sim_next_[di]) continue;
    sim_next_[di] = next;
    if (next) {
      sim_heap_.push_back({sim_next_[di]->time_since_epoch().count(), d});
      std::push_heap(sim_heap_.begin(), sim_heap_.end(), std::greater<>{});
    }
  }
  sim_dirty_.clear();
  while (!sim_heap_.empty()) {
    const SimEvent& e = sim_heap_.front();
    const auto& cur = sim_next_[static_cast<std::size_t>(e.device)];
    if (cur && cur->time_since_epoch().count() == e.t) return TimePoint(Duration(e.t));
    std::pop_heap(sim_heap_.begin(), sim_heap_.end(), std::greater<>{});  // stale entry
    sim_heap_.pop_back();
  }
  return std::nullopt;
}

// Steps every executor whose event is due at `now`, in device order; each is marked dirty so its
// next event is recomputed (executors it dispatched to were marked by dispatch()).
void Engine::Impl::sim_step_due(TimePoint now) {
  sim_due_.clear();
  while (!sim_heap_.empty() && sim_heap_.front().t <= now.time_since_epoch().count()) {
    sim_due_.push_back(sim_heap_.front().device);
    std::pop_heap(sim_heap_.begin(), sim_heap_.end(), std::greater<>{});
    sim_heap_.pop_back();
  }
  std::sort(sim_due_.begin(), sim_due_.end());
  sim_due_.erase(std::unique(sim_due_.begin(), sim_due_.end()), sim_due_.end());
  for (int d : sim_due_) {
    const auto di = static_cast<std::size_t>(d);
    sim_next_[di].reset();
    if (auto x = executors_[di]->next_event(now); x && *x <= now) executors_[di]->sim_step(now);
    sim_mark(d);
  }
}

void Engine::Impl::run_until(TimePoint t) {
  NEXUS_CHECK(virtual_, "run_until: only in virtual time (EngineOptions::clock a VirtualClock)");
  auto& vc = static_cast<VirtualClock&>(*clock_);
  while (true) {
    auto next = sim_next_event();
    std::optional<TimePoint> epoch;
    if (tick_.count() > 0 && accepting_.load()) epoch = last_epoch_ + tick_;
    TimePoint when;
    if (next && (!epoch || *next <= *epoch))
      when = *next;
    else if (epoch)
      when = *epoch;
    else
      break;
    if (when > t) break;
    vc.advance_to(when);
    const TimePoint now = clock_->now();
    if (epoch && now >= *epoch) {
      epoch_tick(now);
      sim_next_event();  // the new plan marked every executor
    }
    sim_step_due(now);
  }
  vc.advance_to(t);
}

void Engine::Impl::run_until_idle() {
  NEXUS_CHECK(virtual_, "run_until_idle: only in virtual time (EngineOptions::clock a VirtualClock)");
  auto& vc = static_cast<VirtualClock&>(*clock_);
  while (auto next = sim_next_event()) {
    vc.advance_to(*next);
    sim_step_due(clock_->now());
  }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void Engine::Impl::shutdown() {
  std::lock_guard sl(shutdown_mu_);
  if (shut_down_) return;
  accepting_.store(false, std::memory_order_seq_cst);
  if (virtual_) {
    run_until_idle();
    for (auto& e : executors_) e->drop_all(Reason::kShutdown, "the engine shut down before it ran");
  } else {
    // Drain: executors keep running until nothing is queued, in flight or post-processing.
    // Every item either runs or is dropped by the batch policy within its deadline; the bound
    // below only guards against a backend that never returns.
    const TimePoint give_up = clock_->now() + std::chrono::seconds(60);
    while (in_flight_.load(std::memory_order_acquire) > 0 && clock_->now() < give_up)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    {
      std::lock_guard lock(epoch_mu_);
      stopping_ = true;
    }
    epoch_cv_.notify_all();
    if (epoch_thread_.joinable()) epoch_thread_.join();
    for (auto& e : executors_) e->stop();
    {
      std::lock_guard lock(pool_.mu);
      pool_.stop = true;
    }
    pool_.cv.notify_all();
    for (auto& t : pool_.threads) t.join();
    pool_.threads.clear();
    for (auto& e : executors_) e->drop_all(Reason::kShutdown, "the engine shut down before it ran");
  }
  {
    std::lock_guard lock(control_mu_);
    shut_down_ = true;
  }
  results_.wake_all();
}

// ---------------------------------------------------------------------------------------------
// Stats and metrics

EngineStats Engine::Impl::stats() const {
  EngineStats st;
  st.submitted = submitted_.load();
  st.completed = completed_.load();
  st.good = good_.load();
  st.dropped = dropped_.load();
  st.rejected = rejected_.load();
  st.failed = failed_.load();
  st.in_flight = static_cast<std::uint64_t>(std::max<std::int64_t>(0, in_flight_.load()));
  std::lock_guard lock(control_mu_);
  const int ns = num_sessions_.load();
  for (int i = 0; i < ns; ++i) {
    const SessionState* s = session(i);
    SessionMetricsSnapshot m;
    m.arrivals = s->arrivals.load();
    m.completions = s->completions.load();
    m.good = s->good.load();
    for (int r = 1; r < kNumReasons; ++r)
      if (auto v = s->drops[static_cast<std::size_t>(r)].load())
        m.drops[std::string(to_string(static_cast<Reason>(r)))] = v;
    m.batches = s->batches.load();
    m.mean_batch = m.batches ? double(s->batch_items.load()) / double(m.batches) : 0.0;
    for (int b = 1; b < s->hist_size; ++b)
      if (auto v = s->batch_hist[static_cast<std::size_t>(b)].load()) m.batch_sizes[b] = v;
    m.latency = s->latency.summary();
    m.rate_rps = s->rate_published.load();
    m.planned_rate_rps = plan_.planned_rate(s->id);
    for (const auto& r : plan_.rejected)
      if (r.session == s->id) {
        m.admission = plan_.route(s->id).empty() ? "rejected" : "partial";
        m.admission_reason = r.reason;
      }
    if (m.admission == "served" && plan_.route(s->id).empty()) {
      m.admission = "rejected";
      m.admission_reason = "the plan gives it no device";
    }
    st.sessions[s->id] = m;
  }
  for (const auto& q : query_store_) {
    QueryMetricsSnapshot m;
    m.arrivals = q->arrivals.load();
    m.completions = q->completions.load();
    m.good = q->good.load();
    m.dropped = q->dropped.load();
    m.rejected = q->rejected.load();
    m.failed = q->failed.load();
    for (int r = 1; r < kNumReasons; ++r)
      if (auto v = q->reasons[static_cast<std::size_t>(r)].load())
        m.reasons[std::string(to_string(static_cast<Reason>(r)))] = v;
    m.latency = q->latency.summary();
    st.queries[q->name] = m;
  }
  for (const auto& m : model_store_) {
    if (m->unloaded) continue;
    ModelLoadSnapshot x = m->load;
    x.device_bytes = 0;  // what its own backends hold now (0 where a group's runner serves it)
    for (std::size_t b : m->device_bytes) x.device_bytes += b;
    for (std::size_t d = 0; d < m->backends.size(); ++d)
      if (!m->backends[d])
        if (auto g = runner_group(m->index, static_cast<int>(d))) x.prefix_group = g->key;
    st.models[m->spec.name] = std::move(x);
  }
  for (const auto& g : groups_) {
    PrefixGroupMetricsSnapshot s;
    s.key = g->key;
    s.declared = g->declared;
    for (int i : g->models) s.members.push_back(model(i).spec.name);
    std::set<std::string> planned;
    for (const auto& gp : plan_.gpus)
      for (const auto& a : gp.sessions)
        if (a.prefix_group == g->session_id) planned.insert(a.session);
    s.sessions.assign(planned.begin(), planned.end());
    s.shared_weight_bytes = g->shared_weight_bytes;
    s.weights_bytes = g->weights_bytes;
    s.unshared_weights_bytes = g->unshared_weights_bytes;
    for (std::size_t b : g->device_bytes) s.device_bytes += b;
    const PrefixGroupCounters& c = *g->counters;
    s.batches = c.batches.load();
    s.items = c.items.load();
    s.mean_batch = s.batches ? double(s.items) / double(s.batches) : 0.0;
    s.max_batch_seen = c.max_batch.load();
    for (std::size_t b = 1; b < c.hist.size(); ++b)
      if (auto v = c.hist[b].load()) s.batch_sizes[static_cast<int>(b)] = v;
    st.prefix_groups[g->key] = std::move(s);
  }
  const double elapsed = std::chrono::duration<double>(clock_->now() - started_at_).count();
  for (const auto& e : executors_) {
    DeviceMetricsSnapshot d;
    d.device = e->device();
    d.name = devices_[static_cast<std::size_t>(d.device)].name;
    d.batches = e->batches.load();
    d.items = e->items.load();
    d.busy_seconds = double(e->busy_ns.load()) * 1e-9;
    d.occupancy = elapsed > 0 ? std::min(1.0, d.busy_seconds / elapsed) : 0.0;
    st.devices.push_back(d);
  }
  st.plan = plan_;
  st.plan_error = plan_error_;
  st.replans = scheduler_->replans();
  st.plans_kept = scheduler_->plans_kept();
  return st;
}

// ---------------------------------------------------------------------------------------------
// Engine facade

Engine::Engine(EngineOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Engine::~Engine() {
  if (impl_) impl_->shutdown();
}
void Engine::load_model(ModelSpec spec) { impl_->load_model(std::move(spec)); }
void Engine::unload_model(const std::string& name) { impl_->unload_model(name); }
int Engine::add_query(QuerySpec spec) { return impl_->add_query(std::move(spec)); }

RequestId Engine::submit(std::string_view query, Tensor input) {
  const QueryDef* q = impl_->find_query(query);
  NEXUS_CHECK(q != nullptr, "submit: unknown query '{}'", query);
  return impl_->submit(*q, std::move(input));
}

RequestId Engine::submit(int handle, Tensor input) {
  const QueryDef* q = handle >= 0 && handle < kMaxQueries
                          ? impl_->queries_[static_cast<std::size_t>(handle)].load(std::memory_order_acquire)
                          : nullptr;
  NEXUS_CHECK(q != nullptr, "submit: unknown query handle {}", handle);
  return impl_->submit(*q, std::move(input));
}

std::vector<QueryResult> Engine::poll(std::size_t max, Duration timeout) { return impl_->poll(max, timeout); }
void Engine::shutdown() { impl_->shutdown(); }
void Engine::run_until(TimePoint t) { impl_->run_until(t); }
void Engine::run_until_idle() { impl_->run_until_idle(); }
void Engine::replan() { impl_->replan(); }
Plan Engine::plan() const { return impl_->plan(); }
EngineStats Engine::stats() const { return impl_->stats(); }
const std::vector<DeviceInfo>& Engine::devices() const { return impl_->devices_; }
Clock& Engine::clock() const { return *impl_->clock_; }
bool Engine::accepting() const { return impl_->accepting_.load(std::memory_order_acquire); }

}  // namespace nexus::runtime
