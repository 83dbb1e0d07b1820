// ModelStore: a directory of batching profiles.

#include "nexus/profile/model_store.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>

#include "nexus/core/error.hpp"

namespace nexus {

ModelStore::ModelStore(const std::filesystem::path& dir) {
  NEXUS_CHECK(std::filesystem::is_directory(dir), "model store: '{}' is not a directory",
              dir.string());
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());  // deterministic: first device wins by file order
  for (const auto& f : files) {
    std::ifstream in(f);
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw_error("model store: {} is not valid JSON ({})", f.string(), e.what());
    }
    // Other JSON files (model definitions, manifests) may live here too.
    if (!j.is_object() || !j.contains("model") || !j.contains("latency_us")) continue;
    add(BatchProfile::from_json(j, f.string()));
  }
}

void ModelStore::add(BatchProfile profile) {
  auto key = std::make_pair(profile.model(), profile.device());
  profiles_.insert_or_assign(std::move(key), std::move(profile));
}

void ModelStore::save(const std::filesystem::path& dir) const {
  std::filesystem::create_directories(dir);
  for (const auto& [key, p] : profiles_) {
    std::string name = key.first + "@" + key.second + ".json";
    for (char& c : name)
      if (c == '/' || c == ' ' || c == ':') c = '_';
    p.save(dir / name);
  }
}

bool ModelStore::has(const std::string& model, const std::string& device) const {
  for (const auto& [key, p] : profiles_)
    if (key.first == model && (device.empty() || key.second == device)) return true;
  return false;
}

const BatchProfile& ModelStore::profile(const std::string& model, const std::string& device) const {
  std::string have;
  for (const auto& [key, p] : profiles_) {
    if (key.first != model) continue;
    if (device.empty() || key.second == device) return p;
    have += (have.empty() ? "" : ", ") + key.second;
  }
  if (have.empty()) throw_error("model store: no batching profile for model '{}'", model);
  throw_error("model store: no batching profile for model '{}' on device '{}' (have: {})", model,
              device, have);
}

std::vector<std::string> ModelStore::devices() const {
  std::set<std::string> d;
  for (const auto& [key, p] : profiles_) d.insert(key.second);
  return {d.begin(), d.end()};
}

ProfileMap ModelStore::profiles_for(const std::string& device,
                                    const LatencyModel& latency_model) const {
  ProfileMap out;
  for (const auto& [key, p] : profiles_) {
    if (!device.empty() && key.second != device) continue;
    if (out.count(key.first)) continue;
    BatchProfile copy = p;
    copy.set_latency_model(latency_model);
    out.emplace(key.first, std::move(copy));
  }
  return out;
}

}  // namespace nexus
