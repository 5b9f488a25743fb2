// Pieces shared by the storage pool kinds (dir_pool.cc, lvm_pool.cc) and their
// tests; not for use outside host/. openPool() (storage_pool.h) is the way in.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "host/storage_pool.h"

namespace corral::host::pool_detail {

constexpr int64_t kMiB = int64_t(1) << 20;
// Longest volume name: LVM allows 127 characters in an LV name, "corral-" included.
constexpr size_t kMaxVolumeName = 100;

// [a-z0-9.-], not starting with '.' or '-', at most kMaxVolumeName characters.
Result<void> checkVolumeName(std::string_view field, const std::string& name);

// The guest-visible size a new volume gets: v.sizeBytes for a blank one (> 0);
// for a clone the image's size, or more when v.sizeBytes asks for more.
// InvalidInput (field "size") for a clone smaller than its image.
Result<int64_t> newVolumeSize(const NewVolume& v);

// Volume names of a pool kind are opened through these.
Result<std::unique_ptr<StoragePool>> openDirPool(const PoolConfig& cfg, const QemuImg& qemuImg);
// devDir: where LVM puts /dev/VG/LV ("/dev"; tests point it elsewhere).
Result<std::unique_ptr<StoragePool>> openLvmPool(const PoolConfig& cfg, const QemuImg& qemuImg,
                                                 const std::string& devDir = "/dev");

// The --config every LVM command of an lvm pool carries (see lvm_pool.cc).
extern const char* const kLvmConfig;
// Bytes an encrypted LV holds beyond its guest-visible size, for the LUKS header.
constexpr int64_t kLuksReserve = 16 * kMiB;

}  // namespace corral::host::pool_detail
