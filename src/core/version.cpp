#include "nexus/version.hpp"

namespace nexus {
const char* version() { return "0.1.0"; }
}  // namespace nexus
