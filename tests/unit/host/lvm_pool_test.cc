// Proves the "lvm" storage pool two ways.
//
// Real LVM: a sparse file on a loop device the test makes becomes a PV and a VG
// with a unique name, all torn down on every path (RAII). Opening the pool,
// free space and listing run on any host with LVM and loop devices; making LVs
// also needs the kernel's device-mapper, and those tests are skipped with the
// reason where it is missing (e.g. in a container without /dev/mapper/control).
//
// Fake LVM: util::Command's dry-run hook plays lvm (files under a temporary
// "/dev" stand in for LVs, pre-filled with 0xAA as an earlier tenant's data)
// while qemu-img calls go to the real qemu-img. This checks, on every host, the
// argv LvmPool gives LVM (the fixed --config, no prompts, sizes in bytes, the
// LUKS tag), that stale data is zeroed before a plain volume is handed out and
// when it grows, that clones are full copies, that the LUKS header is erased
// before lvremove, and that a failed create removes its LV.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "host/key_store.h"
#include "host/storage_pool.h"
#include "host/storage_pool_internal.h"
#include "support/loop_vg.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::host {
namespace {

namespace fs = std::filesystem;
using pool_detail::kLuksReserve;
using pool_detail::kLvmConfig;
using pool_detail::kMiB;

std::string readRange(const fs::path& p, int64_t from, int64_t len) {
  std::ifstream in(p, std::ios::binary);
  in.seekg(from);
  std::string s(size_t(len), '\0');
  in.read(s.data(), len);
  s.resize(size_t(in.gcount()));
  return s;
}

bool allZero(std::string_view s) { return s.find_first_not_of('\0') == std::string_view::npos; }

// A 4 MiB qcow2 image whose bytes are 'p' (made from a raw file with qemu-img).
std::string makeImage(const QemuImg& q, const fs::path& dir) {
  const fs::path raw = dir / "img.raw";
  std::ofstream(raw, std::ios::binary) << std::string(size_t(4 * kMiB), 'p');
  const std::string image = (dir / "img.qcow2").string();
  EXPECT_TRUE(q.convert(raw.string(), "raw", image, "qcow2", {}).ok());
  return image;
}

// ---------------------------------------------------------------- real LVM

using testing::deviceMapperAvailable;
using testing::LoopVg;

// In the test body: GTEST_SKIP only leaves the function it is in.
#define NEED_DEVICE_MAPPER()                                                                   \
  if (!deviceMapperAvailable())                                                                \
  GTEST_SKIP() << "device-mapper is not available here (/dev/mapper/control cannot be opened): " \
                  "LVs cannot be activated"

class RealLvmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    vg_ = LoopVg::make(kLvmConfig, why);
    if (!vg_) GTEST_SKIP() << "no LVM test VG: " << why;
    qemuImg_.setLuksIterTimeForTest(10);
    cfg_ = PoolConfig{.name = "fast", .kind = "lvm", .vg = vg_->name()};
    auto p = openPool(cfg_, qemuImg_);
    ASSERT_TRUE(p.ok()) << p.error().describe();
    pool_ = std::move(p).take();
  }

  testing::TempDir dir_;
  std::unique_ptr<LoopVg> vg_;
  QemuImg qemuImg_;
  PoolConfig cfg_;
  std::unique_ptr<StoragePool> pool_;
};

