// Exact small-instance reference: per-group feasibility over duty-cycle intervals + subset DP.

#include "nexus/schedule/exact_packer.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "nexus/core/error.hpp"

namespace nexus {

namespace {

int batch_for(std::int64_t d, double rate) {  // must match SquishyBinPacker's rounding
  const double x = static_cast<double>(d) * rate / 1e6;
  return std::max(1, static_cast<int>(std::ceil(x - 1e-9)));
}

}  // namespace

bool fits_one_gpu(const std::vector<Session>& sessions, const ProfileMap& profiles,
                  const PackerOptions& options) {
  if (sessions.empty()) return true;
  const std::size_t cap = options.gpu_memory_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                                        : options.gpu_memory_bytes;
  std::vector<const BatchProfile*> prof;
  std::vector<std::int64_t> slo;
  std::int64_t dmax = std::numeric_limits<std::int64_t>::max();
  for (const auto& s : sessions) {
    auto it = profiles.find(s.model);
    NEXUS_CHECK(it != profiles.end(), "session '{}': no batching profile for model '{}'", s.id, s.model);
    NEXUS_CHECK(s.rate_rps > 0 && s.slo.count() > 0, "session '{}': rate and SLO must be > 0", s.id);
    prof.push_back(&it->second);
    slo.push_back(effective_slo(s, it->second, options).count());
    dmax = std::min(dmax, slo.back());
  }
  if (dmax <= 0) return false;
  // Interval ends: for each session and batch k, the largest d with ⌈d·r⌉ ≤ k. Between two
  // consecutive ends every batch is constant, so each interval is checked in closed form.
  std::vector<std::int64_t> ends{dmax};
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    const double r = sessions[i].rate_rps;
    for (int k = 1; k <= prof[i]->max_batch(); ++k) {
      auto x = static_cast<std::int64_t>(std::floor(double(k) * 1e6 / r));
      while (batch_for(x + 1, r) <= k) ++x;
      while (x > 0 && batch_for(x, r) > k) --x;
      if (x >= dmax) break;
      if (x > 0) ends.push_back(x);
    }
  }
  std::sort(ends.begin(), ends.end());
  ends.erase(std::unique(ends.begin(), ends.end()), ends.end());
  std::int64_t lo = 1;
  for (std::int64_t hi : ends) {
    if (hi < lo) continue;
    bool ok = true;
    std::int64_t exec = 0, upper = hi;
    std::size_t mem = 0;
    for (std::size_t i = 0; i < sessions.size() && ok; ++i) {
      const int b = batch_for(hi, sessions[i].rate_rps);
      if (b > prof[i]->max_batch()) {
        ok = false;
        break;
      }
      const std::int64_t l = prof[i]->latency(b).count();
      exec += l;
      mem += prof[i]->memory(b);
      upper = std::min(upper, slo[i] - l);
    }
    if (ok && mem <= cap && std::max(lo, exec) <= upper) return true;
    lo = hi + 1;
  }
  return false;
}

int exact_min_gpus(const std::vector<Session>& sessions, const ProfileMap& profiles,
                   const PackerOptions& options) {
  const int n = static_cast<int>(sessions.size());
  NEXUS_CHECK(n <= 16, "exact_min_gpus: {} sessions; the exhaustive search handles at most 16", n);
  const int full = (1 << n) - 1;
  std::vector<char> feasible(static_cast<std::size_t>(full) + 1, 0);
  std::vector<Session> group;
  for (int m = 1; m <= full; ++m) {
    // A superset of an infeasible group can still be feasible (a shorter cycle helps others),
    // so every subset is checked.
    group.clear();
    for (int i = 0; i < n; ++i)
      if (m >> i & 1) group.push_back(sessions[i]);
    feasible[m] = fits_one_gpu(group, profiles, options);
  }
  for (int i = 0; i < n; ++i)
    if (!feasible[1 << i]) return -1;
  constexpr int kInf = std::numeric_limits<int>::max() / 2;
  std::vector<int> best(static_cast<std::size_t>(full) + 1, kInf);
  best[0] = 0;
  for (int m = 1; m <= full; ++m) {
    const int low = m & -m;  // the group holding the lowest session, enumerated once
    for (int sub = m; sub; sub = (sub - 1) & m) {
      if (!(sub & low) || !feasible[sub]) continue;
      best[m] = std::min(best[m], 1 + best[m ^ sub]);
    }
  }
  return best[full];
}

}  // namespace nexus
