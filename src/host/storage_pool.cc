// openPool() and what the pool kinds share; see storage_pool.h.
#include "host/storage_pool.h"

#include <algorithm>

#include "host/storage_pool_internal.h"

namespace corral::host {

namespace pool_detail {

Result<void> checkVolumeName(std::string_view field, const std::string& name) {
  auto bad = [&](std::string_view why) { return Error::invalidInput(std::string(field), name, why); };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > kMaxVolumeName) return bad(fmt::format("must be at most {} characters", kMaxVolumeName));
  if (name.front() == '.' || name.front() == '-') return bad("must not start with '.' or '-'");
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-'))
      return bad("may only contain a-z, 0-9, '.' and '-'");
  return ok();
}

Result<int64_t> newVolumeSize(const NewVolume& v) {
  const std::string given = std::to_string(v.sizeBytes);
  if (v.sizeBytes < 0) return Error::invalidInput("size", given, "must be positive");
  if (v.cloneFrom.empty()) {
    if (v.sizeBytes == 0) return Error::invalidInput("size", given, "must be positive");
    return v.sizeBytes;
  }
  if (v.cloneFromFormat != "qcow2" && v.cloneFromFormat != "raw")
    return Error::invalidInput("format", v.cloneFromFormat, "the image to clone must be qcow2 or raw");
  if (v.cloneFromSize <= 0)
    return Error::invalidInput("size", std::to_string(v.cloneFromSize), "the image's size must be known");
  if (v.sizeBytes > 0 && v.sizeBytes < v.cloneFromSize)
    return Error::invalidInput("size", given,
                               fmt::format("{} is smaller than the image ({}); a disk can only grow",
                                           formatSize(v.sizeBytes), formatSize(v.cloneFromSize)));
  return std::max(v.sizeBytes, v.cloneFromSize);
}

}  // namespace pool_detail

Result<std::unique_ptr<StoragePool>> openPool(const PoolConfig& cfg, const QemuImg& qemuImg) {
  if (cfg.name.empty()) return Error::invalidInput("name", cfg.name, "a storage pool needs a name");
  for (char c : cfg.name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
      return Error::invalidInput("name", cfg.name, "a pool name may only contain a-z, 0-9 and '-'");
  if (cfg.kind == "dir") return pool_detail::openDirPool(cfg, qemuImg);
  if (cfg.kind == "lvm") return pool_detail::openLvmPool(cfg, qemuImg);
  return Error::invalidInput("kind", cfg.kind, fmt::format("pool {}: kind must be \"dir\" or \"lvm\"", cfg.name));
}

}  // namespace corral::host
