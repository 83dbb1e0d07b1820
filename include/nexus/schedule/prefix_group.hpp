#pragma once
// Planning a prefix group as one schedulable unit (paper §6.3, prefix batching; research notes
// §5). The members of a group (model/prefix.hpp) run the shared prefix once per merged batch,
// then each suffix on its members' items, so the Scheduler sees one session per group:
//   - batch: one batch size B for the prefix; member k's share of it is ∝ its rate
//     (member_shares, largest remainder), and its suffix runs on that share;
//   - latency: ℓ_group(B) = ℓ_prefix(B) + Σ_k ℓ_suffix_k(n_k(B)) (the suffixes run in turn);
//   - rate: Σ_k R_k;  SLO: the tightest member SLO (rule: a member with a looser SLO is served
//     as if it had the tightest; the original code grouped only sessions with equal SLOs);
//   - memory: the prefix once plus each suffix.
// The SquishyBinPacker then packs the group session like any other (notes §2).
//
// Thread-safety: pure functions.

#include <span>
#include <string>
#include <vector>

#include "nexus/profile/batch_profile.hpp"
#include "nexus/schedule/session.hpp"

namespace nexus {

/// One member of a prefix group: its own session and its suffix's batching profile.
struct PrefixGroupMember {
  Session session;      ///< the member model's session (its SLO and rate)
  BatchProfile suffix;  ///< ℓ(b) and m(b) of the member's suffix on the device kind planned
};

/// Splits a merged batch of `batch` items over members in proportion to `rates` (largest
/// remainder, ties to the lower index); the shares add up to `batch`. With all rates 0 the
/// split is even. Throws nexus::Error on batch < 0, no rates, or a negative rate.
std::vector<int> member_shares(int batch, std::span<const double> rates);

/// The group's batching profile, named `group_model`, for b = 1..prefix.max_batch():
/// latency_us(b) = ℓ_prefix(b) + Σ_k ℓ_suffix_k(n_k(b)) (means; stds added in quadrature),
/// memory(b) = m_prefix(b) + Σ_k m_suffix_k(max(n_k(b), 1)); a share above a suffix's max batch
/// is timed at its max batch, scaled linearly. Pre/post-processing and the latency model are the
/// prefix's (members take the same inputs). Throws nexus::Error naming the group when there are
/// fewer than two members or a profile is empty.
BatchProfile group_profile(const std::string& group_model, const BatchProfile& prefix,
                           std::span<const PrefixGroupMember> members);

/// The group as one session {id, group_model, tightest member SLO, Σ member rates}. Throws
/// nexus::Error naming the group when there are fewer than two members.
Session group_session(std::string id, std::string group_model,
                      std::span<const PrefixGroupMember> members);

}  // namespace nexus
