#pragma once
// Planners for EngineOptions::planner / EngineOptions::planner_kind.
//
//   make_squishy_planner()    Nexus, the Engine's default (PlannerKind::kSquishy): the
//                             Scheduler's SquishyBinPacker (paper §6.1, Algorithm 1) —
//                             saturated devices for each session's bulk rate at its largest
//                             batch B with 2ℓ(B) <= budget, residual loads merged onto shared
//                             devices with a common duty cycle, routing weights ∝ served rate.
//   make_replicate_planner()  a batch-oblivious baseline (PlannerKind::kReplicate): every session
//                             on every device, each at its saturated batch (largest b with
//                             2ℓ(b) <= budget, else 1), routing weights equal. It ignores rates:
//                             a low-rate session gets a batch it never fills and every device
//                             cycles through every model. Kept to compare with Nexus.
//
// The Engine maps plan slots to devices: a plan that needs more slots than the Engine has devices
// is folded onto them (slot g -> device g mod N), so the engine keeps serving, overcommitted.
// Sessions the packer rejects (Plan::rejected: an SLO below 2ℓ(1) + pre/post, a model larger
// than PackerOptions::gpu_memory_bytes, or no capacity left under PackerOptions::max_gpus) get no
// route; their requests are answered kRejected / Reason::kNoRoute with the packer's reason.
//
// Thread-safety: the returned functions are pure; the Engine calls them under its control lock.

#include "nexus/runtime/engine.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

namespace nexus::runtime {

/// A PlannerFn that runs SquishyBinPacker(options).pack(sessions, profiles). Throws what pack()
/// throws (a session with a non-positive rate or SLO, a model without a profile).
PlannerFn make_squishy_planner(PackerOptions options = {});

/// The batch-oblivious baseline "every session on every device": each session gets, on each of
/// the request's num_devices devices, the largest batch b with 2ℓ(b) <= its SLO (1 if none), a
/// rate share R/N and routing weight 1/N; each device's duty cycle is Σ ℓ(b_i).
PlannerFn make_replicate_planner();

}  // namespace nexus::runtime
