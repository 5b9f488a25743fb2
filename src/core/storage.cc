#include "core/storage.h"

#include <atomic>
#include <charconv>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "host/storage_pool.h"
#include "util/crypto.h"

namespace corral::core {
namespace fs = std::filesystem;

namespace {

// disk<N> -> N; -1 for anything else.
int diskIndex(const std::string& name) {
  if (name.size() < 5 || name.compare(0, 4, "disk") != 0) return -1;
  int n = -1;
  auto [p, ec] = std::from_chars(name.data() + 4, name.data() + name.size(), n);
  if (ec != std::errc() || p != name.data() + name.size()) return -1;
  return n;
}

std::optional<host::Encryption> encryptionOf(const std::optional<host::SecretFile>& f) {
  if (!f) return std::nullopt;
  return host::Encryption{f->path().string()};
}

}  // namespace

Storage::Storage(store::Store& store, const host::StateDir& dir, StorageConfig cfg)
    : store_(store), dir_(dir), cfg_(std::move(cfg)), qemuImg_(cfg_.qemuImg), library_(dir, qemuImg_) {}

Result<void> Storage::open() {
  bool haveDefault = false;
  for (const auto& p : cfg_.pools) haveDefault = haveDefault || p.name == "default";
  std::vector<host::PoolConfig> all = cfg_.pools;
  if (!haveDefault) all.insert(all.begin(), host::PoolConfig{.name = "default", .kind = "dir", .path = dir_.disksDir().string(), .vg = {}});
  for (const auto& pc : all) {
    if (pools_.count(pc.name) != 0)
      return Error::invalidInput("pools", pc.name, "two pools have this name");
    auto p = CORRAL_TRY(host::openPool(pc, qemuImg_));
    spdlog::info("storage pool={} kind={} {}", pc.name, pc.kind, pc.kind == "lvm" ? "vg=" + pc.vg : "path=" + pc.path);
    pools_[pc.name] = std::move(p);
  }
  if (pools_.count(cfg_.defaultPool) == 0)
    return Error::invalidInput("default_pool", cfg_.defaultPool, "no pool has this name");
  keys_ = CORRAL_TRY(host::KeyStore::open(dir_.masterKey()));
  return ok();
}

Result<host::StoragePool*> Storage::pool(const std::string& name, std::string_view field) {
  auto it = pools_.find(name.empty() ? cfg_.defaultPool : name);
  if (it == pools_.end()) {
    std::string known;
    for (const auto& [n, _] : pools_) known += (known.empty() ? "" : ", ") + n;
    return Error::invalidInput(std::string(field), name, fmt::format("no storage pool has this name (pools: {})", known));
  }
  return it->second.get();
}

std::vector<const host::StoragePool*> Storage::pools() const {
  std::vector<const host::StoragePool*> out;
  for (const auto& [_, p] : pools_) out.push_back(p.get());
  return out;
}

std::string Storage::nextDiskName(const std::vector<store::DiskRecord>& disks) {
  int next = 0;
  for (const auto& d : disks) next = std::max(next, diskIndex(d.name) + 1);
  return fmt::format("disk{}", next);
}

Result<host::SecretFile> Storage::secretFile(const std::string& passphrase) const {
  std::string nonce = CORRAL_TRY(util::randomBytes(12));
  return host::SecretFile::create(dir_.tmpDir(), "key-" + util::base64UrlEncode(nonce), passphrase);
}

Result<std::string> Storage::passphraseOf(const store::VmRecord& vm, const store::DiskRecord& d) const {
  if (!keys_) return Error::failedPrecondition("the key store is not open");
  auto p = keys_->unwrap(d.wrappedKey, wrapContext(vm, d.name));
  if (!p.ok()) return p.error().context(fmt::format("disk {} of VM {}", d.name, vm.name));
  return p;
}

Result<store::DiskRecord> Storage::addDisk(const store::VmRecord& vm, const NewDisk& d) {
  host::StoragePool* p = CORRAL_TRY(pool(d.pool, "pool"));
  std::string passphrase;
  std::optional<host::SecretFile> secret;
  store::DiskRecord rec;
  if (d.encrypt) {
    if (!keys_) return Error::failedPrecondition("the key store is not open");
    passphrase = host::KeyStore::newPassphrase();
    auto f = CORRAL_TRY(secretFile(passphrase));
    secret.emplace(std::move(f));
    rec.wrappedKey = CORRAL_TRY(keys_->wrap(passphrase, wrapContext(vm, d.name)));
  }
  host::NewVolume nv;
  nv.name = volumeName(vm.name, d.name);
  nv.sizeBytes = d.sizeBytes;
  nv.encryption = encryptionOf(secret);
  if (d.cloneOf != nullptr) {
    nv.cloneFrom = d.cloneOf->path;
    nv.cloneFromFormat = d.cloneOf->format;
    nv.cloneFromSize = d.cloneOf->virtualSize;
    // An encrypted clone cannot share unencrypted clusters with its image: it
    // is a full copy, encrypted on the way.
    nv.linked = d.linked && !d.encrypt && p->supportsLinkedClones();
    nv.progress = d.progress;
  }
  auto vol = CORRAL_TRY(p->create(nv));
  util::Rollback rb;
  rb.add([&] {
    if (auto r = p->remove(vol.name, d.encrypt); !r.ok())
      spdlog::error("vm={} disk={}: cannot remove volume {} after a failed add: {}", vm.name, d.name, vol.name,
                    r.error().message);
  });
  rec.vmId = vm.id;
  rec.name = d.name;
  rec.pool = p->name();
  rec.volume = vol.name;
  rec.path = vol.path;
  rec.format = vol.format;
  rec.sizeBytes = vol.sizeBytes;
  rec.encrypted = d.encrypt;
  if (d.cloneOf != nullptr && nv.linked) rec.backingImageId = d.cloneOf->id;
  rec.backingImage = rec.backingImageId != 0 ? d.cloneOf->name : "";
  rec.createdAt = store::nowRfc3339();
  auto inserted = CORRAL_TRY(store_.insertDisk(rec));
  rb.commit();
  spdlog::info("vm={} disk={} added pool={} size={} format={}{}{}", vm.name, d.name, rec.pool, rec.sizeBytes,
               rec.format, d.encrypt ? " encrypted" : "",
               d.cloneOf ? fmt::format(" {}-clone-of={}", nv.linked ? "linked" : "full", d.cloneOf->name) : "");
  return inserted;
}

Result<void> Storage::removeDisk(const store::DiskRecord& d) {
  host::StoragePool* p = CORRAL_TRY(pool(d.pool, "pool"));
  CORRAL_TRY(p->remove(d.volume, d.encrypted));
  CORRAL_TRY(store_.deleteDisk(d.id));
  spdlog::info("disk={} volume={} pool={} removed{}", d.name, d.volume, d.pool, d.encrypted ? " (key destroyed)" : "");
  return ok();
}

Result<store::DiskRecord> Storage::resizeOffline(const store::VmRecord& vm, const store::DiskRecord& d,
                                                 int64_t newSize) {
  host::StoragePool* p = CORRAL_TRY(pool(d.pool, "pool"));
  std::optional<host::SecretFile> secret;
  if (d.encrypted) {
    std::string passphrase = CORRAL_TRY(passphraseOf(vm, d));
    auto f = CORRAL_TRY(secretFile(passphrase));
    secret.emplace(std::move(f));
  }
  CORRAL_TRY(p->resize(d.volume, newSize, encryptionOf(secret)));
  store::DiskRecord after = d;
  after.sizeBytes = newSize;
  return store_.updateDisk(after);
}

Result<void> Storage::growBacking(const store::DiskRecord& d, int64_t newSize) {
  host::StoragePool* p = CORRAL_TRY(pool(d.pool, "pool"));
  return p->growBacking(d.volume, newSize);
}

Result<store::DiskRecord> Storage::rekey(const store::VmRecord& vm, const store::DiskRecord& d) {
  if (!d.encrypted)
    return Error::invalidInput("disk", d.name, "is not encrypted: there is no key to rotate");
  std::string oldPass = CORRAL_TRY(passphraseOf(vm, d));
  std::string newPass = host::KeyStore::newPassphrase();
  auto oldFile = CORRAL_TRY(secretFile(oldPass));
  auto newFile = CORRAL_TRY(secretFile(newPass));
  store::DiskRecord after = d;
  after.wrappedKey = CORRAL_TRY(keys_->wrap(newPass, wrapContext(vm, d.name)));
  // A raw disk that is encrypted is QEMU's "luks" format.
  const std::string format = d.format == "raw" ? "luks" : d.format;
  const host::Encryption oldKey{oldFile.path().string()}, newKey{newFile.path().string()};
  CORRAL_TRY(qemuImg_.rekey(d.path, format, oldKey, newKey));
  auto updated = store_.updateDisk(after);
  if (!updated.ok()) {
    // The image now opens only with the new passphrase: losing it would lose the
    // disk. Put the old one back into a key slot before giving up.
    auto back = qemuImg_.rekey(d.path, format, newKey, oldKey);
    if (!back.ok())
      spdlog::critical("vm={} disk={}: rekey could not be recorded nor undone: {}", vm.name, d.name,
                       back.error().message);
    return updated.error();
  }
  spdlog::info("vm={} disk={} rekeyed", vm.name, d.name);
  return updated;
}

Result<void> Storage::renameVolumes(const std::string& to, int64_t vmId, util::Rollback& rb) {
  auto disks = CORRAL_TRY(store_.listDisks(vmId));
  for (const auto& d : disks) {
    host::StoragePool* p = CORRAL_TRY(pool(d.pool, "pool"));
    std::string target = volumeName(to, d.name);
    if (d.volume == target) continue;
    auto vol = CORRAL_TRY(p->rename(d.volume, target));
    rb.add([p, vol, d] {
      if (auto r = p->rename(vol.name, d.volume); !r.ok())
        spdlog::error("disk volume {} could not be renamed back to {}: {}", vol.name, d.volume, r.error().message);
    });
    store::DiskRecord after = d;
    after.volume = vol.name;
    after.path = vol.path;
    CORRAL_TRY(store_.updateDisk(after));
    rb.add([this, d] { (void)store_.updateDisk(d); });
  }
  return ok();
}

Result<std::vector<qemu::Disk>> Storage::qemuDisks(const store::VmRecord& vm, const fs::path& runDir) {
  auto disks = CORRAL_TRY(store_.listDisks(vm.id));
  std::vector<qemu::Disk> out;
  for (const auto& d : disks) {
    host::StoragePool* p = CORRAL_TRY(pool(d.pool, "pool"));
    qemu::Disk q;
    q.id = d.name;
    q.path = d.path;
    q.format = d.format;
    q.hostDevice = p->kind() == "lvm";
    q.serial = d.name;
    if (d.encrypted) {
      std::string passphrase = CORRAL_TRY(passphraseOf(vm, d));
      auto file = CORRAL_TRY(host::writeSecretFile(runDir, d.name + ".key", passphrase));
      q.encryption = qemu::DiskEncryption{file.string()};
    }
    out.push_back(std::move(q));
  }
  return out;
}

void Storage::removeSecretFiles(const fs::path& runDir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(runDir, ec))
    if (entry.path().extension() == ".key") host::removeSecretFile(entry.path());
}

}  // namespace corral::core
