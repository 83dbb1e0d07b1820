// nexus-plan end to end: the lecture workload from a file, and bad input → exit 1 with a
// message naming the item.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#ifdef NEXUS_PLAN_EXE

namespace {

struct Run {
  int status;
  std::string out;
};

Run run(const std::string& args) {
  const std::string cmd = std::string(NEXUS_PLAN_EXE) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  while (std::size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

const std::string kSrc = NEXUS_SOURCE_DIR;

}  // namespace

TEST_CASE("nexus-plan prints the lecture plan as JSON", "[cli]") {
  const auto r = run("--compact --profiles " + kSrc + "/tests/fixtures/profiles/lecture --workload " +
                     kSrc + "/tests/fixtures/workloads/lecture.json");
  REQUIRE(r.status == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["num_gpus"] == 3);
  CHECK(j["gpus"][0]["sessions"][0]["session"] == "A");
  CHECK(j["gpus"][0]["sessions"][1]["session"] == "B");
  CHECK(j["gpus"][0]["duty_cycle_us"] == 125000);
  CHECK(j["rejected"][0]["session"] == "too-tight");
  CHECK(j["rejected"][0]["required_slo_ms"] == 100.0);
  CHECK(j["stage_budgets_ms"]["traffic/detect"].get<double>() +
            j["stage_budgets_ms"]["traffic/recognize"].get<double>() <= 500.0);
  CHECK(j["lower_bound_gpus"].get<double>() <= 3.0);
}

TEST_CASE("nexus-plan: bad input exits 1 naming the item", "[cli][errors]") {
  const auto dir = std::filesystem::temp_directory_path() / "nexus_plan_cli";
  std::filesystem::create_directories(dir);
  const std::string profiles = " --profiles " + kSrc + "/tests/fixtures/profiles/lecture";
  std::ofstream(dir / "unknown.json")
      << R"({"sessions": [{"id": "s1", "model": "resnet", "slo_ms": 100, "rate_rps": 5}]})";
  auto r = run("--workload " + (dir / "unknown.json").string() + profiles);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("'s1'") && Catch::Contains("'resnet'"));
  std::ofstream(dir / "broken.json") << "{ \"sessions\": [";
  r = run("--workload " + (dir / "broken.json").string() + profiles);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("broken.json") && Catch::Contains("invalid JSON"));
  std::ofstream(dir / "rate.json")
      << R"({"sessions": [{"id": "s1", "model": "A", "slo_ms": 100, "rate_rps": 0}]})";
  r = run("--workload " + (dir / "rate.json").string() + profiles);
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("rate_rps must be > 0"));
  r = run("--workload " + (dir / "rate.json").string() + " --profiles /nonexistent");
  CHECK(r.status == 1);
  CHECK_THAT(r.out, Catch::Contains("/nonexistent"));
  r = run(profiles);
  CHECK(r.status == 2);
  std::filesystem::remove_all(dir);
}

#endif
