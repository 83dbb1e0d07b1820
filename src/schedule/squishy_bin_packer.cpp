// SquishyBinPacker: Algorithm 1 (saturate, residual, merge). See the header for the rules.
//
// Internally all times are integer microseconds and every session's profile is tabulated once
// per model (ℓ(b), m(b) for b = 1..B_max), so a merge attempt costs O(1) when the incoming node
// keeps the GPU's duty cycle and O(|GPU|) when it shortens it.

#include "nexus/schedule/squishy_bin_packer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "nexus/core/error.hpp"

namespace nexus {

namespace {

using us = std::chrono::microseconds;
constexpr double kRateTolerance = 1e-9;

struct Table {  // one model's profile, tabulated
  std::vector<std::int64_t> lat;   // lat[b], b = 1..B_max (lat[0] unused)
  std::vector<std::size_t> mem;    // mem[b]
  int max_batch = 0;
};

struct Info {
  const Session* s = nullptr;
  const Table* t = nullptr;
  std::int64_t slo = 0;    // effective SLO, µs
  int sat_batch = 0;       // B: throughput-maximising batch with 2ℓ(B) ≤ slo and memory fit
  double sat_tput = 0.0;   // T(B), req/s
};

// Batch needed to serve `rate` req/s in a duty cycle of d µs: ⌈d·r⌉, at least 1.
int batch_for(std::int64_t d, double rate) {
  const double x = static_cast<double>(d) * rate / 1e6;
  return std::max(1, static_cast<int>(std::ceil(x - 1e-9)));
}

struct Member {
  int info;
  double rate;
  int batch;
  std::int64_t lat;
  std::int64_t own_d;  // the member's own residual duty cycle (its d_i before any merge)
};

struct Node {
  std::int64_t d = 0;
  std::int64_t exec = 0;
  std::size_t mem = 0;
  std::vector<Member> members;
};

}  // namespace

us effective_slo(const Session& s, const BatchProfile& p, const PackerOptions& o) {
  us e = s.slo - o.fixed_overhead;
  if (o.subtract_pre_post) e -= p.preprocess() + p.postprocess();
  return e;
}

int saturated_batch(const BatchProfile& p, us slo) {
  int best = 0;
  for (int b = 1; b <= p.max_batch(); ++b)
    if (2 * p.latency(b) <= slo) best = b;
  return best;
}

int residual_batch(const BatchProfile& p, us slo, double rate_rps) {
  int best = 0;
  for (int b = 1; b <= p.max_batch(); ++b) {
    const double collect_us = double(b) / rate_rps * 1e6;
    if (double(p.latency(b).count()) + collect_us <= double(slo.count()) + 1e-6) best = b;
  }
  return best;
}

Plan SquishyBinPacker::pack(const std::vector<Session>& sessions, const ProfileMap& profiles) const {
  return admit_and_pack(sessions, profiles, options_, {});
}

Plan SquishyBinPacker::pack_all(const std::vector<Session>& sessions, const ProfileMap& profiles) const {
  const auto& o = options_;
  const std::size_t cap = o.gpu_memory_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                                  : o.gpu_memory_bytes;
  Plan plan;

  // --- validate and tabulate -------------------------------------------------------------
  std::unordered_map<std::string, Table> tables;
  std::vector<Info> infos;
  infos.reserve(sessions.size());
  std::set<std::string> ids;
  for (const auto& s : sessions) {
    NEXUS_CHECK(!s.id.empty(), "session with model '{}': empty id", s.model);
    NEXUS_CHECK(ids.insert(s.id).second, "session '{}': duplicate id", s.id);
    NEXUS_CHECK(std::isfinite(s.rate_rps) && s.rate_rps > 0,
                "session '{}': rate must be > 0 req/s (got {})", s.id, s.rate_rps);
    NEXUS_CHECK(s.slo.count() > 0, "session '{}': SLO must be > 0 (got {} us)", s.id,
                s.slo.count());
    auto pit = profiles.find(s.model);
    NEXUS_CHECK(pit != profiles.end(), "session '{}': no batching profile for model '{}'", s.id,
                s.model);
    const BatchProfile& p = pit->second;
    NEXUS_CHECK(!p.empty(), "session '{}': batching profile of model '{}' is empty", s.id, s.model);
    auto [tit, fresh] = tables.try_emplace(s.model);
    Table& t = tit->second;
    if (fresh) {
      t.max_batch = p.max_batch();
      t.lat.resize(static_cast<std::size_t>(t.max_batch) + 1);
      t.mem.resize(static_cast<std::size_t>(t.max_batch) + 1);
      for (int b = 1; b <= t.max_batch; ++b) {
        t.lat[b] = p.latency(b).count();
        t.mem[b] = p.memory(b);
      }
    }
    Info in;
    in.s = &s;
    in.t = &t;
    in.slo = effective_slo(s, p, o).count();
    for (int b = 1; b <= t.max_batch; ++b) {
      if (2 * t.lat[b] > in.slo || t.mem[b] > cap) continue;
      const double tput = double(b) * 1e6 / double(t.lat[b]);
      if (tput >= in.sat_tput) {  // ties → larger batch
        in.sat_tput = tput;
        in.sat_batch = b;
      }
    }
    if (in.sat_batch == 0) {
      // Cheapest request: the smallest latency any batch has (normally ℓ(1)); a GPU needs
      // d ≥ ℓ(b) and d + ℓ(b) ≤ SLO, so 2ℓ must fit.
      std::int64_t min_lat = std::numeric_limits<std::int64_t>::max();
      std::size_t min_mem = std::numeric_limits<std::size_t>::max();
      for (int b = 1; b <= t.max_batch; ++b) {
        min_lat = std::min(min_lat, t.lat[b]);
        min_mem = std::min(min_mem, t.mem[b]);
      }
      Rejection r;
      r.session = s.id;
      if (min_mem > cap) {
        r.reason = fmt::format(
            "model '{}' needs {} bytes of GPU memory even at batch 1; the GPU has {}", s.model,
            min_mem, cap);
      } else {
        r.required_slo = us(2 * min_lat) + (s.slo - us(in.slo));
        r.reason = fmt::format(
            "SLO {:.3f} ms cannot be met by model '{}': one batch takes {:.3f} ms, and waiting "
            "for the next duty cycle doubles that; needs SLO >= {:.3f} ms",
            s.slo.count() / 1000.0, s.model, min_lat / 1000.0, r.required_slo.count() / 1000.0);
      }
      plan.rejected.push_back(std::move(r));
      continue;
    }
    plan.lower_bound_gpus += s.rate_rps / in.sat_tput;
    infos.push_back(in);
  }

  // --- saturate ------------------------------------------------------------------------------
  struct Residual {
    int info;
    double rate;
    std::int64_t d;
    int batch;
    double occ;
  };
  std::vector<Residual> residuals;
  std::vector<GpuPlan> saturated;
  auto add_saturated = [&](const Info& in, int count) {
    const int B = in.sat_batch;
    for (int k = 0; k < count; ++k) {
      GpuPlan g;
      g.saturated = true;
      g.duty_cycle = us(in.t->lat[B]);
      g.occupancy = 1.0;
      g.memory_bytes = in.t->mem[B];
      g.sessions.push_back({in.s->id, in.s->model, B, us(in.t->lat[B]), in.sat_tput, in.s->slo, {}});
      saturated.push_back(std::move(g));
    }
  };
  for (int i = 0; i < static_cast<int>(infos.size()); ++i) {
    const Info& in = infos[i];
    const double R = in.s->rate_rps;
    const double full = std::floor(R / in.sat_tput + kRateTolerance);
    NEXUS_CHECK(full < 1e6, "session '{}': {} req/s needs {:.3g} saturated GPUs at {:.3g} req/s each "
                "(expected under 1e6; a rate or a profile out of range?)", in.s->id, R, full, in.sat_tput);
    int n = static_cast<int>(full);
    double r = R - n * in.sat_tput;
    if (r <= R * kRateTolerance) r = 0.0;
    add_saturated(in, n);
    if (r <= 0.0) continue;
    // Residual batch: Algorithm 1 line 13, largest b with ℓ(b) + b/r ≤ SLO (and ℓ(b) ≤ b/r so
    // that the batch fits its own cycle). Else the lowest-occupancy b whose cycle is bounded by
    // the SLO: d = SLO − ℓ(b) < b/r (low rates, where even one request cannot wait 1/r).
    const Table& t = *in.t;
    Residual best{i, r, 0, 0, 0.0};
    for (int b = t.max_batch; b >= 1; --b) {
      if (t.mem[b] > cap) continue;
      const double collect = double(b) / r * 1e6;
      if (double(t.lat[b]) <= collect && double(t.lat[b]) + collect <= double(in.slo)) {
        best.d = static_cast<std::int64_t>(std::floor(collect + 1e-9));
        best.batch = b;
        break;
      }
    }
    if (best.batch == 0) {
      double best_occ = std::numeric_limits<double>::infinity();
      for (int b = 1; b <= t.max_batch; ++b) {
        if (t.mem[b] > cap) continue;
        const std::int64_t d = std::min<std::int64_t>(
            static_cast<std::int64_t>(std::floor(double(b) / r * 1e6 + 1e-9)), in.slo - t.lat[b]);
        if (d < t.lat[b] || batch_for(d, r) != b) continue;
        const double occ = double(t.lat[b]) / double(d);
        if (occ < best_occ) {
          best_occ = occ;
          best.d = d;
          best.batch = b;
        }
      }
    }
    if (best.batch == 0) {  // only with odd (non-monotone) profiles: one more dedicated GPU
      add_saturated(in, 1);
      saturated.back().sessions[0].rate_rps = r;
      continue;
    }
    best.batch = batch_for(best.d, r);
    best.occ = double(t.lat[best.batch]) / double(best.d);
    residuals.push_back(best);
  }
  // Highest occupancy first; ties by input order for determinism.
  std::stable_sort(residuals.begin(), residuals.end(),
                   [](const Residual& a, const Residual& b) { return a.occ > b.occ; });

  // --- merge -------------------------------------------------------------------------------
  std::vector<Node> nodes;
  // Occupancy of node n after adding one residual (rate r, own cycle d_own, batch b_own at
  // d_own), or < 0 if infeasible: d = min(d_n, d_own), batches ⌈d·r⌉, Σℓ ≤ d, d + ℓ ≤ SLO,
  // memory fits.
  auto merged_occupancy = [&](const Node& n, int info, double rate, std::int64_t d_own,
                              int b_own) -> double {
    const Info& in = infos[info];
    const Table& t = *in.t;
    std::int64_t exec = 0;
    std::size_t mem = 0;
    std::int64_t d;
    if (d_own >= n.d) {
      // The GPU keeps its cycle: only the newcomer's batch is re-derived.
      d = n.d;
      if (n.d - n.exec <= 0) return -1;
      const int b = batch_for(d, rate);
      if (b > t.max_batch) return -1;
      const std::int64_t l = t.lat[b];
      if (n.exec + l > d || d + l > in.slo) return -1;
      exec = n.exec + l;
      mem = n.mem + t.mem[b];
    } else {
      // The newcomer shortens the cycle: every resident batch shrinks to ⌈d·r⌉.
      d = d_own;
      exec = t.lat[b_own];
      mem = t.mem[b_own];
      if (exec > d) return -1;
      for (const Member& m : n.members) {
        const Info& mi = infos[m.info];
        const int b = batch_for(d, m.rate);
        const std::int64_t l = mi.t->lat[b];
        exec += l;
        mem += mi.t->mem[b];
        if (exec > d || d + l > mi.slo) return -1;
      }
    }
    if (mem > cap) return -1;
    return double(exec) / double(d);
  };
  auto add_member = [&](Node& n, int info, double rate, std::int64_t d_own) {
    n.members.push_back({info, rate, 0, 0, d_own});
    n.d = std::min(n.d, d_own);
    n.exec = 0;
    n.mem = 0;
    for (Member& m : n.members) {
      const Info& mi = infos[m.info];
      m.batch = batch_for(n.d, m.rate);
      m.lat = mi.t->lat[m.batch];
      n.exec += m.lat;
      n.mem += mi.t->mem[m.batch];
    }
  };
  for (const Residual& res : residuals) {
    int best_node = -1;
    double best_occ = -1.0;
    for (int g = 0; g < static_cast<int>(nodes.size()); ++g) {
      const double occ = merged_occupancy(nodes[g], res.info, res.rate, res.d, res.batch);
      if (occ > best_occ) {
        best_occ = occ;
        best_node = g;
      }
    }
    if (best_node < 0) {
      const Table& t = *infos[res.info].t;
      Node n;
      n.d = res.d;
      n.exec = t.lat[res.batch];
      n.mem = t.mem[res.batch];
      n.members.push_back({res.info, res.rate, res.batch, t.lat[res.batch], res.d});
      nodes.push_back(std::move(n));
      continue;
    }
    add_member(nodes[best_node], res.info, res.rate, res.d);
  }

  // --- consolidate (beyond Algorithm 1; options.consolidate) --------------------------------
  // Try to empty the least occupied GPUs: move each of their sessions, with its own cycle, into
  // another GPU by the same merge rule; commit only if the whole GPU empties.
  if (o.consolidate && nodes.size() > 1) {
    std::vector<int> order(nodes.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    auto occ_of = [&](int i) { return double(nodes[i].exec) / double(nodes[i].d); };
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return occ_of(a) < occ_of(b); });
    std::vector<char> alive(nodes.size(), 1);
    for (int x : order) {
      if (occ_of(x) > o.consolidate_below) break;
      std::vector<std::pair<int, Node>> backup;  // targets changed so far, for rollback
      bool ok = true;
      for (const Member& m : nodes[x].members) {
        const int b_own = batch_for(m.own_d, m.rate);
        int best = -1;
        double best_occ = -1;
        for (int y = 0; y < static_cast<int>(nodes.size()); ++y) {
          if (y == x || !alive[y]) continue;
          const double occ = merged_occupancy(nodes[y], m.info, m.rate, m.own_d, b_own);
          if (occ > best_occ) {
            best_occ = occ;
            best = y;
          }
        }
        if (best < 0) {
          ok = false;
          break;
        }
        bool saved = false;
        for (const auto& bk : backup) saved |= bk.first == best;
        if (!saved) backup.emplace_back(best, nodes[best]);
        add_member(nodes[best], m.info, m.rate, m.own_d);
      }
      if (ok) {
        alive[x] = 0;
      } else {
        for (auto& [y, n] : backup) nodes[y] = std::move(n);
      }
    }
    std::vector<Node> kept;
    for (std::size_t i = 0; i < nodes.size(); ++i)
      if (alive[i]) kept.push_back(std::move(nodes[i]));
    nodes = std::move(kept);
  }

