// Storage pools: where VM disks live. Two kinds:
//   - "dir": a directory of image files (qcow2 by default, raw when asked),
//     under the state dir unless configured elsewhere. Linked clones (qcow2
//     overlays backed by a library image) are made here.
//   - "lvm": an LVM volume group; each disk is a logical volume holding raw
//     data (or raw LUKS when encrypted), made and changed with lvcreate,
//     lvresize, lvrename and lvremove through util::Command. A clone onto LVM
//     is always a full copy (qemu-img convert into the LV).
//
// Volume names are made by core/ from validated names ("<vm>.<disk>", VM names
// are [a-z0-9-], disk names disk<N>); a pool still refuses any name outside
// [a-z0-9.-] or starting with '.' or '-'. Every method is synchronous and may
// take long (a full copy): call it from a worker, never the io thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "host/qemu_img.h"
#include "util/result.h"

namespace corral::host {

struct PoolConfig {
  std::string name;          // [a-z0-9-], as VMs and the API name it
  std::string kind = "dir";  // dir | lvm
  std::string path;          // dir: the directory (created 0700 when absent)
  std::string vg;            // lvm: the volume group
};

struct Volume {
  std::string name;    // inside the pool
  std::string path;    // what QEMU opens
  std::string format;  // qcow2 | raw
  int64_t sizeBytes = 0;  // guest-visible
};

struct NewVolume {
  std::string name;
  int64_t sizeBytes = 0;  // > 0; for a clone: 0 keeps the image's size, more grows it
  std::optional<Encryption> encryption;
  // Clone source (a library image): linked (qcow2 overlay; dir pools only) or a
  // full copy. Empty: a blank volume.
  std::string cloneFrom;        // the image's path
  std::string cloneFromFormat;  // qcow2 | raw
  int64_t cloneFromSize = 0;    // the image's virtual size
  bool linked = true;
  ProgressFn progress;  // full copies only
};

class StoragePool {
 public:
  virtual ~StoragePool() = default;
  virtual const PoolConfig& config() const = 0;
  const std::string& name() const { return config().name; }
  const std::string& kind() const { return config().kind; }
  // Whether linked clones are possible here (dir: yes; lvm: no, clones are full copies).
  virtual bool supportsLinkedClones() const = 0;

  // Makes the volume. On any failure nothing is left behind. AlreadyExists when
  // a volume of that name exists (a leftover is never silently reused).
  virtual Result<Volume> create(const NewVolume& v) = 0;
  // Grows the volume (offline: its file or LV and the image inside). Shrinking is
  // InvalidInput (field "size") saying why. With a running guest the caller uses
  // QMP block_resize instead and calls growBacking() first (LVM: the LV must
  // grow before the guest sees more; dir: nothing to do).
  virtual Result<void> resize(const std::string& volume, int64_t newSize,
                              const std::optional<Encryption>& enc) = 0;
  virtual Result<void> growBacking(const std::string& volume, int64_t newSize) = 0;
  virtual Result<Volume> rename(const std::string& from, const std::string& to) = 0;
  // Removes the volume; an absent one is not an error. crypto: the volume held
  // LUKS data whose key is being destroyed; an LV's first MiBs (the LUKS header)
  // are overwritten with zeros before lvremove, so its key slots are gone even
  // from the freed extents.
  virtual Result<void> remove(const std::string& volume, bool crypto = false) = 0;
  virtual Result<bool> exists(const std::string& volume) = 0;
  virtual Result<std::vector<std::string>> list() = 0;  // volume names
  virtual Result<int64_t> freeBytes() = 0;
};

// Opens a pool from its config: a dir pool makes its directory; an lvm pool
// checks that the volume group exists (`vgs`). InvalidInput naming the config
// key on a bad config.
Result<std::unique_ptr<StoragePool>> openPool(const PoolConfig& cfg, const QemuImg& qemuImg);

}  // namespace corral::host
