// QueryPlanner: graph validation, stage rates, tree DP and the layered DP for DAGs with joins.

#include "nexus/schedule/query_planner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace nexus {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Graph {
  std::vector<std::string> ids;
  std::map<std::string, int> index;
  std::vector<std::vector<std::pair<int, double>>> children;  // (child, fan-out)
  std::vector<std::vector<int>> parents;
  std::vector<int> order;  // topological, root first
  int root = -1;
};

Graph build_graph(const QuerySpec& q) {
  NEXUS_CHECK(!q.id.empty(), "query: empty id");
  NEXUS_CHECK(!q.stages.empty(), "query '{}': no stages", q.id);
  NEXUS_CHECK(q.slo.count() > 0, "query '{}': SLO must be > 0 (got {} us)", q.id, q.slo.count());
  NEXUS_CHECK(std::isfinite(q.rate_rps) && q.rate_rps > 0,
              "query '{}': rate must be > 0 req/s (got {})", q.id, q.rate_rps);
  Graph g;
  const int n = static_cast<int>(q.stages.size());
  for (int i = 0; i < n; ++i) {
    const auto& s = q.stages[i];
    NEXUS_CHECK(!s.id.empty(), "query '{}': stage {} has an empty id", q.id, i);
    NEXUS_CHECK(g.index.emplace(s.id, i).second, "query '{}': duplicate stage id '{}'", q.id, s.id);
    g.ids.push_back(s.id);
  }
  g.children.resize(n);
  g.parents.resize(n);
  for (int i = 0; i < n; ++i) {
    for (const auto& e : q.stages[i].children) {
      auto it = g.index.find(e.stage);
      NEXUS_CHECK(it != g.index.end(), "query '{}': stage '{}' has an edge to unknown stage '{}'",
                  q.id, q.stages[i].id, e.stage);
      NEXUS_CHECK(std::isfinite(e.fanout) && e.fanout > 0,
                  "query '{}': edge '{}' -> '{}' needs a fan-out > 0 (got {})", q.id,
                  q.stages[i].id, e.stage, e.fanout);
      NEXUS_CHECK(it->second != i, "query '{}': stage '{}' has an edge to itself (a cycle)", q.id,
                  e.stage);
      g.children[i].push_back({it->second, e.fanout});
      g.parents[it->second].push_back(i);
    }
  }
  std::vector<std::string> roots;
  for (int i = 0; i < n; ++i)
    if (g.parents[i].empty()) {
      roots.push_back(g.ids[i]);
      g.root = i;
    }
  // Kahn's algorithm: whatever is never freed lies on (or after) a cycle.
  std::vector<int> indeg(n);
  std::vector<int> ready;
  for (int i = 0; i < n; ++i) {
    indeg[i] = static_cast<int>(g.parents[i].size());
    if (indeg[i] == 0) ready.push_back(i);
  }
  while (!ready.empty()) {
    const int u = ready.front();
    ready.erase(ready.begin());
    g.order.push_back(u);
    for (auto [c, f] : g.children[u])
      if (--indeg[c] == 0) ready.push_back(c);
  }
  if (static_cast<int>(g.order.size()) != n) {
    std::string cyc;
    for (int i = 0; i < n; ++i)
      if (indeg[i] > 0) cyc += (cyc.empty() ? "" : ", ") + g.ids[i];
    throw_error("query '{}': the stage graph has a cycle (through stages {})", q.id, cyc);
  }
  NEXUS_CHECK(roots.size() == 1, "query '{}': the stage graph needs exactly one root, found {} ({})",
              q.id, roots.size(), fmt::join(roots, ", "));
  return g;
}

}  // namespace

std::map<std::string, double> QueryPlanner::stage_rates(const QuerySpec& q) {
  const Graph g = build_graph(q);
  std::vector<double> rate(g.ids.size(), 0.0);
  rate[g.root] = q.rate_rps;
  for (int u : g.order)
    for (auto [c, f] : g.children[u]) rate[c] += rate[u] * f;
  std::map<std::string, double> out;
  for (std::size_t i = 0; i < rate.size(); ++i) out[g.ids[i]] = rate[i];
  return out;
}

std::vector<Session> QueryPlanner::sessions(const QuerySpec& q, const QuerySplit& split) {
  std::vector<Session> out;
  for (const auto& s : q.stages)
    out.push_back({.id = q.id + "/" + s.id, .model = s.model, .slo = split.budgets.at(s.id),
                   .rate_rps = split.rates.at(s.id), .priority = 0, .group = {}});
  return out;
}

