// Storage end to end: a real corrald, real qemu-img, real guests under TCG
// reading and writing their disks across restarts, the image library (disk,
// iso, direct-boot; by path and by streamed upload), linked clones, CD boot,
// LUKS encryption and its keys, disk quotas and cleanup after a failed create.
// The LVM pool's own test (tests/unit/host/lvm_pool_test.cc) runs real LVM on
// a loop device; here one case runs a guest on it too.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/loop_vg.h"
#include "support/temp_dir.h"
#include "host/key_store.h"
#include "host/storage_pool_internal.h"
#include "store/store.h"
#include "util/command.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using nlohmann::json;

constexpr auto kBoot = 90s;
constexpr const char* kReady = "CORRAL-GUEST-READY";
constexpr const char* kPattern = "CORRAL-PATTERN-0123456789abcdef";

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Everything under dir, as relative paths: what a failed step must not change.
std::set<std::string> listTree(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); it.increment(ec))
    out.insert(fs::relative(it->path(), dir).string());
  return out;
}

class StorageTest : public ::testing::Test {
 protected:
  void SetUp() override { h_.startDaemon(); }

  ApiClient api() const { return ApiClient::unixSocket(h_.socket()); }

  // Imports through the API and waits for the operation; returns the final operation.
  json importImage(const json& body) {
    auto r = api().runOperation("POST", "/api/v1/images", body.dump());
    EXPECT_EQ(r.status, 200) << r.body;
    auto op = r.json();
    EXPECT_EQ(op.value("state", ""), "succeeded") << r.body;
    return op;
  }

  // The test guest as a direct-boot image whose kernel command line adds extra.
  void importGuest(const std::string& name, const std::string& extra) { h_.importGuest(name, extra); }

  json createVm(const json& body) {
    auto r = api().post("/api/v1/vms", body);
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json();
  }

  void start(const std::string& vm, const json& body = json::object()) {
    auto r = api().runOperation("POST", "/api/v1/vms/" + vm + "/actions/start", body.dump());
    ASSERT_EQ(r.json().value("state", ""), "succeeded") << r.body;
  }
  void stop(const std::string& vm) {
    auto r = api().runOperation("POST", "/api/v1/vms/" + vm + "/actions/stop", R"({"force":true})");
    ASSERT_EQ(r.json().value("state", ""), "succeeded") << r.body;
  }
  json disks(const std::string& vm) { return api().get("/api/v1/vms/" + vm + "/disks").json()["disks"]; }

  bool logHas(const std::string& vm, const std::string& needle, int n = 1) {
    return h_.waitForLog(vm, needle, n, kBoot);
  }

  DaemonHarness h_;
};

