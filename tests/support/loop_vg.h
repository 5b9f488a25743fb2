// A throwaway LVM volume group for tests: a sparse file on a loop device made a
// PV and a VG with a unique name, removed with everything in it when the
// object goes (also when the test failed half-way).
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "util/command.h"

namespace corral::testing {

class LoopVg {
 public:
  // lvmConfig: the --config every lvm command gets (the pool's own, so the test
  // runs LVM the way corral does). The VG, or null with whyNot saying why one
  // cannot be made here (the caller then skips).
  static std::unique_ptr<LoopVg> make(const std::string& lvmConfig, std::string& whyNot, int64_t sizeMiB = 256);
  ~LoopVg();
  LoopVg(const LoopVg&) = delete;
  LoopVg& operator=(const LoopVg&) = delete;
  const std::string& name() const { return name_; }

  // `lvm SUB --config C ARGS...` with a timeout.
  Result<util::CommandResult> lvm(const std::string& sub, std::vector<std::string> args) const;

 private:
  LoopVg() = default;
  std::string config_, name_, loop_;
  std::filesystem::path file_;
  bool pv_ = false, vg_ = false;
};

// Whether this kernel has device-mapper (needed to activate LVs): containers
// often have LVM's tools but not /dev/mapper/control.
bool deviceMapperAvailable();

}  // namespace corral::testing
