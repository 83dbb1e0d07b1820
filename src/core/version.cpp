#include "nexus/version.hpp"

// NEXUS_BUILD_FINGERPRINT: generated in the build tree by cmake/build_fingerprint.cmake.
#include "nexus_build_fingerprint.inc"

namespace nexus {
const char* version() { return "0.1.0"; }
const char* build_fingerprint() { return NEXUS_BUILD_FINGERPRINT; }
}  // namespace nexus
