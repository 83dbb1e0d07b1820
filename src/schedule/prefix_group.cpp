// A prefix group as one schedulable unit (see schedule/prefix_group.hpp).
#include "nexus/schedule/prefix_group.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "nexus/core/error.hpp"

namespace nexus {

std::vector<int> member_shares(int batch, std::span<const double> rates) {
  NEXUS_CHECK(batch >= 0, "member_shares: batch {} (expected >= 0)", batch);
  NEXUS_CHECK(!rates.empty(), "member_shares: no members");
  double total = 0;
  for (double r : rates) {
    NEXUS_CHECK(r >= 0, "member_shares: rate {} (expected >= 0 req/s)", r);
    total += r;
  }
  const std::size_t k = rates.size();
  std::vector<int> shares(k, 0);
  std::vector<double> frac(k, 0);
  int given = 0;
  for (std::size_t i = 0; i < k; ++i) {
    const double quota = total > 0 ? batch * rates[i] / total : double(batch) / double(k);
    shares[i] = static_cast<int>(std::floor(quota + 1e-9));
    frac[i] = quota - shares[i];
    given += shares[i];
  }
  std::vector<std::size_t> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return frac[a] > frac[b] + 1e-12; });
  for (std::size_t j = 0; given < batch; j = (j + 1) % k, ++given) ++shares[order[j]];
  return shares;
}

namespace {

void check_members(const std::string& group, std::span<const PrefixGroupMember> members) {
  NEXUS_CHECK(members.size() >= 2, "prefix group '{}': {} member(s) (expected two or more)",
              group, members.size());
}

}  // namespace

BatchProfile group_profile(const std::string& group_model, const BatchProfile& prefix,
                           std::span<const PrefixGroupMember> members) {
  check_members(group_model, members);
  NEXUS_CHECK(prefix.max_batch() >= 1, "prefix group '{}': the prefix profile is empty",
              group_model);
  std::vector<double> rates;
  for (const PrefixGroupMember& m : members) {
    NEXUS_CHECK(m.suffix.max_batch() >= 1,
                "prefix group '{}': the suffix profile of session '{}' is empty", group_model,
                m.session.id);
    rates.push_back(m.session.rate_rps);
  }
  std::vector<int> batches;
  std::vector<double> lat, std_us;
  std::vector<std::size_t> mem;
  for (int b = 1; b <= prefix.max_batch(); ++b) {
    const std::vector<int> n = member_shares(b, rates);
    double mean = double(prefix.mean_latency(b).count());
    double var = std::pow(double(prefix.latency_std(b).count()), 2);
    double bytes = double(prefix.memory(b));
    for (std::size_t k = 0; k < members.size(); ++k) {
      const BatchProfile& s = members[k].suffix;
      const int cap = s.max_batch();
      const int nk = n[k];
      if (nk > 0) {
        const double scale = nk > cap ? double(nk) / cap : 1.0;
        mean += scale * double(s.mean_latency(std::min(nk, cap)).count());
        var += std::pow(scale * double(s.latency_std(std::min(nk, cap)).count()), 2);
      }
      bytes += double(s.memory(std::clamp(nk, 1, cap)));
    }
    batches.push_back(b);
    lat.push_back(mean);
    std_us.push_back(std::sqrt(var));
    mem.push_back(static_cast<std::size_t>(bytes));
  }
  // preprocess()/postprocess() carry the latency model's factor; store the means.
  const double factor = prefix.latency_model().factor > 0 ? prefix.latency_model().factor : 1.0;
  return BatchProfile(group_model, prefix.device(), batches, lat, std_us, mem,
                      double(prefix.preprocess().count()) / factor,
                      double(prefix.postprocess().count()) / factor, prefix.latency_model());
}

Session group_session(std::string id, std::string group_model,
                      std::span<const PrefixGroupMember> members) {
  check_members(id, members);
  Session s{.id = std::move(id), .model = std::move(group_model), .slo = members[0].session.slo, .rate_rps = 0.0,
            .priority = 0, .group = {}};
  for (const PrefixGroupMember& m : members) {
    s.slo = std::min(s.slo, m.session.slo);
    s.rate_rps += m.session.rate_rps;
  }
  return s;
}