TEST_F(RealLvmTest, OpensVgAndReportsFreeSpace) {
  EXPECT_FALSE(pool_->supportsLinkedClones());
  auto free = pool_->freeBytes();
  ASSERT_TRUE(free.ok()) << free.error().describe();
  EXPECT_GT(*free, 200 * kMiB);
  EXPECT_LE(*free, 256 * kMiB);
  EXPECT_TRUE(pool_->list()->empty());
  EXPECT_FALSE(*pool_->exists("vm1.disk0"));
  EXPECT_TRUE(pool_->remove("vm1.disk0").ok());

  PoolConfig missing = cfg_;
  missing.vg = vg_->name() + "nope";
  auto r = openPool(missing, qemuImg_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(r.error().field, "vg");
}

TEST_F(RealLvmTest, VolumeLifecycle) {
  NEED_DEVICE_MAPPER();
  auto v = pool_->create(NewVolume{.name = "vm1.disk1", .sizeBytes = 16 * kMiB});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->path, "/dev/" + vg_->name() + "/corral-vm1.disk1");
  EXPECT_EQ(v->format, "raw");
  EXPECT_EQ(v->sizeBytes, 16 * kMiB);
  EXPECT_TRUE(allZero(readRange(v->path, 0, 16 * kMiB)));
  EXPECT_EQ(*pool_->list(), std::vector<std::string>{"vm1.disk1"});

  ASSERT_TRUE(pool_->resize("vm1.disk1", 32 * kMiB, std::nullopt).ok());
  auto small = pool_->resize("vm1.disk1", 8 * kMiB, std::nullopt);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().field, "size");
  auto renamed = pool_->rename("vm1.disk1", "vm2.disk1");
  ASSERT_TRUE(renamed.ok()) << renamed.error().describe();
  EXPECT_EQ(renamed->sizeBytes, 32 * kMiB);
  ASSERT_TRUE(pool_->remove("vm2.disk1").ok());
  EXPECT_TRUE(pool_->list()->empty());
}

TEST_F(RealLvmTest, EncryptedFullCopy) {
  NEED_DEVICE_MAPPER();
  const std::string image = makeImage(qemuImg_, dir_.path());
  auto key = SecretFile::create(dir_.path(), "key", KeyStore::newPassphrase());
  ASSERT_TRUE(key.ok());
  const Encryption enc{key->path().string()};
  NewVolume nv{.name = "enc", .sizeBytes = 16 * kMiB, .encryption = enc, .cloneFrom = image,
               .cloneFromFormat = "qcow2", .cloneFromSize = 4 * kMiB, .linked = true};
  auto v = pool_->create(nv);
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_GE(v->sizeBytes, 16 * kMiB);
  EXPECT_TRUE(qemuImg_.info(v->path, "luks")->encrypted);
  const std::string back = (dir_ / "back.raw").string();
  QemuImg::ConvertOptions co;
  co.srcEncryption = enc;
  ASSERT_TRUE(qemuImg_.convert(v->path, "raw", back, "raw", co).ok());
  EXPECT_EQ(readRange(back, 0, 4 * kMiB), std::string(size_t(4 * kMiB), 'p'));
  ASSERT_TRUE(pool_->resize("enc", 40 * kMiB, enc).ok());
  EXPECT_GE(qemuImg_.info(v->path, "luks")->virtualSize, 40 * kMiB);
  ASSERT_TRUE(pool_->remove("enc", /*crypto=*/true).ok());
  EXPECT_FALSE(*pool_->exists("enc"));
}

// ---------------------------------------------------------------- fake LVM

class FakeLvmTest : public ::testing::Test {
 protected:
  static constexpr int64_t kExtent = 4 * kMiB;

  void SetUp() override {
    qemuImg_.setLuksIterTimeForTest(10);
    fs::create_directories(dev_ / vg_);
    hook_ = [this](const util::DryRunCall& c) { return handle(c); };
    util::Command::setDryRunForTest(hook_);
    auto p = pool_detail::openLvmPool(PoolConfig{.name = "fast", .kind = "lvm", .vg = vg_}, qemuImg_, dev_.string());
    ASSERT_TRUE(p.ok()) << p.error().describe();
    pool_ = std::move(p).take();
  }
  void TearDown() override { util::Command::setDryRunForTest(nullptr); }

  struct FakeLv {
    int64_t size = 0;
    std::string tags;
  };

  fs::path lvFile(const std::string& lv) const { return dev_ / vg_ / lv; }

  // Extends the stand-in to size with an earlier tenant's bytes.
  void fillStale(const std::string& lv, int64_t size) {
    const int64_t have = fs::exists(lvFile(lv)) ? int64_t(fs::file_size(lvFile(lv))) : 0;
    std::ofstream out(lvFile(lv), std::ios::binary | std::ios::app);
    if (size > have) out << std::string(size_t(size - have), '\xAA');
  }

