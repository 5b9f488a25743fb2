// corral.metadata/v1 (core/vm_metadata.h) on its own: building it from store
// records, reading what older and newer corrals wrote (tests/data/metadata/),
// the SMBIOS OEM strings and their escaping on QEMU's command line, and the
// store keeping a VM's creation facts frozen (SQLite; the 0004 migration).
#include "core/vm_metadata.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "qemu/command_line.h"
#include "qemu/runtime_record.h"
#include "store/store.h"
#include "support/temp_dir.h"
#include "util/build_info.h"

namespace corral::core {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json fixture(const std::string& name) {
  fs::path p = fs::path(CORRAL_SOURCE_DIR) / "tests/data/metadata" / name;
  std::ifstream in(p);
  EXPECT_TRUE(in) << p;
  std::stringstream ss;
  ss << in.rdbuf();
  return json::parse(ss.str());
}

Principal alice() {
  return {.login = "alice", .admin = false, .groups = {}, .via = "token", .tokenId = 3, .csrfToken = {}};
}

store::ImageRecord debian() {
  store::ImageRecord img;
  img.id = 7;
  img.name = "debian-13";
  img.kind = "disk";
  img.sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  return img;
}

store::VmRecord web1() {
  store::VmRecord vm;
  vm.id = 1;
  vm.name = "web1";
  vm.uuid = "a1b2c3d4-e5f6-4711-8899-aabbccddeeff";
  vm.image = "debian-13";
  vm.imageId = 7;
  vm.memoryMib = 1024;
  vm.vcpus = 2;
  vm.ownerKind = "group";
  vm.owner = "lab";
  vm.administrator = "alice";
  vm.description = "web, db";
  vm.createdAt = "2026-01-02T03:04:05Z";
  vm.creation = CreationFacts::atCreate(alice(), debian(), vm.createdAt).toJson().dump();
  return vm;
}

std::vector<store::DiskRecord> web1Disks() {
  store::DiskRecord d;
  d.name = "disk0";
  d.sizeBytes = int64_t{4} << 30;
  d.format = "qcow2";
  d.pool = "default";
  return {d};
}

// Proves build() joins the frozen creation facts and the current ones into
// the documented JSON shape, with this build's version.
TEST(VmMetadata, BuildsEveryFactFromTheRecords) {
  json j = VmMetadata::build(web1(), web1Disks(), "host-a").toJson();
  EXPECT_EQ(j["schema"], "corral.metadata/v1");
  EXPECT_EQ(j["name"], "web1");
  EXPECT_EQ(j["uuid"], "a1b2c3d4-e5f6-4711-8899-aabbccddeeff");
  EXPECT_EQ(j["description"], "web, db");
  EXPECT_EQ(j["created"]["at"], "2026-01-02T03:04:05Z");
  EXPECT_EQ(j["created"]["by"]["login"], "alice");
  EXPECT_EQ(j["created"]["by"]["via"], "token");
  EXPECT_EQ(j["created"]["corral"]["version"], util::build::kVersion);
  EXPECT_EQ(j["created"]["image"]["name"], "debian-13");
  EXPECT_EQ(j["created"]["image"]["id"], 7);
  EXPECT_EQ(j["created"]["image"]["sha256"], debian().sha256);
  EXPECT_EQ(j["flavour"]["memory_mib"], 1024);
  EXPECT_EQ(j["flavour"]["vcpus"], 2);
  ASSERT_EQ(j["flavour"]["disks"].size(), 1u);
  EXPECT_EQ(j["flavour"]["disks"][0]["size_bytes"], int64_t{4} << 30);
  EXPECT_EQ(j["flavour"]["disks"][0]["pool"], "default");
  EXPECT_EQ(j["owner"]["kind"], "group");
  EXPECT_EQ(j["owner"]["name"], "lab");
  EXPECT_EQ(j["administrator"], "alice");
  EXPECT_EQ(j["node"]["hostname"], "host-a");
  EXPECT_EQ(j["corral"]["version"], util::build::kVersion);
  EXPECT_EQ(j["corral"]["commit"], util::build::kCommit);
}

// Proves a VM made before creation facts were stored (creation "") still gets
// its creation time and image name from the columns it always had.
TEST(VmMetadata, VmOlderThanCreationFactsFallsBackToItsColumns) {
  store::VmRecord vm = web1();
  vm.creation.clear();
  VmMetadata m = VmMetadata::build(vm, {}, "host-a");
  EXPECT_EQ(m.created.createdAt, "2026-01-02T03:04:05Z");
  EXPECT_EQ(m.created.imageName, "debian-13");
  EXPECT_EQ(m.created.imageId, 7);
  EXPECT_EQ(m.created.creatorLogin, "");
  // And creation text that is not JSON (a damaged row) reads as none, not a crash.
  vm.creation = "{not json";
  EXPECT_EQ(VmMetadata::build(vm, {}, "h").created.createdAt, "2026-01-02T03:04:05Z");
}

// Proves records written before corral.metadata/v1 existed still parse: the
// runtime record reads, and its metadata is all defaults.
TEST(VmMetadata, ReadsRuntimeRecordsFromBeforeMetadata) {
  for (const char* file : {"machine-before-metadata.json", "machine-metadata-empty.json"}) {
    SCOPED_TRACE(file);
    auto rec = qemu::RuntimeRecord::fromJson(fixture(file));
    ASSERT_TRUE(rec.ok()) << rec.error().describe();
    VmMetadata m = VmMetadata::fromJson(rec->metadata);
    EXPECT_EQ(m.schema, "");
    EXPECT_EQ(m.name, "");
    EXPECT_EQ(m.memoryMib, 0u);
    EXPECT_TRUE(m.disks.empty());
  }
}

// Proves an early v1 with fewer fields parses, missing fields take their
// defaults, and writing it back adds them without losing what was there.
TEST(VmMetadata, ReadsAnEarlyV1WithFewerFields) {
  json early = fixture("metadata-v1-early.json");
  VmMetadata m = VmMetadata::fromJson(early);
  EXPECT_EQ(m.schema, "corral.metadata/v1");
  EXPECT_EQ(m.name, "early1");
  EXPECT_EQ(m.memoryMib, 512u);
  EXPECT_EQ(m.vcpus, 2u);
  EXPECT_EQ(m.ownerKind, "group");
  EXPECT_EQ(m.node, "host-a");
  EXPECT_EQ(m.corralVersion, "0.1.0");
  EXPECT_EQ(m.corralCommit, "");
  EXPECT_EQ(m.administrator, "");
  EXPECT_EQ(m.created.creatorLogin, "");
  EXPECT_TRUE(m.disks.empty());
  json again = m.toJson();
  json flat = again.flatten();
  json earlyFlat = early.flatten();
  for (const auto& [k, v] : earlyFlat.items()) EXPECT_EQ(flat[k], v) << k;
  EXPECT_EQ(again["created"]["by"]["login"], "");  // added, empty
  EXPECT_EQ(VmMetadata::fromJson(again).toJson(), again);
}

// Proves a newer corral's record round-trips: every key this version does not
// know (top level, nested in known objects, inside a disk) comes back intact.
TEST(VmMetadata, KeepsUnknownFieldsOfANewerRecord) {
  json future = fixture("metadata-v1-future.json");
  VmMetadata m = VmMetadata::fromJson(future);
  EXPECT_EQ(m.created.creatorVia, "token");
  EXPECT_EQ(m.created.imageId, 7);
  ASSERT_EQ(m.disks.size(), 1u);
  EXPECT_EQ(m.disks[0].sizeBytes, int64_t{4294967296});
  EXPECT_EQ(m.toJson(), future);
  // Through a runtime record file too, the way a daemon restart reads it.
  testing::TempDir dir;
  qemu::RuntimeRecord rec;
  rec.argv = {"qemu-system-x86_64"};
  rec.pid = 1;
  rec.paths.qmpSocket = "q";
  rec.metadata = m.toJson();
  ASSERT_TRUE(rec.write(dir.path().string()).ok());
  auto back = qemu::RuntimeRecord::read(dir.path().string());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(VmMetadata::fromJson(back->metadata).toJson(), future);
}

// Proves a type change by some other writer (a string where a number was)
// reads as the default instead of throwing, and keeps the odd value.
TEST(VmMetadata, ToleratesFieldsOfAnotherType) {
  json odd = {
      {"schema", "corral.metadata/v1"}, {"flavour", {{"memory_mib", "lots"}, {"disks", "none"}}}, {"owner", "alice"}};
  VmMetadata m = VmMetadata::fromJson(odd);
  EXPECT_EQ(m.memoryMib, 0u);
  EXPECT_TRUE(m.disks.empty());
  EXPECT_EQ(m.owner, "");
  EXPECT_EQ(VmMetadata::fromJson(json::array()).schema, "");
}

// Proves the OEM strings carry the facts as corral.<key>=<value>, leave out
// empty ones, and turn control characters (a NUL or newline would end or split
// the SMBIOS string) into spaces.
TEST(VmMetadata, OemStrings) {
  store::VmRecord vm = web1();
  vm.description = "line one\nline two";
  auto oem = VmMetadata::build(vm, web1Disks(), "host-a").oemStrings();
  auto has = [&](const std::string& s) { return std::find(oem.begin(), oem.end(), s) != oem.end(); };
  EXPECT_TRUE(has("corral.schema=corral.metadata/v1"));
  EXPECT_TRUE(has("corral.vm=web1"));
  EXPECT_TRUE(has("corral.uuid=a1b2c3d4-e5f6-4711-8899-aabbccddeeff"));
  EXPECT_TRUE(has("corral.owner=group:lab"));
  EXPECT_TRUE(has("corral.creator=alice"));
  EXPECT_TRUE(has("corral.creator.via=token"));
  EXPECT_TRUE(has("corral.created=2026-01-02T03:04:05Z"));
  EXPECT_TRUE(has("corral.image=debian-13"));
  EXPECT_TRUE(has("corral.image.id=7"));
  EXPECT_TRUE(has("corral.image.sha256=" + debian().sha256));
  EXPECT_TRUE(has("corral.node=host-a"));
  EXPECT_TRUE(has(std::string("corral.version=") + util::build::kVersion));
  EXPECT_TRUE(has("corral.description=line one line two"));
  for (const auto& s : oem) EXPECT_NE(s.back(), '=') << s;
}

// Proves a value with commas cannot add options of its own to -smbios: the
// qemu layer doubles each comma, so QEMU reads the whole value back.
TEST(VmMetadata, CommaInAValueIsEscapedOnTheCommandLine) {
  store::VmRecord vm = web1();
  vm.description = "a,file=/etc/shadow,b";
  qemu::VmSpec spec;
  spec.name = "web1";
  spec.memoryMib = 128;
  spec.smbios.oemStrings = VmMetadata::build(vm, {}, "h").oemStrings();
  auto argv = qemu::buildCommandLine(
      spec, qemu::RuntimePaths{.qmpSocket = "/r/q", .serialSocket = "/r/s", .vncSocket = "/r/v", .pidfile = "/r/p"},
      qemu::LaunchOptions{});
  auto it = std::find(argv.begin(), argv.end(), "type=11,value=corral.description=a,,file=/etc/shadow,,b");
  EXPECT_NE(it, argv.end());
  // And the command line names the guest.
  EXPECT_NE(std::find(argv.begin(), argv.end(), "guest=web1,debug-threads=on"), argv.end());
}

// Proves the store keeps creation facts (0004's column) as inserted and never
// changes them on an update, and that an update leaves them alone.
TEST(VmMetadata, StoreFreezesCreationFacts) {
  testing::TempDir dir;
  auto s = store::openSqliteStore((dir.path() / "corral.db").string());
  ASSERT_TRUE(s.ok()) << s.error().describe();
  auto& st = **s;
  ASSERT_TRUE(st.insertImage({.name = "debian-13", .kernel = "/k", .createdAt = store::nowRfc3339()}).ok());
  store::VmRecord vm = web1();
  vm.id = 0;
  vm.ownerKind = "user";
  vm.owner = "root";
  auto made = st.insertVm(vm);
  ASSERT_TRUE(made.ok()) << made.error().describe();
  EXPECT_EQ(made->creation, vm.creation);
  store::VmRecord changed = *made;
  changed.memoryMib = 2048;
  changed.creation = "{}";
  ASSERT_TRUE(st.updateVm(changed, 0).ok());
  auto found = st.findVm("web1");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->memoryMib, 2048u);
  EXPECT_EQ((*found)->creation, vm.creation);
  EXPECT_EQ(CreationFacts::fromText((*found)->creation).creatorLogin, "alice");
}

}  // namespace
}  // namespace corral::core
