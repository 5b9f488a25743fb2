// VmManager's disks and CD drive: the plan of a new VM's disks, disk add,
// resize (online or offline), remove and rekey, CD insert and eject. The rules
// (access, state, quotas) are here; the volumes, keys and rows are Storage's.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/vm_entry.h"
#include "core/vm_state.h"
#include "qemu/command_line.h"
#include "qemu/monitor.h"
#include "util/names.h"

namespace corral::core {

namespace {

constexpr size_t kMaxDisks = 16;

bool hasGuest(const store::VmRecord& vm) {
  auto s = parseVmState(vm.state).value_or(VmState::Stopped);
  return s == VmState::Running || s == VmState::Paused;
}

}  // namespace

Result<std::vector<NewDisk>> VmManager::planDisks(const store::ImageRecord& image, const CreateVmRequest& req) {
  if (req.disks.size() > kMaxDisks)
    return Error::invalidInput("disks", std::to_string(req.disks.size()), fmt::format("at most {} disks", kMaxDisks));
  bool clone = image.kind == "disk";
  if (req.fullClone && !clone)
    return Error::invalidInput("full_clone", "true", fmt::format("image {} is a {} image: there is nothing to clone",
                                                                 image.name, image.kind));
  if (!req.pool.empty()) CORRAL_TRY(storage_.pool(req.pool, "pool"));
  std::vector<DiskRequest> reqs = req.disks;
  if (clone && reqs.empty()) reqs.push_back({});
  std::vector<NewDisk> plan;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const DiskRequest& r = reqs[i];
    std::string field = fmt::format("disks[{}]", i);
    NewDisk d;
    d.name = fmt::format("disk{}", i);
    d.pool = r.pool.empty() ? req.pool : r.pool;
    if (!r.pool.empty()) CORRAL_TRY(storage_.pool(r.pool, field + ".pool"));
    d.encrypt = r.encrypt.value_or(req.encrypt);
    bool isClone = clone && i == 0;
    if (r.size.empty() && !isClone) return Error::invalidInput(field, "", "a size is needed (e.g. 4G)");
    d.sizeBytes = r.size.empty() ? image.virtualSize : CORRAL_TRY(host::parseSize(field, r.size));
    if (isClone) {
      if (d.sizeBytes < image.virtualSize)
        return Error::invalidInput(field, r.size,
                                   fmt::format("the clone of {} cannot be smaller than the image ({})", image.name,
                                               host::formatSize(image.virtualSize)));
      d.cloneOf = &image;
      d.linked = !req.fullClone;
    }
    plan.push_back(std::move(d));
  }
  return plan;
}

Result<void> VmManager::createDisks(const store::VmRecord& vm, const std::vector<NewDisk>& plan, util::Rollback& rb) {
  for (const NewDisk& d : plan) {
    auto made = storage_.addDisk(vm, d);
    if (!made.ok()) return made.error().context(fmt::format("create VM {}: disk {}", vm.name, d.name));
    rb.add([this, rec = *made, name = vm.name] {
      if (auto r = storage_.removeDisk(rec); !r.ok())
        spdlog::error("vm={}: disk {} left after a failed create: {}", name, rec.name, r.error().message);
    });
  }
  return ok();
}

Result<store::DiskRecord> VmManager::findDisk(const store::VmRecord& vm, const std::string& disk) {
  auto disks = CORRAL_TRY(store_.listDisks(vm.id));
  for (auto& d : disks)
    if (d.name == disk) return std::move(d);
  return Error::notFound(fmt::format("VM {} has no disk {}", vm.name, disk));
}

Result<std::vector<store::DiskRecord>> VmManager::disks(const Principal& who, const std::string& vm) {
  auto rec = CORRAL_TRY(visible(who, vm));
  return store_.listDisks(rec.id);
}

Result<store::DiskRecord> VmManager::addDisk(const Principal& who, const std::string& name, const DiskRequest& req) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (!isStopped(vm)) return needsStopped(vm, "adding a disk");
  auto existing = CORRAL_TRY(store_.listDisks(vm.id));
  if (existing.size() >= kMaxDisks)
    return Error::invalidInput("disk", name, fmt::format("VM {} has {} disks, the most it may have", name, kMaxDisks));
  if (req.size.empty()) return Error::invalidInput("size", "", "a size is needed (e.g. 4G)");
  NewDisk d;
  d.name = Storage::nextDiskName(existing);
  d.sizeBytes = CORRAL_TRY(host::parseSize("size", req.size));
  d.pool = req.pool;
  CORRAL_TRY(storage_.pool(d.pool, "pool"));
  d.encrypt = req.encrypt.value_or(false);

  store::VmRecord grown = vm;
  grown.diskGib += gibCeil(d.sizeBytes);
  auto reserved = CORRAL_TRY(store_.updateVm(grown, 0, quota_.check(&vm, grown)));
  auto made = storage_.addDisk(reserved, d);
  if (!made.ok()) {
    store::VmRecord back = reserved;
    back.diskGib = vm.diskGib;
    (void)store_.updateVm(back, 0);
    return made.error();
  }
  spdlog::info("vm={} disk={} added size={} by={}", name, d.name, d.sizeBytes, who.login);
  publish("vm.modified", CORRAL_TRY(record(name)));
  return made;
}