QuerySplit QueryPlanner::split(const QuerySpec& q, const ProfileMap& profiles) const {
  const Graph g = build_graph(q);
  NEXUS_CHECK(options_.segments >= 1, "query planner: segments must be >= 1");
  const int n = static_cast<int>(g.ids.size());
  const int S = options_.segments;
  const auto rates = stage_rates(q);
  const std::int64_t slo = q.slo.count();
  auto budget_us = [&](int j) { return slo * j / S; };  // floor: sums along a path stay ≤ SLO
  const std::size_t cap = packer_.gpu_memory_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                                        : packer_.gpu_memory_bytes;

  // cost[u][j] = R_u / T_u(budget j): fractional GPUs of stage u with that budget.
  std::vector<std::vector<double>> cost(n, std::vector<double>(S + 1, kInf));
  std::vector<std::int64_t> min_budget(n, 0);  // smallest workable budget, for the error message
  // Per stage: (2ℓ(b), best throughput so far) sorted by 2ℓ(b), and the time outside the batch.
  std::vector<std::vector<std::pair<std::int64_t, double>>> steps_of(n);
  std::vector<std::int64_t> overhead_of(n, 0);
  for (int u = 0; u < n; ++u) {
    const auto& st = q.stages[u];
    auto pit = profiles.find(st.model);
    NEXUS_CHECK(pit != profiles.end(), "query '{}': stage '{}' names model '{}' with no batching profile",
                q.id, st.id, st.model);
    const BatchProfile& p = pit->second;
    NEXUS_CHECK(!p.empty(), "query '{}': batching profile of model '{}' is empty", q.id, st.model);
    std::int64_t overhead = packer_.fixed_overhead.count();
    if (packer_.subtract_pre_post) overhead += (p.preprocess() + p.postprocess()).count();
    overhead_of[u] = overhead;
    // Best throughput per GPU for each latency cap 2ℓ(b) (sorted), so each budget is a lookup.
    auto& steps = steps_of[u];
    std::vector<std::pair<std::int64_t, double>> pts;
    for (int b = 1; b <= p.max_batch(); ++b) {
      if (p.memory(b) > cap) continue;
      const std::int64_t l = p.latency(b).count();
      pts.push_back({2 * l, double(b) * 1e6 / double(l)});
    }
    std::sort(pts.begin(), pts.end());
    double best = 0.0;
    for (auto [need, tp] : pts) {
      best = std::max(best, tp);
      steps.push_back({need, best});
    }
    min_budget[u] = steps.empty() ? std::numeric_limits<std::int64_t>::max() / 4
                                  : steps.front().first + overhead;
    const double R = rates.at(st.id);
    std::size_t k = 0;
    double tp = 0.0;
    for (int j = 0; j <= S; ++j) {
      const std::int64_t eff = budget_us(j) - overhead;
      while (k < steps.size() && steps[k].first <= eff) tp = steps[k++].second;
      if (tp > 0) cost[u][j] = R / tp;
    }
  }
  // T_u(budget) in req/s (0 when nothing fits), and the smallest budget (µs) whose T_u reaches tp.
  auto throughput_at = [&](int u, std::int64_t us) {
    double tp = 0.0;
    for (auto [need, best] : steps_of[u])
      if (need + overhead_of[u] <= us) tp = best;
    return tp;
  };
  auto smallest_budget_for = [&](int u, double tp) {
    for (auto [need, best] : steps_of[u])
      if (best >= tp) return need + overhead_of[u];
    throw_error("query '{}': internal: stage '{}' cannot reach {} req/s", q.id, g.ids[u], tp);
  };

  bool tree = true;
  for (int u = 0; u < n; ++u)
    if (g.parents[u].size() > 1) tree = false;

  QuerySplit out;
  out.query = q.id;
  out.layered = !tree;
  for (int u = 0; u < n; ++u) out.rates[g.ids[u]] = rates.at(g.ids[u]);

  auto infeasible = [&]() {
    // The tightest SLO: the longest root-to-leaf path of minimal stage budgets.
    std::vector<std::int64_t> need(n, 0);
    std::int64_t worst = 0;
    for (auto it = g.order.rbegin(); it != g.order.rend(); ++it) {
      std::int64_t below = 0;
      for (auto [c, f] : g.children[*it]) below = std::max(below, need[c]);
      need[*it] = min_budget[*it] + below;
      worst = std::max(worst, need[*it]);
    }
    const auto required = std::chrono::microseconds(worst);
    throw InfeasibleSlo(
        fmt::format("query '{}': SLO {:.3f} ms cannot be split over its stages; the tightest "
                    "path needs >= {:.3f} ms (each stage needs 2·ℓ(1) plus pre/post-processing)",
                    q.id, slo / 1000.0, worst / 1000.0),
        required);
  };

  // The headroom rule (header): ρ = num / den, and a unit (stage or layer) with least budget n may
  // take step j only if budget_us(j) ≥ ρ·n. ρ = 1/1 removes nothing (cost is finite only there).
  struct Ratio {
    std::int64_t num = 1, den = 1;
  };
  auto allows = [](std::int64_t budget, std::int64_t n, Ratio r) {
    return static_cast<__int128>(budget) * r.den >= static_cast<__int128>(r.num) * n;
  };
  auto ceil_times = [](std::int64_t n, Ratio r) {  // ⌈ρ·n⌉ µs
    return static_cast<std::int64_t>((static_cast<__int128>(r.num) * n + r.den - 1) / r.den);
  };
  // The largest ρ among the candidates (grid budget / n of some unit) whose DP minimum stays within
  // the tolerance of `minimum`; `solve` runs the DP at a ρ. The minimum only rises with ρ
  // (budgets are removed), so bisection finds it.
  NEXUS_CHECK(std::isfinite(options_.slack_tolerance) && options_.slack_tolerance >= 0,
              "query planner: slack_tolerance must be >= 0 (got {})", options_.slack_tolerance);
  auto widest = [&](const std::vector<std::int64_t>& floors, double minimum, auto&& solve) {
    std::vector<Ratio> cand;
    for (auto n : floors)
      for (int j = 1; j <= S; ++j)
        if (budget_us(j) > n) cand.push_back({budget_us(j), n});
    auto less = [](Ratio a, Ratio b) {
      return static_cast<__int128>(a.num) * b.den < static_cast<__int128>(b.num) * a.den;
    };
    std::sort(cand.begin(), cand.end(), less);
    cand.erase(std::unique(cand.begin(), cand.end(),
                           [&](Ratio a, Ratio b) { return !less(a, b) && !less(b, a); }),
               cand.end());
    const double limit = minimum * (1.0 + options_.slack_tolerance + 1e-9);
    Ratio best;
    std::ptrdiff_t lo = 0, hi = static_cast<std::ptrdiff_t>(cand.size()) - 1;
    while (lo <= hi) {
      const std::ptrdiff_t mid = (lo + hi) / 2;
      if (solve(cand[mid]) <= limit) {
        best = cand[mid];
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return best;
  };

  if (tree) {
    // f[u][t]: min GPUs of the subtree at u within t steps; arg[u][t]: u's own steps.
    std::vector<std::vector<double>> f(n, std::vector<double>(S + 1, kInf));
    std::vector<std::vector<int>> arg(n, std::vector<int>(S + 1, 0));
    auto solve = [&](Ratio r) {
      for (auto it = g.order.rbegin(); it != g.order.rend(); ++it) {
        const int u = *it;
        for (int t = 1; t <= S; ++t) {
          double best = kInf;
          int bk = 0;
          for (int k = 1; k <= t; ++k) {
            double c = cost[u][k];
            if (c == kInf || !allows(budget_us(k), min_budget[u], r)) continue;
            for (auto [ch, fo] : g.children[u]) c += f[ch][t - k];
            if (c < best - 1e-12) {
              best = c;
              bk = k;
            }
          }
          f[u][t] = best;
          arg[u][t] = bk;
        }
      }
      return f[g.root][S];
    };
    out.gpus_min = solve(Ratio{});
    if (out.gpus_min == kInf) infeasible();
    const Ratio rho = options_.slack_tolerance > 0 ? widest(min_budget, out.gpus_min, solve) : Ratio{};
    out.gpus = solve(rho);  // refills f and arg at ρ for the read-back
    out.slack_ratio = double(rho.num) / double(rho.den);
    // Top-down read-back of the steps the DP chose (a leaf: all its path leaves) ...
    std::vector<int> left(n, 0), chosen(n, 0);
    left[g.root] = S;
    for (int u : g.order) {
      chosen[u] = g.children[u].empty() ? left[u] : arg[u][left[u]];
      for (auto [ch, fo] : g.children[u]) left[ch] = left[u] - chosen[u];
    }
    // ... then each stage's smallest budget with the same cost (and at least ρ·n_u; both ≤ the
    // chosen budget), and the slack spread over them.
    std::vector<std::int64_t> minimal(n, 0), path(n, 0);
    std::int64_t longest = 0;
    for (int u : g.order) {
      minimal[u] = std::max(smallest_budget_for(u, throughput_at(u, budget_us(chosen[u]))),
                            ceil_times(min_budget[u], rho));
      path[u] += minimal[u];  // path[u] held the ancestors' sum
      for (auto [ch, fo] : g.children[u]) path[ch] = path[u];
      longest = std::max(longest, path[u]);
    }
    // longest <= SLO (minimal <= chosen budgets, whose paths fit), so the scale is >= 1.
    std::vector<std::int64_t> above(n, 0);  // Σ budgets of u's ancestors
    for (int u : g.order) {
      const std::int64_t b =
          g.children[u].empty() ? slo - above[u] : minimal[u] * slo / longest;
      out.budgets[g.ids[u]] = std::chrono::microseconds(b);
      for (auto [ch, fo] : g.children[u]) above[ch] = above[u] + b;
    }
    return out;
  }

  // Layered fallback: depth = longest path from the root; one budget per layer.
  std::vector<int> depth(n, 0);
  for (int u : g.order)
    for (auto [c, f] : g.children[u]) depth[c] = std::max(depth[c], depth[u] + 1);
  const int layers = *std::max_element(depth.begin(), depth.end()) + 1;
  std::vector<std::vector<double>> lcost(layers, std::vector<double>(S + 1, 0.0));
  for (int u = 0; u < n; ++u)
    for (int j = 0; j <= S; ++j) lcost[depth[u]][j] += cost[u][j];
  // n_i: the largest least budget n_u of layer i (the headroom rule's unit is the layer).
  std::vector<std::int64_t> layer_floor(layers, 0);
  for (int u = 0; u < n; ++u) layer_floor[depth[u]] = std::max(layer_floor[depth[u]], min_budget[u]);
  // dp[i][t]: min GPUs of layers 0..i within t steps (layer i takes k of them).
  std::vector<std::vector<double>> dp(layers, std::vector<double>(S + 1, kInf));
  std::vector<std::vector<int>> arg(layers, std::vector<int>(S + 1, 0));
  auto solve = [&](Ratio r) {
    for (int i = 0; i < layers; ++i) {
      for (int t = 1; t <= S; ++t) {
        dp[i][t] = kInf;
        arg[i][t] = 0;
        for (int k = 1; k <= t; ++k) {
          const double base = i == 0 ? 0.0 : dp[i - 1][t - k];
          if (lcost[i][k] == kInf || base == kInf || !allows(budget_us(k), layer_floor[i], r))
            continue;
          const double c = base + lcost[i][k];
          if (c < dp[i][t] - 1e-12) {
            dp[i][t] = c;
            arg[i][t] = k;
          }
        }
      }
    }
    return dp[layers - 1][S];
  };
  out.gpus_min = solve(Ratio{});
  if (out.gpus_min == kInf) infeasible();
  const Ratio rho = options_.slack_tolerance > 0 ? widest(layer_floor, out.gpus_min, solve) : Ratio{};
  out.gpus = solve(rho);
  out.slack_ratio = double(rho.num) / double(rho.den);
  std::vector<int> layer_steps(layers, 0);
  int t = S;
  for (int i = layers - 1; i >= 0; --i) {
    layer_steps[i] = arg[i][t];
    t -= arg[i][t];
  }
  // Layer minimum: the largest of its stages' smallest budgets at their chosen costs.
  std::vector<std::int64_t> layer_min(layers, 0);
  for (int u = 0; u < n; ++u) {
    const double tp = throughput_at(u, budget_us(layer_steps[depth[u]]));
    layer_min[depth[u]] = std::max(layer_min[depth[u]], smallest_budget_for(u, tp));
  }
  for (int i = 0; i < layers; ++i) layer_min[i] = std::max(layer_min[i], ceil_times(layer_floor[i], rho));
  std::int64_t total = 0;
  for (auto m : layer_min) total += m;
  // A stage at depth d starts after layers 0..d-1 at the latest; a leaf keeps the rest of the SLO.
  std::vector<std::int64_t> start(layers + 1, 0);
  for (int i = 0; i < layers; ++i) start[i + 1] = start[i] + layer_min[i] * slo / total;
  for (int u = 0; u < n; ++u) {
    const int d = depth[u];
    const std::int64_t b = g.children[u].empty() ? slo - start[d] : start[d + 1] - start[d];
    out.budgets[g.ids[u]] = std::chrono::microseconds(b);
  }
  return out;
}

}  // namespace nexus
