// Storage: the disks of this host's VMs, in step between the pools (volumes),
// the key store (LUKS passphrases, wrapped) and the store (disk rows).
//
// VmManager decides when (access, VM state, quotas inside the store's
// transaction); Storage does the work and guarantees that what it made is gone
// again when a step fails: no orphan volume, row or key.
//
// Volumes are named "<vm>.<disk>" (VM names are [a-z0-9-], disk names
// disk<N>), so a pool listing reads like the VM list; a VM rename renames them.
// A disk's passphrase is wrapped with the context "<vm uuid>/<disk name>": a
// wrapped key copied onto another disk's row does not open it.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/image_library.h"
#include "host/key_store.h"
#include "host/state_dir.h"
#include "host/storage_pool.h"
#include "qemu/vm_spec.h"
#include "store/store.h"
#include "util/result.h"
#include "util/rollback.h"

namespace corral::core {

// Disk quotas count GiB, each disk rounded up.
inline int64_t gibCeil(int64_t bytes) { return (bytes + (int64_t(1) << 30) - 1) >> 30; }

struct StorageConfig {
  // Pools besides "default" (a dir pool in the state dir's disks/, always there
  // unless one named "default" is configured).
  std::vector<host::PoolConfig> pools;
  std::string defaultPool = "default";
  std::string qemuImg = "qemu-img";
};

// One disk a request asks for, as given ("4G", "1073741824"); parsed here.
struct DiskRequest {
  std::string size;  // "" only for a clone: the image's size
  std::string pool;  // "": the VM's pool or the default
  std::optional<bool> encrypt;
};

// A disk about to be made, sizes resolved.
struct NewDisk {
  std::string name;  // disk<N>
  int64_t sizeBytes = 0;
  std::string pool;
  bool encrypt = false;
  const store::ImageRecord* cloneOf = nullptr;  // a disk image, or null for a blank disk
  bool linked = true;                           // with cloneOf: overlay (dir pools) or full copy
  host::ProgressFn progress;                    // full copies
};

class Storage {
 public:
  Storage(store::Store& store, const host::StateDir& dir, StorageConfig cfg);

  // Opens every pool and the key store; at daemon start.
  Result<void> open();

  const std::string& defaultPool() const { return cfg_.defaultPool; }
  // InvalidInput naming field when no pool has that name.
  Result<host::StoragePool*> pool(const std::string& name, std::string_view field);
  std::vector<const host::StoragePool*> pools() const;
  host::ImageLibrary& library() { return library_; }

  // Makes the volume (cloned, encrypted as asked) and its row. On failure
  // neither is left.
  Result<store::DiskRecord> addDisk(const store::VmRecord& vm, const NewDisk& d);
  // Removes the volume (crypto-erasing an encrypted one: the LV's header is
  // zeroed, the wrapped key goes with the row) and then the row.
  Result<void> removeDisk(const store::DiskRecord& d);
  // Grows a disk of a stopped VM.
  Result<store::DiskRecord> resizeOffline(const store::VmRecord& vm, const store::DiskRecord& d, int64_t newSize);
  // Before a running guest's block_resize: the pool's backing (an LV) grows.
  Result<void> growBacking(const store::DiskRecord& d, int64_t newSize);
  // A new passphrase in a fresh LUKS key slot, the old one retired; the data
  // is not re-encrypted. Stopped VMs only (the caller checks).
  Result<store::DiskRecord> rekey(const store::VmRecord& vm, const store::DiskRecord& d);
  // Renames every volume of the VM with vmId to the names of VM `to` and
  // updates the rows; the undo of each step is added to rb.
  Result<void> renameVolumes(const std::string& to, int64_t vmId, util::Rollback& rb);

  // For a start: the VM's disks as QEMU opens them. The passphrase of each
  // encrypted disk is written to "<disk>.key" (0600) in runDir; call
  // removeSecretFiles once QEMU has read them (it has by the time launch returns).
  Result<std::vector<qemu::Disk>> qemuDisks(const store::VmRecord& vm, const std::filesystem::path& runDir);
  static void removeSecretFiles(const std::filesystem::path& runDir);

  // The next free disk name of a VM: disk0, disk1, ...
  static std::string nextDiskName(const std::vector<store::DiskRecord>& disks);
  static std::string volumeName(const std::string& vm, const std::string& disk) { return vm + "." + disk; }
  // Every VM's one CD drive.
  static constexpr const char* kCdromId = "cd0";

 private:
  std::string wrapContext(const store::VmRecord& vm, const std::string& disk) const { return vm.uuid + "/" + disk; }
  Result<std::string> passphraseOf(const store::VmRecord& vm, const store::DiskRecord& d) const;
  Result<host::SecretFile> secretFile(const std::string& passphrase) const;

  store::Store& store_;
  const host::StateDir& dir_;
  StorageConfig cfg_;
  host::QemuImg qemuImg_;
  host::ImageLibrary library_;
  std::optional<host::KeyStore> keys_;
  std::map<std::string, std::unique_ptr<host::StoragePool>> pools_;
};

}  // namespace corral::core
