#include "core/validate.h"

#include <algorithm>

#include <fmt/format.h>

#include "util/names.h"

namespace corral::core {

Result<ValidCreate> validateCreate(const CreateVmRequest& req, const ManagerConfig& cfg,
                                   const host::HostInfo& host) {
  ValidCreate v;
  CORRAL_TRY(util::validateVmName("name", req.name));
  v.name = req.name;
  if (req.image.empty()) return Error::invalidInput("image", req.image, "is required");
  CORRAL_TRY(util::validateImageName("image", req.image));
  v.image = req.image;

  if (!req.memoryMib) return Error::invalidInput("memory", "", "is required (MiB)");
  v.memoryMib = CORRAL_TRY(validateMemory(*req.memoryMib, cfg, host));
  v.vcpus = CORRAL_TRY(validateVcpus(req.vcpus.value_or(1), cfg, host));
  v.onCrash = CORRAL_TRY(validateOnCrash(req.onCrash));
  CORRAL_TRY(validateDescription(req.description));
  return v;
}

Result<uint64_t> validateMemory(int64_t mem, const ManagerConfig& cfg, const host::HostInfo& host) {
  uint64_t maxMemory = cfg.maxMemoryMib ? cfg.maxMemoryMib : host.memoryTotalMib;
  if (mem < static_cast<int64_t>(cfg.minMemoryMib) || static_cast<uint64_t>(mem) > maxMemory)
    return Error::invalidInput("memory", std::to_string(mem),
                               fmt::format("{} MiB is out of range: {} to {} MiB", mem, cfg.minMemoryMib, maxMemory));
  return static_cast<uint64_t>(mem);
}

Result<unsigned> validateVcpus(int64_t vcpus, const ManagerConfig& cfg, const host::HostInfo& host) {
  unsigned maxVcpus = cfg.maxVcpus ? cfg.maxVcpus : std::max(1u, host.cpus);
  if (vcpus < 1 || vcpus > static_cast<int64_t>(maxVcpus))
    return Error::invalidInput("vcpus", std::to_string(vcpus), fmt::format("must be 1 to {}", maxVcpus));
  return static_cast<unsigned>(vcpus);
}

Result<OnCrash> validateOnCrash(const std::string& onCrash) {
  auto policy = parseOnCrash(onCrash);
  if (!policy) return Error::invalidInput("on_crash", onCrash, "must be restart, stop or preserve");
  return *policy;
}

Result<void> validateDescription(const std::string& description) {
  if (description.size() > 1000)
    return Error::invalidInput("description", description.substr(0, 64), "longer than 1000 bytes");
  if (std::any_of(description.begin(), description.end(),
                  [](unsigned char c) { return (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f; }))
    return Error::invalidInput("description", description, "control characters are not allowed");
  return ok();
}

Result<void> validateAppend(const std::string& append) {
  if (append.size() > 4096) return Error::invalidInput("append", append.substr(0, 64), "longer than 4096 bytes");
  if (std::any_of(append.begin(), append.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }))
    return Error::invalidInput("append", append, "control characters are not allowed");
  return ok();
}

}  // namespace corral::core
