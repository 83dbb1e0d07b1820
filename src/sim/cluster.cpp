#include "nexus/sim/cluster.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <random>
#include <set>
#include <type_traits>

#include "nexus/core/error.hpp"
#include "nexus/runtime/planner.hpp"
#include "nexus/schedule/prefix_group.hpp"

namespace nexus::sim {

namespace {

using namespace std::chrono_literals;

double to_s(Duration d) { return std::chrono::duration<double>(d).count(); }
Duration from_s(double s) { return Duration(static_cast<Duration::rep>(s * 1e9)); }

// splitmix64: independent seeds for (run seed, query, stream, window).
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
std::uint64_t seed_of(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) {
  return mix(mix(mix(seed ^ 0x5eed) ^ a) ^ (b << 20) ^ c);
}

// Poisson count with mean `mean` from the raw generator (portable across standard libraries).
int poisson_count(std::mt19937_64& g, double mean) {
  if (mean <= 0) return 0;
  if (mean > 30) {  // normal approximation for large means
    const double u1 = (double(g() >> 11) + 0.5) * 0x1.0p-53, u2 = double(g() >> 11) * 0x1.0p-53;
    const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * 3.141592653589793 * u2);
    return std::max(0, static_cast<int>(std::lround(mean + std::sqrt(mean) * z)));
  }
  const double limit = std::exp(-mean);
  double p = 1.0;
  int k = -1;
  do {
    ++k;
    p *= double(g() >> 11) * 0x1.0p-53;
  } while (p > limit);
  return k;
}

// The even split of the paper's baselines: every stage gets SLO / (stages on the longest path).
std::map<std::string, std::chrono::microseconds> even_budgets(const Scenario& sc) {
  std::map<std::string, std::chrono::microseconds> out;
  for (const auto& q : sc.queries) {
    const auto b = q.slo / q.longest_path();
    for (const auto& s : q.stages) out[q.name + "/" + s.name] = b;
  }
  return out;
}

// The arrivals of one query in [w0, w1) (virtual time), all streams merged.
std::vector<TimePoint> query_window(const ScenarioQuery& q, std::size_t qi, double scale,
                                    std::uint64_t seed, std::uint64_t window, TimePoint w0,
                                    TimePoint w1, const std::vector<std::vector<TimePoint>>* mmpp) {
  const auto& a = q.arrivals;
  const int streams = a.streams;
  std::vector<std::vector<TimePoint>> per(static_cast<std::size_t>(streams));
  for (int s = 0; s < streams; ++s) {
    auto& out = per[static_cast<std::size_t>(s)];
    const std::uint64_t sd = seed_of(seed, qi, static_cast<std::uint64_t>(s), window);
    if (mmpp) {
      const auto& all = (*mmpp)[static_cast<std::size_t>(s)];
      auto lo = std::lower_bound(all.begin(), all.end(), w0);
      auto hi = std::lower_bound(all.begin(), all.end(), w1);
      out.assign(lo, hi);
      continue;
    }
    if (a.trace.empty()) {
      const double r = a.rate_rps * scale / streams;
      if (a.shape == ArrivalShape::kPoisson) {
        out = poisson_arrivals(r, w1 - w0, sd, w0);
      } else {
        // A camera at a fixed rate: one phase per stream for the whole run.
        const double gap = 1.0 / r;
        std::mt19937_64 g(seed_of(seed, qi, static_cast<std::uint64_t>(s), 0xffff));
        const double phase = double(g() >> 11) * 0x1.0p-53 * gap;
        const double t0 = to_s(w0.time_since_epoch()), t1 = to_s(w1.time_since_epoch());
        auto k = static_cast<std::int64_t>(std::ceil((t0 - phase) / gap - 1e-12));
        for (;; ++k) {
          const double t = phase + double(k) * gap;
          if (t >= t1) break;
          if (t >= t0) out.push_back(TimePoint(from_s(t)));
        }
      }
    } else {
      // The part of the trace inside the window, scaled per stream.
      std::vector<RateSegment> cut;
      TimePoint t{};
      for (const auto& seg : a.trace) {
        const TimePoint e = t + seg.length;
        const TimePoint lo = std::max(t, w0), hi = std::min(e, w1);
        if (hi > lo) cut.push_back({hi - lo, seg.rate_rps * scale / streams});
        t = e;
      }
      if (t < w1) cut.push_back({w1 - std::max(t, w0), 0.0});
      out = trace_arrivals(cut, a.shape, sd, w0);
    }
  }
  return merge_arrivals(std::move(per));
}

// Latency histogram at 50 µs resolution up to 10 s (p99 only).
struct LatencyHist {
  static constexpr double kBinUs = 50;
  std::vector<std::uint64_t> bins = std::vector<std::uint64_t>(200001, 0);
  std::uint64_t n = 0;
  void add(Duration d) {
    const double us = double(d.count()) / 1e3;
    const auto i = static_cast<std::size_t>(std::clamp(us / kBinUs, 0.0, double(bins.size() - 1)));
    ++bins[i];
    ++n;
  }
  double quantile_ms(double q) const {
    if (n == 0) return 0;
    const auto want = static_cast<std::uint64_t>(std::ceil(q * double(n)));
    std::uint64_t c = 0;
    for (std::size_t i = 0; i < bins.size(); ++i) {
      c += bins[i];
      if (c >= want) return (double(i) + 1) * kBinUs / 1e3;
    }
    return double(bins.size()) * kBinUs / 1e3;
  }
};

/// Sets the SimBackend's batch-time distribution (EngineOptions::sim_latency) from the scenario's
/// noise; returns its description for the result.
std::string apply_noise(runtime::EngineOptions& eo, const ScenarioNoise& n, std::uint64_t seed) {
  using L = sim::SimLatency;
  eo.sim_latency.distribution = n.distribution == "lognormal" ? L::Distribution::kLognormal
                                : n.distribution == "gamma"   ? L::Distribution::kGamma
                                                              : L::Distribution::kMean;
  eo.sim_latency.min_cv = n.min_cv;
  eo.sim_latency.slow_probability = n.slow_probability;
  eo.sim_latency.slow_factor = n.slow_factor;
  eo.sim_latency.seed = seed;
  if (n.distribution == "mean") return "mean";
  return fmt::format("{}, cv >= {}, {}% slow batches at {}x", n.distribution, n.min_cv,
                     100 * n.slow_probability, n.slow_factor);
}

/// Work-conserving or paced (the paper's duty cycle) executors; returns the mode's name.
std::string apply_executor(runtime::EngineOptions& eo, bool work_conserving) {
  eo.executor.work_conserving = work_conserving;
  return work_conserving ? "work_conserving" : "duty_cycle";
}

/// TF Serving and Triton: one scheduler per model, so co-located models' batches run on the
/// GPU at once and contend (ExecutorOptions::concurrent_sessions: processor sharing, no extra
/// interference overhead); returns the mode's name.
std::string apply_concurrent(runtime::EngineOptions& eo) {
  eo.executor.concurrent_sessions = true;
  return "concurrent_sessions";
}

}  // namespace

