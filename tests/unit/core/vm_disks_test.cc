// core/ storage rules without a guest: VmManager's disks (create with blank,
// cloned and encrypted disks, quotas, rollback of a failed create, add,
// offline resize, remove, rekey, rename, delete) and Images (import as an
// operation, visibility, in-use refusal), on a real SQLite store, a real dir
// pool and real qemu-img.
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "core/images.h"
#include "core/operations.h"
#include "core/vm_manager.h"
#include "host/qemu_img.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::core {
namespace {

namespace fs = std::filesystem;

Principal root() { return Principal{.login = "root", .admin = true, .groups = {}, .via = "unix", .tokenId = {}, .csrfToken = {}}; }
Principal alice() { return Principal{.login = "alice", .admin = false, .groups = {}, .via = "unix", .tokenId = {}, .csrfToken = {}}; }

std::string qemuImgInfo(const std::string& path) {
  auto r = util::Command("qemu-img").args({"info", "--output=json", "-U", path}).stdoutToBuffer().stderrToBuffer().run();
  return r.ok() ? r->out : "";
}

class CoreStorageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(state_.prepare().ok());
    auto s = store::openSqliteStore(state_.database().string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).take();
    store::ImageRecord img{.name = "kernel", .kernel = "/nonexistent/k", .createdAt = store::nowRfc3339()};
    ASSERT_TRUE(store_->insertImage(img).ok());
    ASSERT_TRUE(store_->insertUser({.login = "alice", .createdAt = store::nowRfc3339()}).ok());
    ManagerConfig mc;
    mc.quotaDefaults.maxDiskVmGib = 4;
    mc.quotaDefaults.maxDiskTotalGib = 6;
    vms_ = std::make_unique<VmManager>(io_, *store_, state_, mc);
    ASSERT_TRUE(vms_->openStorage().ok());
    ops_ = std::make_unique<Operations>(*store_, 1);
    images_ = std::make_unique<Images>(*store_, vms_->storage(), *ops_);
  }

  // A qcow2 disk image of `size` in the library, as an import would leave it.
  void addDiskImage(const std::string& name, const std::string& size, const std::string& owner = "") {
    fs::path src = dir_.path() / (name + ".qcow2");
    auto made = util::Command("qemu-img").args({"create", "-q", "-f", "qcow2", src.string(), size}).run();
    ASSERT_TRUE(made.ok());
    ImportImageRequest req{.name = name, .kind = "disk", .path = src.string(), .kernel = {}, .initrd = {},
                           .append = {}, .owner = owner, .description = {}, .format = {}, .ownsSource = false};
    auto op = images_->import(root(), req);
    ASSERT_TRUE(op.ok()) << op.error().message;
    auto done = ops_->wait(op->id, std::chrono::seconds(60));
    ASSERT_TRUE(done.ok());
    ASSERT_EQ(done->state, "succeeded") << done->result;
  }

  Result<store::VmRecord> create(const std::string& name, const std::string& image, std::vector<std::string> sizes,
                                 bool encrypt = false, bool fullClone = false, const Principal& who = root()) {
    CreateVmRequest req;
    req.name = name;
    req.image = image;
    req.memoryMib = 128;
    for (auto& s : sizes) req.disks.push_back(DiskRequest{.size = s, .pool = {}, .encrypt = {}});
    req.encrypt = encrypt;
    req.fullClone = fullClone;
    return vms_->create(who, req);
  }

  std::vector<store::DiskRecord> disks(const std::string& vm) {
    auto d = vms_->disks(root(), vm);
    EXPECT_TRUE(d.ok());
    return d.ok() ? *d : std::vector<store::DiskRecord>{};
  }

  std::set<std::string> poolFiles() {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(state_.disksDir())) out.insert(e.path().filename().string());
    return out;
  }

  testing::TempDir dir_;
  host::StateDir state_{dir_.path() / "state"};
  boost::asio::io_context io_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<VmManager> vms_;
  std::unique_ptr<Operations> ops_;
  std::unique_ptr<Images> images_;
};

// Blank disks become volumes and rows, and their GiB (rounded up) count.
TEST_F(CoreStorageTest, BlankDisksAreMadeAndCounted) {
  auto vm = create("web", "kernel", {"64M", "1G"});
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  EXPECT_EQ(vm->diskGib, 2);
  auto d = disks("web");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].name, "disk0");
  EXPECT_EQ(d[0].sizeBytes, 64 << 20);
  EXPECT_EQ(d[1].sizeBytes, int64_t(1) << 30);
  EXPECT_TRUE(fs::exists(d[0].path));
  EXPECT_EQ(d[0].volume, "web.disk0");
}

