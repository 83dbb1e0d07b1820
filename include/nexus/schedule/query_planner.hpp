#pragma once
// QueryPlanner: splits a query's end-to-end SLO over its stages (paper §4.2, §6.2; notes §3.2).
// A query is a graph of stages (model invocations); an edge u → v with fan-out γ means each
// request of u creates γ requests of v on average, so rate(v) = Σ_parents rate(u)·γ(u→v).
//
// Tree-shaped graphs (one root, every stage has one parent): dynamic programme over time steps of
// ε = SLO / segments,
//   f(u, t) = min over budgets k ≤ t of [ R_u / T_u(k) + Σ_{c ∈ children(u)} f(c, t − k) ],
// where T_u(k) = max_{b: 2ℓ(b) ≤ k_eff} b / ℓ(b) is the best saturated throughput of u within
// budget k (k_eff = k − pre − post − overhead) and R_u/T_u(k) its fractional GPU count. Children
// of a fork share the remaining budget t − k (they run in parallel). f is made monotone in t.
// The objective uses the saturated rule, as the paper's DP does: it ignores that low-rate stages
// batch less (see SquishyBinPacker for the actual packing).
//
// Budgets: the DP's own argmin gives a parent the fewest steps at which its throughput peaks and
// the leaf all the rest, so with a generous SLO a cheap root (a detector) got ~1.5 ms and any
// burst was dropped there by early drop. Instead, once the minimum-cost split is known:
//   1. m_u = the smallest budget (µs) at which T_u reaches the throughput of its chosen budget,
//      i.e. the least time that keeps stage u at its chosen cost (leaves included);
//   2. L = max over root-to-leaf paths of Σ m_u (L ≤ SLO since m_u ≤ the chosen budgets);
//   3. an inner stage gets ⌊m_u · SLO / L⌋ µs (the slack spread in proportion to m_u, so every
//      stage gains the same relative headroom), and a leaf gets SLO − Σ of its ancestors' budgets,
//      so every root-to-leaf path sums to exactly the SLO and paths shorter than L give their
//      extra to their leaf.
// Every budget is ≥ m_u, and T_u(k) is non-decreasing in k, so no stage's GPU cost rises: `gpus`
// (the DP's objective at the split it chose) holds and the budgets cost at most that (possibly
// less, off the grid).
//
// Headroom for a nearly free stage (options.slack_tolerance, default 2%): the minimum-cost split
// gives a stage the least time that keeps it at its best cost, and when that stage is cheap (a
// detector at b = 1 whose larger batches are no faster) its budget ends up just above 2ℓ(1).
// 2ℓ(b) ≤ budget is enough only for perfectly paced arrivals; with Poisson bursts (and noisy
// batch times) a request that queues behind one batch misses the stage deadline and early drop
// discards it (SSD → ResNet-50 on the CPU set at γ = 1, 300 ms: SSD got 25.8 ms against 2ℓ(1) =
// 24.7 ms and dropped 11% at 60 req/s; docs/evaluation.md, Fig. 17). So among the splits whose
// objective is within (1 + slack_tolerance) of the DP minimum, the planner takes one that
// maximises the smallest slack ratio
//   ρ = min over stages u of budget_u / n_u,   n_u = 2ℓ_u(b_min) + pre + post + overhead
// (n_u is the least budget at which u can run at all, its batch of one), i.e. every stage gets at
// least ρ·n_u: ρ − 1 batches of one that may queue ahead of a request. It is the same DP with the
// budgets below ρ·n_u removed from each stage's table; the DP's minimum only rises with ρ, so the
// largest ρ within the tolerance is found by bisection over the candidate ratios (grid budget /
// n_u). At ρ = 1 nothing is removed, so when no split within the tolerance gives any stage more,
// the split is the exact DP's; the tightest SLOs and the InfeasibleSlo errors are unchanged. The
// read-back then uses max(m_u, ⌈ρ·n_u⌉) in place of m_u, so the spread keeps every stage at
// ≥ ρ·n_u. slack_tolerance = 0 turns the rule off (the exact DP's argmin and the proportional
// spread above, as before the rule).
//
// DAGs with joins (a stage with several parents): the layered fallback of the 2018 code — every
// stage at the same depth (longest path from the root) gets the same budget, and a DP over
// layers splits the SLO between layers. Also O(layers · segments²). Read-back as above with
// layers: M_i = max of m_u over layer i, layer i gets ⌊M_i · SLO / Σ M⌋ µs, and a leaf at depth d
// gets SLO minus layers 0..d−1 (every path through it crosses only those layers before it). The
// headroom rule applies per layer, with n_i = max of n_u over layer i.
//
// Errors (nexus::Error naming the query and item): no stages, duplicate stage ids, an edge to an
// unknown stage, a cycle, more than one root (or none), a non-positive SLO/rate/fan-out, a model
// with no profile, and an SLO that no split can meet (naming the minimal SLO that would work).

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/session.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

