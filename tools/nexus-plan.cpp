// nexus-plan: plans a workload on identical GPUs from a directory of batching profiles and
// prints the plan as JSON on stdout (paper §6.1 squishy bin packing + §6.2 query analysis).
//
//   nexus-plan --profiles DIR --workload FILE.json [--device NAME] [--gpu-memory BYTES]
//              [--max-gpus N] [--latency-std-k K] [--latency-factor F] [--overhead-ms MS]
//              [--segments N]
//
// Exit status: 0 with a plan (sessions whose SLO cannot be met are listed in "rejected"),
// 1 on bad input (the message on stderr names the file and item), 2 on bad flags.

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <iostream>

#include "nexus/core/error.hpp"
#include "nexus/profile/model_store.hpp"
#include "nexus/schedule/workload.hpp"

int main(int argc, char** argv) {
  cxxopts::Options options("nexus-plan", "Plan sessions and queries onto GPUs (Nexus scheduler)");
  options.add_options()
    ("profiles", "directory of batching-profile JSON files", cxxopts::value<std::string>())
    ("workload", "workload JSON file", cxxopts::value<std::string>())
    ("device", "plan with the profiles of this device (default: first found per model)",
     cxxopts::value<std::string>()->default_value(""))
    ("gpu-memory", "GPU memory in bytes (0 = unlimited)",
     cxxopts::value<std::size_t>()->default_value("0"))
    ("max-gpus", "cluster size (0 = unlimited)", cxxopts::value<int>()->default_value("0"))
    ("latency-std-k", "planning latency = (mean + k*std) * factor",
     cxxopts::value<double>()->default_value("0"))
    ("latency-factor", "safety factor on latencies", cxxopts::value<double>()->default_value("1"))
    ("overhead-ms", "fixed per-request overhead taken from every SLO (ms)",
     cxxopts::value<double>()->default_value("0"))
    ("segments", "time steps of the query DP", cxxopts::value<int>()->default_value("200"))
    ("compact", "print JSON on one line")
    ("h,help", "show this help");
  cxxopts::ParseResult args;
  try {
    args = options.parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "nexus-plan: " << e.what() << "\n" << options.help() << "\n";
    return 2;
  }
  if (args.count("help")) {
    std::cout << options.help() << "\n";
    return 0;
  }
  if (!args.count("profiles") || !args.count("workload")) {
    std::cerr << "nexus-plan: --profiles and --workload are required\n" << options.help() << "\n";
    return 2;
  }
  try {
    nexus::LatencyModel lm{args["latency-std-k"].as<double>(), args["latency-factor"].as<double>()};
    NEXUS_CHECK(lm.std_k >= 0 && lm.factor > 0,
                "--latency-std-k must be >= 0 and --latency-factor > 0");
    const nexus::ModelStore store(args["profiles"].as<std::string>());
    const auto profiles = store.profiles_for(args["device"].as<std::string>(), lm);
    nexus::PackerOptions packer;
    packer.gpu_memory_bytes = args["gpu-memory"].as<std::size_t>();
    packer.max_gpus = args["max-gpus"].as<int>();
    NEXUS_CHECK(packer.max_gpus >= 0, "--max-gpus must be >= 0");
    const double overhead_ms = args["overhead-ms"].as<double>();
    NEXUS_CHECK(overhead_ms >= 0, "--overhead-ms must be >= 0");
    packer.fixed_overhead = std::chrono::microseconds(static_cast<std::int64_t>(overhead_ms * 1000));
    nexus::QueryPlannerOptions query;
    query.segments = args["segments"].as<int>();
    NEXUS_CHECK(query.segments >= 1, "--segments must be >= 1");
    const auto workload = nexus::load_workload(args["workload"].as<std::string>());
    const auto plan = nexus::plan_workload(workload, profiles, packer, query);
    std::cout << plan.to_json().dump(args.count("compact") ? -1 : 2) << "\n";
  } catch (const nexus::Error& e) {
    std::cerr << "nexus-plan: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