  util::DryRunReply handle(const util::DryRunCall& c) {
    util::DryRunReply r;
    if (c.argv[0].ends_with("qemu-img")) return passThrough(c);
    lvmCalls_.push_back(c);
    auto fail = [&](std::string err) {
      r.status.exitCode = 5;
      r.err = std::move(err);
      return r;
    };
    const std::string& sub = c.argv.at(1);
    std::vector<std::string> a(c.argv.begin() + 4, c.argv.end());  // after "--config" CONFIG
    auto after = [&](const std::string& flag) {
      auto it = std::find(a.begin(), a.end(), flag);
      return it != a.end() && it + 1 != a.end() ? *(it + 1) : std::string();
    };
    auto bytes = [&](std::string s) { return (std::stoll(s.substr(0, s.size() - 1)) + kExtent - 1) / kExtent * kExtent; };
    if (sub == "vgs") {
      if (a.back() != vg_) return fail("  Volume group \"" + a.back() + "\" not found");
      r.out = std::find(a.begin(), a.end(), "vg_free") != a.end() ? "  123731968\n" : "  " + vg_ + "\n";
    } else if (sub == "lvs") {
      nlohmann::json lvs = nlohmann::json::array();
      for (const auto& [name, lv] : lvs_)
        lvs.push_back({{"lv_name", name}, {"lv_size", std::to_string(lv.size)}, {"lv_tags", lv.tags}});
      lvs.push_back({{"lv_name", "someone-elses"}, {"lv_size", "4194304"}, {"lv_tags", ""}});
      r.out = nlohmann::json{{"report", {{{"lv", lvs}}}}}.dump(2);
    } else if (sub == "lvcreate") {
      if (failLvcreate_) return fail("  Insufficient free space");
      FakeLv lv{bytes(after("-L")), after("--addtag")};
      lvs_[after("-n")] = lv;
      fillStale(after("-n"), lv.size);
    } else if (sub == "lvresize") {
      std::string lv = a.back().substr(vg_.size() + 1);
      lvs_[lv].size = bytes(after("-L"));
      fillStale(lv, lvs_[lv].size);
    } else if (sub == "lvrename") {
      lvs_[a[2]] = lvs_[a[1]];
      lvs_.erase(a[1]);
      fs::rename(lvFile(a[1]), lvFile(a[2]));
    } else if (sub == "lvremove") {
      std::string lv = a.back().substr(vg_.size() + 1);
      headerZeroAtRemove_[lv] = allZero(readRange(lvFile(lv), 0, kLuksReserve));
      lvs_.erase(lv);
      fs::remove(lvFile(lv));
    } else {
      return fail("unexpected lvm " + sub);
    }
    return r;
  }

  // qemu-img runs for real: the hook is lifted for that one run.
  util::DryRunReply passThrough(const util::DryRunCall& c) {
    util::Command::setDryRunForTest(nullptr);
    util::Command real(c.argv[0]);
    real.args(std::vector<std::string>(c.argv.begin() + 1, c.argv.end()));
    real.stdoutToBuffer().stderrToBuffer().allowFailureStatus().timeout(std::chrono::seconds(120));
    auto res = real.run();
    util::Command::setDryRunForTest(hook_);
    util::DryRunReply r;
    if (!res.ok()) {
      r.status.exitCode = 1;
      r.err = res.error().message;
      return r;
    }
    r.status = res->status;
    r.out = res->out;
    r.err = res->err;
    return r;
  }

  const util::DryRunCall* lastCall(const std::string& sub) const {
    for (auto it = lvmCalls_.rbegin(); it != lvmCalls_.rend(); ++it)
      if (it->argv.at(1) == sub) return &*it;
    return nullptr;
  }

  testing::TempDir dir_;
  fs::path dev_ = dir_ / "dev";
  std::string vg_ = "fakevg";
  QemuImg qemuImg_;
  util::DryRunHook hook_;
  std::unique_ptr<StoragePool> pool_;
  std::map<std::string, FakeLv> lvs_;
  std::vector<util::DryRunCall> lvmCalls_;
  std::map<std::string, bool> headerZeroAtRemove_;
  bool failLvcreate_ = false;
};

