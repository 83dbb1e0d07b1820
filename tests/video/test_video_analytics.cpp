// Integration test of examples/video_analytics: the service runs for a few seconds on the CPU
// with a small load; its report.json must account for every submitted frame exactly once, find
// the faces of the demo photos where face-api finds them (tests/fixtures/face_api_reference.json,
// made by face-api itself) and match each one to the gallery entry enrolled from it. Bad inputs
// (missing or corrupt video, an SLO no plan can meet, Ctrl-C) end with clear messages.

#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "skip.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const fs::path kSource = NEXUS_SOURCE_DIR;
const fs::path kWork = fs::path(NEXUS_BINARY_DIR) / "video_test";

struct Run {
  int code = -1;
  std::string output;
};

// Runs the example with `args` (stdout+stderr captured to a file).
Run run_example(const std::string& args, const std::string& name, const std::string& prefix = "") {
  fs::create_directories(kWork);
  const fs::path log = kWork / (name + ".log");
  const std::string cmd = prefix + "'" + std::string(VA_EXE) + "' --device cpu --data '" +
                          (kSource / "data").string() + "' " + args + " > '" + log.string() +
                          "' 2>&1";
  const int st = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

bool have_data() {
  return fs::is_directory(kSource / "data/face-api/model") &&
         fs::is_regular_file(kSource / "data/video/Megamind.avi");
}

#define REQUIRE_VIDEO_DATA() \
  NEXUS_SKIP_UNLESS_DATA(have_data(), "data/face-api/model or data/video/Megamind.avi missing (run scripts/fetch_data.sh)")

double iou(const json& a, const json& b) {  // boxes [x, y, w, h]
  const double ax = a[0], ay = a[1], aw = a[2], ah = a[3];
  const double bx = b[0], by = b[1], bw = b[2], bh = b[3];
  const double ix = std::max(0.0, std::min(ax + aw, bx + bw) - std::max(ax, bx));
  const double iy = std::max(0.0, std::min(ay + ah, by + bh) - std::max(ay, by));
  const double inter = ix * iy;
  return inter / (aw * ah + bw * bh - inter);
}

void check_accounting(const json& r) {
  const std::uint64_t sub = r.at("frames_submitted");
  const std::uint64_t done = r.at("queries_completed").get<std::uint64_t>() +
                             r.at("queries_dropped").get<std::uint64_t>() +
                             r.at("queries_rejected").get<std::uint64_t>() +
                             r.at("queries_failed").get<std::uint64_t>();
  CHECK(done == sub);
  CHECK(r.at("accounted") == true);
  std::uint64_t per_stream = 0;
  for (const auto& s : r.at("streams")) per_stream += s.at("frames_submitted").get<std::uint64_t>();
  CHECK(per_stream == sub);
}

}  // namespace

TEST_CASE("video_analytics serves photos and video on the CPU and accounts for every frame",
          "[video][data]") {
  REQUIRE_VIDEO_DATA();
  const fs::path out = kWork / "run";
  fs::remove_all(out);
  // Generous SLO: the check is what the pipeline finds and that nothing is lost, not speed
  // (the box may be busy with other tests).
  const Run run = run_example("--streams photos,megamind --fps 0.5 --duration 14 --slo 60000 "
                              "--annotate 1 --out '" + out.string() + "'",
                              "run");
  INFO(run.output);
  REQUIRE(run.code == 0);
  REQUIRE(fs::is_regular_file(out / "report.json"));
  const json r = json::parse(std::ifstream(out / "report.json"));

  check_accounting(r);
  CHECK(r.at("frames_submitted").get<int>() >= 10);
  CHECK(r.at("queries_completed").get<int>() >= 1);
  const double good = r.at("good_rate");
  CHECK(good >= 0.0);
  CHECK(good <= 1.0);
  CHECK(r.at("device") == "cpu");
  CHECK(r.at("policy") == "nexus");
  CHECK(r.at("plan").contains("gpus"));
  for (const char* st : {"detect", "landmarks", "recognize", "age_gender", "expression"}) {
    INFO(st);
    REQUIRE(r.at("stages").contains(st));
    CHECK(r["stages"][st].at("latency_ms_p99").get<double>() >=
          r["stages"][st].at("latency_ms_p50").get<double>());
  }

  // The gallery: every face of the six demo photos (face-api's reference finds 22).
  const json ref = json::parse(std::ifstream(kSource / "tests/fixtures/face_api_reference.json"));
  std::size_t ref_faces = 0;
  for (const auto& im : ref.at("images")) ref_faces += im.at("faces").size();
  CHECK(ref_faces == 22);
  CHECK(r.at("gallery").size() == ref_faces);

  // Photos served in the run: the faces face-api finds, each matched to its own enrolled face.
  REQUIRE(r.at("photos").size() >= 5);
  for (const auto& p : r.at("photos")) {
    const std::string file = p.at("file");
    INFO(file);
    const json* rim = nullptr;
    for (const auto& im : ref.at("images"))
      if (im.at("file") == file) rim = &im;
    REQUIRE(rim != nullptr);
    CHECK(p.at("faces").size() == rim->at("faces").size());
    for (const auto& f : p.at("faces")) {
      // Same box as face-api's (same weights, same pre-processing).
      double best = 0;
      for (const auto& rf : rim->at("faces")) best = std::max(best, iou(f.at("box"), rf.at("box")));
      CHECK(best > 0.9);
      // The best gallery match is the face enrolled from this very face of this photo.
      REQUIRE(f.contains("identity"));
      const std::string id = f.at("identity");
      const json* entry = nullptr;
      for (const auto& e : r.at("gallery"))
        if (e.at("label") == id) entry = &e;
      REQUIRE(entry != nullptr);
      CHECK(entry->at("photo") == file);
      CHECK(iou(entry->at("box"), f.at("box")) > 0.9);
      CHECK(f.at("distance").get<double>() < 0.1);
      // Age, gender and expression were computed for it.
      CHECK(f.contains("age"));
      CHECK(f.contains("expression"));
    }
  }
  // Megamind: the detector finds the face on whole frames.
  for (const auto& s : r.at("streams"))
    if (s.at("name") == "megamind#0" && s.at("queries_completed").get<int>() > 0)
      CHECK(s.at("faces").get<int>() >= 1);
  // The outputs a person reads.
  CHECK(fs::is_regular_file(out / "summary.txt"));
  CHECK(!r.at("annotated_frames").empty());
  for (const auto& f : r.at("annotated_frames")) CHECK(fs::is_regular_file(f.get<std::string>()));
  CHECK(r.at("plots").size() == 2);
}