SimResult simulate(const Scenario& sc, const SimOptions& o) {
  NEXUS_CHECK(o.gpus >= 1, "simulate: --gpus {} (expected a GPU count >= 1)", o.gpus);
  NEXUS_CHECK(o.load_scale > 0 && std::isfinite(o.load_scale), "simulate: load scale {} (expected > 0)",
              o.load_scale);
  NEXUS_CHECK(o.system == System::kNexus || !o.ablate.any(),
              "--ablate applies to --system nexus only (got --system {})", to_string(o.system));
  const Duration duration = o.duration.count() > 0 ? o.duration : sc.duration;
  bool res_prefix_batching = false;
  const Duration warmup = std::min(sc.warmup, duration / 4);
  const auto wall0 = std::chrono::steady_clock::now();
  const std::clock_t cpu0 = std::clock();

  auto clock = std::make_shared<VirtualClock>();
  runtime::EngineOptions eo;
  eo.clock = clock;
  eo.devices = "sim:" + std::to_string(o.gpus);
  eo.epoch = std::chrono::duration_cast<std::chrono::microseconds>(sc.epoch);
  eo.seed = o.seed;
  eo.rate_ewma_alpha = sc.rate_ewma_alpha;
  eo.packer.max_gpus = o.gpus;
  const auto even = even_budgets(sc);
  ScenarioNoise noise = sc.noise;
  if (!o.noise.empty()) noise.distribution = o.noise;
  const std::string noise_desc = apply_noise(eo, noise, o.seed);
  // The baselines run what is queued whenever the device is free.
  std::string executor_mode = apply_executor(eo, true);
  switch (o.system) {
    case System::kNexus: {
      const bool squishy = !o.ablate.squishy, dp = !o.ablate.query_dp;
      if (!dp) eo.slo_split = runtime::SloSplit::kProportional;  // replaced by the even split
      if (squishy && !dp) eo.planner = make_squishy_with_budgets(eo.packer, even);
      if (!squishy) eo.planner = make_batch_oblivious_planner({.budgets = dp ? decltype(even){} : even});
      eo.batch_policy.kind = o.ablate.early_drop ? dispatch::BatchPolicyKind::kLazyDrop
                                                 : dispatch::BatchPolicyKind::kEarlyDrop;
      // The library's defaults (work-conserving executor, batch growth); the duty_cycle ablation
      // is the paper's paced schedule (one batch per session per duty cycle d, no growth).
      executor_mode = apply_executor(eo, !o.ablate.duty_cycle);
      eo.prefix_batching = !o.ablate.prefix;
      if (o.ablate.duty_cycle) eo.batch_policy.grow_batch = false;
      break;
    }
    case System::kClipper:
      eo.slo_split = runtime::SloSplit::kProportional;
      eo.planner = make_batch_oblivious_planner({.one_model_per_gpu = true, .budgets = even});
      eo.batch_policy.kind = dispatch::BatchPolicyKind::kAimd;
      break;
    case System::kTfServing:
      eo.slo_split = runtime::SloSplit::kProportional;
      eo.planner = make_batch_oblivious_planner({.fixed_batch = sc.tfserving.max_batch, .budgets = even});
      eo.batch_policy.kind = dispatch::BatchPolicyKind::kMaxBatchTimeout;
      eo.batch_policy.batch_timeout = sc.tfserving.batch_timeout;
      executor_mode = apply_concurrent(eo);
      break;
    case System::kTriton: {
      const auto& pref = sc.triton.preferred_batch_sizes;
      const int maxb = sc.triton.max_batch > 0 ? sc.triton.max_batch
                                               : (pref.empty() ? 32 : *std::max_element(pref.begin(), pref.end()));
      eo.slo_split = runtime::SloSplit::kProportional;
      eo.planner = make_batch_oblivious_planner({.fixed_batch = maxb, .budgets = even});
      eo.batch_policy.kind = dispatch::BatchPolicyKind::kTritonDynamic;
      eo.batch_policy.preferred_batch_sizes = pref;
      eo.batch_policy.max_queue_delay = sc.triton.max_queue_delay;
      executor_mode = apply_concurrent(eo);
      break;
    }
  }
  // The baselines serve every model on its own: prefix batching is Nexus's (paper §6.3).
  if (o.system != System::kNexus) eo.prefix_batching = false;
  res_prefix_batching = eo.prefix_batching;
  runtime::Engine engine(eo);
  for (const auto& m : sc.models) {
    runtime::ModelSpec spec;
    spec.name = m.name;
    spec.profile = m.profile;
    spec.declared_prefix = {m.prefix_key, m.prefix_fraction};
    engine.load_model(std::move(spec));
  }

  // One generator for every fan-out draw: completions happen in a deterministic order.
  auto fan_rng = std::make_shared<std::mt19937_64>(seed_of(o.seed, 0xfa, 0, 0));
  std::vector<int> handles;
  std::map<std::string, std::vector<double>> multipliers;
  for (const auto& q : sc.queries) {
    runtime::QuerySpec spec;
    spec.name = q.name;
    spec.slo = q.slo;
    spec.expected_rate_rps = std::max(1e-3, q.rate_at(0) * o.load_scale);
    for (const auto& s : q.stages) {
      runtime::StageSpec st;
      st.name = s.name;
      st.model = s.model;
      for (const auto& c : s.children) {
        runtime::ChildSpec cs;
        cs.stage = c.stage;
        cs.expected_fanout = c.fanout;
        const double gamma = c.fanout;
        cs.fanout = [fan_rng, gamma](const runtime::StageView&) {
          return std::vector<Tensor>(static_cast<std::size_t>(poisson_count(*fan_rng, gamma)));
        };
        st.children.push_back(std::move(cs));
      }
      spec.stages.push_back(std::move(st));
    }
    try {
      handles.push_back(engine.add_query(std::move(spec)));
    } catch (const nexus::Error& e) {
      throw_error("scenario {} on {} GPUs, system {}: {}", sc.file.string(), o.gpus, to_string(o.system),
                  e.what());
    }
    multipliers[q.name] = q.stage_multipliers();
  }

  SimResult res;
  res.scenario = sc.name;
  res.system = std::string(to_string(o.system));
  res.ablations = o.ablate.to_string();
  res.gpus = o.gpus;
  res.load_scale = o.load_scale;
  res.noise = noise_desc;
  res.executor = executor_mode;
  res.prefix_batching = res_prefix_batching;
  for (const auto& m : sc.models) res.prefix_groups += m.prefix_key.empty() ? 0 : 1;
  res.duration_s = to_s(duration);
  res.warmup_s = to_s(warmup);

  // Sampling: plan (GPUs used) and the lower bound at the true rates.
  const Duration sample_every = o.sample_every.count() > 0 ? o.sample_every : Duration(1s);
  const auto nsamples = static_cast<std::size_t>(std::ceil(to_s(duration) / to_s(sample_every)));
  std::vector<std::uint64_t> s_sub(nsamples + 1, 0), s_bad(nsamples + 1, 0);
  std::vector<double> s_used(nsamples + 1, 0), s_lb(nsamples + 1, 0);
  ProfileMap profiles, profiles_mean;
  for (const auto& m : sc.models) {
    profiles.emplace(m.name, m.profile);
    BatchProfile mean = m.profile;
    mean.set_latency_model({});
    profiles_mean.emplace(m.name, std::move(mean));
  }
  std::vector<double> s_lb_mean(nsamples + 1, 0), s_lb_plan(nsamples + 1, 0);
  // The bound is the workload's, whatever the system: each of the scenario's declared prefix
  // groups counts merged as the Engine plans it (one session: Σ rates, tightest SLO, ℓ_group) or
  // with its members alone, whichever needs fewer GPUs, also for the baselines and --ablate
  // prefix. A group the Engine could not form leaves its members alone.
  std::vector<PrefixGroupProfiles> groups, groups_mean;
  {
    std::vector<DeclaredPrefix> declared;
    for (const auto& m : sc.models) declared.push_back({m.prefix_key, m.prefix_fraction});
    for (const auto& [key, members] : declared_prefix_groups(declared)) {
      std::vector<PrefixSplit> split, split_mean;
      for (std::size_t i : members) {
        const ScenarioModel& m = sc.models[i];
        split.push_back({m.name, profiles.at(m.name), m.prefix_fraction, m.prefix_fraction, 0});
        split_mean.push_back({m.name, profiles_mean.at(m.name), m.prefix_fraction, m.prefix_fraction, 0});
      }
      try {
        PrefixGroupProfiles g = split_prefix_group("prefix:" + key, split);  // the Engine's id
        PrefixGroupProfiles gm = split_prefix_group("prefix:" + key, split_mean);
        groups.push_back(std::move(g));
        groups_mean.push_back(std::move(gm));
      } catch (const std::exception&) {
      }
    }
  }
  std::vector<const PrefixGroupProfiles*> group_ptrs, group_mean_ptrs;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    group_ptrs.push_back(&groups[g]);
    group_mean_ptrs.push_back(&groups_mean[g]);
  }
  auto take_sample = [&](std::size_t k, TimePoint at) {
    const Plan p = engine.plan();
    int used = 0;
    for (const auto& g : p.gpus) used += g.sessions.empty() ? 0 : 1;
    s_used[k] = std::min(used, o.gpus);
    s_lb_plan[k] = p.lower_bound_gpus;  // the planner's own (prefix groups merged), at measured rates
    // The packer's own bound Σ R_i / T_i(B_i) (B_i its throughput-maximising saturated batch)
    // at the true rates of this moment and the stage budgets in use.
    std::vector<Session> sessions;
    const double t = to_s(at.time_since_epoch());
    for (const auto& q : sc.queries) {
      const double rate = q.rate_at(t) * o.load_scale;
      const auto& mult = multipliers[q.name];
      for (std::size_t i = 0; i < q.stages.size(); ++i) {
        const std::string id = q.name + "/" + q.stages[i].name;
        auto bi = p.stage_budgets.find(id);
        if (bi == p.stage_budgets.end() || rate * mult[i] <= 0) continue;
        sessions.push_back({.id = id, .model = q.stages[i].model, .slo = bi->second, .rate_rps = rate * mult[i], .priority = 0, .group = {}});
      }
    }
    PackerOptions po = eo.packer;
    po.max_gpus = 0;
    // Σ R_i / T_i(B_i) is a sum over sessions, so each group counts at the better of merged and
    // its members alone: where every member fills large batches by itself, merging costs the
    // extra suffix launches and the tightest SLO (docs/evaluation.md, "Metrics").
    auto bound = [&](const std::vector<const PrefixGroupProfiles*>& gs, ProfileMap& pm) {
      if (sessions.empty()) return 0.0;
      auto packed = [&](std::span<const PrefixGroupProfiles* const> merged) {
        return SquishyBinPacker(po).pack(merge_prefix_groups(sessions, merged, pm).sessions, pm).lower_bound_gpus;
      };
      const double alone = packed({});
      double lb = alone;
      for (const PrefixGroupProfiles* g : gs) lb += std::min(0.0, packed({&g, 1}) - alone);
      return lb;
    };
    s_lb[k] = bound(group_ptrs, profiles);
    s_lb_mean[k] = bound(group_mean_ptrs, profiles_mean);
  };

  LatencyHist hist;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> per_query;  // good, submitted
  const TimePoint t_warm = TimePoint{} + warmup;
  auto account = [&](std::vector<runtime::QueryResult>&& rs) {
    for (auto& r : rs) {
      const auto k = std::min(nsamples, static_cast<std::size_t>(to_s(r.submitted.time_since_epoch()) / to_s(sample_every)));
      ++s_sub[k];
      if (!r.met_slo) ++s_bad[k];
      if (r.submitted < t_warm) continue;
      ++res.submitted;
      auto& pq = per_query[r.query];
      ++pq.second;
      if (r.met_slo) {
        ++res.good;
        ++pq.first;
      }
      switch (r.status) {
        case runtime::RequestStatus::kCompleted:
          ++res.completed;
          hist.add(r.finished - r.submitted);
          break;
        case runtime::RequestStatus::kDropped: ++res.dropped; break;
        case runtime::RequestStatus::kRejected: ++res.rejected; break;
        case runtime::RequestStatus::kFailed: ++res.failed; break;
      }
    }
  };

  // Event loop, window by window (bounded memory for long traces).
  const Duration window = std::min<Duration>(duration, 10s);
  std::vector<std::vector<std::vector<TimePoint>>> mmpp(sc.queries.size());
  for (std::size_t qi = 0; qi < sc.queries.size(); ++qi) {
    const auto& a = sc.queries[qi].arrivals;
    if (a.mmpp.empty()) continue;
    for (int s = 0; s < a.streams; ++s)
      mmpp[qi].push_back(mmpp_arrivals(a.rate_rps * o.load_scale / a.streams, a.mmpp, duration,
                                       seed_of(o.seed, qi, static_cast<std::uint64_t>(s), 0xaaaa)));
  }
  std::size_t next_sample = 0;
  take_sample(0, TimePoint{});
  std::uint64_t n_sub = 0;
  int last_pct = -1;
  std::uint64_t win = 0;
  for (TimePoint w0{}; w0 < TimePoint{} + duration; w0 += window, ++win) {
    const TimePoint w1 = std::min(w0 + window, TimePoint{} + duration);
    std::vector<std::vector<TimePoint>> lists(sc.queries.size());
    for (std::size_t qi = 0; qi < sc.queries.size(); ++qi)
      lists[qi] = query_window(sc.queries[qi], qi, o.load_scale, o.seed, win, w0, w1,
                               mmpp[qi].empty() ? nullptr : &mmpp[qi]);
    std::vector<std::size_t> pos(lists.size(), 0);
    while (true) {
      std::size_t best = lists.size();
      TimePoint bt{};
      for (std::size_t qi = 0; qi < lists.size(); ++qi)
        if (pos[qi] < lists[qi].size() && (best == lists.size() || lists[qi][pos[qi]] < bt)) {
          best = qi;
          bt = lists[qi][pos[qi]];
        }
      if (best == lists.size()) break;
      ++pos[best];
      while (next_sample + 1 <= nsamples && TimePoint{} + sample_every * static_cast<Duration::rep>(next_sample + 1) <= bt) {
        ++next_sample;
        const TimePoint at = TimePoint{} + sample_every * static_cast<Duration::rep>(next_sample);
        engine.run_until(at);
        take_sample(next_sample, at);
      }
      engine.run_until(bt);
      engine.submit(handles[best], Tensor());
      if ((++n_sub & 255) == 0) {
        account(engine.poll());
        if (o.progress) {
          const int pct = static_cast<int>(100 * to_s(bt.time_since_epoch()) / to_s(duration));
          if (pct != last_pct) {
            last_pct = pct;
            o.progress(double(pct) / 100.0);
          }
        }
      }
    }
  }
  engine.run_until(TimePoint{} + duration);
  engine.run_until_idle();
  account(engine.poll());
  engine.shutdown();
  account(engine.poll());
  const auto st = engine.stats();
  res.submitted_total = st.submitted;
  for (const auto& [id, s] : st.sessions) {
    res.stage_items += s.completions;
    SimSessionDetail& d = res.sessions[id];
    d.arrivals = s.arrivals;
    d.completions = s.completions;
    d.batches = s.batches;
    d.mean_batch = s.mean_batch;
    d.drops = s.drops;
    if (auto b = st.plan.stage_budgets.find(id); b != st.plan.stage_budgets.end())
      d.budget_ms = double(b->second.count()) / 1e3;
  }
  std::set<int> planned_devices;
  for (const auto& g : st.plan.gpus)
    for (const auto& a : g.sessions) {
      auto it = res.sessions.find(a.session);
      if (it == res.sessions.end()) continue;
      SimSessionDetail& d = it->second;
      const double n = d.gpus_planned;
      d.planned_batch_mean = (d.planned_batch_mean * n + a.batch) / (n + 1);
      d.duty_cycle_ms_mean = (d.duty_cycle_ms_mean * n + double(g.duty_cycle.count()) / 1e3) / (n + 1);
      d.planned_batch_max = std::max(d.planned_batch_max, a.batch);
      ++d.gpus_planned;
      planned_devices.insert(g.gpu % o.gpus);
    }
  double busy = 0, busy_planned = 0;
  for (const auto& dv : st.devices) {
    busy += dv.occupancy;
    if (planned_devices.count(dv.device)) busy_planned += dv.occupancy;
  }
  res.device_busy_avg = st.devices.empty() ? 0 : busy / double(st.devices.size());
  res.device_busy_planned_avg = planned_devices.empty() ? 0 : busy_planned / double(planned_devices.size());
  NEXUS_CHECK(st.in_flight == 0 && st.submitted == st.completed + st.dropped + st.rejected + st.failed,
              "simulate: the no-loss invariant failed ({} submitted, {} completed, {} dropped, {} "
              "rejected, {} failed, {} in flight)",
              st.submitted, st.completed, st.dropped, st.rejected, st.failed, st.in_flight);
  if (o.progress) o.progress(1.0);

  const double measured = to_s(duration - warmup);
  res.offered_rps = double(res.submitted) / measured;
  res.good_rate = res.submitted ? double(res.good) / double(res.submitted) : 1.0;
  res.throughput_rps = double(res.good) / measured;
  res.p99_latency_ms = hist.quantile_ms(0.99);
  for (const auto& [q, gs] : per_query)
    res.per_query_good_rate[q] = gs.second ? double(gs.first) / double(gs.second) : 1.0;
  // Time averages over the samples (each holds for one interval), warm-up excluded.
  double used = 0, lb = 0, lbm = 0, lbp = 0, wsum = 0;
  for (std::size_t k = 0; k < nsamples; ++k) {
    const double a = to_s(sample_every) * double(k), b = std::min(to_s(duration), a + to_s(sample_every));
    const double w = std::max(0.0, b - std::max(a, to_s(warmup)));
    used += w * s_used[k];
    lb += w * s_lb[k];
    lbm += w * s_lb_mean[k];
    lbp += w * s_lb_plan[k];
    wsum += w;
  }
  res.gpus_used_avg = wsum > 0 ? used / wsum : 0;
  res.lower_bound_gpus = wsum > 0 ? lb / wsum : 0;
  res.lower_bound_gpus_mean_latency = wsum > 0 ? lbm / wsum : 0;
  res.lower_bound_gpus_plan = wsum > 0 ? lbp / wsum : 0;
  if (o.sample_every.count() > 0)
    for (std::size_t k = 0; k < nsamples; ++k) {
      const double a = to_s(sample_every) * double(k), b = std::min(to_s(duration), a + to_s(sample_every));
      res.samples.push_back({b, double(s_sub[k]) / (b - a), s_sub[k] ? double(s_bad[k]) / double(s_sub[k]) : 0.0,
                             s_used[k], s_lb[k], s_lb_mean[k]});
    }
  res.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
  res.cpu_s = double(std::clock() - cpu0) / CLOCKS_PER_SEC;
  res.sim_rps = res.wall_s > 0 ? double(res.submitted_total) / res.wall_s : 0;
  res.sim_rps_cpu = res.cpu_s > 0 ? double(res.submitted_total) / res.cpu_s : 0;
  return res;
}

