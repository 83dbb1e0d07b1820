// BatchProfile: validation, interpolation over sparse batch lists, JSON I/O.

#include "nexus/profile/batch_profile.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "nexus/core/error.hpp"

namespace nexus {

namespace {

// Bounds on values that come from profile files (checked before any conversion): a latency of
// more than 10^12 µs (11.6 days) or a batch above 65,536 is an error, not an overflow or a loop
// over 2^31 batch sizes.
constexpr double kMaxLatencyUs = 1e12;
constexpr int kMaxBatch = 1 << 16;
constexpr double kMaxMemoryBytes = 1125899906842624.0;  // 2^50 (1 PiB)

std::chrono::microseconds ceil_us(double us) {
  // Planning values round up so that a plan never under-estimates; 1e-6 absorbs float noise.
  return std::chrono::microseconds(static_cast<std::int64_t>(std::ceil(us - 1e-6)));
}

}  // namespace

BatchProfile::BatchProfile(std::string model, std::string device, std::vector<int> batches,
                           std::vector<double> latency_us, std::vector<double> latency_std_us,
                           std::vector<std::size_t> memory_bytes, double preprocess_us,
                           double postprocess_us, LatencyModel latency_model)
    : model_(std::move(model)),
      device_(std::move(device)),
      batches_(std::move(batches)),
      latency_us_(std::move(latency_us)),
      latency_std_us_(std::move(latency_std_us)),
      memory_bytes_(std::move(memory_bytes)),
      preprocess_us_(preprocess_us),
      postprocess_us_(postprocess_us),
      latency_model_(latency_model) {
  NEXUS_CHECK(!model_.empty(), "batching profile: empty model name");
  NEXUS_CHECK(!batches_.empty(), "batching profile of '{}': no batch sizes", model_);
  const std::size_t n = batches_.size();
  if (latency_std_us_.empty()) latency_std_us_.assign(n, 0.0);
  if (memory_bytes_.empty()) memory_bytes_.assign(n, 0);
  NEXUS_CHECK(latency_us_.size() == n, "batching profile of '{}': {} batch sizes but {} latencies",
              model_, n, latency_us_.size());
  NEXUS_CHECK(latency_std_us_.size() == n,
              "batching profile of '{}': {} batch sizes but {} latency std values", model_, n,
              latency_std_us_.size());
  NEXUS_CHECK(memory_bytes_.size() == n,
              "batching profile of '{}': {} batch sizes but {} memory values", model_, n,
              memory_bytes_.size());
  for (std::size_t i = 0; i < n; ++i) {
    NEXUS_CHECK(batches_[i] >= 1 && batches_[i] <= kMaxBatch,
                "batching profile of '{}': batch size {} must be in 1..{}", model_, batches_[i],
                kMaxBatch);
    NEXUS_CHECK(i == 0 || batches_[i] > batches_[i - 1],
                "batching profile of '{}': batch sizes must increase ({} after {})", model_,
                batches_[i], batches_[i - 1]);
    NEXUS_CHECK(std::isfinite(latency_us_[i]) && latency_us_[i] > 0 && latency_us_[i] <= kMaxLatencyUs,
                "batching profile of '{}': latency at batch {} must be > 0 and <= {} us (got {})",
                model_, batches_[i], kMaxLatencyUs, latency_us_[i]);
    NEXUS_CHECK(std::isfinite(latency_std_us_[i]) && latency_std_us_[i] >= 0 &&
                    latency_std_us_[i] <= kMaxLatencyUs,
                "batching profile of '{}': latency std at batch {} must be in 0..{} us (got {})",
                model_, batches_[i], kMaxLatencyUs, latency_std_us_[i]);
  }
  NEXUS_CHECK(std::isfinite(preprocess_us_) && preprocess_us_ >= 0 && preprocess_us_ <= kMaxLatencyUs &&
                  std::isfinite(postprocess_us_) && postprocess_us_ >= 0 &&
                  postprocess_us_ <= kMaxLatencyUs,
              "batching profile of '{}': pre/post-processing time must be in 0..{} us", model_,
              kMaxLatencyUs);
  NEXUS_CHECK(latency_model_.std_k >= 0 && latency_model_.factor > 0,
              "batching profile of '{}': latency model needs std_k >= 0 and factor > 0", model_);
}

BatchProfile::Point BatchProfile::at(int b) const {
  NEXUS_CHECK(!batches_.empty(), "batching profile of '{}' is empty", model_);
  NEXUS_CHECK(b >= 1 && b <= max_batch(),
              "batching profile of '{}' on '{}': batch {} outside 1..{}", model_, device_, b,
              max_batch());
  auto it = std::lower_bound(batches_.begin(), batches_.end(), b);
  const auto i = static_cast<std::size_t>(it - batches_.begin());
  if (*it == b || i == 0) {
    // Measured, or below the smallest measurement: use that one (over-estimates, so safe).
    return {latency_us_[i], latency_std_us_[i], static_cast<double>(memory_bytes_[i])};
  }
  // Linear interpolation between the neighbouring measurements.
  const double w = double(b - batches_[i - 1]) / double(batches_[i] - batches_[i - 1]);
  auto lerp = [w](double a, double c) { return a + w * (c - a); };
  return {lerp(latency_us_[i - 1], latency_us_[i]),
          lerp(latency_std_us_[i - 1], latency_std_us_[i]),
          lerp(double(memory_bytes_[i - 1]), double(memory_bytes_[i]))};
}

std::chrono::microseconds BatchProfile::latency(int b) const {
  return latency(b, latency_model_);
}

std::chrono::microseconds BatchProfile::latency(int b, const LatencyModel& m) const {
  const Point p = at(b);
  return ceil_us((p.mean_us + m.std_k * p.std_us) * m.factor);
}

std::chrono::microseconds BatchProfile::mean_latency(int b) const {
  return std::chrono::microseconds(static_cast<std::int64_t>(std::llround(at(b).mean_us)));
}

std::chrono::microseconds BatchProfile::latency_std(int b) const {
  return std::chrono::microseconds(static_cast<std::int64_t>(std::llround(at(b).std_us)));
}

double BatchProfile::throughput(int b) const {
  return double(b) * 1e6 / double(latency(b).count());
}

std::size_t BatchProfile::memory(int b) const {
  return static_cast<std::size_t>(std::ceil(at(b).memory - 1e-9));
}

std::chrono::microseconds BatchProfile::preprocess() const {
  return ceil_us(preprocess_us_ * latency_model_.factor);
}

std::chrono::microseconds BatchProfile::postprocess() const {
  return ceil_us(postprocess_us_ * latency_model_.factor);
}

BatchProfile BatchProfile::from_json(const nlohmann::json& j, const std::string& source) {
  NEXUS_CHECK(j.is_object(), "batching profile {}: expected a JSON object", source);
  auto field = [&](const char* name) -> const nlohmann::json& {
    NEXUS_CHECK(j.contains(name), "batching profile {}: missing field '{}'", source, name);
    return j.at(name);
  };
  try {
    const auto model = field("model").get<std::string>();
    const auto device = j.contains("device") ? j.at("device").get<std::string>() : std::string("unknown");
    std::vector<int> batches;
    NEXUS_CHECK(field("batch").is_array(), "batching profile {}: 'batch' must be an array", source);
    for (const auto& v : field("batch")) {
      // Checked as a JSON number first: converting 1e300 to int is undefined behaviour.
      NEXUS_CHECK(v.is_number_integer() && v.get<double>() >= 1 && v.get<double>() <= kMaxBatch,
                  "batching profile {}: batch size {} must be an integer in 1..{}", source,
                  v.dump(), kMaxBatch);
      batches.push_back(v.get<int>());
    }
    auto lat = field("latency_us").get<std::vector<double>>();
    std::vector<double> sd;
    if (j.contains("latency_std_us")) sd = j.at("latency_std_us").get<std::vector<double>>();
    std::vector<std::size_t> mem;
    if (j.contains("memory_bytes")) {
      for (const auto& v : j.at("memory_bytes")) {
        NEXUS_CHECK(v.is_number() && v.get<double>() >= 0 && v.get<double>() <= kMaxMemoryBytes,
                    "batching profile {}: memory_bytes must be numbers in 0..2^50 (got {})", source,
                    v.dump());
        mem.push_back(static_cast<std::size_t>(v.get<double>()));
      }
    }
    const double pre = j.value("preprocess_us", 0.0);
    const double post = j.value("postprocess_us", 0.0);
    try {
      return BatchProfile(model, device, std::move(batches), std::move(lat), std::move(sd),
                          std::move(mem), pre, post);
    } catch (const Error& e) {
      throw Error(fmt::format("{} (in {})", e.what(), source));
    }
  } catch (const nlohmann::json::exception& e) {
    throw_error("batching profile {}: malformed field ({})", source, e.what());
  }
}

nlohmann::json BatchProfile::to_json() const {
  nlohmann::json j;
  j["model"] = model_;
  j["device"] = device_;
  j["batch"] = batches_;
  j["latency_us"] = latency_us_;
  j["latency_std_us"] = latency_std_us_;
  j["memory_bytes"] = memory_bytes_;
  j["preprocess_us"] = preprocess_us_;
  j["postprocess_us"] = postprocess_us_;
  return j;
}

BatchProfile BatchProfile::load(const std::filesystem::path& path) {
  std::ifstream in(path);
  NEXUS_CHECK(in.good(), "batching profile {}: cannot open file", path.string());
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw_error("batching profile {}: invalid JSON ({})", path.string(), e.what());
  }
  return from_json(j, path.string());
}

void BatchProfile::save(const std::filesystem::path& path) const {
  std::ofstream out(path);
  NEXUS_CHECK(out.good(), "batching profile: cannot write {}", path.string());
  out << to_json().dump(2) << "\n";
}

}  // namespace nexus
