#include "nexus/sim/sim_backend.hpp"

#include <algorithm>

#include "nexus/core/error.hpp"

namespace nexus::sim {

SimBackend::SimBackend(BatchProfile profile, std::shared_ptr<Clock> clock, SimBackendOptions options)
    : profile_(std::move(profile)), clock_(std::move(clock)), options_(std::move(options)),
      max_batch_(profile_.max_batch()) {
  NEXUS_CHECK(!profile_.empty(), "SimBackend: empty profile for model '{}'", profile_.model());
}

void SimBackend::load(const model::Graph&, int max_batch) {
  NEXUS_CHECK(max_batch >= 1 && max_batch <= profile_.max_batch(),
              "SimBackend '{}': max_batch {} outside the profile's 1..{}", profile_.model(),
              max_batch, profile_.max_batch());
  max_batch_ = max_batch;
}

Shape SimBackend::input_shape(int) const { return options_.input_shape; }

std::size_t SimBackend::weights_bytes() const { return profile_.memory(1); }
std::size_t SimBackend::activation_bytes(int batch) const {
  const auto m1 = profile_.memory(1), mb = profile_.memory(std::max(1, batch));
  return mb > m1 ? mb - m1 : 0;
}

Duration SimBackend::batch_time(int b) const {
  return std::chrono::duration_cast<Duration>(profile_.mean_latency(std::clamp(b, 1, profile_.max_batch())));
}

std::vector<Tensor> SimBackend::run(const std::vector<Tensor>& inputs) {
  ++runs_;
  NEXUS_CHECK(inputs.size() == 1, "SimBackend '{}': {} inputs (expected 1)", profile_.model(),
              inputs.size());
  const Tensor& in = inputs[0];
  const std::int64_t n = in.shape().rank() > 0 ? in.shape()[0] : 0;
  NEXUS_CHECK(n >= 1 && n <= max_batch_, "SimBackend '{}': batch {} outside 1..{}",
              profile_.model(), n, max_batch_);
  if (options_.fail_every > 0 && runs_ % static_cast<std::uint64_t>(options_.fail_every) == 0)
    throw_error("SimBackend '{}': injected fault on run {}", profile_.model(), runs_);
  if (clock_ && !clock_->is_virtual()) clock_->sleep_until(clock_->now() + batch_time(static_cast<int>(n)));
  std::vector<std::int64_t> dims{n};
  for (auto d : options_.output_shape.dims()) dims.push_back(d);
  Tensor out{Shape(dims)};
  const std::int64_t per_out = options_.output_shape.numel();
  const std::int64_t per_in = n > 0 ? in.numel() / n : 0;
  float* o = out.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    float v = static_cast<float>(i);
    if (per_in > 0 && in.dtype() == DType::kFloat32) v = in.data<float>()[i * per_in];
    for (std::int64_t j = 0; j < per_out; ++j) o[i * per_out + j] = v;
  }
  return {out};
}

}  // namespace nexus::sim