TEST_CASE("video_analytics: bad inputs end with clear messages", "[video][data]") {
  REQUIRE_VIDEO_DATA();
  fs::create_directories(kWork);
  const fs::path corrupt = kWork / "corrupt.avi";
  {
    std::ofstream o(corrupt, std::ios::binary);
    for (int i = 0; i < 4096; ++i) o.put(static_cast<char>((i * 7919) & 0xff));
  }
  SECTION("missing and corrupt videos only: exit 2, naming both") {
    const Run r = run_example("--streams '" + (kWork / "missing.avi").string() + "','" +
                                  corrupt.string() + "' --duration 2",
                              "bad_video");
    INFO(r.output);
    CHECK(r.code == 2);
    CHECK(r.output.find("missing.avi") != std::string::npos);
    CHECK(r.output.find("not found") != std::string::npos);
    CHECK(r.output.find("corrupt.avi") != std::string::npos);
    CHECK(r.output.find("no stream could be opened") != std::string::npos);
  }
  SECTION("an unreadable photo is skipped; a stream that ends (--no-loop) stops the run cleanly") {
    const fs::path dir = kWork / "photos_with_a_bad_one";
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(kSource / "data/face-api/demo/sample1.jpg", dir / "a_good.jpg");
    fs::copy_file(corrupt, dir / "b_broken.jpg");
    const fs::path out = kWork / "photos_out";
    fs::remove_all(out);
    const Run r = run_example("--streams '" + dir.string() + "@2' --no-loop --duration 60 "
                              "--slo 60000 --annotate 0 --out '" + out.string() + "'",
                              "bad_photo");
    INFO(r.output);
    CHECK(r.code == 0);
    CHECK(r.output.find("b_broken.jpg") != std::string::npos);
    CHECK(r.output.find("cannot decode") != std::string::npos);
    CHECK(r.output.find("ended") != std::string::npos);
    REQUIRE(fs::is_regular_file(out / "report.json"));
    const json rep = json::parse(std::ifstream(out / "report.json"));
    check_accounting(rep);
    CHECK(rep.at("frames_submitted") == 1);  // the one good photo, once
    CHECK(rep.at("queries_completed") == 1);
  }
  SECTION("an SLO no plan can meet: exit 3, naming the stage and the SLO that would work") {
    const Run r = run_example("--streams megamind --slo 5 --duration 2", "tight_slo");
    INFO(r.output);
    CHECK(r.code == 3);
    CHECK(r.output.find("cannot be met") != std::string::npos);
    CHECK(r.output.find("Stage '") != std::string::npos);
    CHECK(r.output.find("--slo") != std::string::npos);
  }
}

TEST_CASE("video_analytics: Ctrl-C drains and still writes a complete report", "[video][data]") {
  REQUIRE_VIDEO_DATA();
  const fs::path out = kWork / "interrupted";
  fs::remove_all(out);
  // SIGINT after 25 s of a 10-minute run (enrolment takes the first seconds).
  const Run r = run_example("--streams megamind --fps 1 --duration 600 --slo 60000 --annotate 0 "
                            "--out '" + out.string() + "'",
                            "sigint", "timeout -s INT 25 ");
  INFO(r.output);
  CHECK(r.code == 124);  // timeout's status when it had to signal; the example exits 130
  REQUIRE(fs::is_regular_file(out / "report.json"));
  const json rep = json::parse(std::ifstream(out / "report.json"));
  CHECK(rep.at("interrupted") == true);
  check_accounting(rep);
  CHECK(rep.at("frames_submitted").get<int>() >= 1);
}
