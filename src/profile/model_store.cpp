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
    if (e.is_regular_file() && e.path().extension() == ".onnx")
      model_files_.emplace(e.path().stem().string(), e.path());
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
    // A model entry pointing at an ONNX file.
    if (j.is_object() && j.contains("model") && j.contains("onnx") && !j.contains("latency_us")) {
      NEXUS_CHECK(j["model"].is_string() && j["onnx"].is_string(),
                  "model store: {}: \"model\" and \"onnx\" must be strings", f.string());
      const std::filesystem::path onnx = f.parent_path() / j["onnx"].get<std::string>();
      NEXUS_CHECK(std::filesystem::is_regular_file(onnx),
                  "model store: {}: model '{}' points at '{}', which does not exist", f.string(),
                  j["model"].get<std::string>(), onnx.string());
      model_files_.insert_or_assign(j["model"].get<std::string>(), onnx);
      continue;
    }
    // Other JSON files (model definitions, manifests) may live here too.
    if (!j.is_object() || !j.contains("model") || !j.contains("latency_us")) continue;
    add(BatchProfile::from_json(j, f.string()));
  }
}

bool ModelStore::has_model_file(const std::string& model) const {
  return model_files_.count(model) != 0;
}

std::filesystem::path ModelStore::model_file(const std::string& model) const {
  auto it = model_files_.find(model);
  if (it != model_files_.end()) return it->second;
  std::string have;
  for (const auto& [name, path] : model_files_) have += (have.empty() ? "" : ", ") + name;
  throw_error("model store: no model file for '{}' (known: {})", model,
              have.empty() ? std::string("none") : have);
}

void ModelStore::add_model_file(const std::string& model, std::filesystem::path file) {
  model_files_.insert_or_assign(model, std::move(file));
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
