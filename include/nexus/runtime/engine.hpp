#pragma once
// Engine: the data plane an application calls (paper §6, Fig. 6; DESIGN.md "Planes").
//
//   Engine engine({.devices = "auto"});            // all CUDA GPUs, else the CPU, or "sim:N"
//   engine.load_model({.name = "det", .profile = p, .make_backend = ...});
//   engine.add_query({.name = "faces", .slo = 200ms, .stages = {...}});
//   RequestId id = engine.submit("faces", frame);  // non-blocking, from any thread
//   for (auto& r : engine.poll(64, 10ms)) ...      // one QueryResult per request, exactly once
//   engine.shutdown();                              // drains, then stops the threads
//
// Control (paper §6.1-6.2, Nexus by default): add_query() and every re-plan split each query's
// SLO over its stages with the QueryPlanner's dynamic programme (stage budgets minimising GPUs
// at the stages' expected, later measured, rates), then the SquishyBinPacker packs all sessions
// ("<query>/<stage>", SLO = stage budget, rate = measured rate) onto the devices. Both baselines
// stay selectable: PlannerKind::kReplicate (every session on every device, batch-oblivious) and
// SloSplit::kProportional (budgets ∝ ℓ(1) on the heaviest path).
//
// Inside: the Dispatcher routes each stage item over the devices with the plan's weights
// (smooth weighted round robin); one GpuExecutor thread per device runs its sessions round
// robin, forming each batch with the BatchPolicy (Nexus early drop by default) from a
// deadline-ordered queue; a CPU pool runs pre/post-processing and fan-out, overlapped with the
// device. An epoch loop measures arrival rates (EWMA) and re-plans; a plan swap moves queued
// items to their new device, never losing or duplicating one.
//
// Virtual time: with EngineOptions::clock a VirtualClock, the Engine starts no threads; it is a
// discrete-event simulation driven by run_until()/run_until_idle(): the same Dispatcher,
// BatchPolicy and executor code runs, batches take what the SimBackend draws (EngineOptions::sim_latency: the profile's mean, or noise),
// and a run is deterministic for a given seed and call sequence.
//
// Prefix batching (paper §6.3): models that share a prefix of identical layers (transfer
// learning variants) form prefix groups at load_model; each group's sessions are planned as one
// session and every device serving it runs one merged batch per duty cycle: the prefix once,
// each suffix on its members' slice (docs/prefix_batching.md).
//
// Thread-safety: submit(), poll(), stats() may be called from any number of
// threads concurrently. load_model/unload_model/add_query/shutdown are serialised internally. In virtual time
// the engine (submit included) must be driven from one thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/core/clock.hpp"
#include "nexus/core/dtype.hpp"
#include "nexus/core/shape.hpp"
#include "nexus/core/tensor.hpp"
#include "nexus/dispatch/batch_policy.hpp"
#include "nexus/exec/backend.hpp"
#include "nexus/profile/batch_profile.hpp"
#include "nexus/runtime/metrics.hpp"
#include "nexus/runtime/query.hpp"
#include "nexus/schedule/plan.hpp"
#include "nexus/schedule/prefix_group.hpp"
#include "nexus/schedule/session.hpp"
#include "nexus/schedule/squishy_bin_packer.hpp"
#include "nexus/sim/sim_backend.hpp"

namespace nexus::model {
class Graph;
}

