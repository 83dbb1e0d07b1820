#pragma once
// Profiler: measures a model's BatchProfile on any Backend (management plane; paper §6.1,
// notes §9 "Profiler"). Steps:
//   1. Max batch: doubling b = 1, 2, 4, ... (each probe loads a fresh backend for b and times a
//      few runs) until load/run throws (out of memory, or any nexus::Error / std::bad_alloc),
//      the throughput gain over the previous probe is < min_gain (1%), or options.max_batch is
//      reached. After a failure, bisection between the last good and the failing batch finds
//      the largest batch that loads and runs. On a plateau the probe that showed it is B_max.
//   2. Timing: one backend loaded for B_max; for each batch size in the list (default: every
//      b in 1..B_max) `warmup` untimed runs, then `repeats` (≥ 10) timed runs → mean and std.
//   3. Memory m(b) = weights_bytes() + activation_bytes(b) as the backend reports them.
//   4. Pre/post-processing: optional per-input callbacks, timed `repeats` times (mean).
// Inputs are seeded uniform [-1, 1] float32 tensors [b, ...input_shape(i)] for every graph input.
//
// The clock is injectable so tests can drive a fake backend in virtual time.
// Thread-safety: a Profiler is used by one thread.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nexus/exec/backend.hpp"
#include "nexus/profile/batch_profile.hpp"

namespace nexus {

namespace model {
class Graph;
}

struct ProfilerOptions {
  int warmup = 2;               ///< untimed runs before each batch size
  int repeats = 10;             ///< timed runs per batch size (≥ 10 is enforced)
  int search_repeats = 3;       ///< timed runs per probe of the max-batch search
  int max_batch = 256;          ///< upper limit of the search
  /// Stop doubling when throughput improves less than this (a fraction; 0 = only when it falls;
  /// -1 = never: the search then ends only at max_batch or a failure, for noisy hosts).
  double min_gain = 0.01;
  std::vector<int> batches;     ///< batch sizes to time (clipped to B_max); empty = 1..B_max
  std::uint64_t seed = 1;       ///< input values
  /// Clock in ns; default std::chrono::steady_clock.
  std::function<std::chrono::nanoseconds()> now;
};

class Profiler {
 public:
  using BackendFactory = std::function<std::unique_ptr<Backend>()>;
  using ItemFn = std::function<void()>;  ///< pre- or post-processing of one input

  /// `factory` makes a fresh, unloaded backend of the device to profile.
  /// Throws nexus::Error if factory is empty or options are invalid (repeats < 10, ...).
  explicit Profiler(BackendFactory factory, ProfilerOptions options = {});

  /// Step 1 only. Throws nexus::Error naming the model if even batch 1 fails (with the
  /// backend's message).
  int find_max_batch(const model::Graph& graph) const;

  /// Steps 1-4. `model_name` goes into the profile; the device name comes from the backend.
  BatchProfile profile(const model::Graph& graph, const std::string& model_name,
                       const ItemFn& preprocess = {}, const ItemFn& postprocess = {}) const;

 private:
  std::chrono::nanoseconds now() const;
  BackendFactory factory_;
  ProfilerOptions options_;
};

/// Sparse default for slow devices: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, ... up to max_batch
/// (powers of two and their midpoints), always ending at max_batch.
std::vector<int> sparse_batches(int max_batch);

}  // namespace nexus
