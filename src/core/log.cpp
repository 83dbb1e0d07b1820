// Structured logging (nexus/core/log.hpp): level filter, the application's handler, and the
// default spdlog sink.
#include "nexus/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <shared_mutex>

#include "nexus/core/error.hpp"

namespace nexus::log {

namespace {

constexpr std::string_view kNames[] = {"trace", "debug", "info", "warn", "error", "off"};

int initial_level() {
  const char* env = std::getenv("NEXUS_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return static_cast<int>(Level::kInfo);
  for (int i = 0; i < 6; ++i)
    if (kNames[i] == env) return i;
  return static_cast<int>(Level::kInfo);
}

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::kTrace: return spdlog::level::trace;
    case Level::kDebug: return spdlog::level::debug;
    case Level::kInfo: return spdlog::level::info;
    case Level::kWarn: return spdlog::level::warn;
    case Level::kError: return spdlog::level::err;
    case Level::kOff: break;
  }
  return spdlog::level::off;
}

/// The handler and the default logger. The handler is read under a shared lock on every
/// record; set_handler takes it exclusively.
struct Sink {
  std::shared_mutex mu;
  Handler handler;
  std::shared_ptr<spdlog::logger> logger;

  spdlog::logger& default_logger() {
    // Created on first use: an application that installs its handler first never gets one.
    static std::once_flag once;
    std::call_once(once, [this] {
      logger = std::make_shared<spdlog::logger>(
          "nexus", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
      logger->set_level(spdlog::level::trace);  // filtered by g_level before it gets here
    });
    return *logger;
  }
};

Sink& sink() {
  static Sink s;
  return s;
}

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || c == '\n' || c == '\t') return true;
  return false;
}

}  // namespace

namespace detail {
std::atomic<int> g_level{initial_level()};
}

std::string_view to_string(Level level) {
  const int i = static_cast<int>(level);
  return i >= 0 && i < 6 ? kNames[i] : "unknown";
}

Level parse_level(std::string_view name) {
  for (int i = 0; i < 6; ++i)
    if (kNames[i] == name) return static_cast<Level>(i);
  throw_error("log level '{}' is not one of trace, debug, info, warn, error, off", name);
}

std::string format(const Record& record) {
  std::string out(record.event);
  for (const auto& f : record.fields) {
    out += ' ';
    out += f.key;
    out += '=';
    if (!needs_quotes(f.value)) {
      out += f.value;
      continue;
    }
    out += '"';
    for (char c : f.value) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  return out;
}

void set_handler(Handler handler) {
  Sink& s = sink();
  std::unique_lock lock(s.mu);
  s.handler = std::move(handler);
}

void set_level(Level level) { detail::g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

Level level() { return static_cast<Level>(detail::g_level.load(std::memory_order_relaxed)); }

void emit(Level level, std::string_view event, std::initializer_list<Field> fields) {
  const Record record{level, event, std::span<const Field>(fields.begin(), fields.size())};
  Sink& s = sink();
  std::shared_lock lock(s.mu);
  if (s.handler) {
    s.handler(record);
    return;
  }
  s.default_logger().log(to_spdlog(level), "{}", format(record));
}

}  // namespace nexus::log
