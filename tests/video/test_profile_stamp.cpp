// The stamp of video_analytics' profile cache (examples/video_analytics/profile_stamp.hpp): cached
// profiles are reused only when the stamp names this machine and this build; a stamp that names
// only the machine (the format before the build fingerprint) is refused. No data needed.

#include <catch2/catch.hpp>

#include <string>

#include "video_analytics/profile_stamp.hpp"

using va::format_stamp;
using va::ProfileStamp;
using va::stamp_mismatch;

namespace {
const ProfileStamp kNow{"cpu | AMD EPYC | 2 threads", "3f2a9c1b7e0d5a44 (Release, GNU 12.2.0, CUDA off)"};
}

TEST_CASE("profile stamp: a stamp of this machine and build is accepted", "[video][stamp]") {
  const std::string text = format_stamp(kNow);
  // The file format, as docs/video_analytics.md describes it (the machine line first).
  CHECK(text == "cpu | AMD EPYC | 2 threads\nbuild: 3f2a9c1b7e0d5a44 (Release, GNU 12.2.0, CUDA off)\n");
  CHECK(stamp_mismatch(text, kNow).empty());
  // Without the final newline (a hand-edited file) it still matches.
  CHECK(stamp_mismatch(text.substr(0, text.size() - 1), kNow).empty());
}

TEST_CASE("profile stamp: another build is refused and named", "[video][stamp]") {
  const ProfileStamp old{kNow.machine, "0000111122223333 (Release, GNU 12.2.0, CUDA off)"};
  const std::string why = stamp_mismatch(format_stamp(old), kNow);
  CHECK(why.find("another build") != std::string::npos);
  CHECK(why.find("0000111122223333") != std::string::npos);
  CHECK(why.find("3f2a9c1b7e0d5a44") != std::string::npos);
  CHECK(why.find("machine") == std::string::npos);  // only the part that changed is named
}

TEST_CASE("profile stamp: another machine is refused and named", "[video][stamp]") {
  const ProfileStamp old{"cpu | Intel Xeon | 8 threads", kNow.build};
  const std::string why = stamp_mismatch(format_stamp(old), kNow);
  CHECK(why.find("another machine") != std::string::npos);
  CHECK(why.find("Intel Xeon | 8 threads") != std::string::npos);
  CHECK(why.find("build") == std::string::npos);
}

TEST_CASE("profile stamp: machine and build both changed: both are named", "[video][stamp]") {
  const ProfileStamp old{"cpu | Intel Xeon | 8 threads", "0000111122223333 (Debug, GNU 12.2.0, CUDA off)"};
  const std::string why = stamp_mismatch(format_stamp(old), kNow);
  CHECK(why.find("another machine") != std::string::npos);
  CHECK(why.find("another build") != std::string::npos);
}

TEST_CASE("profile stamp: an old-format stamp (machine only) is refused", "[video][stamp]") {
  // What video_analytics wrote before the build fingerprint: the machine line alone.
  const std::string why = stamp_mismatch("cpu | AMD EPYC | 2 threads\n", kNow);
  CHECK(why.find("no build fingerprint") != std::string::npos);
  CHECK_FALSE(stamp_mismatch("cpu | AMD EPYC | 2 threads", kNow).empty());
  // A second line that is not a build line is not a build fingerprint either.
  CHECK_FALSE(stamp_mismatch("cpu | AMD EPYC | 2 threads\n3f2a9c1b7e0d5a44\n", kNow).empty());
  CHECK_FALSE(stamp_mismatch("", kNow).empty());
  CHECK_FALSE(stamp_mismatch("\n\n", kNow).empty());
}
