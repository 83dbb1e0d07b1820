#include "nexus/sim/sim_backend.hpp"

#include <algorithm>
#include <cmath>

#include "nexus/core/error.hpp"

namespace nexus::sim {

SimBackend::SimBackend(BatchProfile profile, std::shared_ptr<Clock> clock, SimBackendOptions options)
    : profile_(std::move(profile)), clock_(std::move(clock)), options_(std::move(options)),
      max_batch_(profile_.max_batch()), rng_(options_.latency.seed) {
  NEXUS_CHECK(!profile_.empty(), "SimBackend: empty profile for model '{}'", profile_.model());
  const SimLatency& l = options_.latency;
  NEXUS_CHECK(l.min_cv >= 0 && std::isfinite(l.min_cv), "SimLatency::min_cv must be >= 0 (got {})", l.min_cv);
  NEXUS_CHECK(l.slow_probability >= 0 && l.slow_probability <= 1, "SimLatency::slow_probability must be in [0, 1] (got {})",
              l.slow_probability);
  NEXUS_CHECK(l.slow_factor > 0 && std::isfinite(l.slow_factor), "SimLatency::slow_factor must be > 0 (got {})",
              l.slow_factor);
  NEXUS_CHECK(l.distribution != SimLatency::Distribution::kTrace || !l.trace.empty(),
              "SimLatency: kTrace without a trace");
  for (std::size_t i = 0; i < l.trace.size(); ++i)
    NEXUS_CHECK(l.trace[i] > 0 && std::isfinite(l.trace[i]), "SimLatency::trace[{}] = {} (expected a ratio > 0)", i,
                l.trace[i]);
}

Duration SimBackend::draw(int b) {
  b = std::clamp(b, 1, profile_.max_batch());
  const SimLatency& l = options_.latency;
  const double mean = double(std::chrono::duration_cast<std::chrono::nanoseconds>(profile_.mean_latency(b)).count());
  const double sd = std::max(double(std::chrono::duration_cast<std::chrono::nanoseconds>(profile_.latency_std(b)).count()),
                             l.min_cv * mean);
  double x = mean;
  switch (l.distribution) {
    case SimLatency::Distribution::kMean: break;
    case SimLatency::Distribution::kLognormal:
      if (sd > 0 && mean > 0) {
        // ln X ~ N(mu, s²) with E[X] = mean, Var[X] = sd².
        const double s2 = std::log1p((sd * sd) / (mean * mean));
        std::lognormal_distribution<double> d(std::log(mean) - 0.5 * s2, std::sqrt(s2));
        x = d(rng_);
      }
      break;
    case SimLatency::Distribution::kGamma:
      if (sd > 0 && mean > 0) {
        // shape k = mean²/sd², scale θ = sd²/mean.
        std::gamma_distribution<double> d((mean * mean) / (sd * sd), (sd * sd) / mean);
        x = d(rng_);
      }
      break;
    case SimLatency::Distribution::kTrace:
      x = mean * l.trace[trace_pos_++ % l.trace.size()];
      break;
  }
  if (l.slow_probability > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < l.slow_probability)
    x *= l.slow_factor;
  return std::chrono::duration_cast<Duration>(std::chrono::nanoseconds(static_cast<std::int64_t>(std::max(0.0, x))));
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
  last_ = draw(static_cast<int>(n));
  if (clock_ && !clock_->is_virtual()) clock_->sleep_until(clock_->now() + last_);
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