MaxThroughput find_max_throughput(const Scenario& sc, const SimOptions& o, double target,
                                  double precision) {
  MaxThroughput out;
  auto run = [&](double scale) {
    SimOptions x = o;
    x.load_scale = scale;
    x.progress = nullptr;
    SimResult r = simulate(sc, x);
    if (o.progress) o.progress(-scale);  // negative: "a step at this scale finished"
    out.runs.push_back(r);
    const bool pass = r.good_rate >= target;
    if (pass && r.offered_rps > out.max_throughput_rps) {
      out.max_throughput_rps = r.offered_rps;
      out.scale = scale;
      out.at_max = r;
    }
    return pass;
  };
  double lo = 0, hi = 0;
  double s = o.load_scale > 0 ? o.load_scale : 1.0;
  if (run(s)) {
    lo = s;
    for (int k = 0; k < 16; ++k) {
      s *= 2;
      if (!run(s)) {
        hi = s;
        break;
      }
      lo = s;
    }
    if (hi == 0) return out;  // passes at every tried load
  } else {
    hi = s;
    for (int k = 0; k < 16; ++k) {
      s /= 2;
      if (run(s)) {
        lo = s;
        break;
      }
      hi = s;
    }
    if (lo == 0) return out;  // fails even at a tiny load: max throughput 0
  }
  while ((hi - lo) / hi > precision) {
    const double mid = 0.5 * (lo + hi);
    if (run(mid))
      lo = mid;
    else
      hi = mid;
  }
  return out;
}

}  // namespace nexus::sim