// A guest writes a known pattern to its LUKS disk: the pattern is read back
// after a restart (and after a rekey), yet appears nowhere in the image file,
// while the same pattern on a plain disk is plainly there. QEMU's argv and
// environment carry no passphrase, and the key file is gone once QEMU runs.
TEST_F(StorageTest, EncryptedDiskKeepsDataHidesItAndKeepsKeysOffArgv) {
  importGuest("pattern", "corral.pattern=/dev/vda");
  createVm({{"name", "secret"}, {"image", "pattern"}, {"memory", 128}, {"disks", {"64M"}}, {"encrypt", true}});
  createVm({{"name", "plain"}, {"image", "pattern"}, {"memory", 128}, {"disks", {"64M"}}});
  auto sd = disks("secret");
  ASSERT_EQ(sd.size(), 1u);
  EXPECT_TRUE(sd[0].value("encrypted", false));
  EXPECT_EQ(sd[0].dump().find("key"), std::string::npos) << "no key material in the API: " << sd[0].dump();

  start("secret");
  start("plain");
  ASSERT_TRUE(logHas("secret", "CORRAL-PATTERN-WRITTEN")) << h_.cli({"vm", "log", "secret"}).out;
  ASSERT_TRUE(logHas("plain", "CORRAL-PATTERN-WRITTEN")) << h_.cli({"vm", "log", "plain"}).out;

  pid_t pid = static_cast<pid_t>(h_.vm("secret").value("pid", 0));
  ASSERT_GT(pid, 0);
  std::string cmdline = readFile(fmt::format("/proc/{}/cmdline", pid));
  std::string environ = readFile(fmt::format("/proc/{}/environ", pid));
  EXPECT_NE(cmdline.find("secret,id="), std::string::npos) << "the disk is opened through a secret object";
  EXPECT_EQ(cmdline.find("data="), std::string::npos) << "a secret's value never on the command line";
  EXPECT_EQ(environ.find("corral"), std::string::npos);
  // The passphrase itself, recovered the way corrald does (the wrapped key in its
  // database, the host master key), is in neither.
  {
    auto db = store::openSqliteStore(h_.stateDir() + "/corral.db");
    ASSERT_TRUE(db.ok()) << db.error().message;
    auto vmRow = (*db)->findVm("secret");
    ASSERT_TRUE(vmRow.ok() && vmRow->has_value());
    auto rows = (*db)->listDisks((*vmRow)->id);
    ASSERT_TRUE(rows.ok() && rows->size() == 1);
    auto keys = host::KeyStore::open(fs::path(h_.stateDir()) / "keys" / "master.key");
    ASSERT_TRUE(keys.ok()) << keys.error().message;
    auto passphrase = keys->unwrap((*rows)[0].wrappedKey, (*vmRow)->uuid + "/disk0");
    ASSERT_TRUE(passphrase.ok()) << passphrase.error().message;
    ASSERT_GE(passphrase->size(), 32u);
    EXPECT_EQ(cmdline.find(*passphrase), std::string::npos) << "the key is on QEMU's command line";
    EXPECT_EQ(environ.find(*passphrase), std::string::npos) << "the key is in QEMU's environment";
  }
  fs::path runDir = fs::path(h_.stateDir()) / "run" / "secret";
  EXPECT_FALSE(fs::exists(runDir / "disk0.key")) << "the passphrase file goes once QEMU has read it";

  stop("secret");
  stop("plain");
  std::string secretFile = readFile(sd[0].value("path", ""));
  std::string plainFile = readFile(disks("plain")[0].value("path", ""));
  ASSERT_FALSE(secretFile.empty());
  EXPECT_EQ(secretFile.find(kPattern), std::string::npos) << "the encrypted image holds the pattern in clear";
  EXPECT_NE(plainFile.find(kPattern), std::string::npos) << "control: the plain image holds it";

  start("secret");
  ASSERT_TRUE(logHas("secret", "CORRAL-PATTERN-FOUND")) << h_.cli({"vm", "log", "secret"}).out;
  stop("secret");

  // A new passphrase in another key slot; the data is the same data.
  auto rekeyed = api().request("POST", "/api/v1/vms/secret/disks/disk0/rekey");
  ASSERT_EQ(rekeyed.status, 200) << rekeyed.body;
  start("secret");
  ASSERT_TRUE(logHas("secret", "CORRAL-PATTERN-FOUND")) << h_.cli({"vm", "log", "secret"}).out;
  stop("secret");

  // A daemon that died in the middle of a start left a passphrase file behind:
  // the next start of corrald removes it.
  h_.killDaemon();
  fs::create_directories(runDir);
  std::ofstream(runDir / "disk0.key") << "left-behind-passphrase";
  ASSERT_TRUE(fs::exists(runDir / "disk0.key"));
  h_.startDaemon();
  EXPECT_FALSE(fs::exists(runDir / "disk0.key")) << "a leftover passphrase file survived a daemon start";

  // Deleting the VM deletes its disks.
  ASSERT_EQ(api().request("DELETE", "/api/v1/vms/secret").status, 204);
  EXPECT_FALSE(fs::exists(sd[0].value("path", "")));
}

