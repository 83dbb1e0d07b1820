// runtime::model_spec_from_onnx (nexus/runtime/onnx_model.hpp): compiled into nexus::onnx.
#include "nexus/runtime/onnx_model.hpp"

#include <memory>
#include <utility>

#include "nexus/core/error.hpp"
#include "nexus/exec/cpu_backend.hpp"

namespace nexus::runtime {

ModelSpec model_spec_from_onnx(const std::filesystem::path& path, OnnxModelOptions options) {
  const std::string name = options.name.empty() ? path.stem().string() : options.name;
  NEXUS_CHECK(!name.empty(), "model_spec_from_onnx('{}'): no model name (give OnnxModelOptions::name)",
              path.string());
  model::OnnxOptions onnx = options.onnx;
  if (onnx.name.empty()) onnx.name = name;
  auto graph = std::make_shared<const model::Graph>(model::load_onnx(path, onnx));

  Profiler::BackendFactory factory = options.profile_backend;
  if (!factory) factory = [] { return std::make_unique<CpuBackend>(); };
  auto profile = [&]() -> BatchProfile {
    if (options.profile) {
      NEXUS_CHECK(options.profile->model() == name,
                  "model_spec_from_onnx('{}'): the given profile is for model '{}', expected '{}'",
                  path.string(), options.profile->model(), name);
      return *options.profile;
    }
    if (options.store) {
      const std::string device = factory()->device_name();
      if (options.store->has(name, device)) return options.store->profile(name, device);
    }
    return Profiler(factory, options.profiler).profile(*graph, name);
  };
  ModelSpec spec;
  spec.name = name;
  spec.profile = profile();
  spec.graph = std::move(graph);
  spec.max_batch = options.max_batch;
  return spec;
}

}  // namespace nexus::runtime
