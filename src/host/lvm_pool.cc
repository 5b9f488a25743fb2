// An "lvm" storage pool: each volume is a logical volume VG/corral-NAME
// (/dev/VG/corral-NAME), holding raw data, or raw LUKS (QEMU's "luks" format,
// made with qemu-img create -f luks onto the LV) when encrypted. Only LVs named
// corral-* are ever looked at or changed, so the VG can hold others.
//
// Every LVM command runs as `lvm SUBCOMMAND --config "<kLvmConfig>" ...` with a
// timeout. The config turns off udev synchronisation and udev rules (LVM makes
// the /dev/VG/LV nodes itself) and scans /dev instead of asking udev for the
// device list: inside a container udev events never arrive, and an LVM that
// waits for them hangs on every activation. With udev running on a host, LVM
// still makes the nodes itself, which its rules allow for.
//
// Sizes: an LV is a whole number of extents (4 MiB by default), so a volume can
// be up to an extent larger than asked; the guest sees it all. An encrypted LV
// gets kLuksReserve (16 MiB) more than its size for the LUKS header (QEMU puts
// the payload at about 2 MiB with its default aes-256-xts and 8 key slots; the
// rest is slack for other ciphers). QEMU's LUKS1 header records no payload
// length: the guest sees the LV less the header, so growing an encrypted volume
// is growing its LV (no qemu-img resize, which would see a "shrink" whenever the
// extent rounding gave more than asked).
//
// Stale data: LVM hands out extents with whatever an earlier LV left in them.
// Everything a guest of a plain (unencrypted) volume could read is therefore
// zeroed before it gets the volume: all of a blank LV, the part of a clone past
// the copied image, and the new part of a grown LV. An encrypted volume reads
// stale extents as noise through its own key, so its new LVs are not zeroed.
// Removing a LUKS LV (or one the caller says held LUKS data) first zeroes its
// first 16 MiB, the header with every key slot, so the freed extents keep no
// way back to the data.
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "host/storage_pool_internal.h"
#include "util/command.h"
#include "util/rollback.h"
#include "util/unique_fd.h"

namespace corral::host::pool_detail {

const char* const kLvmConfig =
    "activation { udev_sync = 0 udev_rules = 0 } devices { obtain_device_list_from_udev = 0 }";

namespace {

using util::Command;
using Json = nlohmann::json;

constexpr auto kLvmTimeout = std::chrono::minutes(2);
constexpr std::string_view kLvPrefix = "corral-";
constexpr const char* kLuksTag = "corral-luks";  // on every LV made encrypted

int64_t roundUpMiB(int64_t n) { return (n + kMiB - 1) / kMiB * kMiB; }

std::string lvmBinary() {
  for (const char* p : {"/usr/sbin/lvm", "/sbin/lvm"})
    if (::access(p, X_OK) == 0) return p;
  return "lvm";
}

Result<void> checkVgName(const std::string& pool, const std::string& vg) {
  auto bad = [&](std::string_view why) {
    return Error::invalidInput("vg", vg, fmt::format("pool {}: volume group {}", pool, why));
  };
  if (vg.empty()) return bad("is not set");
  if (vg.size() > 127 || vg == "." || vg == ".." || vg.front() == '-') return bad("is not a valid name");
  for (char c : vg)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          std::string_view("+_.-").find(c) != std::string_view::npos))
      return bad("may only contain A-Z, a-z, 0-9, '+', '_', '.' and '-'");
  return ok();
}

Result<int64_t> parseBytes(std::string_view text, std::string_view what) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && std::string_view(" \t\r\n").find(text.back()) != std::string_view::npos)
    text.remove_suffix(1);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 0)
    return Error::internal(fmt::format("unexpected {} from LVM: \"{}\"", what, text));
  return v;
}

Error sysError(std::string_view what, const std::string& path, int err) {
  return Error::internal(fmt::format("{} {}: {}", what, path, std::strerror(err)));
}

