#pragma once
// Scenario: a simulated workload as shipped in sim/scenarios/*.json (paper §8 applications):
// the models with their batching profiles, the queries (DAGs of stages with one SLO each), and
// how requests arrive (streams per query, arrival shape, constant rate or a rate trace).
//
// JSON (paths are relative to the scenario file):
//   {
//     "name": "traffic", "description": "...",
//     "profiles": "../profiles/h200-2026-11-30",            // the profile folder used
//     "latency_model": {"std_k": 1.0, "factor": 1.0},       // planning ℓ = (mean + k·std)·factor
//     "duration_s": 20, "warmup_s": 2, "epoch_s": 10, "rate_ewma_alpha": 0.3,
//     "models": [{"name": "ssd", "profile": "ssd_mobilenet_v1_300@h200-fp16.json"},
//                {"name": "rn50_a", "profile": "resnet50@h200-fp16.json",
//                 "prefix": {"key": "resnet50", "fraction": 0.98}}, ...],   // prefix: optional
//     "queries": [{
//        "name": "traffic", "slo_ms": 400,
//        "stages": [{"name": "det", "model": "ssd",
//                    "children": [{"stage": "face", "fanout": 1.2}]}, ...],   // stages[0] = root
//        "streams": 20,                      // independent streams sharing the query's rate
//        "rate_rps": 600,                    // total over the streams (scaled by --scale)
//        "arrival": "poisson" | "uniform" | {"mmpp": [{"relative_rate": 3, "mean_dwell_ms": 200}, ...]},
//        "trace": [{"seconds": 60, "rate_rps": 300}, ...],          // optional, replaces rate_rps
//        "diurnal": {"mean_rps": 900, "amplitude": 0.6, "period_s": 600, "segments": 60}  // optional
//     }, ...],
//     "noise": {"distribution": "lognormal", "min_cv": 0.05, "slow_probability": 0.001,
//               "slow_factor": 3},                       // simulated batch times (default "mean")
//     "systems": {"tfserving": {"max_batch": 32, "batch_timeout_ms": 5},
//                 "triton": {"preferred_batch_sizes": [8, 16, 32], "max_queue_delay_ms": 2}}
//   }
// A fan-out γ is the mean of a Poisson number of child items per parent item.
//
// Errors: load_scenario throws nexus::Error naming the file, the field (JSON pointer style, e.g.
// "queries[1].stages[0].model") and what was expected: a malformed file, a missing or mistyped
// field, a model without a profile file, a stage naming an unknown model or child, a negative
// rate, a non-positive SLO, or a prefix without a key or with a fraction outside (0, 1).

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nexus/profile/batch_profile.hpp"
#include "nexus/sim/traffic.hpp"

namespace nexus::sim {

struct ScenarioModel {
  std::string name;                  ///< name the queries use
  std::filesystem::path profile_path;
  BatchProfile profile;              ///< loaded, with the scenario's latency model set
  /// "prefix": {"key": "resnet50", "fraction": 0.98} (optional): models with the same key share
  /// a prefix of identical layers that takes `fraction` of ℓ(b) (transfer-learned variants,
  /// paper §6.3); it becomes runtime::ModelSpec::declared_prefix. Empty key = no prefix.
  std::string prefix_key;
  double prefix_fraction = 0.0;
};

struct ScenarioChild {
  std::string stage;
  double fanout = 1.0;               ///< γ: mean child items per parent item (Poisson)
};

struct ScenarioStage {
  std::string name;
  std::string model;
  std::vector<ScenarioChild> children;
};

/// How one query's requests arrive.
struct ScenarioArrivals {
  int streams = 1;
  ArrivalShape shape = ArrivalShape::kPoisson;
  std::vector<MmppState> mmpp;        ///< non-empty: MMPP per stream (shape ignored)
  double rate_rps = 0.0;              ///< constant total rate (when trace is empty)
  std::vector<RateSegment> trace;     ///< total-rate trace (from "trace" or "diurnal")
};

struct ScenarioQuery {
  std::string name;
  std::chrono::microseconds slo{0};
  std::vector<ScenarioStage> stages;
  ScenarioArrivals arrivals;

  /// Total rate at virtual time t (seconds from the start), before load scaling.
  double rate_at(double t_s) const;
  /// Mean rate over [0, duration).
  double mean_rate(Duration duration) const;
  /// Expected item rate of each stage per query request (product of fan-outs on the paths).
  std::vector<double> stage_multipliers() const;
  /// Stages on the longest root-to-leaf path (the baselines split the SLO evenly over them).
  int longest_path() const;
};

/// How simulated batch durations are drawn (the SimBackend's noise, runtime-fidelity issue):
/// "mean" = exactly the profile's mean ℓ(b); "lognormal" / "gamma" with the profile's std, at
/// least min_cv × mean; plus rare slow batches (slow_probability, × slow_factor).
struct ScenarioNoise {
  std::string distribution = "mean";
  double min_cv = 0.0;
  double slow_probability = 0.0;
  double slow_factor = 3.0;
};

struct TfServingConfig {
  int max_batch = 32;
  Duration batch_timeout = std::chrono::milliseconds(5);
};
struct TritonConfig {
  std::vector<int> preferred_batch_sizes{8, 16, 32};
  Duration max_queue_delay = std::chrono::milliseconds(2);
  int max_batch = 0;                  ///< 0: the largest preferred size
};

struct Scenario {
  std::filesystem::path file;
  std::string name, description;
  std::filesystem::path profile_dir;
  LatencyModel latency_model{};
  Duration duration = std::chrono::seconds(20);
  Duration warmup = std::chrono::seconds(2);
  Duration epoch = std::chrono::seconds(10);
  double rate_ewma_alpha = 0.3;       ///< weight of the newest epoch's measured rate
  ScenarioNoise noise;                ///< "noise": {...}; absent = the profile's mean
  std::vector<ScenarioModel> models;
  std::vector<ScenarioQuery> queries;
  TfServingConfig tfserving;
  TritonConfig triton;

  const ScenarioModel& model(const std::string& name) const;
  /// Sum of the queries' mean rates over the scenario duration (unscaled), req/s.
  double nominal_rate() const;
};

/// Loads and validates a scenario file. Throws nexus::Error (see the header comment).
Scenario load_scenario(const std::filesystem::path& file);

}  // namespace nexus::sim