// A VM from a disk image gets a copy-on-write overlay backed by the library
// copy; a full clone has no backing file; a clone may grow, never shrink.
TEST_F(CoreStorageTest, ClonesOfADiskImage) {
  addDiskImage("base", "256M");
  auto linked = create("linked", "base", {});
  ASSERT_TRUE(linked.ok()) << linked.error().message;
  auto d = disks("linked");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].backingImage, "base");
  EXPECT_EQ(d[0].sizeBytes, 256 << 20);
  EXPECT_NE(qemuImgInfo(d[0].path).find("backing-filename"), std::string::npos);

  auto full = create("full", "base", {"512M"}, false, true);
  ASSERT_TRUE(full.ok()) << full.error().message;
  auto f = disks("full");
  EXPECT_EQ(f[0].backingImage, "");
  EXPECT_EQ(f[0].sizeBytes, 512 << 20);
  EXPECT_EQ(qemuImgInfo(f[0].path).find("backing-filename"), std::string::npos);

  auto before = poolFiles();
  auto small = create("small", "base", {"128M"});
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.error().field, "disks[0]");
  EXPECT_EQ(poolFiles(), before);

  // In use by the linked clone (and by the full one, made from it): refused, naming them.
  auto refused = images_->remove(root(), "base");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("linked"), std::string::npos) << refused.error().message;
}

// Each encrypted disk has its own wrapped key; a start's key file is 0600 and
// removable; the image is LUKS inside qcow2.
TEST_F(CoreStorageTest, EncryptedDisksHaveWrappedKeysAndKeyFiles) {
  auto vm = create("vault", "kernel", {"64M", "64M"}, true);
  ASSERT_TRUE(vm.ok()) << vm.error().message;
  auto d = disks("vault");
  ASSERT_EQ(d.size(), 2u);
  EXPECT_TRUE(d[0].encrypted);
  EXPECT_FALSE(d[0].wrappedKey.empty());
  EXPECT_NE(d[0].wrappedKey, d[1].wrappedKey);
  EXPECT_NE(qemuImgInfo(d[0].path).find("\"encrypted\": true"), std::string::npos) << qemuImgInfo(d[0].path);

  fs::path run = dir_.path() / "run";
  fs::create_directories(run);
  auto q = vms_->storage().qemuDisks(*vm, run);
  ASSERT_TRUE(q.ok()) << q.error().message;
  ASSERT_TRUE((*q)[0].encryption.has_value());
  struct stat st{};
  ASSERT_EQ(::stat((*q)[0].encryption->secretFile.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Storage::removeSecretFiles(run);
  EXPECT_FALSE(fs::exists((*q)[0].encryption->secretFile));

  // A rekey gives a new wrapped key, and the image opens with the new passphrase.
  auto rekeyed = vms_->rekeyDisk(root(), "vault", "disk0");
  ASSERT_TRUE(rekeyed.ok()) << rekeyed.error().message;
  EXPECT_NE(rekeyed->wrappedKey, d[0].wrappedKey);
  auto q2 = vms_->storage().qemuDisks(*vm, run);
  ASSERT_TRUE(q2.ok());
  host::QemuImg img;
  auto info = img.info(d[0].path, "qcow2", host::Encryption{(*q2)[0].encryption->secretFile});
  EXPECT_TRUE(info.ok()) << (info.ok() ? "" : info.error().message);
  Storage::removeSecretFiles(run);

  // A plain disk has no key to rotate.
  ASSERT_TRUE(create("clear", "kernel", {"64M"}).ok());
  auto plain = vms_->rekeyDisk(root(), "clear", "disk0");
  ASSERT_FALSE(plain.ok());
  EXPECT_EQ(plain.error().field, "disk");
}

// Over the disk quota: refused with the numbers before any volume is made.
TEST_F(CoreStorageTest, DiskQuotaRefusesBeforeAnythingIsMade) {
  auto before = poolFiles();
  auto big = create("big", "kernel", {"5G"}, false, false, alice());
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.error().code, ErrorCode::QuotaExceeded) << big.error().message;
  EXPECT_EQ(poolFiles(), before);
  EXPECT_FALSE(store_->findVm("big")->has_value());

  ASSERT_TRUE(create("a", "kernel", {"4G"}, false, false, alice()).ok());
  auto second = create("b", "kernel", {"3G"}, false, false, alice());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.error().code, ErrorCode::QuotaExceeded);
  auto add = vms_->addDisk(alice(), "a", DiskRequest{.size = "1G", .pool = {}, .encrypt = {}});
  ASSERT_FALSE(add.ok()) << "max_disk_vm 4 GiB: a 5th GiB on one VM is refused";
  EXPECT_EQ(add.error().code, ErrorCode::QuotaExceeded);
}

// A create whose second disk fails leaves no VM and no first disk.
TEST_F(CoreStorageTest, FailedCreateRemovesWhatItMade) {
  { std::ofstream(state_.disksDir() / "half.disk1.qcow2") << "stray"; }
  auto before = poolFiles();
  auto vm = create("half", "kernel", {"64M", "64M"});
  ASSERT_FALSE(vm.ok());
  EXPECT_EQ(poolFiles(), before);
  EXPECT_FALSE(store_->findVm("half")->has_value());
}