  // --- emit ---------------------------------------------------------------------------------
  plan.gpus = std::move(saturated);
  for (const Node& n : nodes) {
    GpuPlan g;
    g.duty_cycle = us(n.d);
    g.occupancy = double(n.exec) / double(n.d);
    g.memory_bytes = n.mem;
    for (const Member& m : n.members) {
      const Info& mi = infos[m.info];
      g.sessions.push_back({mi.s->id, mi.s->model, m.batch, us(m.lat), m.rate, mi.s->slo, {}});
    }
    plan.gpus.push_back(std::move(g));
  }

  for (int g = 0; g < plan.num_gpus(); ++g) plan.gpus[g].gpu = g;
  plan.rebuild_routes();
  return plan;
}

Plan admit_and_pack(const std::vector<Session>& sessions, const ProfileMap& profiles,
                    const PackerOptions& options, const std::set<std::string>& incumbents) {
  PackerOptions unlimited = options;
  unlimited.max_gpus = 0;
  const SquishyBinPacker packer(unlimited);
  Plan full = packer.pack_all(sessions, profiles);
  if (options.max_gpus <= 0 || full.num_gpus() <= options.max_gpus) return full;

  // The unit of admission: a group (Session::group, e.g. a query's stages) or a lone session.
  struct Unit {
    std::string name;
    std::vector<const Session*> members;
    int priority = std::numeric_limits<int>::min();
    bool incumbent = false;
    double rate = 0.0;
  };
  std::vector<Unit> units;
  std::map<std::string, std::size_t> unit_of;
  for (const auto& s : sessions) {
    const std::string key = s.group.empty() ? "session:" + s.id : "group:" + s.group;
    auto [it, fresh] = unit_of.try_emplace(key, units.size());
    if (fresh) units.push_back({s.group.empty() ? s.id : s.group, {}, s.priority, false, 0.0});
    Unit& u = units[it->second];
    u.members.push_back(&s);
    u.priority = std::max(u.priority, s.priority);
    u.incumbent = u.incumbent || incumbents.count(s.id) > 0;
    u.rate += s.rate_rps;
  }
  // Admission order: priority (higher first); then the units the running plan serves (a
  // decision stands while the load does not fit: no flapping); then the original code's order
  // for unassigned load (rate, descending); then name.
  std::vector<const Unit*> order;
  for (const auto& u : units) order.push_back(&u);
  std::stable_sort(order.begin(), order.end(), [](const Unit* a, const Unit* b) {
    if (a->priority != b->priority) return a->priority > b->priority;
    if (a->incumbent != b->incumbent) return a->incumbent;
    if (a->rate != b->rate) return a->rate > b->rate;
    return a->name < b->name;
  });
  const int limit = options.max_gpus;
  std::vector<Session> admitted;
  auto fits_with = [&](const Unit& u, double share) {
    std::vector<Session> trial = admitted;
    for (const Session* m : u.members) {
      trial.push_back(*m);
      trial.back().rate_rps = m->rate_rps * share;
    }
    return packer.pack_all(trial, profiles).num_gpus() <= limit;
  };
  std::vector<Rejection> decisions;
  for (const Unit* u : order) {
    double share = 1.0;
    if (!fits_with(*u, 1.0)) {
      // Not at its full rate: the largest share that still fits (bisection on the rate).
      share = 0.0;
      if (options.admission_min_share > 0 && fits_with(*u, options.admission_min_share)) {
        double lo = options.admission_min_share, hi = 1.0;
        for (int i = 0; i < 12; ++i) {
          const double mid = 0.5 * (lo + hi);
          (fits_with(*u, mid) ? lo : hi) = mid;
        }
        share = lo;
      }
    }
    if (share > 0)
      for (const Session* m : u->members) {
        admitted.push_back(*m);
        admitted.back().rate_rps = m->rate_rps * share;
      }
    if (share >= 1.0) continue;
    for (const Session* m : u->members) {
      Rejection r;
      r.session = m->id;
      r.served_rps = m->rate_rps * share;
      r.demanded_rps = m->rate_rps;
      const std::string who = m->group.empty() ? "" : fmt::format(" with its group '{}'", m->group);
      r.reason = share > 0
                     ? fmt::format("cluster limit of {} GPUs (all sessions need {}): admitted in part{}, "
                                   "{:.2f} of {:.2f} req/s are served (admission order: priority {}, "
                                   "then running sessions, then rate)",
                                   limit, full.num_gpus(), who, r.served_rps, r.demanded_rps, u->priority)
                     : fmt::format("cluster limit of {} GPUs (all sessions need {}): rejected{}, no "
                                   "capacity is left for its {:.2f} req/s after the sessions admitted "
                                   "before it (admission order: priority {}, then running sessions, "
                                   "then rate)",
                                   limit, full.num_gpus(), who, m->rate_rps, u->priority);
      decisions.push_back(std::move(r));
    }
  }
  Plan plan = packer.pack_all(admitted, profiles);
  plan.rejected.insert(plan.rejected.end(), decisions.begin(), decisions.end());
  // The fractional bound of the whole demand, so the plan shows what was asked for.
  plan.lower_bound_gpus = full.lower_bound_gpus;
  return plan;
}

