#include "nexus/sim/scenario.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <set>

#include "nexus/core/error.hpp"

namespace nexus::sim {

namespace {

using nlohmann::json;

// Reads fields of one JSON object, naming the file and the field path in every error.
struct Reader {
  const std::filesystem::path& file;
  std::string path;  // e.g. "queries[1].stages[0]"
  const json& j;

  std::string at(const std::string& key) const { return path.empty() ? key : path + "." + key; }
  [[noreturn]] void fail(const std::string& key, const std::string& expected) const {
    throw_error("scenario {}: field '{}': expected {}", file.string(), at(key), expected);
  }
  const json* find(const std::string& key) const {
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
  }
  std::string str(const std::string& key, std::optional<std::string> def = std::nullopt) const {
    const json* v = find(key);
    if (!v) {
      if (def) return *def;
      fail(key, "a string (missing)");
    }
    if (!v->is_string()) fail(key, "a string");
    return v->get<std::string>();
  }
  double num(const std::string& key, std::optional<double> def = std::nullopt) const {
    const json* v = find(key);
    if (!v) {
      if (def) return *def;
      fail(key, "a number (missing)");
    }
    if (!v->is_number() || !std::isfinite(v->get<double>())) fail(key, "a finite number");
    return v->get<double>();
  }
  double positive(const std::string& key, std::optional<double> def = std::nullopt) const {
    const double x = num(key, def);
    if (!(x > 0)) fail(key, fmt::format("a number > 0 (got {})", x));
    return x;
  }
  double non_negative(const std::string& key, std::optional<double> def = std::nullopt) const {
    const double x = num(key, def);
    if (!(x >= 0)) fail(key, fmt::format("a number >= 0 (got {})", x));
    return x;
  }
  const json& array(const std::string& key, bool required = true) const {
    static const json empty = json::array();
    const json* v = find(key);
    if (!v) {
      if (required) fail(key, "an array (missing)");
      return empty;
    }
    if (!v->is_array()) fail(key, "an array");
    return *v;
  }
  Reader child(const std::string& key, const json& v) const {
    if (!v.is_object()) fail(key, "an object");
    return Reader{file, at(key), v};
  }
};

Duration ms(double x) { return Duration(static_cast<Duration::rep>(x * 1e6)); }
Duration secs(double x) { return Duration(static_cast<Duration::rep>(x * 1e9)); }

}  // namespace

double ScenarioQuery::rate_at(double t_s) const {
  if (arrivals.trace.empty()) return arrivals.rate_rps;
  double t = 0;
  for (const auto& s : arrivals.trace) {
    t += std::chrono::duration<double>(s.length).count();
    if (t_s < t) return s.rate_rps;
  }
  return 0.0;
}

double ScenarioQuery::mean_rate(Duration duration) const {
  if (arrivals.trace.empty()) return arrivals.rate_rps;
  const double d = std::chrono::duration<double>(duration).count();
  double t = 0, sum = 0;
  for (const auto& s : arrivals.trace) {
    const double len = std::chrono::duration<double>(s.length).count();
    const double used = std::max(0.0, std::min(len, d - t));
    sum += used * s.rate_rps;
    t += len;
  }
  return d > 0 ? sum / d : 0.0;
}

std::vector<double> ScenarioQuery::stage_multipliers() const {
  std::vector<double> m(stages.size(), 0.0);
  std::map<std::string, std::size_t> idx;
  for (std::size_t i = 0; i < stages.size(); ++i) idx[stages[i].name] = i;
  std::function<void(std::size_t, double)> push = [&](std::size_t v, double x) {
    m[v] += x;
    for (const auto& c : stages[v].children) push(idx.at(c.stage), x * c.fanout);
  };
  push(0, 1.0);
  return m;
}

int ScenarioQuery::longest_path() const {
  std::map<std::string, std::size_t> idx;
  for (std::size_t i = 0; i < stages.size(); ++i) idx[stages[i].name] = i;
  std::function<int(std::size_t)> h = [&](std::size_t v) {
    int best = 0;
    for (const auto& c : stages[v].children) best = std::max(best, h(idx.at(c.stage)));
    return best + 1;
  };
  return h(0);
}

const ScenarioModel& Scenario::model(const std::string& n) const {
  for (const auto& m : models)
    if (m.name == n) return m;
  throw_error("scenario {}: unknown model '{}'", file.string(), n);
}

double Scenario::nominal_rate() const {
  double r = 0;
  for (const auto& q : queries) r += q.mean_rate(duration);
  return r;
}

Scenario load_scenario(const std::filesystem::path& file) {
  std::ifstream in(file);
  NEXUS_CHECK(in.good(), "scenario {}: cannot open the file", file.string());
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw_error("scenario {}: not valid JSON: {}", file.string(), e.what());
  }
  NEXUS_CHECK(j.is_object(), "scenario {}: expected a JSON object at the top", file.string());
  const Reader r{file, "", j};
  Scenario sc;
  sc.file = file;
  sc.name = r.str("name");
  sc.description = r.str("description", "");
  sc.profile_dir = file.parent_path() / r.str("profiles");
  NEXUS_CHECK(std::filesystem::is_directory(sc.profile_dir),
              "scenario {}: field 'profiles': expected a directory of batching profiles ({} is not one)",
              file.string(), sc.profile_dir.string());
  if (const json* lm = r.find("latency_model")) {
    const Reader l = r.child("latency_model", *lm);
    sc.latency_model.std_k = l.non_negative("std_k", 0.0);
    sc.latency_model.factor = l.positive("factor", 1.0);
  }
  sc.duration = secs(r.positive("duration_s", 20));
  sc.warmup = secs(r.non_negative("warmup_s", 2));
  sc.epoch = secs(r.non_negative("epoch_s", 10));
  sc.rate_ewma_alpha = r.positive("rate_ewma_alpha", 0.3);
  if (sc.rate_ewma_alpha > 1) r.fail("rate_ewma_alpha", "a weight in (0, 1]");
  NEXUS_CHECK(sc.warmup < sc.duration, "scenario {}: field 'warmup_s': expected less than duration_s",
              file.string());

