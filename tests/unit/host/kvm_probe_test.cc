// Proves the KVM verdict machinery: the probe firmware really runs and makes
// QEMU exit with the expected status (checked under TCG, which every host has),
// a deadline that passes yields Timeout, an unopenable KVM device gives TCG with
// the reason, and a verdict is cached and reused until its key changes. The KVM
// runs themselves are replaced by util::Command's dry-run hook, so the result
// does not depend on this host's KVM.
#include "host/kvm_probe.h"

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::host {
namespace {

using std::chrono::milliseconds;

TEST(KvmProbe, FirmwareHasResetVectorAndCode) {
  const std::string image = probeFirmwareImage();
  ASSERT_EQ(image.size(), 64u * 1024);
  EXPECT_EQ(static_cast<unsigned char>(image[image.size() - 16]), 0xEA);  // jmp far at the reset vector
  EXPECT_EQ(static_cast<unsigned char>(image[0]), 0x66);                  // mov edx, imm32
}

TEST(KvmProbe, ProbeGuestRunsUnderTcg) {
  testing::TempDir dir;
  auto r = runProbeGuest("qemu-system-x86_64", qemu::Accel::Tcg, milliseconds(60000), dir.str());
  EXPECT_TRUE(r.ok()) << r.error().describe();
}

TEST(KvmProbe, MissedDeadlineIsTimeout) {
  testing::TempDir dir;
  // 1 ms: QEMU cannot even start in time.
  auto r = runProbeGuest("qemu-system-x86_64", qemu::Accel::Tcg, milliseconds(1), dir.str());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Timeout);
}

TEST(KvmProbe, UnopenableDeviceMeansTcg) {
  testing::TempDir dir;
  auto v = probeAccel({.kvmDevice = (dir / "no-kvm").string(), .cacheDir = dir.str()});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->accel, qemu::Accel::Tcg);
  EXPECT_NE(v->reason.find("no-kvm"), std::string::npos) << v->reason;
}

TEST(KvmProbe, VerdictIsCachedUntilTheKeyChanges) {
  testing::TempDir dir;
  const std::string fakeKvm = (dir / "kvm").string();
  { std::ofstream(fakeKvm) << ""; }  // opens read-write like a working /dev/kvm
  int runs = 0;
  util::ScopedDryRunForTest dry([&](const util::DryRunCall& call) {
    ++runs;
    EXPECT_NE(std::find(call.argv.begin(), call.argv.end(), "kvm"), call.argv.end());
    return util::DryRunReply{.status = {.exitCode = 0x63}};
  });
  KvmProbeOptions opts{.kvmDevice = fakeKvm, .cacheDir = (dir / "cache").string()};
  auto first = probeAccel(opts);
  ASSERT_TRUE(first.ok()) << first.error().describe();
  EXPECT_EQ(first->accel, qemu::Accel::Kvm);
  EXPECT_FALSE(first->fromCache);
  EXPECT_EQ(runs, 1);

  auto second = probeAccel(opts);
  ASSERT_TRUE(second.ok()) << second.error().describe();
  EXPECT_EQ(second->accel, qemu::Accel::Kvm);
  EXPECT_TRUE(second->fromCache);
  EXPECT_EQ(runs, 1);

  opts.deadline = milliseconds(5000);  // part of the key
  auto third = probeAccel(opts);
  ASSERT_TRUE(third.ok()) << third.error().describe();
  EXPECT_FALSE(third->fromCache);
  EXPECT_EQ(runs, 2);
}

TEST(KvmProbe, FailingGuestMeansTcgWithQemusWords) {
  testing::TempDir dir;
  const std::string fakeKvm = (dir / "kvm").string();
  { std::ofstream(fakeKvm) << ""; }
  util::ScopedDryRunForTest dry([&](const util::DryRunCall&) {
    return util::DryRunReply{.status = {.exitCode = 1}, .err = "Could not access KVM kernel module\n"};
  });
  auto v = probeAccel({.kvmDevice = fakeKvm});
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(v->accel, qemu::Accel::Tcg);
  EXPECT_NE(v->reason.find("Could not access KVM"), std::string::npos) << v->reason;
}

}  // namespace
}  // namespace corral::host
