// Scheduler benchmark (prints JSON): squishy bin packing (paper §6.1) against
//   1. the exact optimum on >= 500 random small instances (<= 8 residual sessions, exhaustive
//      search over set partitions, nexus/schedule/exact_packer.hpp): share equal, worst excess;
//   2. the fractional lower bound Σ R_i / T_i(B_i) on paper-scale workloads (hundreds of
//      sessions, Zipf-distributed rates, SLOs 50..400 ms): GPUs / lower bound;
//   3. planning time for 100, 1,000 and 10,000 sessions (one core, median of repeats).
// Profiles: the four TITAN X profiles of the original Nexus plus seeded random ones with
// ℓ(b) = β + α·b^p (p in [0.8, 1.1]).
//
// Usage (from the repository root): scheduler [--seed N] [--small N] [--titanx DIR]

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/exact_packer.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"

using namespace nexus;
using json = nlohmann::json;

namespace {

BatchProfile random_profile(std::mt19937_64& rng, const std::string& name, int max_batch) {
  std::uniform_real_distribution<double> beta(1000, 20000), alpha(300, 8000), pw(0.8, 1.1),
      noise(0.97, 1.03), wmem(2e8, 2e9), amem(5e6, 1e8);
  const double b0 = beta(rng), a = alpha(rng), p = pw(rng), w = wmem(rng), am = amem(rng);
  std::vector<int> batches;
  std::vector<double> lat, sd;
  std::vector<std::size_t> mem;
  double prev = 0;
  for (int b = 1; b <= max_batch; ++b) {
    double l = std::max(prev + 1.0, (b0 + a * std::pow(double(b), p)) * noise(rng));
    prev = l;
    batches.push_back(b);
    lat.push_back(l);
    sd.push_back(0.02 * l);
    mem.push_back(static_cast<std::size_t>(w + am * b));
  }
  return BatchProfile(name, "rand", batches, lat, sd, mem);
}

std::string g_titanx = "tests/fixtures/profiles/titanx";  // run from the repository root

ProfileMap model_zoo(std::mt19937_64& rng, int random_models) {
  ProfileMap zoo;
  try {
    for (auto& [name, p] : ModelStore(g_titanx).profiles_for()) zoo.emplace(name, p);
  } catch (const Error&) {
  }
  for (int m = 0; m < random_models; ++m) {
    const std::string name = "r" + std::to_string(m);
    zoo.emplace(name, random_profile(rng, name, 64));
  }
  return zoo;
}

std::chrono::microseconds ms(double v) {
  return std::chrono::microseconds(static_cast<std::int64_t>(v * 1000));
}

// Zipf(s = 1) weights over n sessions, scaled so that Σ rate = total.
std::vector<Session> zipf_workload(std::mt19937_64& rng, const ProfileMap& zoo, int n, double total) {
  std::vector<std::string> names;
  for (const auto& [name, p] : zoo) names.push_back(name);
  const double slos[] = {50, 100, 200, 400};
  std::vector<double> w(n);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += w[i] = 1.0 / (i + 1);
  std::shuffle(w.begin(), w.end(), rng);
  std::vector<Session> out;
  for (int i = 0; i < n; ++i)
    out.push_back({"s" + std::to_string(i), names[rng() % names.size()], ms(slos[rng() % 4]),
                   total * w[i] / sum});
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t seed = 2019;
  int small = 600;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--seed")) seed = std::stoull(argv[i + 1]);
    if (!std::strcmp(argv[i], "--small")) small = std::stoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--titanx")) g_titanx = argv[i + 1];
  }
  std::mt19937_64 rng(seed);
  json out;
  out["benchmark"] = "scheduler";
  out["seed"] = seed;

