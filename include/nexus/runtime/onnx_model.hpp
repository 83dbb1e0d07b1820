#pragma once
// An ONNX file as a ModelSpec the Engine loads: the "serve your own model" path in one call
// (docs/onnx.md). Part of the optional ONNX importer (CMake target nexus::onnx).
//
//   runtime::Engine engine(...);
//   engine.load_model(runtime::model_spec_from_onnx("det.onnx", {.onnx = {.input_shape = {3, 640, 640}}}));
//
// The graph comes from nexus::model::load_onnx; the batching profile ℓ(b) (paper §4, the
// Profiler's measurement) from, in this order: OnnxModelOptions::profile, the ModelStore's entry
// for the model name on the profiling backend's device, or a measurement on that backend
// (default: a CpuBackend; the Profiler's quick settings below). The Engine then loads the graph
// on each device's default backend (CpuBackend / CudaBackend), as for any ModelSpec with a graph.

#include <filesystem>
#include <optional>
#include <string>

#include "nexus/model/onnx.hpp"
#include "nexus/profile/model_store.hpp"
#include "nexus/profile/profiler.hpp"
#include "nexus/runtime/engine.hpp"

namespace nexus::runtime {

struct OnnxModelOptions {
  /// Model name in the Engine (and in the profile); empty: the file's stem.
  std::string name;
  /// Import options: OnnxOptions::input_shape / dims resolve symbolic H, W (required for models
  /// with symbolic spatial sizes).
  model::OnnxOptions onnx;
  /// A profile to use as is (its model() must be the model name).
  std::optional<BatchProfile> profile;
  /// A ModelStore to take the profile from when it has one for the model name on the profiling
  /// backend's device ("cpu" for the default backend); not owned, may be null.
  const ModelStore* store = nullptr;
  /// The backend to measure ℓ(b) on when no profile is given or stored; empty: a CpuBackend.
  Profiler::BackendFactory profile_backend;
  /// How to measure: batch sizes up to max_batch (B_max search as the Profiler does).
  ProfilerOptions profiler = quick_profiler_options();
  /// ModelSpec::max_batch (0 = the profile's).
  int max_batch = 0;

  /// Fewer repeats and batch sizes than the Profiler's defaults (seconds, not minutes, on a
  /// CPU): max_batch 16, batch sizes 1, 2, 4, 8, 16, 10 repeats.
  static ProfilerOptions quick_profiler_options() {
    ProfilerOptions o;
    o.max_batch = 16;
    o.batches = {1, 2, 4, 8, 16};
    o.warmup = 1;
    o.repeats = 10;
    o.search_repeats = 2;
    return o;
  }
};

/// Loads `path` with model::load_onnx and returns {name, profile, graph, max_batch} for
/// Engine::load_model. Throws nexus::Error: the loader's errors (naming the node, attribute or
/// file), the Profiler's (naming the model if batch 1 fails on the backend), or a given profile
/// of another model. A store without the model's profile is no error: the model is measured.
ModelSpec model_spec_from_onnx(const std::filesystem::path& path, OnnxModelOptions options = {});

}  // namespace nexus::runtime
