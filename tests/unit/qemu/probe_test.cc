// Proves that Probe reads a real QEMU's capabilities over QMP (version, machine
// types with the default, CPU models, devices, accelerators), that the answer is
// cached per binary and reused while the binary is unchanged, that a changed
// binary identity is probed again, and that a damaged cache file is ignored.
// Needs qemu-system-x86_64 (installed by scripts/install-deps); runs no guest.
#include "qemu/probe.h"

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "support/temp_dir.h"

namespace corral::qemu {
namespace {

TEST(IdentifyBinary, FindsProgramsInPathAndRejectsMissingOnes) {
  auto id = identifyBinary("qemu-system-x86_64");
  ASSERT_TRUE(id.ok()) << id.error().describe();
  EXPECT_TRUE(std::filesystem::path(id->path).is_absolute());
  EXPECT_GT(id->size, 0u);
  auto missing = identifyBinary("no-such-qemu-binary-here");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ErrorCode::NotFound);
}

TEST(Probe, ReadsCapabilitiesAndCachesThem) {
  testing::TempDir dir;
  Probe probe({.cacheDir = dir.str()});
  auto caps = probe.capabilities("qemu-system-x86_64");
  ASSERT_TRUE(caps.ok()) << caps.error().describe();
  EXPECT_FALSE(caps->fromCache);
  EXPECT_GE(caps->version.major, 7);
  EXPECT_TRUE(caps->hasMachine("q35"));
  EXPECT_TRUE(caps->hasMachine("pc"));
  EXPECT_FALSE(caps->defaultMachine.empty());
  EXPECT_TRUE(caps->hasCpuModel("max"));
  EXPECT_TRUE(caps->hasDevice("virtio-blk-pci"));
  EXPECT_TRUE(caps->hasDevice("isa-serial"));
  EXPECT_FALSE(caps->hasDevice("no-such-device"));
  EXPECT_TRUE(caps->hasAccel("tcg"));

  auto again = probe.capabilities("qemu-system-x86_64");
  ASSERT_TRUE(again.ok()) << again.error().describe();
  EXPECT_TRUE(again->fromCache);
  EXPECT_EQ(capsToJson(*again), capsToJson(*caps));
}

TEST(Probe, ChangedBinaryOrDamagedCacheIsProbedAgain) {
  testing::TempDir dir;
  Probe probe({.cacheDir = dir.str()});
  auto caps = probe.capabilities("qemu-system-x86_64");
  ASSERT_TRUE(caps.ok()) << caps.error().describe();
  std::filesystem::path file;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) file = e.path();
  ASSERT_FALSE(file.empty());

  // Pretend the cache was written for an older build of the same path.
  QemuCaps stale = *caps;
  stale.binary.mtimeNs -= 1;
  stale.machines.clear();
  { std::ofstream(file, std::ios::trunc) << capsToJson(stale).dump(); }
  auto fresh = probe.capabilities("qemu-system-x86_64");
  ASSERT_TRUE(fresh.ok()) << fresh.error().describe();
  EXPECT_FALSE(fresh->fromCache);
  EXPECT_TRUE(fresh->hasMachine("q35"));

  { std::ofstream(file, std::ios::trunc) << "{\"version\": 1, \"binary\": 42"; }
  auto afterDamage = probe.capabilities("qemu-system-x86_64");
  ASSERT_TRUE(afterDamage.ok()) << afterDamage.error().describe();
  EXPECT_FALSE(afterDamage->fromCache);
}

TEST(CapsJson, RoundTripsAndRejectsGarbage) {
  QemuCaps c;
  c.binary = {"/usr/bin/qemu", 10, 20};
  c.version = {7, 2, 0, "Debian"};
  c.machines = {{"pc-q35-7.2", "q35", true, false, 288}};
  c.defaultMachine = "pc-q35-7.2";
  c.cpuModels = {"max"};
  c.devices = {"virtio-blk-pci"};
  c.accels = {"kvm", "tcg"};
  auto back = capsFromJson(capsToJson(c));
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(capsToJson(*back), capsToJson(c));
  EXPECT_FALSE(capsFromJson(nlohmann::json::array()).ok());
  EXPECT_FALSE(capsFromJson(nlohmann::json{{"version", 1}, {"binary", "x"}}).ok());
}

}  // namespace
}  // namespace corral::qemu
