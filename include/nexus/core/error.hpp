#pragma once
// nexus::Error: the one exception type for setup and configuration faults (a bad model file,
// an unknown model, an impossible SLO, a shape mismatch). Its message names the input at fault
// and what was expected. Per-request outcomes are values (RequestStatus), never exceptions.

#include <fmt/format.h>

#include <stdexcept>
#include <string>
#include <utility>

namespace nexus {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// Throws nexus::Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void throw_error(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace nexus

/// NEXUS_CHECK(cond, "fmt", args...): throws nexus::Error with the message when cond is false.
#define NEXUS_CHECK(cond, ...)              \
  do {                                      \
    if (!(cond)) ::nexus::throw_error(__VA_ARGS__); \
  } while (0)
