// libFuzzer target: the nexus-plan workload JSON (parse_workload) and planning it
// (plan_workload) against the committed profile fixtures' models.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>

#include "nexus/core/error.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/schedule/workload.hpp"

namespace {

nexus::ProfileMap profiles() {
  nexus::ProfileMap m;
  // ℓ(b) = alpha·b + beta µs for the model names the seeds (tests/fixtures/workloads) use.
  const std::pair<const char*, std::pair<double, double>> models[] = {
      {"A", {5000, 10000}},   {"B", {2000, 40000}},     {"C", {10000, 20000}},
      {"vgg_s", {400, 3000}}, {"vgg16", {3000, 8000}},  {"vgg_face", {2500, 7000}},
      {"yolo9000", {9000, 15000}}};
  for (const auto& [name, ab] : models) {
    std::vector<int> b;
    std::vector<double> l;
    for (int i = 1; i <= 32; ++i) {
      b.push_back(i);
      l.push_back(ab.first * i + ab.second);
    }
    m.emplace(name, nexus::BatchProfile(name, "gpu", b, l));
  }
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const nexus::ProfileMap kProfiles = profiles();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;  // load_workload turns this into a nexus::Error naming the file
  }
  try {
    const nexus::Workload w = nexus::parse_workload(j);
    // nexus-plan's defaults (no --max-gpus: unlimited GPUs).
    (void)nexus::plan_workload(w, kProfiles);
  } catch (const nexus::Error&) {
  }
  return 0;
}
