#pragma once
// ModelStore: a directory of batching profiles, one JSON file per (model, device) (format in
// batch_profile.hpp). Files are found recursively under the directory; every *.json whose object
// has "model" and "latency_us" is a profile. The Scheduler plans for one device type at a time and
// takes a ProfileMap (model name → profile) made by profiles_for().
//
// Model files: a store may also hold the models themselves. Every *.onnx file under the directory
// is the model named by its stem, and a JSON entry {"model": NAME, "onnx": "path/to/file.onnx"}
// (path relative to the JSON file) points a model name at an ONNX file elsewhere. model_file()
// gives the path; nexus::model::load_onnx (model/onnx.hpp) loads it.
//
// Thread-safety: not synchronised; load once, then read from any thread.

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "nexus/profile/batch_profile.hpp"

namespace nexus {

/// model name → profile, for one device type.
using ProfileMap = std::map<std::string, BatchProfile>;

class ModelStore {
 public:
  ModelStore() = default;
  /// Loads every profile under `dir`. Throws nexus::Error naming the file if one is malformed,
  /// or if `dir` does not exist.
  explicit ModelStore(const std::filesystem::path& dir);

  /// Adds or replaces the profile of (profile.model(), profile.device()).
  void add(BatchProfile profile);
  /// Writes one file per profile into `dir` as "<model>@<device>.json".
  void save(const std::filesystem::path& dir) const;

  bool has(const std::string& model, const std::string& device = "") const;
  /// The profile of `model` on `device`; device "" = the only/first device holding that model.
  /// Throws nexus::Error naming the model (and the devices that do have it) when missing.
  const BatchProfile& profile(const std::string& model, const std::string& device = "") const;
  /// Whether a model file (ONNX) is known for `model`.
  bool has_model_file(const std::string& model) const;
  /// The ONNX file of `model`. Throws nexus::Error naming the model and the known model files.
  std::filesystem::path model_file(const std::string& model) const;
  /// Points `model` at an ONNX file (what a {"model", "onnx"} entry does).
  void add_model_file(const std::string& model, std::filesystem::path file);
  /// All devices with at least one profile.
  std::vector<std::string> devices() const;
  /// model → profile for one device ("" = every model, first device wins), with `latency_model`
  /// applied to every profile.
  ProfileMap profiles_for(const std::string& device = "", const LatencyModel& latency_model = {}) const;

 private:
  std::map<std::pair<std::string, std::string>, BatchProfile> profiles_;  // (model, device)
  std::map<std::string, std::filesystem::path> model_files_;             // model -> .onnx
};

}  // namespace nexus
