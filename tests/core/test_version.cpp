// nexus::build_fingerprint() (nexus/version.hpp). How the fingerprint follows
// the sources is checked by the build_fingerprint_script ctest (tests/core/build_fingerprint_test.cmake).

#include <catch2/catch.hpp>

#include <cctype>
#include <cstring>
#include <string>

#include "nexus/version.hpp"

TEST_CASE("build_fingerprint: 16 hex digits and a summary, the same on every call", "[core][version]") {
  const std::string fp = nexus::build_fingerprint();
  REQUIRE(fp.size() > 19);
  for (int i = 0; i < 16; ++i) CHECK(std::isxdigit(static_cast<unsigned char>(fp[i])));
  CHECK(fp.substr(16, 2) == " (");
  CHECK(fp.back() == ')');
  CHECK(fp.find("CUDA") != std::string::npos);
  CHECK(std::string(nexus::build_fingerprint()) == fp);
  CHECK(nexus::build_fingerprint() == nexus::build_fingerprint());  // one constant
}