  const json& models = r.array("models");
  NEXUS_CHECK(!models.empty(), "scenario {}: field 'models': expected at least one model", file.string());
  std::set<std::string> model_names;
  for (std::size_t i = 0; i < models.size(); ++i) {
    const Reader m = r.child(fmt::format("models[{}]", i), models[i]);
    ScenarioModel sm;
    sm.name = m.str("name");
    if (!model_names.insert(sm.name).second) m.fail("name", fmt::format("a unique model name ('{}' repeats)", sm.name));
    sm.profile_path = sc.profile_dir / m.str("profile");
    if (!std::filesystem::exists(sm.profile_path))
      m.fail("profile", fmt::format("a batching profile in {} ({} does not exist)",
                                    sc.profile_dir.string(), sm.profile_path.filename().string()));
    sm.profile = BatchProfile::load(sm.profile_path);
    sm.profile.set_latency_model(sc.latency_model);
    if (const json* pj = m.find("prefix")) {
      const Reader pr = m.child("prefix", *pj);
      sm.prefix_key = pr.str("key");
      if (sm.prefix_key.empty()) pr.fail("key", "a non-empty prefix name shared by the group's models");
      sm.prefix_fraction = pr.num("fraction");
      if (!(sm.prefix_fraction > 0 && sm.prefix_fraction < 1))
        pr.fail("fraction", fmt::format("the prefix's share of ℓ(b), in (0, 1) (got {})", sm.prefix_fraction));
    }
    sc.models.push_back(std::move(sm));
  }

