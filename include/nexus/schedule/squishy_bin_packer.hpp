#pragma once
// SquishyBinPacker: Algorithm 1 of the paper (§6.1; notes §2.3). Sessions → GPUs, batch sizes
// and duty cycles, minimising GPUs.
//   1. Saturate: B = max b with 2ℓ(b) ≤ SLO_eff, T = B/ℓ(B); n = ⌊R/T⌋ dedicated GPUs at batch B;
//      the residual rate r = R − n·T goes on.
//   2. Residual: b = max b with ℓ(b) + b/r ≤ SLO_eff, d = b/r, occupancy ℓ(b)/d; sort by
//      occupancy, descending.
//   3. Merge: each residual node goes into the existing node that gives the highest occupancy,
//      with d = min(d1, d2) and every batch re-derived as ⌈d·r⌉; accepted only if Σℓ ≤ d, every
//      session still meets d + ℓ(b) ≤ SLO_eff, and memory (weights + activations at the chosen
//      batches) fits. Otherwise it opens a new GPU.
// SLO_eff = SLO − preprocess − postprocess − fixed_overhead (the request's CPU work and transfer
// are on the same clock as the SLO). A GPU needs d ≥ ℓ(b) (the batch fits its cycle) and
// d + ℓ(b) ≤ SLO_eff, so a session with 2ℓ(b) > SLO_eff for every b (or whose model exceeds the
// GPU memory even at batch 1) is rejected with the SLO it would need; the rest is still planned.
// Batch choices: the saturated batch is the throughput-maximising b with 2ℓ(b) ≤ SLO_eff (the
// paper's "largest b" when throughput grows with b); the residual batch is the largest b with
// ℓ(b) + b/r ≤ SLO_eff and ℓ(b) ≤ b/r, else (very low rates) the b of lowest occupancy with
// d = SLO_eff − ℓ(b).
//
// Consolidation (an addition, off by default): afterwards, the least occupied shared GPUs are
// emptied when all their sessions fit elsewhere under the same merge rule.
//
// Pure and deterministic: same inputs → same plan. Cost O(S·G) merge attempts with S residual
// sessions and G open GPUs, each attempt O(size of the node).

#include <chrono>
#include <cstddef>
#include <set>
#include <string>
#include <vector>

#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/plan.hpp"
#include "nexus/schedule/session.hpp"

namespace nexus {

struct PackerOptions {
  std::size_t gpu_memory_bytes = 0;            ///< per-GPU capacity; 0 = unlimited
  int max_gpus = 0;                            ///< cluster size; 0 = unlimited (see pack())
  /// Admission control under max_gpus: a session that does not fit at its full rate is admitted
  /// in part when at least this share of its rate fits, else rejected (0 = never in part).
  double admission_min_share = 0.05;
  std::chrono::microseconds fixed_overhead{0}; ///< subtracted from every SLO (network, copies)
  bool subtract_pre_post = true;               ///< subtract profile pre/post time from the SLO
  /// After Algorithm 1, try to empty shared GPUs with occupancy ≤ consolidate_below by moving
  /// their sessions into other GPUs (same merge rule). Off by default: on the benchmark's
  /// workloads it rarely saves a GPU (1 of 600 small instances) and costs ~25% planning time.
  bool consolidate = false;
  double consolidate_below = 0.6;
};

class SquishyBinPacker {
 public:
  explicit SquishyBinPacker(PackerOptions options = {}) : options_(options) {}

  /// Plans `sessions` on identical GPUs whose profiles are in `profiles`.
  /// Throws nexus::Error for a session with a non-positive rate or SLO, an empty or duplicate id,
  /// or a model without a profile (naming the session and model). Sessions whose SLO cannot be
  /// met are listed in Plan::rejected. If max_gpus > 0 and more GPUs are needed, admission
  /// control decides (admit_and_pack with no running sessions): the plan never has more than
  /// max_gpus GPUs.
  Plan pack(const std::vector<Session>& sessions, const ProfileMap& profiles) const;
  /// Algorithm 1 alone, ignoring max_gpus: as many GPUs as the sessions need.
  Plan pack_all(const std::vector<Session>& sessions, const ProfileMap& profiles) const;

  const PackerOptions& options() const { return options_; }

 private:
  PackerOptions options_;
};

/// Effective SLO of a session on a profile: SLO − pre − post − overhead (per the options).
std::chrono::microseconds effective_slo(const Session& s, const BatchProfile& p,
                                        const PackerOptions& options);
/// Largest batch B with 2ℓ(B) ≤ slo (0 if none): the saturated batch of Algorithm 1 line 3.
int saturated_batch(const BatchProfile& p, std::chrono::microseconds slo);
/// Largest batch b with ℓ(b) + b/rate ≤ slo (0 if none): Algorithm 1 line 13.
int residual_batch(const BatchProfile& p, std::chrono::microseconds slo, double rate_rps);

/// Admission control (an addition: the paper grows the cluster instead). Packs every session;
/// when that needs more than options.max_gpus GPUs, units — a Session::group (the stages of a
/// query) or a lone session — are admitted one at a time in the admission order: priority
/// (higher first), then the units with a session named in `incumbents` (those the running plan
/// serves: a decision stands while the load does not fit, so rejected sessions do not flap), then
/// rate (descending: the original code's order for unassigned load), then name. Each is admitted
/// at its full rate when the admitted set still packs into max_gpus GPUs, else at the largest
/// share of its rates that does (bisection; at least admission_min_share), else not at all. Every session not served in full gets a Plan::rejected entry with served_rps,
/// demanded_rps and a reason naming the limit. The plan has at most max_gpus GPUs.
Plan admit_and_pack(const std::vector<Session>& sessions, const ProfileMap& profiles,
                    const PackerOptions& options, const std::set<std::string>& incumbents);

/// Checks a plan's invariants against its sessions (coverage, occupancy, memory, latency).
/// Returns a list of violations, empty when the plan is valid. Used by tests and benchmarks.
std::vector<std::string> validate_plan(const Plan& plan, const std::vector<Session>& sessions,
                                       const ProfileMap& profiles, const PackerOptions& options);

}  // namespace nexus
