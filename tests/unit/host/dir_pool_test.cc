// Proves the "dir" storage pool with the real qemu-img: blank volumes, linked
// clones (qcow2 overlays naming the image) and full copies (with progress, grown
// when asked), all 0600 and optionally LUKS-encrypted; growing works and any
// shrink is InvalidInput on field "size"; rename and remove; names outside the
// allow-list refused; a failed create leaves nothing in the directory; and a
// temporary left by a crash is cleared by the next open once it is stale.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "host/key_store.h"
#include "host/storage_pool.h"
#include "host/storage_pool_internal.h"
#include "support/files.h"
#include "support/temp_dir.h"

namespace corral::host {
namespace {

namespace fs = std::filesystem;
using corral::testing::modeOf;
using corral::testing::readAll;
using pool_detail::kMiB;

class DirPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qemuImg_.setLuksIterTimeForTest(10);
    cfg_.name = "default";
    cfg_.kind = "dir";
    cfg_.path = (dir_ / "pool").string();
    auto p = openPool(cfg_, qemuImg_);
    ASSERT_TRUE(p.ok()) << p.error().describe();
    pool_ = std::move(p).take();
    fs::create_directory(dir_ / "lib");
    image_ = (dir_ / "lib" / "img.qcow2").string();
    std::ofstream(dir_ / "lib" / "img.raw", std::ios::binary) << std::string(size_t(4 * kMiB), 'x');
    ASSERT_TRUE(qemuImg_.convert((dir_ / "lib" / "img.raw").string(), "raw", image_, "qcow2", {}).ok());
  }

  std::vector<std::string> poolFiles() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(cfg_.path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }

  NewVolume cloneOf(const std::string& name, bool linked, int64_t size = 0) const {
    NewVolume v;
    v.name = name;
    v.sizeBytes = size;
    v.cloneFrom = image_;
    v.cloneFromFormat = "qcow2";
    v.cloneFromSize = 4 * kMiB;
    v.linked = linked;
    return v;
  }

  testing::TempDir dir_;
  QemuImg qemuImg_;
  PoolConfig cfg_;
  std::unique_ptr<StoragePool> pool_;
  std::string image_;
};

TEST_F(DirPoolTest, OpenMakesPrivateDirectory) {
  EXPECT_EQ(modeOf(cfg_.path), 0700u);
  EXPECT_EQ(pool_->name(), "default");
  EXPECT_EQ(pool_->kind(), "dir");
  EXPECT_TRUE(pool_->supportsLinkedClones());
  auto free = pool_->freeBytes();
  ASSERT_TRUE(free.ok());
  EXPECT_GT(*free, 0);

  PoolConfig bad = cfg_;
  bad.path = "relative/dir";
  auto r = openPool(bad, qemuImg_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "path");
  bad = cfg_;
  bad.kind = "zfs";
  EXPECT_EQ(openPool(bad, qemuImg_).error().field, "kind");
}

TEST_F(DirPoolTest, BlankVolumeLifecycle) {
  auto v = pool_->create(NewVolume{.name = "vm1.disk1", .sizeBytes = 8 * kMiB});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->name, "vm1.disk1");
  EXPECT_EQ(v->path, cfg_.path + "/vm1.disk1.qcow2");
  EXPECT_EQ(v->format, "qcow2");
  EXPECT_EQ(v->sizeBytes, 8 * kMiB);
  EXPECT_EQ(modeOf(v->path), 0600u);
  EXPECT_TRUE(*pool_->exists("vm1.disk1"));
  EXPECT_EQ(*pool_->list(), std::vector<std::string>{"vm1.disk1"});

  auto dup = pool_->create(NewVolume{.name = "vm1.disk1", .sizeBytes = 8 * kMiB});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);

  ASSERT_TRUE(pool_->resize("vm1.disk1", 16 * kMiB, std::nullopt).ok());
  EXPECT_EQ(qemuImg_.info(v->path, "qcow2")->virtualSize, 16 * kMiB);
  ASSERT_TRUE(pool_->growBacking("vm1.disk1", 32 * kMiB).ok());  // nothing to do for a file
  for (auto r : {pool_->resize("vm1.disk1", 8 * kMiB, std::nullopt), pool_->growBacking("vm1.disk1", kMiB)}) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(r.error().field, "size");
  }
  EXPECT_EQ(pool_->resize("nope", 16 * kMiB, std::nullopt).error().code, ErrorCode::NotFound);

  auto renamed = pool_->rename("vm1.disk1", "vm2.disk1");
  ASSERT_TRUE(renamed.ok()) << renamed.error().describe();
  EXPECT_EQ(renamed->path, cfg_.path + "/vm2.disk1.qcow2");
  EXPECT_EQ(renamed->sizeBytes, 16 * kMiB);
  EXPECT_FALSE(*pool_->exists("vm1.disk1"));
  EXPECT_EQ(pool_->rename("vm1.disk1", "x").error().code, ErrorCode::NotFound);
  ASSERT_TRUE(pool_->create(NewVolume{.name = "other", .sizeBytes = kMiB}).ok());
  EXPECT_EQ(pool_->rename("other", "vm2.disk1").error().code, ErrorCode::AlreadyExists);

  ASSERT_TRUE(pool_->remove("vm2.disk1").ok());
  ASSERT_TRUE(pool_->remove("vm2.disk1").ok());  // absent is fine
  ASSERT_TRUE(pool_->remove("other", /*crypto=*/true).ok());
  EXPECT_TRUE(poolFiles().empty());
}