TEST_F(FakeLvmTest, EveryLvmCommandCarriesTheFixedConfigAndNeverPrompts) {
  auto v = pool_->create(NewVolume{.name = "v1", .sizeBytes = 10 * kMiB});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->path, (dev_ / vg_ / "corral-v1").string());
  EXPECT_EQ(v->format, "raw");
  EXPECT_EQ(v->sizeBytes, 12 * kMiB);  // whole extents; the guest sees them all
  ASSERT_TRUE(pool_->rename("v1", "v2").ok());
  ASSERT_TRUE(pool_->resize("v2", 16 * kMiB, std::nullopt).ok());
  ASSERT_TRUE(pool_->remove("v2").ok());
  for (const auto& c : lvmCalls_) {
    ASSERT_GE(c.argv.size(), 4u) << c.line;
    EXPECT_EQ(c.argv[2], "--config") << c.line;
    EXPECT_EQ(c.argv[3], kLvmConfig) << c.line;
    EXPECT_TRUE(c.env.empty()) << c.line;
  }
  const std::vector<std::string> create(lastCall("lvcreate")->argv.begin() + 4, lastCall("lvcreate")->argv.end());
  EXPECT_EQ(create, (std::vector<std::string>{"--yes", "-n", "corral-v1", "-L", "10485760b", "--wipesignatures", "y",
                                              "--zero", "y", vg_}));
  EXPECT_EQ(lastCall("lvrename")->line.substr(lastCall("lvrename")->line.find(" fakevg")), " fakevg corral-v1 corral-v2");
  EXPECT_NE(lastCall("lvresize")->line.find("--yes -L 16777216b fakevg/corral-v2"), std::string::npos);
  EXPECT_NE(lastCall("lvremove")->line.find("--yes fakevg/corral-v2"), std::string::npos);
  EXPECT_TRUE(lvs_.empty());
}

TEST_F(FakeLvmTest, PlainVolumesAreZeroedBeforeUseAndWhenGrown) {
  auto v = pool_->create(NewVolume{.name = "v", .sizeBytes = 8 * kMiB});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_TRUE(allZero(readRange(v->path, 0, 8 * kMiB)));
  ASSERT_TRUE(pool_->growBacking("v", 20 * kMiB).ok());
  EXPECT_EQ(fs::file_size(v->path), uint64_t(20 * kMiB));
  EXPECT_TRUE(allZero(readRange(v->path, 0, 20 * kMiB)));
  const size_t resizes = std::count_if(lvmCalls_.begin(), lvmCalls_.end(), [](auto& c) { return c.argv[1] == "lvresize"; });
  ASSERT_TRUE(pool_->growBacking("v", 20 * kMiB).ok());  // already that size: no lvresize
  EXPECT_EQ(std::count_if(lvmCalls_.begin(), lvmCalls_.end(), [](auto& c) { return c.argv[1] == "lvresize"; }),
            long(resizes));
  auto shrink = pool_->resize("v", 4 * kMiB, std::nullopt);
  ASSERT_FALSE(shrink.ok());
  EXPECT_EQ(shrink.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(shrink.error().field, "size");
}

TEST_F(FakeLvmTest, ClonesAreFullCopiesZeroedPastTheImage) {
  const std::string image = makeImage(qemuImg_, dir_.path());
  std::vector<double> seen;
  NewVolume nv{.name = "c", .sizeBytes = 8 * kMiB, .cloneFrom = image, .cloneFromFormat = "qcow2",
               .cloneFromSize = 4 * kMiB, .linked = true, .progress = [&](double f) { seen.push_back(f); }};
  EXPECT_FALSE(pool_->supportsLinkedClones());
  auto v = pool_->create(nv);
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(readRange(v->path, 0, 4 * kMiB), std::string(size_t(4 * kMiB), 'p'));
  EXPECT_TRUE(allZero(readRange(v->path, 4 * kMiB, 4 * kMiB)));
  ASSERT_FALSE(seen.empty());
  EXPECT_DOUBLE_EQ(seen.back(), 1.0);
  auto small = pool_->create(NewVolume{.name = "s", .sizeBytes = 2 * kMiB, .cloneFrom = image,
                                       .cloneFromFormat = "qcow2", .cloneFromSize = 4 * kMiB});
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().field, "size");
}

