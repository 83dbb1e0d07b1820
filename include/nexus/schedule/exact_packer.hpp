#pragma once
// Exact reference for small instances (tests and benchmarks; notes §2.2): the minimum number of
// GPUs for sessions that are each served by one GPU (no session split over GPUs — the regime of
// residual loads, R_i < T_i(B_i)). It enumerates set partitions (by a DP over subsets) and checks
// each group's feasibility exactly: a group fits one GPU iff some integer duty cycle d (µs) with
// b_i = ⌈d·r_i⌉ ≤ B_max,i gives Σ ℓ_i(b_i) ≤ d, d + ℓ_i(b_i) ≤ SLO_eff,i for all i, and memory
// Σ m_i(b_i) ≤ capacity. Same model and rounding as SquishyBinPacker, so the two are comparable.
// Cost O(2^n · breakpoints + 3^n); meant for n ≤ 12.

#include <vector>

#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/session.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

namespace nexus {

/// True when all `sessions` fit one GPU together (see above). Throws like SquishyBinPacker::pack
/// on bad sessions.
bool fits_one_gpu(const std::vector<Session>& sessions, const ProfileMap& profiles,
                  const PackerOptions& options);

/// Minimum GPUs over all partitions of `sessions` into one-GPU groups; -1 when some session
/// fits no GPU on its own. Throws nexus::Error for more than 16 sessions.
int exact_min_gpus(const std::vector<Session>& sessions, const ProfileMap& profiles,
                   const PackerOptions& options);

}  // namespace nexus
