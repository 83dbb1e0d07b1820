#pragma once
// Planners for EngineOptions::planner. The Engine's built-in planner puts every session on every
// device (largest b with 2ℓ(b) <= budget). make_squishy_planner() instead packs the sessions
// with the Scheduler's SquishyBinPacker (paper §6.1, Algorithm 1): saturated devices for each
// session's bulk rate, residual loads merged onto shared devices, routing weights ∝ served rate.
// A plan that needs more devices than the Engine has is folded onto them (slot g -> device
// g mod N), so the engine keeps serving, overcommitted; sessions the packer rejects get no route
// and their requests are answered kRejected / kNoRoute.
//
// Thread-safety: the returned function is called by the Engine under its control lock.

#include "nexus/runtime/engine.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

namespace nexus::runtime {

/// A PlannerFn that runs SquishyBinPacker(options).pack(sessions, profiles).
PlannerFn make_squishy_planner(PackerOptions options = {});

}  // namespace nexus::runtime
