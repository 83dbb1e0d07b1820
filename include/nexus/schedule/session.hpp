#pragma once
// Session: a model served under one latency SLO at an observed request rate, S = <M, L, R>
// (paper §4.1/§6.1). All requests for one model with one SLO form one session. Stages of a
// query become sessions too, with id "<query>/<stage>", the stage budget as SLO and the stage's
// rate (query rate × product of fan-outs on the path).

#include <chrono>
#include <string>

namespace nexus {

struct Session {
  std::string id;                 ///< unique name, e.g. "traffic/ssd" or "game-resnet"
  std::string model;              ///< a model name with a BatchProfile in the ProfileMap
  std::chrono::microseconds slo{0};  ///< end-to-end latency bound of one request (> 0)
  double rate_rps = 0.0;          ///< request rate, req/s (> 0)
  /// Admission order when the load does not fit the devices (higher is admitted first;
  /// admit_and_pack in squishy_bin_packer.hpp).
  int priority = 0;
  /// Sessions of one group (e.g. the stages of one query) are admitted together, at one share
  /// of their rates; empty = the session alone.
  std::string group;
};

}  // namespace nexus