// A disk image (the test guest's hybrid ISO used as a hard disk) is imported
// as qcow2; a VM made from it is a copy-on-write clone that boots; the image
// cannot be deleted while the clone exists and is intact after the clone goes.
TEST_F(StorageTest, LinkedCloneBootsAndLeavesItsImageIntact) {
  fs::path iso = testGuestDir() / "guest.iso";
  ASSERT_TRUE(fs::exists(iso)) << "scripts/build-test-guest makes it";
  auto op = importImage({{"name", "guestdisk"}, {"kind", "disk"}, {"path", iso.string()}, {"format", "raw"}});
  EXPECT_EQ(op["bytes_total"].get<int64_t>(), static_cast<int64_t>(fs::file_size(iso)));
  EXPECT_EQ(op["bytes_done"], op["bytes_total"]);
  auto img = api().get("/api/v1/images/guestdisk").json();
  EXPECT_EQ(img.value("kind", ""), "disk");
  EXPECT_EQ(img.value("state", ""), "ready");
  EXPECT_EQ(img.value("sha256", "").size(), 64u);

  auto vm = createVm({{"name", "clone"}, {"image", "guestdisk"}, {"memory", 128}});
  auto d = disks("clone");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].value("backing_image", ""), "guestdisk");
  EXPECT_EQ(d[0].value("size_bytes", 0), img.value("virtual_size", 0));
  start("clone");
  ASSERT_TRUE(logHas("clone", kReady)) << h_.cli({"vm", "log", "clone"}).out;

  auto refused = api().request("DELETE", "/api/v1/images/guestdisk");
  EXPECT_EQ(refused.status, 409) << refused.body;
  EXPECT_NE(refused.body.find("clone"), std::string::npos) << "the error names the VM: " << refused.body;

  stop("clone");
  std::string libraryCopy = h_.stateDir() + "/images/guestdisk/disk.qcow2";
  auto check = util::Command("qemu-img").args({"check", "-f", "qcow2", libraryCopy}).stdoutToBuffer().stderrToBuffer().run();
  EXPECT_TRUE(check.ok()) << (check.ok() ? "" : check.error().message);
  std::string before = readFile(libraryCopy);
  ASSERT_EQ(api().request("DELETE", "/api/v1/vms/clone").status, 204);
  EXPECT_EQ(readFile(libraryCopy), before) << "deleting the clone left the image untouched";
  EXPECT_EQ(api().request("DELETE", "/api/v1/images/guestdisk").status, 204);
  EXPECT_FALSE(fs::exists(h_.stateDir() + "/images/guestdisk"));
}

// A full clone is independent: it has no backing image.
TEST_F(StorageTest, FullCloneHasNoBackingImage) {
  fs::path iso = testGuestDir() / "guest.iso";
  importImage({{"name", "guestdisk"}, {"kind", "disk"}, {"path", iso.string()}});
  createVm({{"name", "full"}, {"image", "guestdisk"}, {"memory", 128}, {"full_clone", true}, {"disks", {"128M"}}});
  auto d = disks("full");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].value("backing_image", "x"), "");
  EXPECT_EQ(d[0].value("size_bytes", 0), 128 << 20);
}

// An iso image boots the VM from its CD with a blank disk beside it; the CD can
// be ejected and inserted while the guest runs, and a reboot with --cdrom
// restarts QEMU booting that CD (contract words of the CLI).
TEST_F(StorageTest, CdBootEjectInsertAndRebootFromCd) {
  fs::path iso = testGuestDir() / "guest.iso";
  auto imp = h_.cli({"image", "import", "guestcd", "--iso", iso.string()});
  ASSERT_EQ(imp.exitCode, 0) << imp.err;
  auto cr = h_.cli({"vm", "create", "cd", "--image", "guestcd", "--disk", "64M", "--memory", "128"});
  ASSERT_EQ(cr.exitCode, 0) << cr.err;
  auto vm = api().get("/api/v1/vms/cd").json();
  EXPECT_EQ(vm.value("cdrom", ""), "guestcd");
  EXPECT_TRUE(vm.value("boot_cdrom", false));
  ASSERT_EQ(vm["disks"].size(), 1u);
  EXPECT_EQ(vm["disks"][0].value("backing_image", "x"), "");

  start("cd");
  ASSERT_TRUE(logHas("cd", kReady)) << h_.cli({"vm", "log", "cd"}).out;
  EXPECT_FALSE(api().get("/api/v1/vms/cd").json().value("boot_cdrom", true)) << "booting the CD is for once";

  auto ej = h_.cli({"vm", "cdrom", "eject", "cd"});
  ASSERT_EQ(ej.exitCode, 0) << ej.err;
  EXPECT_EQ(api().get("/api/v1/vms/cd").json().value("cdrom", "x"), "");
  auto in = h_.cli({"vm", "cdrom", "insert", "cd", "guestcd"});
  ASSERT_EQ(in.exitCode, 0) << in.err;
  EXPECT_EQ(api().get("/api/v1/vms/cd").json().value("cdrom", ""), "guestcd");

  pid_t before = static_cast<pid_t>(api().get("/api/v1/vms/cd").json().value("pid", 0));
  auto rb = h_.cli({"vm", "reboot", "cd", "--cdrom", "guestcd"});
  ASSERT_EQ(rb.exitCode, 0) << rb.err;
  ASSERT_TRUE(logHas("cd", kReady)) << h_.cli({"vm", "log", "cd"}).out;
  pid_t after = static_cast<pid_t>(api().get("/api/v1/vms/cd").json().value("pid", 0));
  EXPECT_NE(before, after) << "a reboot from a CD is a cold one: a new QEMU";
  stop("cd");
  EXPECT_EQ(api().request("DELETE", "/api/v1/images/guestcd").status, 409) << "in the CD drive: in use";
}