  // --- 1. small instances against the exact optimum ------------------------------------------
  {
    int equal = 0, total = 0, worst = 0, skipped = 0, excess_sum = 0;
    std::vector<int> hist(4, 0);
    while (total < small) {
      ProfileMap zoo;
      for (int m = 0; m < 4; ++m) zoo.emplace("m" + std::to_string(m), random_profile(rng, "m" + std::to_string(m), 32));
      PackerOptions o;
      if (rng() % 2) o.gpu_memory_bytes = 4000000000ull + rng() % 4000000000ull;
      const int n = 2 + static_cast<int>(rng() % 7);  // 2..8 sessions
      std::uniform_real_distribution<double> slo(40, 400), frac(0.03, 0.9);
      std::vector<Session> s;
      for (int i = 0; i < n; ++i) {
        Session x{"s" + std::to_string(i), "m" + std::to_string(rng() % 4), ms(slo(rng)), 1};
        const int B = saturated_batch(zoo.at(x.model), x.slo);
        if (B == 0) continue;
        x.rate_rps = frac(rng) * zoo.at(x.model).throughput(B);
        s.push_back(x);
      }
      if (s.size() < 2) continue;
      const Plan plan = SquishyBinPacker(o).pack(s, zoo);
      bool split = !plan.rejected.empty();
      for (const auto& [id, t] : plan.routes) split |= t.size() > 1;
      const int opt = split ? -1 : exact_min_gpus(s, zoo, o);
      if (opt < 1) {
        ++skipped;
        continue;
      }
      const int ex = plan.num_gpus() - opt;
      equal += ex == 0;
      worst = std::max(worst, ex);
      excess_sum += ex;
      hist[std::min(ex, 3)]++;
      ++total;
    }
    out["small_instances"] = {
        {"instances", total},
        {"sessions_per_instance", "2..8, residual-only (R < T(B)), 4 random models, half with a memory cap"},
        {"share_optimal", double(equal) / total},
        {"worst_excess_gpus", worst},
        {"mean_excess_gpus", double(excess_sum) / total},
        {"excess_histogram", {{"0", hist[0]}, {"1", hist[1]}, {"2", hist[2]}, {">=3", hist[3]}}},
        {"skipped_infeasible_or_split", skipped}};
  }

  // --- 2. paper-scale workloads: GPUs / lower bound --------------------------------------------
  {
    auto zoo = model_zoo(rng, 16);
    json rows = json::array();
    for (int n : {100, 300, 1000}) {
      for (double total_rate : {5000.0, 20000.0, 100000.0}) {
        double ratio_sum = 0, worst = 0, gpus_sum = 0, lb_sum = 0, alone_sum = 0, pack_sum = 0;
        const int reps = 5;
        for (int r = 0; r < reps; ++r) {
          const auto s = zipf_workload(rng, zoo, n, total_rate);
          const Plan p = SquishyBinPacker().pack(s, zoo);
          const double ratio = p.num_gpus() / p.lower_bound_gpus;
          ratio_sum += ratio;
          worst = std::max(worst, ratio);
          gpus_sum += p.num_gpus();
          lb_sum += p.lower_bound_gpus;
          // Reference for the packing step alone: every session planned by itself, its
          // residual GPU counted by its occupancy (a perfect packing of the residuals).
          double alone = 0;
          for (const auto& one : s) {
            const Plan q = SquishyBinPacker().pack({one}, zoo);
            for (const auto& g : q.gpus) alone += g.saturated ? 1.0 : g.occupancy;
          }
          alone_sum += alone;
          pack_sum += p.num_gpus() / alone;
        }
        rows.push_back({{"sessions", n},
                        {"total_rate_rps", total_rate},
                        {"mean_gpus", gpus_sum / reps},
                        {"mean_lower_bound", lb_sum / reps},
                        {"mean_ratio", ratio_sum / reps},
                        {"worst_ratio", worst},
                        {"mean_sessions_alone_gpus", alone_sum / reps},
                        {"mean_ratio_to_sessions_alone", pack_sum / reps}});
      }
    }
    out["paper_scale"] = {{"models", zoo.size()},
                          {"note", "lower_bound = Σ R_i/T_i(B_i) ignores that low-rate sessions "
                                   "cannot batch within their SLO; sessions_alone = Σ over sessions "
                                   "planned alone of (saturated GPUs + residual occupancy), i.e. "
                                   "the GPUs if residuals packed perfectly"},
                          {"rates", "Zipf s=1 over sessions, scaled to the total rate"},
                          {"slo_ms", {50, 100, 200, 400}},
                          {"runs", rows}};
  }

  // --- 3. planning time ----------------------------------------------------------------------
  {
    auto zoo = model_zoo(rng, 60);
    json rows = json::array();
    for (int n : {100, 1000, 10000}) {
      const auto s = zipf_workload(rng, zoo, n, 30.0 * n);
      std::vector<double> times;
      int gpus = 0;
      for (int r = 0; r < (n >= 10000 ? 3 : 7); ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const Plan p = SquishyBinPacker().pack(s, zoo);
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        gpus = p.num_gpus();
      }
      std::sort(times.begin(), times.end());
      rows.push_back({{"sessions", n}, {"gpus", gpus}, {"median_s", times[times.size() / 2]},
                      {"min_s", times.front()}});
    }
    out["planning_time"] = {{"threads", 1}, {"runs", rows}};
  }
  std::cout << out.dump(2) << std::endl;
  return 0;
}
