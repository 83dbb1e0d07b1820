#pragma once
// The systems the simulator compares (paper §8 "Baselines"; docs/evaluation.md describes each
// with its source). Each is the real Engine with another planner, SLO split and BatchPolicy:
//
//   kNexus      squishy bin packing (§6.1) + the QueryPlanner's DP split (§6.2) + early drop
//               (§6.3), each switchable off for ablations (Ablations).
//   kClipper    the authors' batch-oblivious cluster allocator (GPUs in proportion to request
//               rate, query SLOs split evenly over the stages), one model per GPU, Clipper's
//               AIMD adaptive batching and lazy drop (Crankshaw et al., NSDI'17 §4.3).
//   kTfServing  the same allocator; TF-Serving's batching: a fixed max batch and a batch
//               timeout, no SLO awareness (never drops); co-located models share a GPU and
//               contend: each runs its own batches at once with the others'
//               (ExecutorOptions::concurrent_sessions, processor sharing).
//   kTriton     the same allocator; Triton's dynamic batcher: preferred batch sizes and a max
//               queue delay; the queue timeout (at the request's deadline) is its only drop;
//               co-located models contend as under kTfServing.
//
// Thread-safety: pure functions; the planners are called under the Engine's control lock.

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/runtime/engine.hpp"

namespace nexus::sim {

enum class System { kNexus, kClipper, kTfServing, kTriton };
std::string_view to_string(System s);
/// Parses "nexus", "clipper", "tfserving", "triton"; throws nexus::Error otherwise.
System parse_system(std::string_view name);

/// Nexus features switched off for ablations (--ablate; paper §8 micro-benchmarks).
struct Ablations {
  bool squishy = false;     ///< batch-oblivious allocation instead of squishy bin packing
  bool query_dp = false;    ///< even SLO split instead of the DP
  bool early_drop = false;  ///< lazy drop instead of early drop
  /// "paced, the paper's schedule": the executor waits out each duty cycle d and runs at most the
  /// planned batch (ExecutorOptions::work_conserving = false, BatchPolicyOptions::grow_batch =
  /// false) instead of the library defaults (work-conserving, batch growth).
  bool duty_cycle = false;
  /// prefix batching off (EngineOptions::prefix_batching = false): models that declare a shared
  /// prefix (scenario "prefix") run on their own
  bool prefix = false;
  bool any() const { return squishy || query_dp || early_drop || duty_cycle || prefix; }
  std::string to_string() const;
};
/// Parses a comma list of squishy, query_dp, early_drop, duty_cycle, prefix, all; throws
/// nexus::Error naming the bad word. "all" = squishy, query_dp, early_drop and prefix: every
/// Nexus feature; duty_cycle (the paced schedule) is not part of it, being a different schedule
/// rather than a feature switched off.
Ablations parse_ablations(std::string_view list);

struct BatchObliviousOptions {
  /// Clipper: every GPU runs one session (each session gets >= 1 GPU). When there are more
  /// sessions than GPUs the surplus sessions share GPUs (the least-loaded first), because an
  /// allocator that refused them would serve nothing of those queries.
  bool one_model_per_gpu = false;
  /// The batch size each GPU runs for a session: 0 = the largest b with 2ℓ(b) <= budget (the
  /// saturated batch, as for Nexus), > 0 = that fixed size (TF-Serving's max_batch_size),
  /// clamped to the profile's largest batch.
  int fixed_batch = 0;
  /// Stage budgets that replace the Engine's split (session id -> budget), e.g. the even
  /// split; empty = keep the Engine's.
  std::map<std::string, std::chrono::microseconds> budgets;
};

/// The batch-oblivious allocator of the paper's baselines: session s gets N·R_s/ΣR GPUs
/// (largest-remainder rounding of the whole part; fractional remainders packed first-fit
/// decreasing onto the remaining GPUs, routing weights ∝ the share placed on each GPU).
/// Batch sizes play no part in the allocation. Every GPU slot is 0..N-1 (never more than the
/// devices). Plan::lower_bound_gpus is left 0 (the simulator computes the bound itself).
runtime::PlannerFn make_batch_oblivious_planner(BatchObliviousOptions options);

/// A squishy planner that first replaces each session's budget with `budgets` (Nexus with the
/// even split: the query-DP ablation).
runtime::PlannerFn make_squishy_with_budgets(PackerOptions packer,
                                             std::map<std::string, std::chrono::microseconds> budgets);

}  // namespace nexus::sim