// An upload through the API arrives byte-exact (its sha256 is the source's)
// and is imported as an operation; a non-admin's upload is refused.
TEST_F(StorageTest, UploadImportsStreamedBody) {
  fs::path iso = testGuestDir() / "guest.iso";
  std::string bytes = readFile(iso);
  auto op = api().runOperation("PUT", "/api/v1/images/up/file?kind=iso", bytes);
  ASSERT_EQ(op.json().value("state", ""), "succeeded") << op.body;
  EXPECT_EQ(op.json().value("bytes_total", 0), static_cast<int64_t>(bytes.size()));
  auto img = api().get("/api/v1/images/up").json();
  EXPECT_EQ(img.value("state", ""), "ready") << op.body;
  auto sum = util::Command("sha256sum").arg(iso.string()).stdoutToBuffer().run();
  ASSERT_TRUE(sum.ok());
  EXPECT_EQ(img.value("sha256", ""), sum->out.substr(0, 64));
  EXPECT_TRUE(listTree(fs::path(h_.stateDir()) / "uploads").empty()) << "the upload's file is gone once imported";
}

// Disk sizes count against the disk quotas: over the limit the create is
// refused with the numbers and nothing is made; a resize past it too.
TEST_F(StorageTest, DiskQuotaRefusesCreateAndResize) {
  importGuest("guest", "");
  auto q = api().request("PUT", "/api/v1/quotas/users/root", R"({"max_disk_vm": 1, "max_disk_total": 2})");
  ASSERT_EQ(q.status, 200) << q.body;
  auto before = listTree(fs::path(h_.stateDir()) / "disks");
  auto r = api().post("/api/v1/vms", {{"name", "big"}, {"image", "guest"}, {"memory", 128}, {"disks", {"2G"}}});
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.json()["error"].value("code", ""), "quota_exceeded") << r.body;
  EXPECT_EQ(api().get("/api/v1/vms/big").status, 404);
  EXPECT_EQ(listTree(fs::path(h_.stateDir()) / "disks"), before);

  createVm({{"name", "small"}, {"image", "guest"}, {"memory", 128}, {"disks", {"512M"}}});
  auto grow = api().request("PATCH", "/api/v1/vms/small/disks/disk0", R"({"size":"3G"})");
  EXPECT_EQ(grow.status, 409) << grow.body;
  auto shrink = api().request("PATCH", "/api/v1/vms/small/disks/disk0", R"({"size":"256M"})");
  EXPECT_EQ(shrink.status, 400) << shrink.body;
  EXPECT_EQ(shrink.json()["error"].value("field", ""), "size");
  auto ok = api().request("PATCH", "/api/v1/vms/small/disks/disk0", R"({"size":"1G"})");
  EXPECT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(ok.json().value("size_bytes", 0), int64_t(1) << 30);
}

// A create whose second disk cannot be made (a stray file holds its name)
// leaves nothing: no VM row, no first disk; the stray file is untouched.
TEST_F(StorageTest, FailedCreateLeavesNothingBehind) {
  importGuest("guest", "");
  fs::path pool = fs::path(h_.stateDir()) / "disks";
  { std::ofstream(pool / "half.disk1.qcow2") << "not corral's"; }
  auto before = listTree(pool);
  auto r = api().post("/api/v1/vms", {{"name", "half"}, {"image", "guest"}, {"memory", 128}, {"disks", {"64M", "64M"}}});
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_EQ(api().get("/api/v1/vms/half").status, 404);
  EXPECT_EQ(listTree(pool), before) << "disk0 was removed again";
  EXPECT_EQ(readFile(pool / "half.disk1.qcow2"), "not corral's");
}

