// Annotated frames: boxes and labels (identity, age, gender, expression) drawn with OpenCV.

#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "nexus/core/error.hpp"
#include "va.hpp"

namespace va {

namespace {

cv::Scalar colour_for(const std::string& identity) {  // one colour per gallery identity
  if (identity.empty() || identity == "unknown") return {0, 200, 255};  // amber (BGR)
  std::size_t h = std::hash<std::string>{}(identity);
  static const cv::Scalar kPalette[] = {{80, 220, 80},  {255, 160, 60}, {220, 90, 255},
                                        {60, 120, 255}, {255, 230, 80}, {160, 255, 200}};
  return kPalette[h % 6];
}

void label(cv::Mat& m, const std::string& text, cv::Point at, double scale, cv::Scalar bg) {
  int base = 0;
  const int thick = std::max(1, static_cast<int>(std::round(scale * 1.6)));
  cv::Size sz = cv::getTextSize(text, cv::FONT_HERSHEY_SIMPLEX, scale, thick, &base);
  at.x = std::clamp(at.x, 0, std::max(0, m.cols - sz.width - 4));
  at.y = std::clamp(at.y, sz.height + 4, m.rows - 2);
  cv::rectangle(m, {at.x, at.y - sz.height - 4}, {at.x + sz.width + 4, at.y + base}, bg,
                cv::FILLED);
  cv::putText(m, text, {at.x + 2, at.y - 2}, cv::FONT_HERSHEY_SIMPLEX, scale, {0, 0, 0}, thick,
              cv::LINE_AA);
}

// Two decimals, three where two would round across face-api's threshold (0.5997 is a match and
// must not read "0.60").
std::string fmt_distance(double d) {
  return std::abs(d - kFaceApiMatchThreshold) < 0.005 ? fmt::format("{:.3f}", d)
                                                      : fmt::format("{:.2f}", d);
}

}  // namespace

bool has_content(const Image& image) {
  if (image.empty()) return false;
  double sum = 0, sq = 0;
  int n = 0;
  for (int gy = 0; gy < 64; ++gy)
    for (int gx = 0; gx < 64; ++gx) {
      const int x = (2 * gx + 1) * image.width / 128, y = (2 * gy + 1) * image.height / 128;
      const double l = 0.299 * image.at(x, y, 0) + 0.587 * image.at(x, y, 1) +
                       0.114 * image.at(x, y, 2);
      sum += l;
      sq += l * l;
      ++n;
    }
  const double mean = sum / n;
  return std::sqrt(std::max(0.0, sq / n - mean * mean)) >= 8.0;
}

void write_annotated(const Image& image, const std::vector<FaceResult>& faces,
                     const std::string& title, const fs::path& file, bool tiled) {
  NEXUS_CHECK(!image.empty(), "annotate {}: empty frame", file.string());
  cv::Mat rgb(image.height, image.width, CV_8UC3, const_cast<std::uint8_t*>(image.rgb.data()));
  cv::Mat m;
  cv::cvtColor(rgb, m, cv::COLOR_RGB2BGR);
  // Scale to about 1280 px wide: the video frames (720-768 px) get bigger so 10-15 px faces and
  // their labels stay readable; the 1920 px photos get smaller files.
  const double s = 1280.0 / image.width;
  if (std::abs(s - 1.0) > 0.05)
    cv::resize(m, m, cv::Size(), s, s, s > 1 ? cv::INTER_CUBIC : cv::INTER_AREA);
  const double text = 0.55;
  if (tiled) {  // the detector's 2 x 2 tiles, dashed-looking thin lines
    const cv::Scalar grid{255, 255, 255};
    for (int y = 0; y < m.rows; y += 12) cv::line(m, {m.cols / 2, y}, {m.cols / 2, y + 6}, grid, 1);
    for (int x = 0; x < m.cols; x += 12) cv::line(m, {x, m.rows / 2}, {x + 6, m.rows / 2}, grid, 1);
  }
  for (const auto& f : faces) {
    const cv::Scalar c = colour_for(f.identity);
    cv::Rect r(static_cast<int>(f.box.x * s), static_cast<int>(f.box.y * s),
               std::max(2, static_cast<int>(f.box.width * s)),
               std::max(2, static_cast<int>(f.box.height * s)));
    // Tiny faces: draw a ring around the box too, so the eye finds them in the frame.
    if (r.width < 40)
      cv::circle(m, {r.x + r.width / 2, r.y + r.height / 2}, std::max(r.width, r.height) + 14, c,
                 2, cv::LINE_AA);
    cv::rectangle(m, r, c, 2, cv::LINE_AA);
    for (const auto& p : f.landmarks)
      cv::circle(m, {static_cast<int>(p.x * s), static_cast<int>(p.y * s)}, 1, c, cv::FILLED);
    std::vector<std::string> lines;
    if (f.too_small) {
      lines.push_back(fmt::format("face {:.0f} px: too small", std::min(f.box.width, f.box.height)));
      lines.push_back("for identity, age, expression");
    } else {
      if (f.has_descriptor) {
        if (f.identity == "unknown") {
          // Two short lines: a label no wider than the others is not hidden under a neighbour's.
          lines.push_back(f.nearest.empty() ? std::string("unknown")
                                            : std::string("unknown (look-alike"));
          if (!f.nearest.empty())
            lines.push_back(fmt::format("{}, d {})", f.nearest, fmt_distance(f.distance)));
        }
        else
          lines.push_back(fmt::format("{} (d {})", f.identity, fmt_distance(f.distance)));
      }
      if (f.has_age_gender)
        lines.push_back(fmt::format("{} {:.0f}%, age {:.0f}", f.gender,
                                    100 * f.gender_probability, f.age));
      if (f.has_expression)
        lines.push_back(fmt::format("{} {:.0f}%", f.expression, 100 * f.expression_probability));
    }
    lines.push_back(fmt::format("det {:.2f}", f.score));
    const int lh = 20;
    int y = r.y + r.height + lh + (r.width < 40 ? std::max(r.width, r.height) + 10 : 2);
    if (y + lh * static_cast<int>(lines.size()) > m.rows)
      y = std::max(lh, r.y - lh * static_cast<int>(lines.size()) - 4);
    for (const auto& l : lines) {
      label(m, l, {r.x, y}, text, c);
      y += lh;
    }
  }
  // Title bar.
  cv::rectangle(m, {0, 0}, {m.cols, 28}, {40, 40, 40}, cv::FILLED);
  cv::putText(m, title, {8, 20}, cv::FONT_HERSHEY_SIMPLEX, 0.6, {255, 255, 255}, 1, cv::LINE_AA);
  if (faces.empty())
    label(m, "no face found", {8, 56}, 0.7, {0, 200, 255});
  fs::create_directories(file.parent_path());
  NEXUS_CHECK(cv::imwrite(file.string(), m, {cv::IMWRITE_JPEG_QUALITY, 88, cv::IMWRITE_PNG_COMPRESSION, 6}),
              "annotate: cannot write {}", file.string());
}

}  // namespace va
