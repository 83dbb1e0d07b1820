// libFuzzer target: the image-decode path of the face pipeline — bytes of an image file decoded
// as read_image() does (OpenCV imgcodecs, IMREAD_COLOR), imported with image_from_bgr, then the
// face nets' CPU pre-processing (face_net_input: pad to a centred square, resize to 112 / 150).
// Pixel counts are bounded (OPENCV_IO_MAX_IMAGE_PIXELS) as the examples' inputs are.
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "nexus/core/error.hpp"
#include "nexus/model/zoo/face_align.hpp"
#include "nexus/model/zoo/image.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  setenv("OPENCV_IO_MAX_IMAGE_PIXELS", "4000000", 1);
  cv::setNumThreads(0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  cv::Mat m;
  try {
    m = cv::imdecode(cv::Mat(1, static_cast<int>(size), CV_8UC1, const_cast<std::uint8_t*>(data)),
                     cv::IMREAD_COLOR);
  } catch (const cv::Exception&) {
    return 0;  // read_image() turns this into nexus::Error naming the file
  }
  if (m.empty() || m.type() != CV_8UC3) return 0;
  try {
    const auto img = nexus::model::zoo::image_from_bgr(m.data, m.cols, m.rows, m.step[0]);
    for (int side : {112, 150}) {
      const auto t = nexus::model::zoo::face_net_input(img, side);
      (void)t.numel();
    }
  } catch (const nexus::Error&) {
  }
  return 0;
}