namespace nexus {

struct QueryEdge {
  std::string stage;     ///< child stage id
  double fanout = 1.0;   ///< γ: child requests per parent request (> 0)
};

struct QueryStage {
  std::string id;
  std::string model;
  std::vector<QueryEdge> children;
};

/// An application's query: a DAG of stages with one end-to-end SLO and the root's request rate.
struct QuerySpec {
  std::string id;
  std::chrono::microseconds slo{0};
  double rate_rps = 0.0;   ///< rate of the root stage, req/s
  std::vector<QueryStage> stages;
};

/// Thrown by QueryPlanner::split when no split of the query's SLO is feasible.
class InfeasibleSlo : public Error {
 public:
  InfeasibleSlo(const std::string& what, std::chrono::microseconds required)
      : Error(what), required_slo(required) {}
  std::chrono::microseconds required_slo;  ///< smallest SLO that could work (at the DP's grid)
};

struct QueryPlannerOptions {
  int segments = 200;   ///< time steps ε = SLO / segments
  /// Headroom rule (see above): accept splits whose objective is up to this fraction above the
  /// DP minimum (0.02 = 2%) and take the one that maximises min_u budget_u / n_u. Must be >= 0;
  /// 0 turns the rule off (the exact DP's own split).
  double slack_tolerance = 0.02;
};

/// The planner's answer for one query.
struct QuerySplit {
  std::string query;
  std::map<std::string, std::chrono::microseconds> budgets;  ///< stage id → latency budget
  std::map<std::string, double> rates;                       ///< stage id → rate, req/s
  double gpus = 0.0;        ///< objective: Σ R_v / T_v(budget_v), fractional GPUs
  double gpus_min = 0.0;    ///< the DP minimum of that objective (gpus ≤ (1 + tolerance)·this)
  double slack_ratio = 1.0; ///< ρ: every stage's budget ≥ ρ · n_u (≥ 1)
  bool layered = false;     ///< true when the DAG fallback was used
};

class QueryPlanner {
 public:
  explicit QueryPlanner(QueryPlannerOptions options = {}, PackerOptions packer = {})
      : options_(options), packer_(packer) {}

  /// Splits the query's SLO. Throws nexus::Error (see above); InfeasibleSlo when the graph is
  /// valid but its SLO is too tight.
  QuerySplit split(const QuerySpec& query, const ProfileMap& profiles) const;

  /// The sessions of a split query: id "<query>/<stage>", SLO = budget, rate = stage rate.
  static std::vector<Session> sessions(const QuerySpec& query, const QuerySplit& split);

  /// Stage rates from the root rate and fan-outs (validates the graph). Throws like split().
  static std::map<std::string, double> stage_rates(const QuerySpec& query);

 private:
  QueryPlannerOptions options_;
  PackerOptions packer_;
};

}  // namespace nexus
