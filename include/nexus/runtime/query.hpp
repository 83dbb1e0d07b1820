#pragma once
// Query API types: how an application describes a query (a tree/DAG of model stages with one
// end-to-end SLO, paper §4.2) and what it gets back for every submitted request.
//
// A stage runs one loaded model on one input item. Around the model:
//   preprocess(input)            -> the model input for one item, per-item shape of the model
//                                   (e.g. [3, H, W] float32); runs on the CPU pool (§6.3 overlap)
//   postprocess(outputs, input)  -> the stage outputs for the item (e.g. decoded boxes)
//   children[k].fanout(view)     -> zero or more inputs of child stage k (detections → face crops)
// All three are optional: the default preprocess passes the input through, the default
// postprocess keeps the model outputs, the default fan-out gives the child the first output.
// A stage function that throws ends its query with status kFailed and the exception's message.
//
// Every submitted request ends in exactly one QueryResult (completed, dropped, rejected or
// failed), delivered once by Engine::poll().

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "nexus/core/clock.hpp"
#include "nexus/core/tensor.hpp"

namespace nexus::runtime {

/// Identifies one submitted request; unique per Engine, increasing from 1.
using RequestId = std::uint64_t;

/// The terminal state of a request.
enum class RequestStatus {
  kCompleted,  ///< every leaf stage ran; see QueryResult::met_slo for the SLO
  kDropped,    ///< a stage could not meet its deadline (early/lazy drop) or shut down unserved
  kRejected,   ///< admission control: a session queue was full, or no device is planned for it
  kFailed,     ///< an error: a backend or stage function threw; `reason` holds the message
};
std::string_view to_string(RequestStatus status);

/// Why a request did not complete (kNone when it did).
enum class Reason {
  kNone,
  kDeadline,       ///< dropped by the batch policy: cannot finish by its deadline
  kQueueFull,      ///< rejected: the session queue was at EngineOptions::max_queue_per_session
  kNoRoute,        ///< rejected: the plan gives the session no device (SLO too tight?)
  kShutdown,       ///< dropped: the engine shut down before the request could run
  kBackendError,   ///< failed: the backend threw while running its batch
  kStageError,     ///< failed: preprocess/postprocess/fan-out threw or returned a bad shape
};
std::string_view to_string(Reason reason);

/// What a fan-out function sees of one finished stage item.
struct StageView {
  const Tensor& query_input;            ///< the tensor given to submit()
  const Tensor& input;                  ///< this stage's input item (before preprocess)
  const std::vector<Tensor>& outputs;   ///< this stage's outputs for the item (after postprocess)
};

using PreprocessFn = std::function<Tensor(const Tensor& input)>;
using PostprocessFn =
    std::function<std::vector<Tensor>(std::vector<Tensor> model_outputs, const Tensor& input)>;
using FanoutFn = std::function<std::vector<Tensor>(const StageView& view)>;

/// An edge of the query graph: each finished item of the parent stage creates fanout(view)
/// items of `stage` (none, one or many).
struct ChildSpec {
  std::string stage;                ///< name of the child stage in the same QuerySpec
  FanoutFn fanout;                  ///< default: {outputs[0]} (or nothing without outputs)
  double expected_fanout = 1.0;     ///< γ: average child items per parent item (for planning)
};

struct StageSpec {
  std::string name;                 ///< unique within the query
  std::string model;                ///< a model loaded with Engine::load_model
  PreprocessFn preprocess;          ///< optional, runs on the CPU pool
  PostprocessFn postprocess;        ///< optional, runs on the CPU pool
  std::vector<ChildSpec> children;
};

/// A query: stages[0] is the root; every other stage must be reachable from it; no cycles.
/// Each edge spawns child items independently (a stage with two parents runs once per parent
/// item; there is no join).
struct QuerySpec {
  std::string name;
  std::chrono::microseconds slo{0};  ///< end-to-end latency bound, submit() to last leaf
  double expected_rate_rps = 10.0;   ///< initial rate for planning; the epoch loop measures it
  std::vector<StageSpec> stages;
  /// Admission order when the load does not fit the devices: a query of higher priority is
  /// served first; equal priorities follow the packer's rule (admit_and_pack).
  int priority = 0;
};

/// One finished stage item of a request.
struct StageResult {
  std::string stage;
  int parent = -1;                 ///< index into QueryResult::stages of the parent item (-1: root)
  std::vector<Tensor> outputs;     ///< after postprocess; slices of the batch output
  TimePoint enqueued{};            ///< entered the session queue
  TimePoint started{};             ///< its batch started on the device
  TimePoint finished{};            ///< postprocess and fan-out done
  int batch_size = 0;              ///< size of the batch it ran in (a prefix group's merged batch: all members' items)
  int device = -1;                 ///< device index it ran on
};

/// The one terminal record of a submitted request.
struct QueryResult {
  RequestId id = 0;
  std::string query;
  RequestStatus status = RequestStatus::kCompleted;
  Reason reason = Reason::kNone;
  std::string message;             ///< human-readable reason / error text ("" when completed)
  std::string stage;               ///< stage where it was dropped/failed ("" otherwise)
  TimePoint submitted{};
  TimePoint finished{};
  bool met_slo = false;            ///< completed and finished - submitted <= slo
  std::vector<StageResult> stages; ///< finished items in completion order (completed or not)

  Duration latency() const { return finished - submitted; }
  bool ok() const { return status == RequestStatus::kCompleted; }
};

}  // namespace nexus::runtime