// A running guest's disk grows online (block_resize): the guest sees the new
// size on its next boot's scan, and qemu-img agrees once it is stopped. The
// CLI's disk words (a contract) drive it.
TEST_F(StorageTest, OnlineResizeAndDiskCommands) {
  importGuest("sizes", "corral.disksizes");
  auto cr = h_.cli({"vm", "create", "grow", "--image", "sizes", "--memory", "128", "--disk", "64M"});
  ASSERT_EQ(cr.exitCode, 0) << cr.err;
  auto add = h_.cli({"disk", "add", "grow", "32M"});
  ASSERT_EQ(add.exitCode, 0) << add.err;
  start("grow");
  ASSERT_TRUE(logHas("grow", "CORRAL-DISK vda 67108864")) << h_.cli({"vm", "log", "grow"}).out;
  ASSERT_TRUE(logHas("grow", "CORRAL-DISK vdb 33554432")) << h_.cli({"vm", "log", "grow"}).out;
  auto rs = h_.cli({"disk", "resize", "grow", "disk0", "128M"});
  ASSERT_EQ(rs.exitCode, 0) << rs.err;
  auto rm = h_.cli({"disk", "remove", "grow", "disk1"});
  EXPECT_NE(rm.exitCode, 0) << "removing a disk needs the VM stopped";
  stop("grow");
  start("grow");
  ASSERT_TRUE(logHas("grow", "CORRAL-DISK vda 134217728")) << h_.cli({"vm", "log", "grow"}).out;
  stop("grow");
  auto rm2 = h_.cli({"disk", "remove", "grow", "disk1"});
  ASSERT_EQ(rm2.exitCode, 0) << rm2.err;
  auto list = h_.cliJson({"disk", "list", "grow"});
  ASSERT_TRUE(list.contains("disks")) << list.dump();
  EXPECT_EQ(list["disks"].size(), 1u);
}

// An "lvm" pool end to end, on a VG the test makes on a loop device: a guest
// writes its pattern to an encrypted LV (raw LUKS through QEMU's luks driver
// over host_device) and finds it after a restart; deleting the VM removes the LV.
TEST(StorageLvmTest, EncryptedGuestDiskOnLvm) {
  if (!deviceMapperAvailable()) GTEST_SKIP() << "no device-mapper in this kernel: LVs cannot be activated here";
  std::string why;
  auto vg = LoopVg::make(host::pool_detail::kLvmConfig, why);
  if (!vg) GTEST_SKIP() << why;
  DaemonHarness h;
  fs::path cfg = h.dir() / "lvm.json";
  std::ofstream(cfg) << json{{"pools", {{{"name", "lvm"}, {"kind", "lvm"}, {"vg", vg->name()}}}}}.dump();
  h.startDaemon({"--config", cfg.string()});
  h.importGuest("pattern", "corral.pattern=/dev/vda");
  auto cr = h.cli({"vm", "create", "onlvm", "--image", "pattern", "--memory", "128", "--disk", "64M", "--encrypt",
                   "--pool", "lvm"});
  ASSERT_EQ(cr.exitCode, 0) << cr.err;
  auto lvs = vg->lvm("lvs", {"--noheadings", "-o", "lv_name", vg->name()});
  ASSERT_TRUE(lvs.ok());
  EXPECT_NE(lvs->out.find("corral-onlvm.disk0"), std::string::npos) << lvs->out;
  for (const char* marker : {"CORRAL-PATTERN-WRITTEN", "CORRAL-PATTERN-FOUND"}) {
    ASSERT_EQ(h.cli({"vm", "start", "onlvm"}).exitCode, 0);
    ASSERT_TRUE(h.waitForLog("onlvm", marker, 1, kBoot)) << h.cli({"vm", "log", "onlvm"}).out;
    ASSERT_EQ(h.cli({"vm", "stop", "onlvm", "--force"}).exitCode, 0);
  }
  ASSERT_EQ(h.cli({"vm", "delete", "onlvm"}).exitCode, 0);
  lvs = vg->lvm("lvs", {"--noheadings", "-o", "lv_name", vg->name()});
  ASSERT_TRUE(lvs.ok());
  EXPECT_EQ(lvs->out.find("corral-onlvm"), std::string::npos) << lvs->out;
}

}  // namespace
}  // namespace corral::testing
