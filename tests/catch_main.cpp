// The one Catch2 main shared by every test binary. Besides Catch2's own exit code it reports
// skips (tests/skip.hpp): a run with no failure in which some test case skipped exits with
// kSkipReturnCode, which ctest turns into "Skipped".
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "skip.hpp"

namespace {

std::mutex g_skips_mutex;
std::vector<std::pair<std::string, std::string>> g_skips;  // (kind, reason)

}  // namespace

namespace nexus::testing {

void record_skip(const std::string& kind, const std::string& reason) {
  const std::string test = Catch::getResultCapture().getCurrentTestName();
  std::lock_guard lock(g_skips_mutex);
  g_skips.emplace_back(kind, test + ": " + reason);
}

}  // namespace nexus::testing

int main(int argc, char* argv[]) {
  Catch::Session session;
  if (const int rc = session.applyCommandLine(argc, argv); rc != 0) return rc;
  const int rc = session.run();
  if (g_skips.empty()) return rc;
  std::ofstream log;
  if (const char* path = std::getenv("NEXUS_SKIP_LOG"); path && *path) log.open(path);
  for (const auto& [kind, reason] : g_skips) {
    std::printf("SKIPPED (%s): %s\n", kind.c_str(), reason.c_str());
    if (log) log << kind << ": " << reason << '\n';
  }
  return rc == 0 ? nexus::testing::kSkipReturnCode : rc;
}