// Add, grow (offline), refuse to shrink, remove; the quota count follows.
TEST_F(CoreStorageTest, AddResizeRemove) {
  ASSERT_TRUE(create("vm1", "kernel", {"64M"}).ok());
  auto added = vms_->addDisk(root(), "vm1", DiskRequest{.size = "1G", .pool = {}, .encrypt = {}});
  ASSERT_TRUE(added.ok()) << added.error().message;
  EXPECT_EQ(added->name, "disk1");
  EXPECT_EQ(vms_->get(root(), "vm1")->diskGib, 2);

  auto grown = vms_->resizeDisk(root(), "vm1", "disk0", "2G");
  ASSERT_TRUE(grown.ok()) << grown.error().message;
  EXPECT_EQ(grown->sizeBytes, int64_t(2) << 30);
  EXPECT_NE(qemuImgInfo(grown->path).find("\"virtual-size\": 2147483648"), std::string::npos);
  EXPECT_EQ(vms_->get(root(), "vm1")->diskGib, 3);

  auto shrink = vms_->resizeDisk(root(), "vm1", "disk0", "1G");
  ASSERT_FALSE(shrink.ok());
  EXPECT_EQ(shrink.error().field, "size");

  ASSERT_TRUE(vms_->removeDisk(root(), "vm1", "disk1").ok());
  EXPECT_FALSE(fs::exists(added->path));
  EXPECT_EQ(vms_->get(root(), "vm1")->diskGib, 2);
  EXPECT_EQ(vms_->removeDisk(root(), "vm1", "disk7").error().code, ErrorCode::NotFound);
}

// A rename takes the VM's volumes along; a delete removes them.
TEST_F(CoreStorageTest, RenameKeepsDisksDeleteRemovesThem) {
  ASSERT_TRUE(create("old", "kernel", {"64M"}, true).ok());
  ModifyVmRequest m;
  m.name = "new";
  auto renamed = vms_->modify(root(), "old", m);
  ASSERT_TRUE(renamed.ok()) << renamed.error().message;
  auto d = disks("new");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].volume, "new.disk0");
  EXPECT_TRUE(fs::exists(d[0].path));
  EXPECT_EQ(poolFiles().count("old.disk0.qcow2"), 0u);
  // The key still opens the renamed disk (it is bound to the VM's uuid, not its name).
  fs::path run = dir_.path() / "run2";
  fs::create_directories(run);
  EXPECT_TRUE(vms_->storage().qemuDisks(*renamed, run).ok());
  Storage::removeSecretFiles(run);

  ASSERT_TRUE(vms_->remove(root(), "new").ok());
  EXPECT_FALSE(fs::exists(d[0].path));
  EXPECT_TRUE(poolFiles().empty());
}

// Private images are seen and used by their owner only; import is admin-only;
// an iso is not a disk to clone.
TEST_F(CoreStorageTest, ImageVisibilityAndKinds) {
  addDiskImage("mine", "64M", "root");
  auto list = images_->list(alice());
  ASSERT_TRUE(list.ok());
  for (const auto& img : *list) EXPECT_NE(img.name, "mine");
  EXPECT_EQ(images_->get(alice(), "mine").error().code, ErrorCode::NotFound);
  auto use = create("x", "mine", {}, false, false, alice());
  ASSERT_FALSE(use.ok());
  EXPECT_EQ(use.error().field, "image");

  ImportImageRequest req{.name = "nope", .kind = "disk", .path = "/etc/hostname", .kernel = {}, .initrd = {},
                         .append = {}, .owner = {}, .description = {}, .format = {}, .ownsSource = false};
  EXPECT_EQ(images_->import(alice(), req).error().code, ErrorCode::Forbidden);
  req.kind = "floppy";
  EXPECT_EQ(images_->import(root(), req).error().field, "kind");

  CreateVmRequest cd;
  cd.name = "cdvm";
  cd.image = "kernel";
  cd.memoryMib = 128;
  cd.cdrom = "mine";
  auto wrongKind = vms_->create(root(), cd);
  ASSERT_FALSE(wrongKind.ok());
  EXPECT_EQ(wrongKind.error().field, "cdrom");
}

// A failed import (not a disk image) leaves no row and no files.
TEST_F(CoreStorageTest, FailedImportLeavesNothing) {
  fs::path bogus = dir_.path() / "bogus.iso";
  { std::ofstream(bogus) << std::string(40000, 'x'); }
  ImportImageRequest req{.name = "bogus", .kind = "iso", .path = bogus.string(), .kernel = {}, .initrd = {},
                         .append = {}, .owner = {}, .description = {}, .format = {}, .ownsSource = false};
  auto op = images_->import(root(), req);
  ASSERT_TRUE(op.ok()) << op.error().message;
  auto done = ops_->wait(op->id, std::chrono::seconds(30));
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, "failed");
  EXPECT_FALSE(store_->findImage("bogus")->has_value());
  EXPECT_FALSE(fs::exists(state_.imagesDir() / "bogus"));
}

}  // namespace
}  // namespace corral::core
