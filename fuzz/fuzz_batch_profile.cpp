// libFuzzer target: BatchProfile JSON (BatchProfile::from_json, as ModelStore loads each file)
// and its queries: latency(b), memory, max_batch, the latency model, and a ModelStore round trip.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>

#include "fuzz_common.hpp"
#include "nexus/core/error.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/profile/model_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    // Not JSON: ModelStore would report "not valid JSON" for the file; check that path too.
    const auto dir = nexus::fuzz::scratch_dir() / "store";
    std::filesystem::create_directories(dir);
    nexus::fuzz::write_file(dir / "p.json", data, size);
    try {
      nexus::ModelStore store(dir);
    } catch (const nexus::Error&) {
    }
    return 0;
  }
  try {
    const auto p = nexus::BatchProfile::from_json(j, "fuzz");
    const int bmax = p.max_batch();
    for (int b = 1; b <= bmax && b <= 1024; b += (b < 16 ? 1 : b / 4)) {
      (void)p.latency(b);
      (void)p.mean_latency(b);
    }
    nexus::ModelStore store;
    store.add(p);
    (void)store.profiles_for();
  } catch (const nexus::Error&) {
  }
  return 0;
}