namespace nexus::runtime {

enum class DeviceKind { kCpu, kCuda, kSim };

/// One accelerator the Engine runs an executor thread for.
struct DeviceInfo {
  int index = 0;          ///< 0..num_devices-1
  DeviceKind kind = DeviceKind::kCpu;
  std::string name;       ///< "cpu", "cuda:0", "sim:3"
};

/// Makes the Backend that runs one model on one device (called once per model and device).
using BackendFactory = std::function<std::unique_ptr<Backend>(const DeviceInfo& device)>;

struct ModelSpec {
  std::string name;
  /// ℓ(b), memory and pre/post time of the model on these devices: drives the plan and the
  /// batch policy (and the simulated batch time on sim devices). Required.
  BatchProfile profile;
  /// Makes the backend. If empty: sim devices get a SimBackend from the profile; cpu/cuda
  /// devices load `graph` on the device's default backend (CpuBackend / CudaBackend).
  BackendFactory make_backend;
  std::shared_ptr<const model::Graph> graph;
  /// Per-item input shape and dtype checked by submit() for root stages (e.g. [3, 112, 112]);
  /// an empty Shape takes the backend's input_shape(0), or no check when that is empty too.
  Shape input_shape;
  DType input_dtype = DType::kFloat32;
  /// Largest batch to run (0 = profile.max_batch()).
  int max_batch = 0;
  /// Prefix batching for models without a graph (e.g. on sim devices): models with the same
  /// non-empty key share a prefix that takes `fraction` (0..1) of each one's ℓ(b); the rest is
  /// the member's suffix. Ignored for models with a graph (grouped by hashing, model/prefix.hpp).
  /// (schedule/prefix_group.hpp: declared_prefix_groups applies this rule.)
  using DeclaredPrefix = nexus::DeclaredPrefix;
  DeclaredPrefix declared_prefix;
};

/// What a planner is given: the sessions (id "<query>/<stage>", model, stage budget as SLO,
/// measured rate in req/s, at least 1e-3), the number of devices and every loaded model's
/// profile (ModelSpec::profile). It returns a Plan: GPU slots (folded onto the devices, slot g ->
/// device g mod num_devices), batch sizes, routing weights; Plan::stage_budgets entries keyed by
/// session id override the engine's SLO split; sessions it leaves unrouted are answered
/// kRejected / kNoRoute (with the reason from Plan::rejected when it gives one).
/// Prefix batching: the sessions of a prefix group's members (two or more) come as one group
/// session "prefix:<key>" (Σ rates, tightest SLO) whose profile (ℓ_group, schedule/prefix_group.hpp)
/// is in `profiles` under that name; the engine expands the returned plan back to the members
/// (SessionAllocation::prefix_group).
struct PlanRequest {
  int num_devices = 0;
  std::vector<Session> sessions;
  const std::map<std::string, BatchProfile>* profiles = nullptr;
  /// Sessions the running plan serves (routed), for admission control's order.
  std::set<std::string> running;
};
using PlannerFn = std::function<Plan(const PlanRequest&)>;

/// The built-in planners (nexus/runtime/planner.hpp has them as PlannerFn factories).
enum class PlannerKind {
  kSquishy,    ///< Nexus (default): SquishyBinPacker with EngineOptions::packer (§6.1, Alg. 1)
  kReplicate,  ///< baseline, batch-oblivious: every session on every device at its saturated
               ///< batch (largest b with 2ℓ(b) <= budget), equal routing weights
};

/// How a query's SLO is split into stage budgets.
enum class SloSplit {
  /// Nexus (default): QueryPlanner's dynamic programme (§6.2): the split minimising the
  /// fractional GPU count Σ R_v / T_v(budget_v) at the stage rates (tree DP; the layered DP for
  /// stages with several parents). Recomputed at every re-plan from the measured rates.
  kDynamicProgram,
  /// Baseline: each stage gets a share ∝ ℓ(1) on the heaviest root-to-leaf path through it
  /// (rate-oblivious; computed once at add_query).
  kProportional,
};

/// How each device's executor runs its plan (paper §6.1: one batch of each session per duty
/// cycle d, round robin, batches of at most the planned size formed by early drop).
struct ExecutorOptions {
  /// Work conservation (an option, not the paper's schedule): start the next duty cycle at once
  /// whenever the device would otherwise idle until d has passed. On by default: paced (the
  /// paper's duty cycle, false) sustained less load at >= 99% good under noise in
  /// benchmarks/results/fidelity-2026-11-30.json (docs/architecture.md, "Defaults").
  bool work_conserving = true;
  /// Co-located sessions contend (the interference baseline; simulated devices in virtual time
  /// only, off by default). Instead of the round robin above, every session on a device forms
  /// and starts its own batches, with its own BatchPolicy, as soon as its previous batch on that
  /// device ended (no duty cycle, no pacing), and the batches in flight on one device share it
  /// as a processor-sharing server: with k batches in flight each progresses at 1/k of its solo
  /// speed (its solo time is the SimBackend's drawn, noisy time), so completion times move
  /// whenever a batch starts or ends on the device. Source: TF Serving and Triton run one
  /// scheduler thread per model and co-located models' kernels share the GPU; the original Nexus
  /// code's GpuExecutorNoMultiBatching (flag -multi_batch=false, "one thread per model, the
  /// interference baseline"), paper §6.3 and Fig. 14 (round-robin multiplexing gains
  /// 1.4-2.1x over it). Pure processor sharing has NO extra interference overhead (no cache or
  /// memory-bandwidth contention, no context switches): the device does the same total work per
  /// second as one batch at a time, so this still favours the baselines and is a lower bound on
  /// what contention costs them. Throws nexus::Error at Engine construction on a real-time clock
  /// or on non-sim devices, and with prefix_batching (a merged group batch is Nexus's, §6.3).
  bool concurrent_sessions = false;
};

struct EngineOptions {
  /// "auto" (all CUDA GPUs, else "cpu"), "cpu", "cpu:N" (N CPU executors), "sim:N" (N simulated
  /// devices). Throws nexus::Error on anything else.
  std::string devices = "auto";
  /// The clock; null = SteadyClock. A VirtualClock selects discrete-event (virtual time) mode.
  std::shared_ptr<Clock> clock;
  /// Batch formation (early drop by default; lazy drop, AIMD, max-batch-timeout to compare).
  /// Batch growth beyond the planned size is BatchPolicyOptions::grow_batch (on by default, as
  /// measured with the executor default above).
  dispatch::BatchPolicyOptions batch_policy{};
  /// Duty-cycle pacing of the executors.
  ExecutorOptions executor{};
  /// Admission control: items queued per session and device before submit() rejects.
  std::size_t max_queue_per_session = 4096;
  /// CPU threads for pre/post-processing and fan-out (0 = on the executor thread).
  int cpu_workers = 1;
  /// Epoch scheduling (nexus::Scheduler, paper §6.1, §7): every `min_epoch` the engine samples
  /// each session's arrival rate (every arrival counts, whatever its fate) into an EWMA (weight
  /// rate_ewma_alpha); it re-plans every `epoch`, or early — after min_epoch — when a rate leaves
  /// [low_watermark, high_watermark] × its planned rate; a re-plan that would save no device keeps
  /// the running plan (only its rates and routing weights change). epoch 0 = never (plan only on
  /// changes and replan()). min_epoch is clamped to at most epoch.
  std::chrono::microseconds epoch{std::chrono::seconds(30)};
  std::chrono::microseconds min_epoch{std::chrono::seconds(10)};
  double rate_ewma_alpha = 0.3;   ///< weight of the newest rate sample, in (0, 1]
  double low_watermark = 0.8;     ///< early re-plan when a rate < low × planned
  double high_watermark = 1.1;    ///< early re-plan when a rate > high × planned
  /// The built-in planner used when `planner` is empty (default: Nexus squishy bin packing).
  PlannerKind planner_kind = PlannerKind::kSquishy;
  /// A custom planner; when set it replaces planner_kind.
  PlannerFn planner;
  /// Packer options (device memory, fixed overhead, pre/post subtraction, max_gpus) shared by
  /// the squishy planner and the SLO split's DP, so both see the same effective SLOs. The
  /// latency model is each ModelSpec::profile's own (BatchProfile::latency_model()).
  PackerOptions packer{};
  /// SLO split (default: the QueryPlanner's DP).
  SloSplit slo_split = SloSplit::kDynamicProgram;
  /// DP time steps ε = SLO / slo_split_segments (QueryPlannerOptions::segments), >= 1.
  int slo_split_segments = 200;
  /// The DP's headroom rule (QueryPlannerOptions::slack_tolerance): splits up to this fraction
  /// above the minimal GPU count may be taken to give every stage more budget over its 2ℓ(b_min);
  /// 0 = the exact DP's split. >= 0.
  double slo_split_slack_tolerance = 0.02;
  std::uint64_t seed = 1;         ///< for anything random inside (sim backends' outputs)
  /// How sim devices' batch durations are drawn (default: the profile's mean; tests and
  /// benchmarks add noise and slow batches). Each (model, device) gets its own seeded stream.
  sim::SimLatency sim_latency{};
  /// Prefix batching (paper §6.3, docs/prefix_batching.md): models that share a prefix of
  /// identical layers (found by hashing their graphs at load_model, or declared with
  /// ModelSpec::declared_prefix) form a group that is planned as one session and runs the prefix
  /// once per merged batch. false = every model is served on its own (no groups).
  bool prefix_batching = true;
};

/// What load_model() cost for one model: it loads the backend on every device and prepares
/// every batch size 1..max_batch the executor may form (Backend::prepare), so the first request
/// meets no one-time work. While a prefix group's runner serves the model on a device (paper
/// §6.3, docs/prefix_batching.md), its own backend there is released (the group holds its
/// weights once); when it leaves the group its own backend is loaded and prepared again.
struct ModelLoadSnapshot {
  double load_seconds = 0.0;     ///< wall time of load + prepare of its own backends (re-loads too)
  /// Σ Backend::device_bytes() of the backends it holds now, over the devices: 0 on devices where
  /// a group's runner serves it (those bytes are in PrefixGroupMetricsSnapshot::device_bytes).
  std::size_t device_bytes = 0;
  int prepared_batches = 0;      ///< batch sizes prepared per device: 1..this
  std::string prefix_group;      ///< the group whose runner serves it (own backend released), or ""
};

/// Point-in-time counters (see metrics.hpp for the meaning of each).
struct EngineStats {
  std::uint64_t submitted = 0, completed = 0, good = 0, dropped = 0, rejected = 0, failed = 0;
  std::uint64_t in_flight = 0;   ///< submitted and not yet terminal
  std::map<std::string, SessionMetricsSnapshot> sessions;   ///< by session id
  std::map<std::string, QueryMetricsSnapshot> queries;      ///< by query name
  std::vector<DeviceMetricsSnapshot> devices;
  std::map<std::string, ModelLoadSnapshot> models;         ///< by model name
  /// The prefix groups formed (EngineOptions::prefix_batching), by key: members, the sessions
  /// planned in each, shared bytes and the merged batches run.
  std::map<std::string, PrefixGroupMetricsSnapshot> prefix_groups;
  /// The current plan (as plan()): GPU slots with their sessions and batches, routes, the stage
  /// budgets ("<query>/<stage>" -> budget) and the sessions the planner rejected.
  Plan plan;
  /// The last error of a re-plan the epoch loop ran (a custom planner's invalid plan, a bad
  /// rate); the running plan was kept. Empty when none.
  std::string plan_error;
  /// Re-plans the Scheduler ran (add_query, replan(), epochs) and how many kept the running plan.
  std::uint64_t replans = 0, plans_kept = 0;
  double good_rate() const { return submitted ? double(good) / double(submitted) : 0.0; }
};

class Engine {
 public:
  /// Enumerates devices and starts the executor, CPU-pool and epoch threads (none in virtual
  /// time). Throws nexus::Error on a bad `devices` string.
  explicit Engine(EngineOptions options = {});
  /// Calls shutdown().
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Loads a model on every device (one backend per device). Throws nexus::Error on a duplicate
  /// name, an empty profile, no way to make a backend, or a backend that fails to load.
  ///
  /// Prefix batching (EngineOptions::prefix_batching, paper §6.3, docs/prefix_batching.md): on
  /// each load the models with a graph and no make_backend are hashed (model/prefix.hpp) and
  /// those sharing a prefix of weighted layers form a group; models without a graph form one
  /// per non-empty ModelSpec::declared_prefix key. A group's sessions are planned as one
  /// session and run as merged batches. On a cpu/cuda device where a hashed group's runner
  /// serves a member, the member's own backend is released (the prefix weights are held once;
  /// ModelLoadSnapshot::device_bytes 0, PrefixGroupMetricsSnapshot::device_bytes the runner's).
  /// Also throws nexus::Error when `spec` declares a prefix
  /// key whose members take another input shape (naming both models and shapes), or a fraction
  /// outside [0, 1].
  void load_model(ModelSpec spec);