std::vector<std::pair<std::string, std::vector<std::size_t>>> declared_prefix_groups(
    std::span<const DeclaredPrefix> declared) {
  std::map<std::string, std::vector<std::size_t>> by_key;
  for (std::size_t i = 0; i < declared.size(); ++i)
    if (!declared[i].key.empty() && declared[i].fraction > 0) by_key[declared[i].key].push_back(i);
  std::vector<std::pair<std::string, std::vector<std::size_t>>> out;
  for (auto& [key, members] : by_key)
    if (members.size() >= 2) out.emplace_back(key, std::move(members));
  return out;
}

BatchProfile scale_profile(const BatchProfile& p, const std::string& name, double latency_share,
                           double memory_share, bool keep_pre_post, int max_batch) {
  NEXUS_CHECK(!p.empty(), "scale_profile('{}'): the profile of '{}' is empty", name, p.model());
  NEXUS_CHECK(max_batch >= 1, "scale_profile('{}'): max batch {} (expected >= 1)", name, max_batch);
  NEXUS_CHECK(latency_share >= 0 && latency_share <= 1 && memory_share >= 0 && memory_share <= 1,
              "scale_profile('{}'): shares {} of ℓ(b), {} of m(b) (expected 0..1)", name, latency_share,
              memory_share);
  std::vector<int> batches;
  std::vector<double> mean, sd;
  std::vector<std::size_t> bytes;
  auto add = [&](int b) {
    batches.push_back(b);
    mean.push_back(std::max(1e-3, latency_share * double(p.mean_latency(b).count())));
    sd.push_back(latency_share * double(p.latency_std(b).count()));
    bytes.push_back(static_cast<std::size_t>(memory_share * double(p.memory(b))));
  };
  for (int b : p.batches()) {
    if (b > max_batch) break;
    add(b);
  }
  if (batches.empty() || batches.back() < max_batch) add(max_batch);  // sparse: interpolated
  // preprocess()/postprocess() carry the latency model's factor; store the means.
  const double factor = p.latency_model().factor > 0 ? p.latency_model().factor : 1.0;
  return BatchProfile(name, p.device(), batches, mean, sd, bytes,
                      keep_pre_post ? double(p.preprocess().count()) / factor : 0.0,
                      keep_pre_post ? double(p.postprocess().count()) / factor : 0.0, p.latency_model());
}

PrefixGroupProfiles split_prefix_group(std::string session_id, std::span<const PrefixSplit> members) {
  NEXUS_CHECK(members.size() >= 2, "prefix group '{}': {} member(s) (expected two or more)",
              session_id, members.size());
  PrefixGroupProfiles g;
  g.max_batch = std::numeric_limits<int>::max();
  for (const PrefixSplit& m : members) {
    NEXUS_CHECK(!m.profile.empty(), "prefix group '{}': the profile of member '{}' is empty", session_id,
                m.model);
    NEXUS_CHECK(m.latency_share >= 0 && m.latency_share <= 1 && m.memory_share >= 0 && m.memory_share <= 1,
                "prefix group '{}': member '{}' has a prefix share of {} of ℓ(b) and {} of m(b) (expected 0..1)",
                session_id, m.model, m.latency_share, m.memory_share);
    g.max_batch = std::min(g.max_batch, m.max_batch > 0 ? std::min(m.max_batch, m.profile.max_batch())
                                                        : m.profile.max_batch());
  }
  g.prefix = scale_profile(members[0].profile, session_id, members[0].latency_share,
                           members[0].memory_share, true, g.max_batch);
  for (const PrefixSplit& m : members) {
    g.member_models.push_back(m.model);
    g.suffixes.push_back(scale_profile(m.profile, m.model + "/suffix", 1.0 - m.latency_share,
                                       1.0 - m.memory_share, false, g.max_batch));
  }
  g.session_id = std::move(session_id);
  return g;
}

