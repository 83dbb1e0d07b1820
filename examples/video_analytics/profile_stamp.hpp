#pragma once
// The stamp of video_analytics' batching profile cache (data/profiles/<device>/machine.txt):
// which machine measured the cached profiles and with which build of the code that decides their
// timings (nexus::build_fingerprint()). Cached profiles are reused only when both match; a stamp
// from before the build fingerprint (the machine line alone) does not. Header-only and free of
// OpenCV so tests/video can check it on its own (test_profile_stamp.cpp).
//
// File format (two lines; the first is the whole of an older stamp, so older binaries that read
// only the first line still recognise the machine):
//
//   cpu | AMD EPYC | 2 threads
//   build: 3f2a9c1b7e0d5a44 (Release, GNU 12.2.0, CUDA off)

#include <sstream>
#include <string>

namespace va {

struct ProfileStamp {
  std::string machine;  ///< machine_fingerprint(device): device, CPU model, hardware threads
  std::string build;    ///< nexus::build_fingerprint()
};

inline constexpr const char* kStampBuildPrefix = "build: ";

/// The stamp file's text for `s`.
inline std::string format_stamp(const ProfileStamp& s) {
  return s.machine + "\n" + kStampBuildPrefix + s.build + "\n";
}

/// Why profiles stamped with `text` (a stamp file's content) must not be reused by `now`, in words
/// that complete "profiles ... were measured <reason>"; "" when they may be reused. Names the part
/// that changed (machine, build, or both) with the old and new values; an older stamp (no build
/// line) or an empty one is refused.
inline std::string stamp_mismatch(const std::string& text, const ProfileStamp& now) {
  std::istringstream in(text);
  std::string machine, build_line;
  std::getline(in, machine);
  std::getline(in, build_line);
  if (machine.empty()) return "with an empty stamp";
  const std::string prefix = kStampBuildPrefix;
  const bool has_build = build_line.rfind(prefix, 0) == 0;
  const std::string build = has_build ? build_line.substr(prefix.size()) : "";
  std::string why;
  if (machine != now.machine) why = "on another machine (" + machine + "; this one: " + now.machine + ")";
  if (!has_build) {
    why += std::string(why.empty() ? "" : " and ") +
           "by an older build that recorded no build fingerprint (this build: " + now.build + ")";
  } else if (build != now.build) {
    why += std::string(why.empty() ? "" : " and ") +
           "by another build of the backends, kernels or model code (" + build +
           "; this build: " + now.build + ")";
  }
  return why;
}

}  // namespace va
