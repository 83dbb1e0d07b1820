// Skipped means Skipped: a test that cannot run here (no data/, no device) says so to ctest.
//
//   TEST_CASE("...", "[face][data]") {
//     NEXUS_SKIP_UNLESS_DATA(fs::exists(manifest), "face-api models not in " << dir);
//     ...
//   }
//
// NEXUS_SKIP_NO_DATA(reason) / NEXUS_SKIP_NO_DEVICE(reason) record the reason (a stream
// expression), print "SKIPPED (<kind>): <reason>" and return from the test case. The shared
// Catch2 main (catch_main.cpp) then exits with kSkipReturnCode (77) when the run had no failure,
// and ctest, told SKIP_RETURN_CODE 77 by tests/CMakeLists.txt, reports the test as Skipped, not
// Passed. Tag such test cases [data] (or [device]): tests/CMakeLists.txt registers them as a
// separate ctest test "<part>_data", so the part's other test cases still count as Passed.
// The reasons are also written, one "<kind>: <reason>" line each, to $NEXUS_SKIP_LOG when set;
// scripts/test.sh prints them and, with NEXUS_REQUIRE_DATA=1 (CI, where data is fetched), fails
// on any "data" skip.
#pragma once

#include <sstream>
#include <string>

namespace nexus::testing {

inline constexpr int kSkipReturnCode = 77;

// Records one skip of this process's run; defined in catch_main.cpp. kind: "data" or "device".
void record_skip(const std::string& kind, const std::string& reason);

}  // namespace nexus::testing

#define NEXUS_SKIP_(kind, reason)                           \
  do {                                                      \
    std::ostringstream nexus_skip_os_;                      \
    nexus_skip_os_ << reason;                               \
    ::nexus::testing::record_skip(kind, nexus_skip_os_.str()); \
    WARN("SKIPPED (" << kind << "): " << nexus_skip_os_.str()); \
    return;                                                 \
  } while (0)

#define NEXUS_SKIP_NO_DATA(reason) NEXUS_SKIP_("data", reason)
#define NEXUS_SKIP_NO_DEVICE(reason) NEXUS_SKIP_("device", reason)
#define NEXUS_SKIP_UNLESS_DATA(cond, reason) \
  do {                                       \
    if (!(cond)) NEXUS_SKIP_NO_DATA(reason); \
  } while (0)