namespace {

// Admission units (Session::group, admit_and_pack): a query's stages are admitted together, and
// a group session serves a stage of each of its members' queries, so those queries and the group
// are one unit. Kept apart, admission could run a query's other stages while rejecting the group
// (or admit them at another share), and every item of that query would then be rejected at the
// group's stage (no route) after using the device for nothing. Groups joined through prefix
// groups (transitively) get one name, theirs sorted and joined by '+'; the group session gets it.
void join_admission_groups(PrefixGroupedSessions& out) {
  std::map<std::string, std::string> parent;  // union-find over admission group names
  const auto root = [&](std::string x) {
    while (parent.at(x) != x) x = parent.at(x);
    return x;
  };
  for (const Session& s : out.sessions)
    if (!s.group.empty()) parent.try_emplace(s.group, s.group);
  for (const auto& [id, ms] : out.members)
    for (const Session& m : ms)
      if (!m.group.empty()) parent.try_emplace(m.group, m.group);
  for (const auto& [id, ms] : out.members) {
    std::string first;
    for (const Session& m : ms) {
      if (m.group.empty()) continue;
      const std::string r = root(m.group);
      if (first.empty()) first = r;
      else if (r != first) parent[r] = first;
    }
  }
  std::map<std::string, std::string> joint;  // root → joint name
  for (const auto& [g, p] : parent) {
    std::string& name = joint[root(g)];
    name += (name.empty() ? "" : "+") + g;  // map order: sorted
  }
  const auto joint_of = [&](const std::string& g) { return g.empty() ? g : joint.at(root(g)); };
  for (Session& s : out.sessions) {
    if (auto it = out.members.find(s.id); it != out.members.end()) {
      s.group.clear();  // members of no query's group: the group session is a unit of its own
      for (const Session& m : it->second)
        if (!m.group.empty()) {
          s.group = joint_of(m.group);
          break;
        }
    } else {
      s.group = joint_of(s.group);
    }
  }
  for (auto& [id, ms] : out.members)
    for (Session& m : ms) m.group = joint_of(m.group);
}

}  // namespace

PrefixGroupedSessions merge_prefix_groups(std::span<const Session> sessions,
                                          std::span<const PrefixGroupProfiles* const> groups,
                                          std::map<std::string, BatchProfile>& profiles) {
  PrefixGroupedSessions out;
  std::vector<int> group_of(sessions.size(), -1);
  std::vector<std::vector<PrefixGroupMember>> members(groups.size());
  for (std::size_t i = 0; i < sessions.size(); ++i)
    for (std::size_t g = 0; g < groups.size() && group_of[i] < 0; ++g) {
      const auto& ms = groups[g]->member_models;
      const auto it = std::find(ms.begin(), ms.end(), sessions[i].model);
      if (it == ms.end()) continue;
      group_of[i] = static_cast<int>(g);
      members[g].push_back({sessions[i], groups[g]->suffixes[static_cast<std::size_t>(it - ms.begin())]});
    }
  std::vector<bool> emitted(groups.size(), false);
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    const int gi = group_of[i];
    const auto g = static_cast<std::size_t>(gi);
    if (gi < 0 || members[g].size() < 2) {
      out.sessions.push_back(sessions[i]);
      continue;
    }
    if (emitted[g]) continue;
    emitted[g] = true;
    const PrefixGroupProfiles& grp = *groups[g];
    const auto& ms = members[g];
    // One session: the members' total rate, the tightest member SLO (a member with a looser SLO
    // is served as if it had the tightest), ℓ_group(B) = ℓ_prefix(B) + Σ ℓ_suffix_k(n_k(B)).
    Session s = group_session(grp.session_id, grp.session_id, ms);
    s.priority = ms[0].session.priority;
    for (const auto& x : ms) s.priority = std::max(s.priority, x.session.priority);
    profiles.insert_or_assign(grp.session_id, group_profile(grp.session_id, grp.prefix, ms));
    auto& list = out.members[grp.session_id];
    for (const auto& x : ms) list.push_back(x.session);
    out.sessions.push_back(std::move(s));
  }
  join_admission_groups(out);
  return out;
}

}  // namespace nexus
