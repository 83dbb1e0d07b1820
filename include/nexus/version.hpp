#pragma once
// The library's version, "major.minor.patch".

namespace nexus {
const char* version();
}