  const json& queries = r.array("queries");
  NEXUS_CHECK(!queries.empty(), "scenario {}: field 'queries': expected at least one query", file.string());
  std::set<std::string> query_names;
  for (std::size_t qi = 0; qi < queries.size(); ++qi) {
    const Reader q = r.child(fmt::format("queries[{}]", qi), queries[qi]);
    ScenarioQuery sq;
    sq.name = q.str("name");
    if (!query_names.insert(sq.name).second) q.fail("name", fmt::format("a unique query name ('{}' repeats)", sq.name));
    sq.slo = std::chrono::microseconds(static_cast<std::int64_t>(q.positive("slo_ms") * 1000));
    const json& stages = q.array("stages");
    if (stages.empty()) q.fail("stages", "at least one stage (stages[0] is the root)");
    std::set<std::string> stage_names;
    for (std::size_t si = 0; si < stages.size(); ++si) {
      const Reader s = q.child(fmt::format("stages[{}]", si), stages[si]);
      ScenarioStage st;
      st.name = s.str("name");
      if (!stage_names.insert(st.name).second) s.fail("name", fmt::format("a unique stage name ('{}' repeats)", st.name));
      st.model = s.str("model");
      if (!model_names.count(st.model))
        s.fail("model", fmt::format("one of the scenario's models ('{}' has no entry in 'models')", st.model));
      const json& ch = s.array("children", false);
      for (std::size_t ci = 0; ci < ch.size(); ++ci) {
        const Reader c = s.child(fmt::format("children[{}]", ci), ch[ci]);
        st.children.push_back({c.str("stage"), c.non_negative("fanout", 1.0)});
      }
      sq.stages.push_back(std::move(st));
    }
    for (std::size_t si = 0; si < sq.stages.size(); ++si)
      for (std::size_t ci = 0; ci < sq.stages[si].children.size(); ++ci)
        if (!stage_names.count(sq.stages[si].children[ci].stage))
          q.fail(fmt::format("stages[{}].children[{}].stage", si, ci),
                 fmt::format("a stage of query '{}' ('{}' is not one)", sq.name, sq.stages[si].children[ci].stage));
    auto& a = sq.arrivals;
    a.streams = static_cast<int>(q.positive("streams", 1));
    if (const json* arr = q.find("arrival")) {
      if (arr->is_string()) {
        const auto s = arr->get<std::string>();
        if (s == "poisson") a.shape = ArrivalShape::kPoisson;
        else if (s == "uniform") a.shape = ArrivalShape::kUniform;
        else q.fail("arrival", fmt::format("\"poisson\", \"uniform\" or {{\"mmpp\": [...]}} (got \"{}\")", s));
      } else if (arr->is_object() && arr->contains("mmpp")) {
        const Reader m = q.child("arrival", *arr);
        const json& states = m.array("mmpp");
        if (states.empty()) m.fail("mmpp", "at least one state");
        for (std::size_t k = 0; k < states.size(); ++k) {
          const Reader st = m.child(fmt::format("mmpp[{}]", k), states[k]);
          a.mmpp.push_back({st.positive("relative_rate"), ms(st.positive("mean_dwell_ms"))});
        }
      } else {
        q.fail("arrival", "\"poisson\", \"uniform\" or {\"mmpp\": [...]}");
      }
    }
    if (const json* tr = q.find("trace")) {
      const json& segs = q.array("trace");
      if (segs.empty()) q.fail("trace", "at least one segment");
      for (std::size_t k = 0; k < segs.size(); ++k) {
        const Reader s = q.child(fmt::format("trace[{}]", k), segs[k]);
        a.trace.push_back({secs(s.positive("seconds")), s.non_negative("rate_rps")});
      }
      (void)tr;
    } else if (const json* di = q.find("diurnal")) {
      const Reader d = q.child("diurnal", *di);
      const double amp = d.non_negative("amplitude");
      if (amp >= 1) d.fail("amplitude", "a number in [0, 1)");
      a.trace = diurnal_trace(d.positive("mean_rps"), amp, secs(d.positive("period_s")),
                              static_cast<int>(d.positive("segments", 60)));
    } else {
      a.rate_rps = q.positive("rate_rps");
    }
    sc.queries.push_back(std::move(sq));
  }

  if (const json* nz = r.find("noise")) {
    const Reader n = r.child("noise", *nz);
    sc.noise.distribution = n.str("distribution", "mean");
    if (sc.noise.distribution != "mean" && sc.noise.distribution != "lognormal" && sc.noise.distribution != "gamma")
      n.fail("distribution", fmt::format("\"mean\", \"lognormal\" or \"gamma\" (got \"{}\")", sc.noise.distribution));
    sc.noise.min_cv = n.non_negative("min_cv", 0.0);
    sc.noise.slow_probability = n.non_negative("slow_probability", 0.0);
    if (sc.noise.slow_probability > 1) n.fail("slow_probability", "a probability in [0, 1]");
    sc.noise.slow_factor = n.positive("slow_factor", 3.0);
  }
  if (const json* sys = r.find("systems")) {
    const Reader s = r.child("systems", *sys);
    if (const json* tf = s.find("tfserving")) {
      const Reader t = s.child("tfserving", *tf);
      sc.tfserving.max_batch = static_cast<int>(t.positive("max_batch", sc.tfserving.max_batch));
      sc.tfserving.batch_timeout = ms(t.non_negative("batch_timeout_ms", 5));
    }
    if (const json* tr = s.find("triton")) {
      const Reader t = s.child("triton", *tr);
      const json& pref = t.array("preferred_batch_sizes", false);
      if (!pref.empty()) {
        sc.triton.preferred_batch_sizes.clear();
        for (std::size_t k = 0; k < pref.size(); ++k) {
          if (!pref[k].is_number_integer() || pref[k].get<int>() < 1)
            t.fail(fmt::format("preferred_batch_sizes[{}]", k), "an integer >= 1");
          sc.triton.preferred_batch_sizes.push_back(pref[k].get<int>());
        }
      }
      sc.triton.max_queue_delay = ms(t.non_negative("max_queue_delay_ms", 2));
      sc.triton.max_batch = static_cast<int>(t.non_negative("max_batch", 0));
    }
  }
  return sc;
}

}  // namespace nexus::sim
