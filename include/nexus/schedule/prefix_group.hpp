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
// The Engine plans its groups with these functions, and the simulator's lower bound
// (sim/cluster.hpp) merges a scenario's declared groups with the same ones:
//   declared_prefix_groups  which models form a group (runtime::ModelSpec::declared_prefix);
//   split_prefix_group      the prefix and suffix profiles of a group's members;
//   merge_prefix_groups     sessions → the planner's sessions, one per group, with group_profile.
//
// Thread-safety: pure functions.

#include <cstddef>
#include <map>
#include <span>
#include <string>
#include <utility>
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

/// An application's claim that a model shares a prefix with the other models of the same key
/// (runtime::ModelSpec::declared_prefix; for models without a graph, e.g. on sim devices).
struct DeclaredPrefix {
  std::string key;        ///< models with the same non-empty key share the prefix; "" = none
  double fraction = 0.0;  ///< the prefix's share of each member's ℓ(b) and m(b), 0..1
};

/// The declared groups among `declared` (one entry per model): for each non-empty key that two
/// or more entries with a fraction > 0 declare, that key and the indices of its members in
/// ascending order; groups in key order. Entries with an empty key or a fraction <= 0 are in no
/// group (the Engine's rule).
std::vector<std::pair<std::string, std::vector<std::size_t>>> declared_prefix_groups(
    std::span<const DeclaredPrefix> declared);

/// `p` scaled to one part of a model split at its prefix: ℓ(b) (at least 1 ns) and its std
/// times `latency_share`, m(b) times `memory_share`, for the profile's batch sizes up to
/// `max_batch` (plus `max_batch` itself, interpolated, where the profile has no entry there).
/// Pre/post-processing are kept (`keep_pre_post`: the prefix, whose members take the same
/// inputs) or dropped (a suffix); the latency model is `p`'s. The result is named `name`.
/// Throws nexus::Error on a share outside 0..1, max_batch < 1 or an empty profile.
BatchProfile scale_profile(const BatchProfile& p, const std::string& name, double latency_share,
                           double memory_share, bool keep_pre_post, int max_batch);

/// One member model of a prefix group to split: its full profile and the share of its ℓ(b) and
/// m(b) that is the shared prefix (declared: DeclaredPrefix::fraction; hashed graphs: the
/// Engine's estimate from the graphs).
struct PrefixSplit {
  std::string model;          ///< the member's model name (the model of its sessions)
  BatchProfile profile;       ///< the member's whole-model batching profile
  double latency_share = 0;   ///< 0..1
  double memory_share = 0;    ///< 0..1
  int max_batch = 0;          ///< the largest batch the member runs (0 = profile.max_batch())
};

/// A prefix group's parts as the Scheduler plans them (split_prefix_group).
struct PrefixGroupProfiles {
  std::string session_id;                  ///< the group session's id and its profile's name
  std::vector<std::string> member_models;  ///< member model names, in member order
  int max_batch = 1;                       ///< the largest merged batch: min over the members
  BatchProfile prefix;                     ///< ℓ_prefix(b), b <= max_batch
  std::vector<BatchProfile> suffixes;      ///< ℓ_suffix_k(b), per member, b <= max_batch
};

/// Splits the members' profiles at the prefix: max_batch = min over the members; prefix =
/// member 0's profile scaled by its shares, pre/post-processing kept, named `session_id`;
/// suffix k = member k's profile scaled by (1 − its shares), pre/post dropped, named
/// "<model>/suffix" (scale_profile). Throws nexus::Error naming the group on fewer than two
/// members or a bad share or profile.
PrefixGroupProfiles split_prefix_group(std::string session_id, std::span<const PrefixSplit> members);

/// Sessions as the planner sees them with prefix groups merged.
struct PrefixGroupedSessions {
  /// The input sessions in order, except that the sessions of a group with two or more member
  /// sessions present become one group session at the place of the first of them.
  std::vector<Session> sessions;
  std::map<std::string, std::vector<Session>> members;  ///< group session id → member sessions
};

/// Merges the sessions of each group in `groups` (a session is a member when its model is one
/// of the group's member_models; a model is in at most one group): group_session(session_id,
/// session_id, ...) (Σ rates, tightest SLO) with the highest member priority, and
/// group_profile(session_id, prefix, members with their suffixes) added to `profiles` under
/// session_id. A group with fewer than two member sessions leaves its session(s) as they are.
/// Admission groups (Session::group, admit_and_pack): a group session serves a stage of each of
/// its members' queries, so the admission groups of its members are joined into one, named by
/// theirs sorted and joined by '+' (e.g. "t0-whole+t1-whole"), on every session of those groups
/// (in `sessions` and in `members`) and on the group session; a query is then never admitted
/// while the group serving one of its stages is rejected, nor at another share. A group whose
/// members have no admission group is a unit of its own. Throws what group_profile throws.
PrefixGroupedSessions merge_prefix_groups(std::span<const Session> sessions,
                                          std::span<const PrefixGroupProfiles* const> groups,
                                          std::map<std::string, BatchProfile>& profiles);

}  // namespace nexus
