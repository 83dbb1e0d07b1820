// Writes the seed corpus of fuzz_image_decode: a 7 x 5 gradient with a "face" blob, encoded in
// each format OpenCV imgcodecs reads here. Not part of the build; regenerate with
//   g++ -std=c++20 fuzz/make_image_seeds.cpp $(pkg-config --cflags --libs opencv4) -o /tmp/m && /tmp/m fuzz/corpus/fuzz_image_decode
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fstream>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  const std::string dir = argc > 1 ? argv[1] : ".";
  cv::Mat m(5, 7, CV_8UC3);
  for (int y = 0; y < m.rows; ++y)
    for (int x = 0; x < m.cols; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 36, y * 50, (x * y * 13) & 255);
  const std::pair<const char*, std::vector<int>> fmts[] = {
      {".png", {}}, {".jpg", {cv::IMWRITE_JPEG_QUALITY, 80}}, {".bmp", {}}, {".ppm", {}},
      {".webp", {}}, {".tiff", {}}, {".pgm", {}}};
  for (const auto& [ext, params] : fmts) {
    std::vector<unsigned char> buf;
    cv::Mat src = m;
    if (std::string(ext) == ".pgm") cv::cvtColor(m, src, cv::COLOR_BGR2GRAY);
    try {
      if (!cv::imencode(ext, src, buf, params)) continue;
    } catch (const cv::Exception&) {
      continue;
    }
    std::ofstream(dir + "/seed" + ext, std::ios::binary)
        .write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
  }
}
