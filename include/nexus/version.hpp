#pragma once
// The library's version and build fingerprint.

namespace nexus {

/// The library's version, "major.minor.patch" (the CMake project version).
const char* version();

/// A fingerprint of the code and build configuration that decide how fast models run, e.g.
/// "3f2a9c1b7e0d5a44 (Release, GNU 12.2.0, CUDA off)": 16 hex digits, then a readable summary.
///
/// The hex digits are the SHA-256 (truncated) of the contents of the backends and kernels
/// (src/exec, src/cuda), the graph IR and its rewriting, the model zoo and the face chain's pre- and
/// post-processing (src/model), the Profiler (src/profile), their public headers
/// (include/nexus/{exec,model,profile}), and the build type, compiler, compiler flags and CUDA
/// settings. cmake/build_fingerprint.cmake computes it as a build step, so it changes whenever
/// one of these files changes, without re-running cmake; other parts of the library (scheduler,
/// dispatcher, runtime, simulator) do not enter it. Two checkouts of the same code built the same
/// way get the same fingerprint (paths are relative to the source tree).
///
/// Why: a batching profile (latency l(b) per batch size, paper §6.1) is a measurement of this
/// code on a device. A cache of measured profiles is valid for one machine AND one fingerprint;
/// keyed by the machine alone it keeps planning for the old speed after a backend gets faster
/// (examples/video_analytics keys its profile cache by both; docs/video_analytics.md).
///
/// Constant for the life of the process; never empty; thread-safe.
const char* build_fingerprint();

}  // namespace nexus
