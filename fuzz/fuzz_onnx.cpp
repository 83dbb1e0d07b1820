// libFuzzer target: the ONNX loader (load_onnx_bytes: protobuf parse, constant folding, shape
// inference, mapping to the Graph IR) on arbitrary bytes. Seeds: model.onnx files of Debian's
// libonnx-testdata node tests, copied by scripts/fuzz.sh at run time (.onnx files are not
// committed). Malformed models must end in nexus::Error (model/onnx.hpp).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "nexus/core/error.hpp"
#include "nexus/model/onnx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (bool single : {true, false}) {
    nexus::model::OnnxOptions o;
    o.single_input = single;
    o.dims = {{"N", 1}, {"height", 8}, {"width", 8}};
    try {
      const auto g = nexus::model::load_onnx_bytes(bytes, o);
      (void)g;
    } catch (const nexus::Error&) {
    }
  }
  return 0;
}
