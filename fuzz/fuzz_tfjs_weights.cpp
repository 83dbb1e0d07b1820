// libFuzzer target: the TF.js weights manifest + weight-shard loader (load_tfjs_weights), the
// path every face-api model takes from disk. Input: a manifest (JSON) and the bytes of one shard,
// separated by the first NUL byte; the shard is written as "group1-shard1of1.bin" next to the
// manifest (the seeds name it). Bad manifests and shards must end in nexus::Error.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "fuzz_common.hpp"
#include "nexus/core/error.hpp"
#include "nexus/model/weights.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto* nul = static_cast<const std::uint8_t*>(std::memchr(data, 0, size));
  const std::size_t manifest_size = nul ? static_cast<std::size_t>(nul - data) : size;
  const auto& dir = nexus::fuzz::scratch_dir();
  nexus::fuzz::write_file(dir / "model-weights_manifest.json", data, manifest_size);
  const std::size_t shard_at = nul ? manifest_size + 1 : size;
  nexus::fuzz::write_file(dir / "group1-shard1of1.bin", data + shard_at, size - shard_at);
  try {
    const auto w = nexus::model::load_tfjs_weights(dir / "model-weights_manifest.json");
    for (const auto& [name, t] : w) (void)t.numel();
  } catch (const nexus::Error&) {
  }
  return 0;
}