TEST_F(DirPoolTest, LinkedCloneIsOverlayOfTheImage) {
  auto v = pool_->create(cloneOf("c1", /*linked=*/true));
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->sizeBytes, 4 * kMiB);
  auto info = qemuImg_.info(v->path, "qcow2");
  EXPECT_EQ(info->backingFile, image_);
  EXPECT_EQ(modeOf(v->path), 0600u);

  auto grown = pool_->create(cloneOf("c2", true, 64 * kMiB));
  ASSERT_TRUE(grown.ok());
  EXPECT_EQ(grown->sizeBytes, 64 * kMiB);
  EXPECT_EQ(qemuImg_.info(grown->path, "qcow2")->backingFile, image_);
}

TEST_F(DirPoolTest, FullCloneCopiesWithProgressAndGrows) {
  std::vector<double> seen;
  NewVolume nv = cloneOf("full", /*linked=*/false, 16 * kMiB);
  nv.progress = [&](double f) { seen.push_back(f); };
  auto v = pool_->create(nv);
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->sizeBytes, 16 * kMiB);
  auto info = qemuImg_.info(v->path, "qcow2");
  EXPECT_EQ(info->backingFile, "");
  ASSERT_FALSE(seen.empty());
  EXPECT_DOUBLE_EQ(seen.back(), 1.0);
  EXPECT_EQ(modeOf(v->path), 0600u);
}

TEST_F(DirPoolTest, CloneSmallerThanImageRefused) {
  for (bool linked : {true, false}) {
    auto r = pool_->create(cloneOf("small", linked, 2 * kMiB));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(r.error().field, "size");
  }
  EXPECT_TRUE(poolFiles().empty());
}

TEST_F(DirPoolTest, EncryptedVolumesOfEveryKind) {
  auto key = SecretFile::create(dir_.path(), "key", KeyStore::newPassphrase());
  ASSERT_TRUE(key.ok());
  const Encryption enc{key->path().string()};
  NewVolume blank{.name = "e-blank", .sizeBytes = 8 * kMiB, .encryption = enc};
  NewVolume linked = cloneOf("e-linked", true, 8 * kMiB);
  linked.encryption = enc;
  NewVolume full = cloneOf("e-full", false, 8 * kMiB);
  full.encryption = enc;
  for (const NewVolume& nv : {blank, linked, full}) {
    auto v = pool_->create(nv);
    ASSERT_TRUE(v.ok()) << nv.name << ": " << v.error().describe();
    auto info = qemuImg_.info(v->path, "qcow2");
    EXPECT_TRUE(info->encrypted) << nv.name;
    EXPECT_EQ(info->virtualSize, 8 * kMiB) << nv.name;
    ASSERT_TRUE(pool_->resize(nv.name, 12 * kMiB, enc).ok()) << nv.name;
    EXPECT_EQ(qemuImg_.info(v->path, "qcow2")->virtualSize, 12 * kMiB);
  }
  EXPECT_EQ(qemuImg_.info(cfg_.path + "/e-linked.qcow2", "qcow2")->backingFile, image_);
}

TEST_F(DirPoolTest, FailedCreateLeavesNothing) {
  NewVolume missing = cloneOf("gone", false, 0);
  missing.cloneFrom = (dir_ / "lib" / "absent.qcow2").string();
  EXPECT_FALSE(pool_->create(missing).ok());
  NewVolume notQcow2 = cloneOf("bad", false, 0);
  notQcow2.cloneFrom = (dir_ / "lib" / "img.raw").string();  // raw bytes, called qcow2
  EXPECT_FALSE(pool_->create(notQcow2).ok());
  NewVolume badKey{.name = "nokey", .sizeBytes = kMiB, .encryption = Encryption{(dir_ / "no-such-key").string()}};
  EXPECT_FALSE(pool_->create(badKey).ok());
  EXPECT_TRUE(poolFiles().empty());
}

TEST_F(DirPoolTest, NamesOutsideTheAllowListRefused) {
  for (const char* name : {"", ".hidden", "-opt", "UPPER", "a/b", "a_b", "../x", "a b"}) {
    auto r = pool_->create(NewVolume{.name = name, .sizeBytes = kMiB});
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput) << name;
    EXPECT_EQ(r.error().field, "name") << name;
  }
  EXPECT_FALSE(pool_->create(NewVolume{.name = std::string(101, 'a'), .sizeBytes = kMiB}).ok());
  EXPECT_FALSE(pool_->remove("../escape").ok());
  EXPECT_TRUE(poolFiles().empty());
}

TEST_F(DirPoolTest, StaleTemporariesClearedOnOpen) {
  const fs::path stale = fs::path(cfg_.path) / ".tmp-abc-old.qcow2";
  const fs::path fresh = fs::path(cfg_.path) / ".tmp-def-new.qcow2";
  std::ofstream(stale) << "x";
  std::ofstream(fresh) << "x";
  fs::last_write_time(stale, fs::file_time_type::clock::now() - std::chrono::hours(48));
  auto again = openPool(cfg_, qemuImg_);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_TRUE(fs::exists(fresh));  // perhaps a create running now
  EXPECT_TRUE((*again)->list()->empty());
}

}  // namespace
}  // namespace corral::host
