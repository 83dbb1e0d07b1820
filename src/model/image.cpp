// Image construction from interleaved 8-bit buffers.
#include "nexus/model/zoo/image.hpp"

#include <cstring>

namespace nexus::model::zoo {
namespace {

Image copy_image(const std::uint8_t* src, int width, int height, std::size_t row_stride,
                 bool swap_rb, const char* who) {
  NEXUS_CHECK(src != nullptr, "{}: null pixel buffer", who);
  NEXUS_CHECK(width > 0 && height > 0, "{}: image size {} x {} (expected positive)", who, width,
              height);
  const std::size_t row = static_cast<std::size_t>(width) * 3;
  NEXUS_CHECK(row_stride >= row, "{}: row stride {} bytes < width * 3 = {}", who, row_stride,
              row);
  Image img(width, height);
  for (int y = 0; y < height; ++y) {
    const std::uint8_t* s = src + static_cast<std::size_t>(y) * row_stride;
    std::uint8_t* d = img.pixel(0, y);
    if (!swap_rb) {
      std::memcpy(d, s, row);
      continue;
    }
    for (int x = 0; x < width; ++x) {
      d[3 * x + 0] = s[3 * x + 2];
      d[3 * x + 1] = s[3 * x + 1];
      d[3 * x + 2] = s[3 * x + 0];
    }
  }
  return img;
}

}  // namespace

Image image_from_bgr(const std::uint8_t* bgr, int width, int height, std::size_t row_stride) {
  return copy_image(bgr, width, height, row_stride, true, "image_from_bgr");
}

Image image_from_rgb(const std::uint8_t* rgb, int width, int height, std::size_t row_stride) {
  return copy_image(rgb, width, height, row_stride, false, "image_from_rgb");
}

}  // namespace nexus::model::zoo
