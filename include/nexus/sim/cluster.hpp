#pragma once
// The cluster simulator: N simulated GPUs running a Scenario under one System, in virtual time.
// It is the library's own Engine (EngineOptions::clock a VirtualClock, devices "sim:N"): the same
// planner, Dispatcher, BatchPolicy and GpuExecutor code; batches take the SimBackend's time.
// Only the planner, SLO split and batch policy differ between systems (baselines.hpp).
//
//   Scenario sc = load_scenario("sim/scenarios/traffic.json");
//   SimResult r = simulate(sc, {.gpus = 16, .system = System::kNexus, .load_scale = 1.0});
//   MaxThroughput m = find_max_throughput(sc, {.gpus = 16, .system = System::kClipper});
//
// Metrics (paper §8): a request is good when it completes within its query SLO; good_rate =
// good / submitted over requests submitted after the warm-up; throughput_rps = good requests
// per second. find_max_throughput bisects the load scale for the highest offered rate with
// good_rate >= 0.99. gpus_used_avg is the time average of GPUs the plan gives work (for the
// baselines every GPU); lower_bound_gpus is the time average of Σ_i R_i / T_i(B_i) at the true
// (trace) stage rates with the stage budgets in use (B_i the saturated batch, paper §6.1). It is
// the workload's bound, the same for every system and ablation: the scenario's declared prefix
// groups count as one session each, as the Engine plans them (merge_prefix_groups,
// schedule/prefix_group.hpp), also where the system runs without prefix batching.
//
// Deterministic: the same scenario, options and seed give the same result, bit for bit.
//
// Thread-safety: simulate() is re-entrant (one Engine per call); the progress callback runs on
// the calling thread.

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "nexus/sim/baselines.hpp"
#include "nexus/sim/scenario.hpp"

namespace nexus::sim {

struct SimOptions {
  int gpus = 16;
  System system = System::kNexus;
  Ablations ablate{};
  Duration duration{0};        ///< 0 = the scenario's duration_s
  std::uint64_t seed = 1;
  double load_scale = 1.0;     ///< multiplies every query's rate (trace included)
  Duration sample_every{0};    ///< > 0: record a SimSample every this long
  /// Overrides the scenario's noise distribution ("mean", "lognormal", "gamma"); "" = keep.
  std::string noise;
  /// Called every ~1% of virtual time with the fraction done (progress bars).
  std::function<void(double)> progress;
};

/// One point of the time series (sample_every).
struct SimSample {
  double t_s = 0;               ///< virtual time at the end of the interval
  double offered_rps = 0;       ///< requests submitted in the interval / its length
  double bad_rate = 0;          ///< of requests submitted in the interval (dropped, late, ...)
  double gpus_used = 0;         ///< GPUs with work in the plan at the sample time
  double lower_bound_gpus = 0;  ///< at the true rates of the interval
  double lower_bound_gpus_mean_latency = 0;  ///< the same with ℓ(b) = the profile's mean
};

/// What one session did over the whole run (warm-up included): the plan's batch sizes against
/// the batches run, and where its items went. For diagnosing a plan (docs/evaluation.md).
struct SimSessionDetail {
  int gpus_planned = 0;            ///< GPU slots of the final plan that serve it
  int planned_batch_max = 0;       ///< largest planned batch over those slots
  double planned_batch_mean = 0;   ///< mean planned batch over those slots
  double duty_cycle_ms_mean = 0;   ///< mean duty cycle of those slots
  double budget_ms = 0;            ///< its stage budget (SLO) in the final plan
  std::uint64_t arrivals = 0, completions = 0, batches = 0;
  double mean_batch = 0;           ///< batch size actually run
  std::map<std::string, std::uint64_t> drops;   ///< by reason
};

struct SimResult {
  std::string scenario, system, ablations;
  std::string noise;        ///< how batch times were drawn
  /// "duty_cycle" (paced), "work_conserving" (round robin) or "concurrent_sessions"
  /// (tfserving, triton: co-located sessions contend, ExecutorOptions::concurrent_sessions)
  std::string executor;
  /// EngineOptions::prefix_batching as run (Nexus: on unless --ablate prefix; baselines: off),
  /// and how many of the scenario's models declare a prefix.
  bool prefix_batching = false;
  int prefix_groups = 0;
  int gpus = 0;
  double load_scale = 1.0;
  double duration_s = 0, warmup_s = 0;
  double offered_rps = 0;       ///< submitted after warm-up / measured time
  double good_rate = 0;         ///< good / submitted after warm-up
  double throughput_rps = 0;    ///< good / measured time
  double p99_latency_ms = 0;    ///< of completed requests after warm-up
  double gpus_used_avg = 0;
  double lower_bound_gpus = 0;
  /// The bound with ℓ(b) = the measured mean (what a simulated batch takes), where the
  /// scenario's planning latency model adds k·std and a factor (the planner's own bound is above).
  double lower_bound_gpus_mean_latency = 0;
  /// Plan::lower_bound_gpus of the running plan (time average): the planner's bound at the
  /// measured (EWMA) rates, with the groups the running system plans (none for the baselines and
  /// --ablate prefix); the two bounds above merge the declared groups for every system.
  double lower_bound_gpus_plan = 0;
  std::uint64_t submitted = 0, good = 0, completed = 0, dropped = 0, rejected = 0, failed = 0;
  std::uint64_t submitted_total = 0;   ///< including the warm-up
  std::uint64_t stage_items = 0;       ///< stage items run (all stages, whole run)
  double wall_s = 0;                   ///< wall time of the simulation
  double cpu_s = 0;                    ///< CPU time of the simulation (one thread)
  double sim_rps = 0;                  ///< simulated requests (query requests) per wall second
  double sim_rps_cpu = 0;              ///< the same per CPU second (robust on a shared box)
  std::map<std::string, double> per_query_good_rate;
  std::map<std::string, SimSessionDetail> sessions;   ///< by session id "<query>/<stage>"
  /// Mean device occupancy (busy / elapsed) over all GPUs and over the GPUs the final plan uses.
  double device_busy_avg = 0, device_busy_planned_avg = 0;
  std::vector<SimSample> samples;
};

/// Runs one simulation. Throws nexus::Error for 0 GPUs, an SLO no plan meets (Nexus: the
/// Engine's add_query message naming the stage and the SLO that would work).
SimResult simulate(const Scenario& scenario, const SimOptions& options);

struct MaxThroughput {
  double max_throughput_rps = 0;   ///< offered rate of the best passing run (good >= 99%)
  double scale = 0;                ///< its load scale
  SimResult at_max;                ///< that run
  std::vector<SimResult> runs;     ///< every run of the search, in order
};

/// Bisection over the load scale for the highest rate with good_rate >= `target` (0.99):
/// doubles/halves from scale 1 to bracket, then bisects to `precision` (relative).
MaxThroughput find_max_throughput(const Scenario& scenario, const SimOptions& options,
                                  double target = 0.99, double precision = 0.02);

}  // namespace nexus::sim