TEST_F(FakeLvmTest, EncryptedVolumeIsTaggedLuksAndItsHeaderErasedOnRemove) {
  const std::string image = makeImage(qemuImg_, dir_.path());
  auto key = SecretFile::create(dir_.path(), "key", KeyStore::newPassphrase());
  ASSERT_TRUE(key.ok());
  const Encryption enc{key->path().string()};
  NewVolume nv{.name = "e", .sizeBytes = 8 * kMiB, .encryption = enc, .cloneFrom = image,
               .cloneFromFormat = "qcow2", .cloneFromSize = 4 * kMiB};
  auto v = pool_->create(nv);
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_NE(lastCall("lvcreate")->line.find(fmt::format("-L {}b", 8 * kMiB + kLuksReserve)), std::string::npos);
  EXPECT_NE(lastCall("lvcreate")->line.find("--addtag corral-luks"), std::string::npos);
  auto info = qemuImg_.info(v->path, "luks");
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_TRUE(info->encrypted);
  EXPECT_EQ(v->sizeBytes, info->virtualSize);
  const std::string back = (dir_ / "back.raw").string();
  QemuImg::ConvertOptions co;
  co.srcEncryption = enc;
  ASSERT_TRUE(qemuImg_.convert(v->path, "raw", back, "raw", co).ok());
  EXPECT_EQ(readRange(back, 0, 4 * kMiB), std::string(size_t(4 * kMiB), 'p'));

  ASSERT_TRUE(pool_->resize("e", 12 * kMiB, enc).ok());
  EXPECT_NE(lastCall("lvresize")->line.find(fmt::format("-L {}b", 12 * kMiB + kLuksReserve)), std::string::npos);
  ASSERT_TRUE(pool_->remove("e").ok());  // the tag alone makes it erase the header
  EXPECT_TRUE(headerZeroAtRemove_.at("corral-e"));
}

TEST_F(FakeLvmTest, FailedCreateRemovesItsLv) {
  NewVolume nv{.name = "f", .sizeBytes = 8 * kMiB, .cloneFrom = (dir_ / "absent.qcow2").string(),
               .cloneFromFormat = "qcow2", .cloneFromSize = 4 * kMiB};
  EXPECT_FALSE(pool_->create(nv).ok());
  ASSERT_NE(lastCall("lvremove"), nullptr);
  EXPECT_TRUE(lvs_.empty());
  failLvcreate_ = true;
  EXPECT_FALSE(pool_->create(NewVolume{.name = "g", .sizeBytes = kMiB}).ok());
  EXPECT_TRUE(lvs_.empty());
}

TEST_F(FakeLvmTest, ListsOnlyItsOwnVolumes) {
  ASSERT_TRUE(pool_->create(NewVolume{.name = "b", .sizeBytes = kMiB}).ok());
  ASSERT_TRUE(pool_->create(NewVolume{.name = "a", .sizeBytes = kMiB}).ok());
  EXPECT_EQ(*pool_->list(), (std::vector<std::string>{"a", "b"}));  // not "someone-elses"
  EXPECT_TRUE(*pool_->exists("a"));
  EXPECT_EQ(pool_->create(NewVolume{.name = "a", .sizeBytes = kMiB}).error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(pool_->rename("a", "b").error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(*pool_->freeBytes(), 123731968);
}

TEST_F(FakeLvmTest, BadVgRefused) {
  auto missing = pool_detail::openLvmPool(PoolConfig{.name = "x", .kind = "lvm", .vg = "othervg"}, qemuImg_,
                                          dev_.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().field, "vg");
  const size_t before = lvmCalls_.size();
  auto bad = openPool(PoolConfig{.name = "x", .kind = "lvm", .vg = "-opt"}, qemuImg_);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "vg");
  EXPECT_EQ(lvmCalls_.size(), before);  // refused before running anything
}

}  // namespace
}  // namespace corral::host
