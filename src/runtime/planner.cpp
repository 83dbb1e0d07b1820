#include "nexus/runtime/planner.hpp"

namespace nexus::runtime {

PlannerFn make_squishy_planner(PackerOptions options) {
  return [options](const PlanRequest& req) {
    SquishyBinPacker packer(options);
    return packer.pack(req.sessions, *req.profiles);
  };
}

}  // namespace nexus::runtime