std::vector<std::string> validate_plan(const Plan& plan, const std::vector<Session>& sessions,
                                       const ProfileMap& profiles, const PackerOptions& options) {
  std::vector<std::string> errors;
  std::map<std::string, const Session*> by_id;
  for (const auto& s : sessions) by_id[s.id] = &s;
  std::set<std::string> rejected;
  for (const auto& r : plan.rejected) rejected.insert(r.session);
  std::map<std::string, double> served;
  const std::size_t cap = options.gpu_memory_bytes == 0 ? std::numeric_limits<std::size_t>::max()
                                                        : options.gpu_memory_bytes;
  for (int gi = 0; gi < plan.num_gpus(); ++gi) {
    const GpuPlan& g = plan.gpus[gi];
    if (g.gpu != gi) errors.push_back(fmt::format("gpu {}: slot number {}", gi, g.gpu));
    const std::int64_t d = g.duty_cycle.count();
    if (d <= 0) {
      errors.push_back(fmt::format("gpu {}: duty cycle {} us", gi, d));
      continue;
    }
    std::int64_t exec = 0;
    std::size_t mem = 0;
    for (const auto& a : g.sessions) {
      auto it = by_id.find(a.session);
      if (it == by_id.end()) {
        errors.push_back(fmt::format("gpu {}: unknown session '{}'", gi, a.session));
        continue;
      }
      const Session& s = *it->second;
      const BatchProfile& p = profiles.at(s.model);
      if (a.batch < 1 || a.batch > p.max_batch()) {
        errors.push_back(fmt::format("gpu {}: session '{}' batch {}", gi, a.session, a.batch));
        continue;
      }
      const std::int64_t l = p.latency(a.batch).count();
      exec += l;
      mem += p.memory(a.batch);
      const std::int64_t slo = effective_slo(s, p, options).count();
      if (d + l > slo)
        errors.push_back(fmt::format("gpu {}: session '{}' duty {} + latency {} > SLO {} us", gi,
                                     a.session, d, l, slo));
      if (a.rate_rps > double(a.batch) * 1e6 / double(d) * (1 + 1e-9))
        errors.push_back(fmt::format("gpu {}: session '{}' rate {} > batch/duty {}", gi,
                                     a.session, a.rate_rps, double(a.batch) * 1e6 / double(d)));
      served[a.session] += a.rate_rps;
    }
    if (exec > d) errors.push_back(fmt::format("gpu {}: Σℓ {} > duty {} us", gi, exec, d));
    if (mem > cap) errors.push_back(fmt::format("gpu {}: memory {} > {}", gi, mem, cap));
    if (std::abs(g.occupancy - double(exec) / double(d)) > 1e-9)
      errors.push_back(fmt::format("gpu {}: occupancy {} != {}", gi, g.occupancy, double(exec) / d));
  }
  for (const auto& s : sessions) {
    if (rejected.count(s.id)) continue;
    if (served[s.id] < s.rate_rps * (1 - 1e-9))
      errors.push_back(fmt::format("session '{}': served {} < rate {}", s.id, served[s.id], s.rate_rps));
  }
  if (plan.num_gpus() + 1e-9 < plan.lower_bound_gpus && options.max_gpus == 0)
    errors.push_back(fmt::format("{} GPUs < lower bound {}", plan.num_gpus(), plan.lower_bound_gpus));
  return errors;
}

}  // namespace nexus