  /// Removes a model: its backends are freed and its name may be loaded again. A prefix group it
  /// was in is re-formed (or dissolved) and re-planned; the other members keep serving (one left
  /// alone gets its own backend loaded and prepared again before it serves alone). Throws
  /// nexus::Error for an unknown model or while a query uses it (naming the queries).
  void unload_model(const std::string& name);

  /// Declares a query, splits its SLO over the stages (EngineOptions::slo_split) and re-plans.
  /// Throws nexus::Error naming the query and the fault: no stages, duplicate stage name,
  /// unknown model, unknown child stage, a cycle, a stage not reachable from stages[0], a
  /// non-positive SLO, or (with the DP split) an SLO that no split can meet — the message names
  /// the stage(s) on the tightest path, what each needs (2ℓ(b_min) + pre/post + overhead) and
  /// the smallest SLO that works. Nothing is declared when it throws. Returns a handle for
  /// submit().
  int add_query(QuerySpec spec);

  /// Submits one request of `query` with the root stage's input (per-item shape, or with a
  /// leading 1). Non-blocking and thread-safe. Returns its RequestId; its one QueryResult comes
  /// from poll() — including kRejected when admission control refuses it.
  /// The engine shares `input`'s storage until the request ends (no copy): do not write into
  /// that buffer meanwhile (submit a clone() when reusing a frame buffer).
  /// Throws nexus::Error (and issues no id) for an unknown query, an input of the wrong shape or
  /// dtype, or a call after shutdown().
  RequestId submit(std::string_view query, Tensor input);
  RequestId submit(int query_handle, Tensor input);