Result<store::DiskRecord> VmManager::resizeDisk(const Principal& who, const std::string& name, const std::string& disk,
                                                const std::string& size) {
  CORRAL_TRY(visible(who, name));
  int64_t newSize = CORRAL_TRY(host::parseSize("size", size));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto d = CORRAL_TRY(findDisk(vm, disk));
  if (newSize < d.sizeBytes)
    return Error::invalidInput("size", size,
                               fmt::format("shrinking is refused: it would cut off the end of what the guest wrote "
                                           "({} is smaller than the disk's {})",
                                           host::formatSize(newSize), host::formatSize(d.sizeBytes)));
  if (newSize == d.sizeBytes) return d;
  bool online = hasGuest(vm) && e->machine;
  if (!online && !isStopped(vm)) return needsStopped(vm, "resizing a disk");

  store::VmRecord grown = vm;
  grown.diskGib += gibCeil(newSize) - gibCeil(d.sizeBytes);
  auto reserved = CORRAL_TRY(store_.updateVm(grown, 0, quota_.check(&vm, grown)));
  auto undoQuota = [&] {
    store::VmRecord back = reserved;
    back.diskGib = vm.diskGib;
    (void)store_.updateVm(back, 0);
  };
  Result<store::DiskRecord> resized = Error::internal("not resized");
  if (online) {
    // The backing (an LV) grows first, then QEMU grows the image and tells the guest.
    auto grownBacking = storage_.growBacking(d, newSize);
    if (!grownBacking.ok()) {
      undoQuota();
      return grownBacking.error();
    }
    qemu::Disk q;
    q.id = d.name;
    if (auto r = e->machine->monitor().blockResize(qemu::diskNodeName(q), newSize); !r.ok()) {
      undoQuota();
      return Error::unavailable(fmt::format("size: QEMU refused to grow disk {}: {}", disk, r.error().message));
    }
    store::DiskRecord after = d;
    after.sizeBytes = newSize;
    resized = store_.updateDisk(after);
  } else {
    resized = storage_.resizeOffline(vm, d, newSize);
  }
  if (!resized.ok()) {
    undoQuota();
    return resized;
  }
  spdlog::info("vm={} disk={} resized {} -> {} {} by={}", name, disk, d.sizeBytes, newSize,
               online ? "online" : "offline", who.login);
  publish("vm.modified", CORRAL_TRY(record(name)));
  return resized;
}

template <class F>
auto VmManager::onStoppedVmDisk(const Principal& who, const std::string& name, const std::string& disk,
                                std::string_view stoppedFor, F f) -> decltype(f(store::VmRecord{}, store::DiskRecord{})) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto d = CORRAL_TRY(findDisk(vm, disk));
  if (!isStopped(vm)) return needsStopped(vm, stoppedFor);
  return f(std::move(vm), std::move(d));
}

Result<void> VmManager::removeDisk(const Principal& who, const std::string& name, const std::string& disk) {
  return onStoppedVmDisk(who, name, disk, "removing a disk",
                         [&](store::VmRecord vm, store::DiskRecord d) -> Result<void> {
                           CORRAL_TRY(storage_.removeDisk(d));
                           store::VmRecord shrunk = vm;
                           shrunk.diskGib = std::max<int64_t>(0, vm.diskGib - gibCeil(d.sizeBytes));
                           auto updated = CORRAL_TRY(store_.updateVm(shrunk, 0));
                           spdlog::info("vm={} disk={} removed by={}", name, disk, who.login);
                           publish("vm.modified", updated);
                           return ok();
                         });
}

Result<store::DiskRecord> VmManager::rekeyDisk(const Principal& who, const std::string& name, const std::string& disk) {
  return onStoppedVmDisk(who, name, disk, "rekeying a disk",
                         [&](store::VmRecord vm, store::DiskRecord d) -> Result<store::DiskRecord> {
                           auto r = CORRAL_TRY(storage_.rekey(vm, d));
                           spdlog::info("vm={} disk={} rekeyed by={}", name, disk, who.login);
                           return r;
                         });
}

Result<store::VmRecord> VmManager::insertCdrom(const Principal& who, const std::string& name, const std::string& image) {
  CORRAL_TRY(visible(who, name));
  auto iso = CORRAL_TRY(usableImage(who, image, "iso", "image"));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (hasGuest(vm) && e->machine) {
    qemu::Cdrom cd;
    cd.id = Storage::kCdromId;
    if (auto r = e->machine->monitor().changeMedium(qemu::cdromDeviceId(cd), iso.path); !r.ok())
      return Error::unavailable(fmt::format("image: QEMU refused the CD: {}", r.error().message));
  }
  store::VmRecord after = vm;
  after.cdrom = iso.name;
  auto updated = CORRAL_TRY(store_.updateVm(after, 0));
  spdlog::info("vm={} cdrom={} inserted by={}", name, iso.name, who.login);
  publish("vm.modified", updated);
  return updated;
}

Result<store::VmRecord> VmManager::ejectCdrom(const Principal& who, const std::string& name) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (hasGuest(vm) && e->machine) {
    qemu::Cdrom cd;
    cd.id = Storage::kCdromId;
    if (auto r = e->machine->monitor().ejectMedium(qemu::cdromDeviceId(cd)); !r.ok())
      return Error::unavailable(fmt::format("QEMU refused to eject the CD: {}", r.error().message));
  }
  store::VmRecord after = vm;
  after.cdrom.clear();
  after.bootCdrom = false;
  auto updated = CORRAL_TRY(store_.updateVm(after, 0));
  spdlog::info("vm={} cdrom ejected by={}", name, who.login);
  publish("vm.modified", updated);
  return updated;
}

}  // namespace corral::core
