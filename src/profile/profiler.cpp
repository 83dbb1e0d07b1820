// Profiler: max-batch search (doubling + bisection), timing, memory, pre/post-processing.

#include "nexus/profile/profiler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <new>
#include <random>

#include "nexus/core/error.hpp"
#include "nexus/model/graph.hpp"

namespace nexus {

namespace {

std::vector<Tensor> make_inputs(const Backend& backend, int n_inputs, int batch, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<Tensor> inputs;
  for (int i = 0; i < n_inputs; ++i) {
    std::vector<std::int64_t> dims{batch};
    const Shape item = backend.input_shape(i);  // by value: keep it alive while iterating
    for (auto d : item.dims()) dims.push_back(d);
    Tensor t{Shape(dims)};
    for (float& v : t.values()) v = u(rng);
    inputs.push_back(std::move(t));
  }
  return inputs;
}

}  // namespace

std::vector<int> sparse_batches(int max_batch) {
  std::vector<int> out;
  for (int p = 1; p <= max_batch; p *= 2) {
    out.push_back(p);
    const int mid = p + p / 2;
    if (p >= 2 && mid <= max_batch) out.push_back(mid);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  if (out.empty() || out.back() != max_batch) out.push_back(max_batch);
  return out;
}

Profiler::Profiler(BackendFactory factory, ProfilerOptions options)
    : factory_(std::move(factory)), options_(std::move(options)) {
  NEXUS_CHECK(static_cast<bool>(factory_), "profiler: no backend factory");
  NEXUS_CHECK(options_.repeats >= 10, "profiler: repeats must be >= 10 (got {})", options_.repeats);
  NEXUS_CHECK(options_.warmup >= 0 && options_.search_repeats >= 1,
              "profiler: warmup must be >= 0 and search_repeats >= 1");
  NEXUS_CHECK(options_.max_batch >= 1, "profiler: max_batch must be >= 1 (got {})", options_.max_batch);
  NEXUS_CHECK(options_.min_gain >= -1, "profiler: min_gain must be >= -1 (got {}; -1 = never stop on a plateau)",
              options_.min_gain);
}

std::chrono::nanoseconds Profiler::now() const {
  if (options_.now) return options_.now();
  return std::chrono::steady_clock::now().time_since_epoch();
}

int Profiler::find_max_batch(const model::Graph& graph) const {
  const int n_inputs = static_cast<int>(graph.inputs().size());
  std::string last_error;
  // Probe: load a fresh backend for b and time a few runs; < 0 on failure.
  auto probe = [&](int b) -> double {
    try {
      auto backend = factory_();
      backend->load(graph, b);
      const auto inputs = make_inputs(*backend, n_inputs, b, options_.seed);
      backend->run(inputs);  // warm-up
      const auto t0 = now();
      for (int r = 0; r < options_.search_repeats; ++r) backend->run(inputs);
      const double s = std::chrono::duration<double>(now() - t0).count() / options_.search_repeats;
      return s > 0 ? b / s : std::numeric_limits<double>::infinity();
    } catch (const std::bad_alloc&) {
      last_error = "out of memory (std::bad_alloc)";
    } catch (const std::exception& e) {
      last_error = e.what();
    }
    return -1.0;
  };
  double prev = probe(1);
  NEXUS_CHECK(prev >= 0, "profiler: model '{}' does not run at batch 1 on this backend: {}",
              graph.name(), last_error);
  int good = 1;
  int bad = 0;
  while (good < options_.max_batch) {
    const int b = std::min(good * 2, options_.max_batch);
    const double tp = probe(b);
    if (tp < 0) {
      bad = b;
      break;
    }
    const bool plateau = tp < prev * (1.0 + options_.min_gain);
    good = b;
    if (plateau) return good;
    prev = tp;
  }
  if (bad == 0) return good;
  while (bad - good > 1) {  // largest batch that loads and runs
    const int mid = good + (bad - good) / 2;
    if (probe(mid) >= 0) good = mid;
    else bad = mid;
  }
  return good;
}

BatchProfile Profiler::profile(const model::Graph& graph, const std::string& model_name,
                               const ItemFn& preprocess, const ItemFn& postprocess) const {
  const int max_b = find_max_batch(graph);
  std::vector<int> batches = options_.batches;
  if (batches.empty())
    for (int b = 1; b <= max_b; ++b) batches.push_back(b);
  batches.erase(std::remove_if(batches.begin(), batches.end(),
                               [&](int b) { return b < 1 || b > max_b; }),
                batches.end());
  std::sort(batches.begin(), batches.end());
  batches.erase(std::unique(batches.begin(), batches.end()), batches.end());
  if (batches.empty() || batches.back() != max_b) batches.push_back(max_b);

  auto backend = factory_();
  backend->load(graph, max_b);
  const int n_inputs = static_cast<int>(graph.inputs().size());
  std::vector<double> mean, sd;
  std::vector<std::size_t> mem;
  for (int b : batches) {
    const auto inputs = make_inputs(*backend, n_inputs, b, options_.seed + static_cast<std::uint64_t>(b));
    for (int w = 0; w < options_.warmup; ++w) backend->run(inputs);
    std::vector<double> t;
    for (int r = 0; r < options_.repeats; ++r) {
      const auto t0 = now();
      backend->run(inputs);
      t.push_back(std::chrono::duration<double, std::micro>(now() - t0).count());
    }
    double m = 0;
    for (double x : t) m += x;
    m /= double(t.size());
    double v = 0;
    for (double x : t) v += (x - m) * (x - m);
    mean.push_back(std::max(m, 1e-3));  // a profile needs ℓ > 0
    sd.push_back(std::sqrt(v / double(t.size() - 1)));
    mem.push_back(backend->weights_bytes() + backend->activation_bytes(b));
  }
  auto time_item = [&](const ItemFn& fn) {
    if (!fn) return 0.0;
    fn();  // warm-up
    const auto t0 = now();
    for (int r = 0; r < options_.repeats; ++r) fn();
    return std::chrono::duration<double, std::micro>(now() - t0).count() / options_.repeats;
  };
  const double pre = time_item(preprocess), post = time_item(postprocess);
  return BatchProfile(model_name, backend->device_name(), batches, mean, sd, mem, pre, post);
}

}  // namespace nexus
