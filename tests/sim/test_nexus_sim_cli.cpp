// nexus-sim end to end: the JSON keys on a short traffic run, exit 2 for usage errors and
// 1 for runtime errors, with messages naming what was wrong.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#ifdef NEXUS_SIM_EXE

namespace {

struct Run {
  int status;
  std::string out, err;
};

Run run(const std::string& args) {
  const std::string err_file = std::string(NEXUS_BINARY_DIR) + "/nexus_sim_cli_stderr.txt";
  const std::string cmd = std::string(NEXUS_SIM_EXE) + " " + args + " 2>" + err_file;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = pclose(p);
  std::string err;
  if (FILE* f = std::fopen(err_file.c_str(), "r")) {
    while (std::size_t n = fread(buf, 1, sizeof buf, f)) err.append(buf, n);
    std::fclose(f);
  }
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out, err};
}

const std::string kSrc = NEXUS_SOURCE_DIR;

}  // namespace

TEST_CASE("nexus-sim prints the result as JSON and a table", "[sim][cli]") {
  const auto r = run("--workload " + kSrc + "/sim/scenarios/traffic.json --gpus 4 --system clipper --duration 2 --seed 5");
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  for (const char* k : {"system", "gpus", "offered_rps", "good_rate", "throughput_rps", "p99_latency_ms",
                        "gpus_used_avg", "lower_bound_gpus"})
    CHECK(j.contains(k));
  CHECK(j["system"] == "clipper");
  CHECK(j["gpus"] == 4);
  CHECK(j["scenario"] == "traffic");
  CHECK(j["good_rate"].get<double>() > 0.99);  // 600 req/s on 4 GPUs is light
  CHECK(r.err.find("good rate") != std::string::npos);
}

TEST_CASE("nexus-sim: usage errors exit 2, runtime errors exit 1", "[sim][cli]") {
  const std::string traffic = "--workload " + kSrc + "/sim/scenarios/traffic.json ";
  auto r = run(traffic + "--gpus 0");
  CHECK(r.status == 2);
  CHECK(r.err.find("GPU count") != std::string::npos);
  r = run(traffic + "--system tensorrt");
  CHECK(r.status == 2);
  CHECK(r.err.find("'tensorrt'") != std::string::npos);
  r = run(traffic + "--ablate magic");
  CHECK(r.status == 2);
  r = run(traffic + "--system clipper --ablate prefix");
  CHECK(r.status == 2);
  CHECK(r.err.find("--system nexus only") != std::string::npos);
  r = run("--gpus 4");
  CHECK(r.status == 2);
  r = run("--workload /no/such/scenario.json");
  CHECK(r.status == 1);
  CHECK(r.err.find("/no/such/scenario.json") != std::string::npos);
}

#endif  // NEXUS_SIM_EXE
