#pragma once
// BatchProfile: the batching profile of one model on one device (paper §1, §6.1; notes §2, §8):
// latency ℓ(b) (mean and std, µs) and memory m(b) (bytes) at the measured batch sizes, plus the
// CPU pre/post-processing time per input. It is the single input of the Scheduler.
//
// Batch lists may be sparse (e.g. 1, 4, 8, 16, 32, 64 as in the TITAN X profiles): a batch size
// between two measured ones is linearly interpolated (mean, std, memory) and a batch size below
// the smallest measured one takes that one's values (an over-estimate, so plans stay safe).
// Nothing assumes ℓ linear or throughput b/ℓ(b) monotone.
//
// The planning latency is (mean + k·std) × factor, with k and factor from a LatencyModel (the
// original code used k = 1, factor = 1.15). Values are rounded up to whole microseconds.
//
// JSON (one file per (model, device) in a ModelStore directory):
//   {"model": str, "device": str, "batch": [1,2,...], "latency_us": [...],
//    "latency_std_us": [...], "memory_bytes": [...], "preprocess_us": x, "postprocess_us": y}
// "latency_std_us", "preprocess_us" and "postprocess_us" are optional (0).
//
// Thread-safety: immutable after construction except set_latency_model(); const members may be
// called from any thread.

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <string>
#include <vector>

namespace nexus {

/// How the planner turns a measured latency distribution into one planning latency.
struct LatencyModel {
  double std_k = 0.0;   ///< planning latency = (mean + std_k · std) × factor
  double factor = 1.0;  ///< safety multiplier (original Nexus: 1.15)
};

class BatchProfile {
 public:
  BatchProfile() = default;

  /// Builds a profile from measured vectors (all of the same length as `batches`, which must be
  /// strictly increasing positive integers). `latency_std_us` and `memory_bytes` may be empty
  /// (zeros). Throws nexus::Error naming the model and the offending field.
  BatchProfile(std::string model, std::string device, std::vector<int> batches,
               std::vector<double> latency_us, std::vector<double> latency_std_us = {},
               std::vector<std::size_t> memory_bytes = {}, double preprocess_us = 0.0,
               double postprocess_us = 0.0, LatencyModel latency_model = {});

  /// Parses the JSON format above. Throws nexus::Error naming `source` (a file name or "json")
  /// and the missing or malformed field.
  static BatchProfile from_json(const nlohmann::json& j, const std::string& source = "json");
  nlohmann::json to_json() const;
  /// Reads / writes one JSON file. Throws nexus::Error naming the path.
  static BatchProfile load(const std::filesystem::path& path);
  void save(const std::filesystem::path& path) const;

  const std::string& model() const { return model_; }
  const std::string& device() const { return device_; }
  /// The measured batch sizes, increasing.
  const std::vector<int>& batches() const { return batches_; }
  /// Largest batch size with a measurement (B_max). Batches 1..max_batch() are all valid.
  int max_batch() const { return batches_.empty() ? 0 : batches_.back(); }
  bool empty() const { return batches_.empty(); }

  /// Planning latency ℓ(b) = (mean(b) + k·std(b)) × factor, rounded up to µs.
  /// Throws nexus::Error if b < 1 or b > max_batch().
  std::chrono::microseconds latency(int b) const;
  /// Same with an explicit latency model.
  std::chrono::microseconds latency(int b, const LatencyModel& m) const;
  /// Measured mean latency (what a simulated device should take), rounded to µs.
  std::chrono::microseconds mean_latency(int b) const;
  std::chrono::microseconds latency_std(int b) const;
  /// Planning throughput b / ℓ(b) in req/s.
  double throughput(int b) const;
  /// Device memory in bytes to run batch b (weights + activations as measured).
  std::size_t memory(int b) const;

  /// CPU time per input, planning model applied (mean × factor; std is not stored).
  std::chrono::microseconds preprocess() const;
  std::chrono::microseconds postprocess() const;

  const LatencyModel& latency_model() const { return latency_model_; }
  void set_latency_model(const LatencyModel& m) { latency_model_ = m; }

 private:
  struct Point {
    double mean_us, std_us, memory;
  };
  Point at(int b) const;  // interpolated values

  std::string model_, device_;
  std::vector<int> batches_;
  std::vector<double> latency_us_, latency_std_us_;
  std::vector<std::size_t> memory_bytes_;
  double preprocess_us_ = 0.0, postprocess_us_ = 0.0;
  LatencyModel latency_model_{};
};

}  // namespace nexus
