#pragma once
// Shared by the libFuzzer targets (fuzz/README in docs/reliability.md): the contract each target
// checks is "bad input -> nexus::Error, never a crash, a hang or another exception type".
// Any other exception escapes LLVMFuzzerTestOneInput and libFuzzer reports it as a crash.
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace nexus::fuzz {

// A private scratch directory for targets whose API reads files (one per process).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() /
             ("nexus_fuzz_" + std::to_string(static_cast<long>(::getpid())));
    std::filesystem::create_directories(d);
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(std::filesystem::temp_directory_path() /
                                      ("nexus_fuzz_" + std::to_string(static_cast<long>(::getpid()))),
                                  ec);
    });
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& p, const std::uint8_t* data, std::size_t n) {
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
}

}  // namespace nexus::fuzz
