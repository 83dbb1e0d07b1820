// nexus-sim: the cluster simulator (docs/evaluation.md). Runs a scenario on N simulated GPUs
// under one system — the library's own Engine in virtual time — and prints JSON on stdout:
//
//   nexus-sim --workload FILE.json --gpus N --system nexus|clipper|tfserving|triton
//             [--ablate FEATURE[,FEATURE]] [--duration S] [--seed K] [--scale X]
//             [--find-max-throughput] [--sample S] [--quiet]
//
//   {"system", "gpus", "offered_rps", "good_rate", "throughput_rps", "p99_latency_ms",
//    "gpus_used_avg", "lower_bound_gpus", ...}   (+ "max_throughput_rps" with --find-max-throughput)
//
// A table and a progress bar go to stderr (--quiet: none). Exit status: 0 done, 1 runtime error
// (a malformed scenario, a model with no profile, an SLO no plan meets: the message names the
// file and field), 2 usage error (bad flags, an unknown system or feature, zero GPUs).

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "nexus/core/error.hpp"
#include "nexus/core/log.hpp"
#include "nexus/sim/cluster.hpp"

namespace {

using nlohmann::json;
using namespace nexus;

json result_json(const sim::SimResult& r, bool with_samples) {
  json j{{"system", r.system},
         {"gpus", r.gpus},
         {"offered_rps", r.offered_rps},
         {"good_rate", r.good_rate},
         {"throughput_rps", r.throughput_rps},
         {"p99_latency_ms", r.p99_latency_ms},
         {"gpus_used_avg", r.gpus_used_avg},
         {"lower_bound_gpus", r.lower_bound_gpus},
         {"lower_bound_gpus_at_mean_latency", r.lower_bound_gpus_mean_latency},
         {"lower_bound_gpus_of_plan", r.lower_bound_gpus_plan},
         {"ablate", r.ablations},
         {"noise", r.noise},
         {"executor", r.executor},
         {"prefix_batching", r.prefix_batching},
         {"models_with_declared_prefix", r.prefix_groups},
         {"load_scale", r.load_scale},
         {"duration_s", r.duration_s},
         {"warmup_s", r.warmup_s},
         {"requests", {{"submitted", r.submitted}, {"good", r.good}, {"completed", r.completed},
                       {"dropped", r.dropped}, {"rejected", r.rejected}, {"failed", r.failed},
                       {"submitted_incl_warmup", r.submitted_total}, {"stage_items_run", r.stage_items}}},
         {"per_query_good_rate", r.per_query_good_rate},
         {"sim", {{"wall_s", r.wall_s}, {"cpu_s", r.cpu_s}, {"simulated_requests_per_wall_s", r.sim_rps},
                  {"simulated_requests_per_cpu_s", r.sim_rps_cpu}, {"stage_items_per_cpu_s",
                  r.cpu_s > 0 ? double(r.stage_items) / r.cpu_s : 0.0}}}};
  json ss = json::object();
  for (const auto& [id, d] : r.sessions)
    ss[id] = {{"gpus_planned", d.gpus_planned}, {"planned_batch_mean", d.planned_batch_mean},
              {"planned_batch_max", d.planned_batch_max}, {"duty_cycle_ms_mean", d.duty_cycle_ms_mean},
              {"budget_ms", d.budget_ms}, {"arrivals", d.arrivals}, {"completions", d.completions},
              {"batches", d.batches}, {"mean_batch", d.mean_batch}, {"drops", d.drops}};
  j["sessions"] = ss;
  j["device_busy"] = {{"all_gpus", r.device_busy_avg}, {"planned_gpus", r.device_busy_planned_avg}};
  if (with_samples) {
    json s = json::array();
    for (const auto& x : r.samples)
      s.push_back({{"t_s", x.t_s}, {"offered_rps", x.offered_rps}, {"bad_rate", x.bad_rate},
                   {"gpus_used", x.gpus_used}, {"lower_bound_gpus", x.lower_bound_gpus},
                   {"lower_bound_gpus_at_mean_latency", x.lower_bound_gpus_mean_latency}});
    j["samples"] = s;
  }
  return j;
}

void table(const sim::Scenario& sc, const sim::SimResult& r, const sim::MaxThroughput* m) {
  std::fprintf(stderr, "\n  %-22s %s (%s)\n", "scenario", sc.name.c_str(), sc.profile_dir.filename().c_str());
  std::fprintf(stderr, "  %-22s %s%s on %d simulated GPUs\n", "system", r.system.c_str(),
               r.ablations == "none" ? "" : (" without " + r.ablations).c_str(), r.gpus);
  std::fprintf(stderr, "  %-22s %s; executor %s\n", "batch times", r.noise.c_str(), r.executor.c_str());
  if (m) std::fprintf(stderr, "  %-22s %.1f req/s at >= 99%% good (load x%.3f, %zu runs)\n",
                      "MAX THROUGHPUT", m->max_throughput_rps, m->scale, m->runs.size());
  std::fprintf(stderr, "  %-22s %.1f req/s over %.0f s (after %.0f s warm-up)\n", "offered", r.offered_rps,
               r.duration_s - r.warmup_s, r.warmup_s);
  std::fprintf(stderr, "  %-22s %.2f %%  (%llu good of %llu; dropped %llu, rejected %llu)\n", "good rate",
               100 * r.good_rate, (unsigned long long)r.good, (unsigned long long)r.submitted,
               (unsigned long long)r.dropped, (unsigned long long)r.rejected);
  std::fprintf(stderr, "  %-22s %.1f req/s\n", "good throughput", r.throughput_rps);
  std::fprintf(stderr, "  %-22s %.1f ms\n", "p99 latency", r.p99_latency_ms);
  std::fprintf(stderr, "  %-22s %.2f used, lower bound %.2f (%.2f at mean batch latency)\n", "GPUs",
               r.gpus_used_avg, r.lower_bound_gpus, r.lower_bound_gpus_mean_latency);
  for (const auto& [q, g] : r.per_query_good_rate)
    std::fprintf(stderr, "    %-20s %.2f %% good\n", q.c_str(), 100 * g);
  std::fprintf(stderr, "  %-22s %.2f s wall (%.2f s CPU): %.0f simulated req/s of wall, %.0f of CPU\n\n",
               "simulation", r.wall_s, r.cpu_s, r.sim_rps, r.sim_rps_cpu);
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("nexus-sim", "Simulate a serving system on N GPUs in virtual time");
  options.add_options()
    ("workload", "scenario JSON file (sim/scenarios/*.json)", cxxopts::value<std::string>())
    ("gpus", "number of simulated GPUs (>= 1)", cxxopts::value<int>()->default_value("16"))
    ("system", "nexus, clipper, tfserving or triton", cxxopts::value<std::string>()->default_value("nexus"))
    ("ablate", "Nexus features off: squishy, query_dp, early_drop, duty_cycle (= paced, the paper's schedule), "
     "prefix, all (comma list)",
     cxxopts::value<std::string>()->default_value(""))
    ("duration", "virtual seconds to simulate (default: the scenario's)", cxxopts::value<double>()->default_value("0"))
    ("seed", "random seed", cxxopts::value<std::uint64_t>()->default_value("1"))
    ("scale", "load scale: multiplies every query's rate", cxxopts::value<double>()->default_value("1"))
    ("find-max-throughput", "bisect the load for the highest rate with >= 99% good")
    ("sample", "record a time series every S virtual seconds", cxxopts::value<double>()->default_value("0"))
    ("noise", "batch times: mean, lognormal or gamma (default: the scenario's)",
     cxxopts::value<std::string>()->default_value(""))
    ("quiet", "no table or progress on stderr")
    ("log-level", "the Engine's log level (drops are expected in a simulation: default error)",
     cxxopts::value<std::string>()->default_value("error"))
    ("h,help", "show this help");
  cxxopts::ParseResult args;
  sim::SimOptions so;
  std::string file;
  bool find_max = false, quiet = false;
  try {
    args = options.parse(argc, argv);
    if (args.count("help")) {
      std::cout << options.help() << "\n";
      return 0;
    }
    if (!args.count("workload")) throw nexus::Error("--workload FILE.json is required");
    file = args["workload"].as<std::string>();
    so.gpus = args["gpus"].as<int>();
    if (so.gpus < 1) throw nexus::Error(fmt::format("--gpus {}: expected a GPU count >= 1", so.gpus));
    so.system = sim::parse_system(args["system"].as<std::string>());
    so.ablate = sim::parse_ablations(args["ablate"].as<std::string>());
    if (so.ablate.any() && so.system != sim::System::kNexus)
      throw nexus::Error("--ablate applies to --system nexus only");
    const double d = args["duration"].as<double>();
    if (d < 0) throw nexus::Error(fmt::format("--duration {}: expected seconds > 0", d));
    so.duration = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(d));
    so.seed = args["seed"].as<std::uint64_t>();
    so.load_scale = args["scale"].as<double>();
    if (!(so.load_scale > 0)) throw nexus::Error(fmt::format("--scale {}: expected > 0", so.load_scale));
    const double sample = args["sample"].as<double>();
    if (sample < 0) throw nexus::Error(fmt::format("--sample {}: expected seconds >= 0", sample));
    so.sample_every = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(sample));
    so.noise = args["noise"].as<std::string>();
    if (!so.noise.empty() && so.noise != "mean" && so.noise != "lognormal" && so.noise != "gamma")
      throw nexus::Error(fmt::format("--noise {}: expected mean, lognormal or gamma", so.noise));
    find_max = args.count("find-max-throughput") > 0;
    quiet = args.count("quiet") > 0;
    log::set_level(log::parse_level(args["log-level"].as<std::string>()));
  } catch (const std::exception& e) {
    std::cerr << "nexus-sim: " << e.what() << "\n" << "usage: nexus-sim --workload FILE.json --gpus N "
              << "--system nexus|clipper|tfserving|triton [--ablate FEATURE] [--duration S] [--seed K] "
              << "[--find-max-throughput]\n";
    return 2;
  }
  try {
    const sim::Scenario sc = sim::load_scenario(file);
    const bool tty = isatty(fileno(stderr));
    if (!quiet) {
      so.progress = [tty, find_max](double f) {
        if (f < 0) {
          if (find_max) std::fprintf(stderr, "%s  search: load x%.3f done\n", tty ? "\r" : "", -f);
          return;
        }
        if (!tty) return;
        const int w = 40, k = static_cast<int>(f * w);
        std::fprintf(stderr, "\r  [%s%s] %3d%%", std::string(static_cast<std::size_t>(k), '#').c_str(),
                     std::string(static_cast<std::size_t>(w - k), ' ').c_str(), static_cast<int>(f * 100));
        std::fflush(stderr);
      };
    }
    json out;
    sim::SimResult shown;
    sim::MaxThroughput m;
    if (find_max) {
      m = sim::find_max_throughput(sc, so);
      shown = m.runs.empty() ? sim::SimResult{} : (m.max_throughput_rps > 0 ? m.at_max : m.runs.back());
      out = result_json(shown, so.sample_every.count() > 0);
      out["max_throughput_rps"] = m.max_throughput_rps;
      out["max_throughput_load_scale"] = m.scale;
      json steps = json::array();
      for (const auto& r : m.runs)
        steps.push_back({{"load_scale", r.load_scale}, {"offered_rps", r.offered_rps}, {"good_rate", r.good_rate},
                         {"throughput_rps", r.throughput_rps}, {"p99_latency_ms", r.p99_latency_ms}});
      out["search"] = steps;
    } else {
      shown = sim::simulate(sc, so);
      out = result_json(shown, so.sample_every.count() > 0);
    }
    if (tty && !quiet) std::fprintf(stderr, "\r%60s\r", "");
    out["scenario"] = sc.name;
    out["workload"] = file;
    out["profiles"] = sc.profile_dir.lexically_normal().string();
    out["seed"] = so.seed;
    if (!quiet) table(sc, shown, find_max ? &m : nullptr);
    std::cout << out.dump(1) << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "nexus-sim: " << e.what() << "\n";
    return 1;
  }
}
