#pragma once
// Structured logging of the engine: each record is an event name (snake_case, e.g. "plan_swap")
// at a level, plus key=value fields. By default records go to an spdlog logger named "nexus" on
// stderr, one line each:
//
//   [2026-11-30 02:10:11.431] [nexus] [info] plan_swap gpus=2 sessions=3 rejected=0
//
// The application can take the records over (set_handler): forward them to its own logger, count
// them, or write JSON. Events the Engine emits (src/runtime/engine.cpp):
//   plan_swap               a plan is swapped in (gpus, sessions, rejected, lower_bound_gpus):
//                           info when its slot or rejection count changed, else debug
//   session_rejected        the plan gives a session no device (session, reason): warn with a
//                           changed plan, else debug
//   requests_not_completed  a stage item dropped, rejected or failed (session, reason, status,
//                           total, message): warn at the 1st, 2nd, 4th, 8th, ... of each session
//                           and reason, so an overload logs a few lines, not one per request
//   backend_error           a backend threw while running a batch (session, device, batch,
//                           error): error, once per failed batch
//
// Levels: the default comes from the environment variable NEXUS_LOG_LEVEL (trace, debug, info,
// warn, error, off), else info. A disabled level costs one relaxed atomic load: NEXUS_LOG only
// formats its fields when the level is enabled.
//
// Thread-safety: every function may be called from any thread. The handler is called from the
// thread that logs (executor, epoch, caller of submit) and must be thread-safe itself; it must
// not call back into the Engine.

#include <atomic>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include <fmt/format.h>

namespace nexus::log {

enum class Level : int { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

/// "trace", "debug", "info", "warn", "error", "off".
std::string_view to_string(Level level);
/// Parses the names of to_string (case-sensitive); throws nexus::Error naming the input and
/// the accepted names otherwise.
Level parse_level(std::string_view name);

/// One key=value field. The value is formatted with fmt ("{}") when the record is made.
struct Field {
  std::string_view key;
  std::string value;
  template <class T>
  Field(std::string_view k, const T& v) : key(k), value(fmt::format("{}", v)) {}
};

/// One structured record, valid only during the handler call.
struct Record {
  Level level = Level::kInfo;
  std::string_view event;          ///< snake_case event name
  std::span<const Field> fields;
};

/// Renders a record as one line: `event key=value ...` (values with spaces or quotes are
/// double-quoted, with \" and \\ escaped).
std::string format(const Record& record);

using Handler = std::function<void(const Record&)>;

/// Sends every enabled record to `handler` instead of the spdlog logger; an empty handler
/// restores the default (spdlog "nexus" on stderr).
void set_handler(Handler handler);

/// Records below `level` are discarded (kOff discards all).
void set_level(Level level);
Level level();

namespace detail {
extern std::atomic<int> g_level;
}
/// True when a record at `level` would be delivered.
inline bool enabled(Level level) {
  return static_cast<int>(level) >= detail::g_level.load(std::memory_order_relaxed) &&
         level != Level::kOff;
}

/// Delivers one record (no level check: use NEXUS_LOG, or check enabled() first).
void emit(Level level, std::string_view event, std::initializer_list<Field> fields = {});

}  // namespace nexus::log

/// NEXUS_LOG(kInfo, "plan_swap", {"gpus", 2}, {"sessions", 3}): formats the fields only when the
/// level is enabled.
#define NEXUS_LOG(level, event, ...)                                                \
  do {                                                                              \
    if (::nexus::log::enabled(::nexus::log::Level::level))                          \
      ::nexus::log::emit(::nexus::log::Level::level, (event), {__VA_ARGS__});       \
  } while (0)

/// NEXUS_LOG_AT(level_expression, "event", fields...): the level chosen at run time.
#define NEXUS_LOG_AT(level, event, ...)                                             \
  do {                                                                              \
    const ::nexus::log::Level nexus_log_level_ = (level);                           \
    if (::nexus::log::enabled(nexus_log_level_))                                    \
      ::nexus::log::emit(nexus_log_level_, (event), {__VA_ARGS__});                 \
  } while (0)
