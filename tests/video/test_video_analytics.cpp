// Integration test of examples/video_analytics: the service runs for a few seconds on the CPU
// with a small load; its report.json must account for every submitted frame exactly once, find
// the faces of the demo photos where face-api finds them (tests/fixtures/face_api_reference.json,
// made by face-api itself) and match each one to the gallery entry enrolled from it. Bad inputs
// (missing or corrupt video, an SLO no plan can meet, Ctrl-C) end with clear messages.

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
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
// The shell command that runs the example on the CPU with `args`, its output going to `log`.
std::string example_command(const std::string& args, const fs::path& log) {
  return "'" + std::string(VA_EXE) + "' --device cpu --data '" + (kSource / "data").string() + "' " + args +
         " > '" + log.string() + "' 2>&1";
}

// Runs `cmd` with std::system; the exit status and the example's output from `log`.
Run run_shell(const std::string& cmd, const fs::path& log) {
  const int st = std::system(cmd.c_str());
  Run r;
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream in(log);
  std::stringstream ss;
  ss << in.rdbuf();
  r.output = ss.str();
  return r;
}

Run run_example(const std::string& args, const std::string& name, const std::string& prefix = "") {
  fs::create_directories(kWork);
  const fs::path log = kWork / (name + ".log");
  return run_shell(prefix + example_command(args, log), log);
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
  // Without --tenant-heads no two models share a prefix worth a group (the landmark, age/gender
  // and expression nets share only their input normalisation).
  CHECK(r.at("prefix_groups").empty());
  CHECK_FALSE(r.contains("tenant_heads"));
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

  // What the run was: version, time, command line, the SLO and each stream's rate.
  CHECK(r.at("nexus_version").get<std::string>().size() >= 5);
  CHECK(r.at("timestamp_utc").get<std::string>().size() == 20);  // 2026-01-02T03:04:05Z
  CHECK(r.at("command_line").get<std::string>().find("--fps 0.5") != std::string::npos);
  CHECK(r.at("query_slo_ms").get<double>() == 60000.0);
  CHECK(r.at("fps_per_stream").at("photos#0").get<double>() == 0.5);
  CHECK(r.at("fps_per_stream").at("megamind#0").get<double>() == 0.5);
  CHECK(!r.at("headline").get<std::string>().empty());
  // Figures that agree: each session's stage budget is the plan's (what the engine used).
  for (const auto& [id, sess] : r.at("sessions").items()) {
    INFO(id);
    REQUIRE(sess.contains("stage_budget_ms"));
    CHECK(sess.at("stage_budget_ms").get<double>() ==
          r.at("plan").at("stage_budgets_ms").at(id).get<double>());
  }
  for (const auto& d : r.at("devices")) {
    CHECK(d.contains("occupancy_planned"));
    CHECK(d.at("occupancy_measured").get<double>() == d.at("occupancy").get<double>());
  }
  // Per-frame outcomes of the video stream, each finished frame once.
  std::size_t video_frames = 0;
  for (const auto& f : r.at("frames")) {
    CHECK(f.at("stream") == "megamind#0");
    if (f.at("status") == "completed") CHECK(f.contains("faces"));
    ++video_frames;
  }
  for (const auto& s : r.at("streams"))
    if (s.at("name") == "megamind#0")
      CHECK(video_frames == s.at("frames_submitted").get<std::size_t>());
  // Megamind.avi's frame 0 is black: never picked as an annotated sample.
  for (const auto& f : r.at("annotated_frames"))
    CHECK(f.get<std::string>().find("Megamind_00000") == std::string::npos);

  // Photos served in the run: the faces face-api finds, each matched against the gallery without
  // the photo's own faces (face-api's FaceMatcher rule: a match when the distance is < 0.6).
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
      // The nearest gallery entry comes from another photo; it is the identity only when closer
      // than face-api's threshold.
      REQUIRE(f.contains("identity"));
      const std::string id = f.at("identity"), nearest = f.at("nearest");
      const double d = f.at("distance");
      const json* entry = nullptr;
      for (const auto& e : r.at("gallery"))
        if (e.at("label") == nearest) entry = &e;
      REQUIRE(entry != nullptr);
      CHECK(entry->at("photo") != file);
      CHECK((id == "unknown") == (d >= 0.6));
      if (id != "unknown") CHECK(id == nearest);
      // Independent reference: face-api's own descriptors (the fixture) of this face and of every
      // face on the other photos give the same nearest photo and distance.
      const json* rf = nullptr;
      for (const auto& x : rim->at("faces"))
        if (iou(x.at("box"), f.at("box")) > 0.9) rf = &x;
      REQUIRE(rf != nullptr);
      double ref_d = 1e9;
      std::string ref_photo;
      for (const auto& im : ref.at("images")) {
        if (im.at("file") == file) continue;
        for (const auto& other : im.at("faces")) {
          double sq = 0;
          for (std::size_t k = 0; k < 128; ++k) {
            const double x = rf->at("descriptor")[k].get<double>() -
                             other.at("descriptor")[k].get<double>();
            sq += x * x;
          }
          if (std::sqrt(sq) < ref_d) {
            ref_d = std::sqrt(sq);
            ref_photo = im.at("file");
          }
        }
      }
      CHECK(std::abs(d - ref_d) < 0.03);
      CHECK(entry->at("photo") == ref_photo);
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

TEST_CASE("video_analytics --tenant-heads: each tenant's identity head agrees with the gallery, "
          "served as one prefix group in merged batches", "[video][data]") {
  REQUIRE_VIDEO_DATA();
  const fs::path out = kWork / "tenant_heads";
  fs::remove_all(out);
  // Three tenants watch the same photos and video; a generous SLO keeps all three admitted on a
  // busy box (the check is what the heads say and how the group batched, not speed).
  const Run run = run_example("--tenant-heads --tenants 3 --streams photos@0.2,megamind@0.2 "
                              "--duration 16 --slo 20000 --annotate 0 --metrics-port -1 --out '" +
                                  out.string() + "'",
                              "tenant_heads");
  INFO(run.output);
  REQUIRE(run.code == 0);
  const json r = json::parse(std::ifstream(out / "report.json"));
  check_accounting(r);
  CHECK(r.at("tenant_heads_mode") == true);

  // Each tenant enrolled the faces of its own demo photos (photo index mod 3): together the
  // gallery, none twice.
  REQUIRE(r.at("tenant_heads").size() == 3);
  std::map<std::string, json> means;  // "<tenant>|<label>" -> class mean
  std::set<std::string> labels;
  std::size_t enrolled = 0;
  for (const auto& h : r.at("tenant_heads")) {
    REQUIRE(h.at("labels").size() == h.at("class_means").size());
    CHECK(h.at("labels").size() >= 5);
    for (std::size_t c = 0; c < h.at("labels").size(); ++c) {
      labels.insert(h["labels"][c].get<std::string>());
      means[h.at("tenant").get<std::string>() + "|" + h["labels"][c].get<std::string>()] = h["class_means"][c];
      ++enrolled;
    }
  }
  CHECK(enrolled == r.at("gallery").size());
  CHECK(labels.size() == enrolled);

  // The Engine formed one prefix group of the three tenants' models by itself: the backbone's
  // weights once; its merged batches held more items than the tenants' parts of them.
  REQUIRE(r.at("prefix_groups").size() == 1);
  const json& g = r["prefix_groups"][0];
  CHECK(g.at("members") ==
        json({"face_recognition/t0", "face_recognition/t1", "face_recognition/t2"}));
  const double shared = g.at("shared_weight_bytes"), unshared = g.at("unshared_weights_bytes");
  CHECK(shared > 20e6);  // FaceRecognitionNet: 22.5 MB of float32 weights
  CHECK(g.at("weights_bytes").get<double>() < 1.01 * shared);
  CHECK(unshared > 2.9 * shared);
  REQUIRE(g.at("merged_batches").get<int>() > 0);
  std::uint64_t part_items = 0;
  for (const char* q : {"t0-whole/recognize", "t1-whole/recognize", "t2-whole/recognize"}) {
    INFO(q);
    REQUIRE(g.at("per_member").contains(q));
    CHECK(g["per_member"][q].at("items").get<int>() > 0);  // every tenant was served
    part_items += g["per_member"][q].at("items").get<std::uint64_t>();
  }
  CHECK(part_items == g.at("items").get<std::uint64_t>());
  // items / merged batches > items / Σ the members' batches exactly when some merged batch held
  // two or more tenants' faces (the cap is the recognizer's measured B_max, 2 on a noisy box).
  CHECK(g.at("merged_batch_mean").get<double>() > g.at("member_part_mean").get<double>());
  CHECK(g.at("merged_batch_max").get<int>() >= g.at("member_part_max").get<int>());

  // Per face: the head's best class (argmax of |d|² − |d − μ_c|² by the engine's FC layer) is the
  // nearest of the tenant's enrolled descriptors, computed here in double from the face's
  // descriptor; the head's distance is that distance.
  std::size_t checked = 0;
  auto check_face = [&](const json& f, const std::string& tenant) {
    if (!f.contains("tenant_head")) return;
    const json& h = f.at("tenant_head");
    CHECK(h.at("model") == "face_recognition/" + tenant);
    const auto& d = h.at("descriptor");
    REQUIRE(d.size() == 128);
    double best = 1e300, second = 1e300;
    std::string nearest;
    for (const auto& [key, mu] : means) {
      if (key.rfind(tenant + "|", 0) != 0) continue;
      double sq = 0;
      for (std::size_t k = 0; k < 128; ++k) {
        const double x = d[k].get<double>() - mu[k].get<double>();
        sq += x * x;
      }
      const double dist = std::sqrt(sq);
      if (dist < best) {
        second = best;
        best = dist;
        nearest = key.substr(tenant.size() + 1);
      } else if (dist < second) {
        second = dist;
      }
    }
    if (second - best > 1e-4) CHECK(h.at("nearest") == nearest);  // else float32 may pick either
    CHECK(std::abs(h.at("distance").get<double>() - best) < 5e-3);
    ++checked;
  };
  for (const auto& fr : r.at("frames"))
    if (fr.contains("faces"))
      for (const auto& f : fr.at("faces")) check_face(f, fr.at("tenant"));
  for (const auto& p : r.at("photos"))
    for (const auto& f : p.at("faces")) check_face(f, p.at("tenant"));
  CHECK(checked >= 5);
  const json& hc = r.at("tenant_head_check");
  CHECK(hc.at("faces").get<std::size_t>() >= checked);
  CHECK(hc.at("agree").get<std::size_t>() + hc.at("near_ties").get<std::size_t>() ==
        hc.at("faces").get<std::size_t>());
  // The summary shows the group.
  std::ifstream sum(out / "summary.txt");
  std::stringstream ss;
  ss << sum.rdbuf();
  CHECK(ss.str().find("Prefix groups") != std::string::npos);
  CHECK(ss.str().find("merged batch size mean") != std::string::npos);
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

// Runs the example in the background, waits (up to 20 min on a loaded machine) for a line of
// its output starting with `ready_line`, waits `after_s` more seconds, sends SIGINT and returns
// the example's exit status and output. No fixed sleep decides which phase gets the signal.
Run interrupt_example(const std::string& args, const std::string& name, const std::string& ready_line,
                      double after_s) {
  fs::create_directories(kWork);
  const fs::path log = kWork / (name + ".log");
  // The previous run's log must go first: the wait loop below may look before the example's
  // shell has truncated it, and a stale 'device' line there sent SIGINT before the example had
  // installed its handler (killed with status 130 and no report: a flaky failure).
  fs::remove(log);
  const std::string cmd =
      example_command(args, log) + " & pid=$!; "
      "i=0; while [ $i -lt 4800 ] && kill -0 $pid 2>/dev/null && ! grep -qs '^" + ready_line + "' '" +
      log.string() + "'; do sleep 0.25; i=$((i+1)); done; "
      "sleep " + std::to_string(after_s) + "; kill -INT $pid 2>/dev/null; wait $pid";
  return run_shell(cmd, log);
}

TEST_CASE("video_analytics: Ctrl-C drains and still writes a complete report", "[video][data]") {
  REQUIRE_VIDEO_DATA();
  SECTION("while serving: SIGINT after the 'serving' line") {
    const fs::path out = kWork / "interrupted";
    fs::remove_all(out);
    const Run r = interrupt_example("--streams megamind --fps 1 --duration 600 --slo 60000 --annotate 0 "
                                    "--out '" + out.string() + "'",
                                    "sigint", "serving", 3);
    INFO(r.output);
    CHECK(r.code == 130);
    CHECK(r.output.find("interrupted") != std::string::npos);
    REQUIRE(fs::is_regular_file(out / "report.json"));
    const json rep = json::parse(std::ifstream(out / "report.json"));
    CHECK(rep.at("interrupted") == true);
    check_accounting(rep);
    CHECK(rep.at("frames_submitted").get<int>() >= 1);
  }
  SECTION("during start-up (model loading, profiling, enrolment): SIGINT after the 'device' line") {
    const fs::path out = kWork / "interrupted_startup";
    fs::remove_all(out);
    const Run r = interrupt_example("--streams megamind --fps 1 --duration 600 --slo 60000 --annotate 0 "
                                    "--out '" + out.string() + "'",
                                    "sigint_startup", "device ", 0);
    INFO(r.output);
    CHECK(r.code == 130);
    REQUIRE(fs::is_regular_file(out / "report.json"));
    const json rep = json::parse(std::ifstream(out / "report.json"));
    CHECK(rep.at("interrupted") == true);
    check_accounting(rep);
    CHECK(rep.at("frames_submitted").get<int>() == 0);
  }
}

namespace {

// The N of the last "--slo N" in a message.
long suggested_slo(const std::string& out) {
  const auto p = out.rfind("--slo ");
  if (p == std::string::npos) return -1;
  return std::strtol(out.c_str() + p + 6, nullptr, 10);
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("video_analytics: inputs are checked before anything slow, with exit codes", "[video][data]") {
  REQUIRE_VIDEO_DATA();
  fs::create_directories(kWork);
  const std::string out = " --out '" + (kWork / "checked").string() + "'";
  SECTION("--out that cannot be created: exit 2 at once, before the profiles") {
    const Run r = run_example("--out /proc/nope/out --duration 2", "bad_out");
    INFO(r.output);
    CHECK(r.code == 2);
    CHECK(r.output.find("--out '/proc/nope/out'") != std::string::npos);
    CHECK(r.output.find("writable directory") != std::string::npos);
    CHECK(r.output.find("batching profiles") == std::string::npos);  // nothing slow ran
  }
  SECTION("one tenant with --tenant-heads: exit 2 at once") {
    const Run r = run_example("--tenant-heads --duration 2" + out, "heads_one_tenant");
    INFO(r.output);
    CHECK(r.code == 2);
    CHECK(r.output.find("--tenant-heads with --tenants 1") != std::string::npos);
    CHECK(r.output.find("batching profiles") == std::string::npos);
  }
  SECTION("a missing stream next to a good one: exit 2, named once, nothing served") {
    const fs::path rep = kWork / "checked" / "report.json";
    fs::remove(rep);
    const Run r = run_example("--streams megamind,'" + (kWork / "missing.avi").string() +
                                  "' --duration 2" + out,
                              "missing_next_to_good");
    INFO(r.output);
    CHECK(r.code == 2);
    CHECK(count_of(r.output, "missing.avi") == 1);
    CHECK(r.output.find("--allow-partial") != std::string::npos);
    CHECK(r.output.find("serving") == std::string::npos);
    CHECK(!fs::exists(rep));
  }
  SECTION("the suggested SLO is the smallest one accepted, fan-out included") {
    for (const std::string streams : {"megamind", "vtest", "vtest,megamind"}) {
      INFO(streams);
      const Run tight = run_example("--streams " + streams + " --slo 1 --check" + out, "slo_1");
      INFO(tight.output);
      CHECK(tight.code == 3);
      const long n = suggested_slo(tight.output);
      REQUIRE(n > 1);
      if (streams == "vtest") CHECK(tight.output.find("detect 4 items") != std::string::npos);
      const Run at = run_example("--streams " + streams + " --slo " + std::to_string(n) +
                                     " --check" + out,
                                 "slo_at");
      INFO(at.output);
      CHECK(at.code == 0);
      CHECK(at.output.find("are accepted") != std::string::npos);
      const Run below = run_example("--streams " + streams + " --slo " + std::to_string(n - 1) +
                                        " --check" + out,
                                    "slo_below");
      INFO(below.output);
      CHECK(below.code == 3);
      CHECK(suggested_slo(below.output) == n);
    }
  }
}

TEST_CASE("video_analytics: a partial start and a mostly dropped stream are reported", "[video][data]") {
  REQUIRE_VIDEO_DATA();
  const fs::path out = kWork / "partial";
  fs::remove_all(out);
  // The smallest SLO accepted for vtest (tiled) alone, then 10 frames/s of it: 40 detector runs
  // a second, several times what a CPU runs (at 4 frames/s a quiet 2-core box still completed
  // 51% in time), so early drop drops most frames.
  const Run tight = run_example("--streams vtest --slo 1 --check --out '" + out.string() + "'",
                                "partial_slo");
  const long n = suggested_slo(tight.output);
  REQUIRE(n > 1);
  const Run r = run_example("--streams vtest@10,'" + (kWork / "missing.avi").string() +
                                "' --allow-partial --duration 10 --annotate 1 --slo " +
                                std::to_string(n) + " --out '" + out.string() + "'",
                            "partial");
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("left out (--allow-partial)") != std::string::npos);
  REQUIRE(fs::is_regular_file(out / "report.json"));
  const json rep = json::parse(std::ifstream(out / "report.json"));
  check_accounting(rep);
  REQUIRE(rep.at("streams_left_out").size() == 1);
  CHECK(rep.at("streams_left_out")[0].get<std::string>().find("missing.avi") != std::string::npos);
  std::ifstream sin(out / "summary.txt");
  std::stringstream summary;
  summary << sin.rdbuf();
  CHECK(summary.str().find("not served: ") != std::string::npos);
  // vtest: mostly dropped -> a warning in the output, summary and report.
  const json& vt = rep.at("streams").at(0);
  REQUIRE(vt.at("name") == "vtest#0");
  const auto sub = vt.at("frames_submitted").get<std::uint64_t>();
  REQUIRE(sub >= 10);
  CHECK(2 * vt.at("queries_good").get<std::uint64_t>() < sub);
  REQUIRE(rep.at("warnings").size() == 1);
  CHECK(rep.at("warnings")[0].get<std::string>().find("stream vtest#0: only") == 0);
  CHECK(summary.str().find("mostly not served") != std::string::npos);
  CHECK(r.output.find("warning: stream vtest#0") != std::string::npos);
  // Faces under the minimum size carry no identity, age or expression.
  for (const auto& f : rep.at("frames"))
    if (f.contains("faces"))
      for (const auto& face : f.at("faces"))
        if (face.value("too_small", false)) {
          CHECK(!face.contains("age"));
          CHECK(!face.contains("identity"));
          CHECK(!face.contains("expression"));
        }
}
