#pragma once
// SimBackend: a Backend that does no arithmetic. A batch of n takes a duration drawn from
// SimLatency (default: the profile's mean ℓ(n), no noise; with noise a seeded lognormal or gamma
// with the profile's mean and std, or a recorded trace, plus rare slow batches): on a real clock
// run() sleeps that long (to exercise the threaded engine without a model); on a virtual clock it
// returns at once and the discrete-event engine charges last_batch_time() of virtual time. The
// planner keeps its own latency model (BatchProfile::latency), so a virtual-time run with noise
// does not check a plan against the plan's own numbers.
// Outputs: one float32 tensor [n, ...output_shape] per batch; each item's row is filled with
// its input's first element (or the item index when inputs are empty), so tests can check
// which item came out where. Faults: `fail_every` > 0 makes every fail_every-th run() throw.
//
// Thread-safety: like every Backend, one thread calls run() at a time.

#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>
#include <string>

#include "nexus/core/clock.hpp"
#include "nexus/exec/backend.hpp"
#include "nexus/profile/batch_profile.hpp"

namespace nexus::sim {

/// How a simulated batch's duration is drawn. Each draw is seeded and deterministic.
struct SimLatency {
  enum class Distribution {
    kMean,       ///< exactly the profile's mean ℓ(b) (no noise)
    kLognormal,  ///< lognormal with the profile's mean and std at b
    kGamma,      ///< gamma with the profile's mean and std at b
    kTrace,      ///< mean ℓ(b) × the next ratio of `trace` (cyclic)
  };
  Distribution distribution = Distribution::kMean;
  /// The std used is max(profile std(b), min_cv × mean(b)) (a profile without std still gets
  /// noise).
  double min_cv = 0.0;
  /// A recorded latency trace as ratios duration / mean (e.g. 1.02, 0.97, ...), replayed in
  /// order, for kTrace. Each > 0.
  std::vector<double> trace;
  /// Tail events: with probability slow_probability a batch takes slow_factor × its draw.
  double slow_probability = 0.0;
  double slow_factor = 3.0;
  std::uint64_t seed = 1;
};

struct SimBackendOptions {
  Shape input_shape;                 ///< per-item input shape; empty = accept any (even empty)
  Shape output_shape{1};             ///< per-item output shape
  int fail_every = 0;                ///< run() number k·fail_every throws nexus::Error (0: never)
  std::string device = "sim";
  SimLatency latency{};              ///< batch duration distribution
};

class SimBackend final : public Backend {
 public:
  /// `clock` decides whether run() sleeps (real clock) or not (virtual clock); null = no sleep.
  SimBackend(BatchProfile profile, std::shared_ptr<Clock> clock, SimBackendOptions options = {});

  std::string device_name() const override { return options_.device; }
  /// Nothing to place; records max_batch (must be 1..profile.max_batch()).
  void load(const model::Graph& graph, int max_batch) override;
  std::vector<Tensor> run(const std::vector<Tensor>& inputs) override;
  int max_batch() const override { return max_batch_; }
  Shape input_shape(int i = 0) const override;
  std::size_t weights_bytes() const override;
  std::size_t activation_bytes(int batch) const override;

  /// The profile's mean ℓ(b).
  Duration batch_time(int b) const;
  /// The duration drawn for the last run() (what the batch took).
  Duration last_batch_time() const { return last_; }
  std::uint64_t runs() const { return runs_; }

 private:
  BatchProfile profile_;
  std::shared_ptr<Clock> clock_;
  SimBackendOptions options_;
  int max_batch_;
  std::uint64_t runs_ = 0;
  std::mt19937_64 rng_;
  std::size_t trace_pos_ = 0;
  Duration last_{0};
  Duration draw(int b);
};

/// A Backend that returns at once with no outputs (dispatch-overhead benchmarks).
class NullBackend final : public Backend {
 public:
  explicit NullBackend(int max_batch = 64) : max_batch_(max_batch) {}
  std::string device_name() const override { return "null"; }
  void load(const model::Graph&, int max_batch) override { max_batch_ = max_batch; }
  std::vector<Tensor> run(const std::vector<Tensor>&) override { return {}; }
  int max_batch() const override { return max_batch_; }
  Shape input_shape(int) const override { return {}; }
  std::size_t weights_bytes() const override { return 0; }
  std::size_t activation_bytes(int) const override { return 0; }

 private:
  int max_batch_;
};

}  // namespace nexus::sim
