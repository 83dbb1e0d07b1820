// nexus/core/log.hpp: level filter, the application's handler, the one-line rendering.
#include <catch2/catch.hpp>

#include <mutex>
#include <string>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/core/log.hpp"

using namespace nexus;

namespace {

/// Installs a capturing handler and a level for one test; restores the defaults after.
struct Capture {
  std::mutex mu;
  std::vector<std::string> lines;
  log::Level saved = log::level();
  explicit Capture(log::Level level) {
    log::set_level(level);
    log::set_handler([this](const log::Record& r) {
      std::lock_guard lock(mu);
      lines.push_back(std::string(log::to_string(r.level)) + " " + log::format(r));
    });
  }
  ~Capture() {
    log::set_handler({});
    log::set_level(saved);
  }
};

}  // namespace

TEST_CASE("log: the handler gets structured records at or above the level", "[core][log]") {
  Capture cap(log::Level::kInfo);
  int formatted = 0;
  auto costly = [&] {
    ++formatted;
    return 7;
  };
  NEXUS_LOG(kDebug, "admission_reject", {"query", "q"}, {"n", costly()});
  NEXUS_LOG(kInfo, "plan_swap", {"gpus", 2}, {"sessions", 3}, {"rate", 12.5});
  NEXUS_LOG(kWarn, "session_rejected", {"session", "q/s"}, {"reason", "needs SLO >= 62 ms"});
  NEXUS_LOG(kError, "backend_error", {"error", "a \"quoted\" text"});
  NEXUS_LOG(kInfo, "empty");
  CHECK(formatted == 0);  // a disabled level formats nothing
  REQUIRE(cap.lines.size() == 4);
  CHECK(cap.lines[0] == "info plan_swap gpus=2 sessions=3 rate=12.5");
  CHECK(cap.lines[1] == "warn session_rejected session=q/s reason=\"needs SLO >= 62 ms\"");
  CHECK(cap.lines[2] == "error backend_error error=\"a \\\"quoted\\\" text\"");
  CHECK(cap.lines[3] == "info empty");
  log::set_level(log::Level::kOff);
  NEXUS_LOG(kError, "silenced");
  CHECK(cap.lines.size() == 4);
  CHECK_FALSE(log::enabled(log::Level::kOff));
}

TEST_CASE("log: levels parse and print; a bad name is an Error naming it", "[core][log]") {
  for (auto l : {log::Level::kTrace, log::Level::kDebug, log::Level::kInfo, log::Level::kWarn,
                 log::Level::kError, log::Level::kOff})
    CHECK(log::parse_level(log::to_string(l)) == l);
  CHECK_THROWS_WITH(log::parse_level("verbose"), Catch::Contains("'verbose' is not one of"));
}
