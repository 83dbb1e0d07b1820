#pragma once
// Image: a decoded 8-bit RGB picture (interleaved HWC, row-major, top row first), the input of
// the face models' CPU pre-processing (FaceDetector::preprocess, face_net_input). Decoding
// files is left to the application (OpenCV imgcodecs in the examples); read_image() below is
// available to code that includes OpenCV itself and defines NEXUS_HAVE_OPENCV.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <vector>

#include "nexus/core/error.hpp"

namespace nexus::model::zoo {

struct Image {
  int width = 0;
  int height = 0;
  /// RGB bytes, pixel (x, y) channel c at index (y * width + x) * 3 + c; size width*height*3.
  std::vector<std::uint8_t> rgb;

  Image() = default;
  /// A black image. Throws nexus::Error on a negative size.
  Image(int w, int h) : width(w), height(h) {
    NEXUS_CHECK(w >= 0 && h >= 0, "Image: negative size {} x {}", w, h);
    rgb.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(h) * 3, 0);
  }

  bool empty() const { return width <= 0 || height <= 0; }
  std::uint8_t at(int x, int y, int c) const {
    return rgb[(static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                static_cast<std::size_t>(x)) * 3 + static_cast<std::size_t>(c)];
  }
  std::uint8_t* pixel(int x, int y) {
    return rgb.data() + (static_cast<std::size_t>(y) * static_cast<std::size_t>(width) +
                         static_cast<std::size_t>(x)) * 3;
  }
};

/// Copies a BGR (OpenCV's order) or RGB 8-bit interleaved buffer with `row_stride` bytes per
/// row into an Image. Throws nexus::Error on a null buffer, a non-positive size or a stride
/// smaller than width * 3.
Image image_from_bgr(const std::uint8_t* bgr, int width, int height, std::size_t row_stride);
Image image_from_rgb(const std::uint8_t* rgb, int width, int height, std::size_t row_stride);

}  // namespace nexus::model::zoo

#if defined(NEXUS_HAVE_OPENCV)
#include <opencv2/imgcodecs.hpp>

namespace nexus::model::zoo {

/// Decodes an image file with OpenCV imgcodecs (IMREAD_COLOR: 8-bit, 3 channels, EXIF
/// orientation applied). Throws nexus::Error naming the file when it is missing or cannot be
/// decoded.
inline Image read_image(const std::filesystem::path& file) {
  NEXUS_CHECK(std::filesystem::is_regular_file(file), "image {}: no such file", file.string());
  cv::Mat m;
  try {
    m = cv::imread(file.string(), cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw_error("image {}: cannot decode ({})", file.string(), e.what());
  }
  NEXUS_CHECK(!m.empty() && m.type() == CV_8UC3,
              "image {}: cannot decode (not a readable JPEG/PNG/... image)", file.string());
  return image_from_bgr(m.data, m.cols, m.rows, m.step[0]);
}

}  // namespace nexus::model::zoo
#endif
