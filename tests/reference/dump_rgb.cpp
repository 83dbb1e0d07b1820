// Decodes photos with OpenCV imgcodecs exactly as nexus::model::zoo::read_image does
// (cv::IMREAD_COLOR) and writes each as a binary PPM (P6, RGB) next to the given output folder,
// so that make_reference.js can run face-api on the very pixels the C++ side sees.
//   g++ -std=c++17 -O2 dump_rgb.cpp -o dump_rgb $(pkg-config --cflags --libs opencv4)
//   ./dump_rgb OUT_DIR PHOTO...
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdio>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: dump_rgb OUT_DIR PHOTO...\n");
    return 2;
  }
  const std::string out = argv[1];
  for (int i = 2; i < argc; ++i) {
    const cv::Mat bgr = cv::imread(argv[i], cv::IMREAD_COLOR);
    if (bgr.empty()) {
      std::fprintf(stderr, "dump_rgb: cannot decode %s\n", argv[i]);
      return 1;
    }
    std::string name = argv[i];
    name = name.substr(name.find_last_of('/') + 1);
    name = name.substr(0, name.find_last_of('.')) + ".ppm";
    // imwrite's PPM writer takes BGR and stores RGB.
    if (!cv::imwrite(out + "/" + name, bgr)) {
      std::fprintf(stderr, "dump_rgb: cannot write %s/%s\n", out.c_str(), name.c_str());
      return 1;
    }
  }
  return 0;
}
