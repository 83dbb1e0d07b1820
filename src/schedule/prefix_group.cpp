// A prefix group as one schedulable unit (see schedule/prefix_group.hpp).
#include "nexus/schedule/prefix_group.hpp"

#include <algorithm>
#include <cmath>
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

}  // namespace nexus