// Writes zeros over [from, to) of the block device (or file) at path.
Result<void> zeroRange(const std::string& path, int64_t from, int64_t to) {
  if (to <= from) return ok();
  util::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sysError("open", path, errno);
  // BLKZEROOUT lets the device do it (WRITE ZEROES, or the kernel writes them);
  // it needs 512-byte alignment, and a regular file does not have it.
  uint64_t range[2] = {uint64_t(from), uint64_t(to - from)};
  if (from % 512 != 0 || (to - from) % 512 != 0 || ::ioctl(fd.get(), BLKZEROOUT, range) != 0) {
    const std::string zeros(size_t(kMiB), '\0');
    for (int64_t off = from; off < to;) {
      size_t n = size_t(std::min<int64_t>(to - off, kMiB));
      ssize_t w = ::pwrite(fd.get(), zeros.data(), n, off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return sysError("write zeros to", path, w < 0 ? errno : EIO);
      off += w;
    }
  }
  if (::fdatasync(fd.get()) != 0) return sysError("sync", path, errno);
  return ok();
}

template <class T>
Result<T> withContext(Result<T> r, std::string_view what) {
  if (!r.ok()) return std::move(r).error().context(what);
  return r;
}

struct Lv {
  std::string volume;  // without the prefix
  int64_t sizeBytes = 0;
  bool luks = false;
};

class LvmPool final : public StoragePool {
 public:
  LvmPool(PoolConfig cfg, QemuImg qemuImg, std::string devDir)
      : cfg_(std::move(cfg)), qemuImg_(std::move(qemuImg)), devDir_(std::move(devDir)), lvm_(lvmBinary()) {}

  const PoolConfig& config() const override { return cfg_; }
  bool supportsLinkedClones() const override { return false; }

  Result<void> checkVg() {
    auto r = run("vgs", {"--noheadings", "-o", "vg_name", cfg_.vg});
    if (!r.ok())
      return Error::invalidInput("vg", cfg_.vg,
                                 fmt::format("pool {}: volume group {} is not usable: {}", cfg_.name, cfg_.vg,
                                             r.error().message));
    return ok();
  }

  // A clone is always a full copy here, linked or not.
  Result<Volume> create(const NewVolume& v) override {
    CORRAL_TRY(checkVolumeName("name", v.name));
    const int64_t size = CORRAL_TRY(newVolumeSize(v));
    if (CORRAL_TRY(find(v.name)))
      return Error::alreadyExists("name", v.name, fmt::format("volume {} already exists in pool {}", v.name, cfg_.name));
    const bool encrypted = v.encryption.has_value();
    const int64_t lvBytes = roundUpMiB(size + (encrypted ? kLuksReserve : 0));

    std::vector<std::string> args = {"--yes", "-n", lvName(v.name), "-L", fmt::format("{}b", lvBytes),
                                     "--wipesignatures", "y", "--zero", "y"};
    if (encrypted) args.insert(args.end(), {"--addtag", kLuksTag});
    args.push_back(cfg_.vg);
    CORRAL_TRY(withContext(run("lvcreate", args), fmt::format("pool {}: create {}", cfg_.name, v.name)));
    util::Rollback rb;
    rb.add([this, name = v.name, encrypted] {
      if (auto r = remove(name, encrypted); !r.ok())
        spdlog::error("pool {}: could not remove {} after a failed create: {}", cfg_.name, name, r.error().describe());
    });
    auto made = fill(v, size);
    if (!made.ok()) return std::move(made).error().context(fmt::format("pool {}: create {}", cfg_.name, v.name));
    auto lv = CORRAL_TRY(find(v.name));
    if (!lv) return Error::internal(fmt::format("pool {}: {} vanished while being made", cfg_.name, v.name));
    Volume vol = CORRAL_TRY(describe(*lv));
    rb.commit();
    return vol;
  }

  // enc is not needed: the LV's tag says whether it holds LUKS (see the file comment).
  Result<void> resize(const std::string& volume, int64_t newSize, const std::optional<Encryption>&) override {
    return growBacking(volume, newSize);
  }

  Result<void> growBacking(const std::string& volume, int64_t newSize) override {
    CORRAL_TRY(checkVolumeName("name", volume));
    auto lv = CORRAL_TRY(find(volume));
    if (!lv) return Error::notFound(fmt::format("volume {} not found in pool {}", volume, cfg_.name));
    const int64_t current = CORRAL_TRY(describe(*lv)).sizeBytes;
    if (newSize < current)
      return Error::invalidInput("size", std::to_string(newSize),
                                 fmt::format("{} is smaller than the disk ({}); a disk can only grow",
                                             formatSize(newSize), formatSize(current)));
    const int64_t target = roundUpMiB(newSize + (lv->luks ? kLuksReserve : 0));
    if (target <= lv->sizeBytes) return ok();  // the extents already hold it
    CORRAL_TRY(withContext(run("lvresize", {"--yes", "-L", fmt::format("{}b", target), lvRef(volume)}),
                           fmt::format("pool {}: resize {}", cfg_.name, volume)));
    auto grown = CORRAL_TRY(find(volume));
    if (!grown) return Error::internal(fmt::format("pool {}: {} vanished while growing", cfg_.name, volume));
    // The new extents may hold an earlier LV's data; a LUKS volume reads them as noise anyway.
    if (!lv->luks) CORRAL_TRY(zeroRange(lvPath(volume), lv->sizeBytes, grown->sizeBytes));
    return ok();
  }

  Result<Volume> rename(const std::string& from, const std::string& to) override {
    CORRAL_TRY(checkVolumeName("name", from));
    CORRAL_TRY(checkVolumeName("name", to));
    if (!CORRAL_TRY(find(from))) return Error::notFound(fmt::format("volume {} not found in pool {}", from, cfg_.name));
    if (CORRAL_TRY(find(to)))
      return Error::alreadyExists("name", to, fmt::format("volume {} already exists in pool {}", to, cfg_.name));
    CORRAL_TRY(withContext(run("lvrename", {cfg_.vg, lvName(from), lvName(to)}),
                           fmt::format("pool {}: rename {} to {}", cfg_.name, from, to)));
    auto lv = CORRAL_TRY(find(to));
    if (!lv) return Error::internal(fmt::format("pool {}: {} vanished after its rename", cfg_.name, to));
    return describe(*lv);
  }

  Result<void> remove(const std::string& volume, bool crypto) override {
    CORRAL_TRY(checkVolumeName("name", volume));
    auto lv = CORRAL_TRY(find(volume));
    if (!lv) return ok();
    if (crypto || lv->luks) {
      auto z = zeroRange(lvPath(volume), 0, std::min(kLuksReserve, lv->sizeBytes));
      if (!z.ok()) return std::move(z).error().context(fmt::format("pool {}: erase the LUKS header of {}", cfg_.name, volume));
    }
    CORRAL_TRY(withContext(run("lvremove", {"--yes", lvRef(volume)}),
                           fmt::format("pool {}: remove {}", cfg_.name, volume)));
    return ok();
  }

  Result<bool> exists(const std::string& volume) override {
    CORRAL_TRY(checkVolumeName("name", volume));
    return CORRAL_TRY(find(volume)).has_value();
  }

  Result<std::vector<std::string>> list() override {
    std::vector<std::string> out;
    for (Lv& lv : CORRAL_TRY(lvs())) out.push_back(std::move(lv.volume));
    std::sort(out.begin(), out.end());
    return out;
  }

  Result<int64_t> freeBytes() override {
    auto r = CORRAL_TRY(run("vgs", {"--noheadings", "--units", "b", "--nosuffix", "-o", "vg_free", cfg_.vg}));
    return parseBytes(r.out, "vg_free");
  }

 private:
  std::string lvName(const std::string& volume) const { return std::string(kLvPrefix) + volume; }
  std::string lvRef(const std::string& volume) const { return cfg_.vg + "/" + lvName(volume); }
  std::string lvPath(const std::string& volume) const { return fmt::format("{}/{}/{}", devDir_, cfg_.vg, lvName(volume)); }

  Result<util::CommandResult> run(std::string_view sub, const std::vector<std::string>& args) const {
    Command c(lvm_);
    c.arg(std::string(sub)).arg("--config").arg(kLvmConfig).args(args);
    c.stdoutToBuffer().stderrToBuffer().timeout(kLvmTimeout);
    return c.run();
  }

  // Every corral-* LV in the VG.
  Result<std::vector<Lv>> lvs() const {
    auto r = CORRAL_TRY(run("lvs", {"--reportformat", "json", "--units", "b", "--nosuffix", "-o",
                                    "lv_name,lv_size,lv_tags", cfg_.vg}));
    Json j = Json::parse(r.out, nullptr, /*allow_exceptions=*/false);
    auto malformed = [&] { return Error::internal(fmt::format("pool {}: unreadable lvs output", cfg_.name)); };
    if (j.is_discarded() || !j.contains("report") || !j["report"].is_array()) return malformed();
    std::vector<Lv> out;
    for (const Json& rep : j["report"]) {
      if (!rep.is_object() || !rep.contains("lv") || !rep["lv"].is_array()) return malformed();
      for (const Json& e : rep["lv"]) {
        if (!e.is_object() || !e.contains("lv_name") || !e["lv_name"].is_string() || !e.contains("lv_size") ||
            !e["lv_size"].is_string())
          return malformed();
        std::string name = e["lv_name"].get<std::string>();
        if (!name.starts_with(kLvPrefix)) continue;
        Lv lv;
        lv.volume = name.substr(kLvPrefix.size());
        if (!checkVolumeName("name", lv.volume).ok()) continue;
        lv.sizeBytes = CORRAL_TRY(parseBytes(e["lv_size"].get<std::string>(), "lv_size"));
        std::string tags = e.contains("lv_tags") && e["lv_tags"].is_string() ? e["lv_tags"].get<std::string>() : "";
        for (size_t pos = 0; pos <= tags.size();) {
          size_t comma = std::min(tags.find(',', pos), tags.size());
          if (std::string_view(tags).substr(pos, comma - pos) == kLuksTag) lv.luks = true;
          pos = comma + 1;
        }
        out.push_back(std::move(lv));
      }
    }
    return out;
  }

  Result<std::optional<Lv>> find(const std::string& volume) const {
    for (Lv& lv : CORRAL_TRY(lvs()))
      if (lv.volume == volume) return std::optional<Lv>(std::move(lv));
    return std::optional<Lv>();
  }

  Result<Volume> describe(const Lv& lv) const {
    Volume v{lv.volume, lvPath(lv.volume), "raw", lv.sizeBytes};
    if (lv.luks) v.sizeBytes = CORRAL_TRY(qemuImg_.info(v.path, "luks")).virtualSize;
    return v;
  }

  // Puts the volume's contents on its new LV.
  Result<void> fill(const NewVolume& v, int64_t size) const {
    const std::string path = lvPath(v.name);
    auto lv = CORRAL_TRY(find(v.name));
    if (!lv) return Error::internal(fmt::format("{} was not made", lvRef(v.name)));
    if (v.encryption) {
      CreateOptions o;
      o.encryption = v.encryption;
      CORRAL_TRY(qemuImg_.create(path, "raw", size, o));  // the luks format, onto the LV
    }
    if (v.cloneFrom.empty()) {
      if (!v.encryption) CORRAL_TRY(zeroRange(path, 0, lv->sizeBytes));
      return ok();
    }
    QemuImg::ConvertOptions co;
    co.dstExists = true;
    co.dstEncryption = v.encryption;
    co.progress = v.progress;
    CORRAL_TRY(qemuImg_.convert(v.cloneFrom, v.cloneFromFormat, path, "raw", co));
    if (!v.encryption) {
      ImageInfo src = CORRAL_TRY(qemuImg_.info(v.cloneFrom, v.cloneFromFormat));
      CORRAL_TRY(zeroRange(path, src.virtualSize, lv->sizeBytes));
    }
    return ok();
  }

  PoolConfig cfg_;
  QemuImg qemuImg_;
  std::string devDir_;
  std::string lvm_;
};

}  // namespace

Result<std::unique_ptr<StoragePool>> openLvmPool(const PoolConfig& cfg, const QemuImg& qemuImg,
                                                 const std::string& devDir) {
  CORRAL_TRY(checkVgName(cfg.name, cfg.vg));
  auto pool = std::make_unique<LvmPool>(cfg, qemuImg, devDir);
  CORRAL_TRY(pool->checkVg());
  return std::unique_ptr<StoragePool>(std::move(pool));
}

}  // namespace corral::host::pool_detail