  /// Returns up to `max` finished requests, waiting up to `timeout` (wall time) for the first.
  /// In virtual time it never waits (drive time with run_until).
  std::vector<QueryResult> poll(std::size_t max = std::numeric_limits<std::size_t>::max(),
                                Duration timeout = Duration::zero());

  /// Stops accepting requests, runs or drops (kShutdown) everything queued, waits for the
  /// in-flight batches, then stops the threads. Results stay available to poll(). Idempotent.
  void shutdown();

  /// Virtual time only: processes every event up to `t` and leaves the clock at `t`.
  /// Throws nexus::Error with a real clock.
  void run_until(TimePoint t);
  /// Virtual time only: runs until no request is queued or in flight.
  void run_until_idle();

  /// Re-plans now from the measured rates (the epoch loop does this every epoch): re-splits each
  /// query's SLO (DP), re-packs, swaps the plan in. A session the new plan rejects or leaves
  /// unrouted gets its requests answered kRejected / kNoRoute with the planner's reason.
  void replan();
  /// A copy of the current plan (slots as planned, before folding onto the devices) with the
  /// stage budgets in use.
  Plan plan() const;

  /// Every counter of the data plane and the plan, as one snapshot. nexus_observe exports it in
  /// the Prometheus format (nexus::observe::metrics_text, HttpExporter's /metrics).
  EngineStats stats() const;

  const std::vector<DeviceInfo>& devices() const;
  Clock& clock() const;
  /// False once shutdown() has begun (submit() then throws).
  bool accepting() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nexus::runtime
