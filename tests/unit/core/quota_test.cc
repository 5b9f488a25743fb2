// Proves the quota rules apart from any store: overrides win over defaults and
// -1 is unlimited; root is unlimited unless overridden; a create checks every
// limit and names the resource, limit, usage and request; only what a change
// increases is checked (a lowered quota never blocks a stop or a shrink); an
// owner change counts the whole VM against the new owner.
#include <gtest/gtest.h>

#include "core/quota.h"

namespace corral::core {
namespace {

store::VmRecord vm(uint64_t mem, std::string desired = "stopped", std::string owner = "alice") {
  store::VmRecord v;
  v.name = "v1";
  v.ownerKind = "user";
  v.owner = std::move(owner);
  v.memoryMib = mem;
  v.desiredState = std::move(desired);
  v.state = "stopped";
  return v;
}

store::QuotaRecord none(std::string subject = "alice") { return {.subjectKind = "user", .subject = std::move(subject)}; }

Error refusal(const Result<void>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? Error{} : r.error();
}

TEST(QuotaPolicy, OverridesWinAndMinusOneIsUnlimited) {
  QuotaPolicy p;
  auto o = none();
  o.maxVms = 2;
  o.maxRunning = -1;
  QuotaLimits l = p.effective(o);
  EXPECT_EQ(l.maxVms, 2);
  EXPECT_EQ(l.maxRunning, -1);
  EXPECT_EQ(l.maxMemoryVmMib, QuotaLimits{}.maxMemoryVmMib);
}

TEST(QuotaPolicy, RootIsUnlimitedUnlessOverridden) {
  QuotaPolicy p;
  EXPECT_EQ(p.effective(none("root")).maxVms, -1);
  auto o = none("root");
  o.maxVms = 1;
  EXPECT_EQ(p.effective(o).maxVms, 1);
  auto group = none("root");
  group.subjectKind = "group";  // a group called root gets the defaults
  EXPECT_EQ(p.effective(group).maxVms, QuotaLimits{}.maxVms);
}

TEST(QuotaPolicy, CreateRefusalNamesResourceLimitUsageAndRequest) {
  QuotaPolicy p(QuotaLimits{.maxVms = 5});
  auto after = vm(128);
  auto e = refusal(p.check(nullptr, after)(store::Usage{.vms = 5}, none()));
  EXPECT_EQ(e.code, ErrorCode::QuotaExceeded);
  ASSERT_TRUE(e.quota);
  EXPECT_EQ(e.quota->resource, "max_vms");
  EXPECT_EQ(e.quota->limit, 5);
  EXPECT_EQ(e.quota->usage, 5);
  EXPECT_EQ(e.quota->requested, 1);
  EXPECT_NE(e.message.find("user alice"), std::string::npos) << e.message;
  EXPECT_TRUE(p.check(nullptr, after)(store::Usage{.vms = 4}, none()).ok());
}

TEST(QuotaPolicy, PerVmMemoryBoundsBothWays) {
  QuotaPolicy p(QuotaLimits{.minMemoryVmMib = 128, .maxMemoryVmMib = 1024});
  EXPECT_EQ(refusal(p.check(nullptr, vm(100))({}, none())).quota->resource, "min_memory_vm");
  EXPECT_EQ(refusal(p.check(nullptr, vm(2048))({}, none())).quota->resource, "max_memory_vm");
  EXPECT_TRUE(p.check(nullptr, vm(512))({}, none()).ok());
}

TEST(QuotaPolicy, StartChecksRunningCountAndMemoryTotal) {
  QuotaPolicy p(QuotaLimits{.maxRunning = 2, .maxMemoryTotalMib = 1000});
  auto before = vm(512);
  auto after = vm(512, "running");
  auto e = refusal(p.check(&before, after)(store::Usage{.vms = 3, .running = 2, .memoryRunningMib = 256}, none()));
  EXPECT_EQ(e.quota->resource, "max_running");
  e = refusal(p.check(&before, after)(store::Usage{.vms = 3, .running = 1, .memoryRunningMib = 600}, none()));
  EXPECT_EQ(e.quota->resource, "max_memory_total");
  EXPECT_EQ(e.quota->usage, 600);
  EXPECT_EQ(e.quota->requested, 512);
  EXPECT_TRUE(p.check(&before, after)(store::Usage{.vms = 3, .running = 1, .memoryRunningMib = 488}, none()).ok());
}

TEST(QuotaPolicy, ResumeOfAPausedVmIncreasesNothing) {
  QuotaPolicy p(QuotaLimits{.maxRunning = 0});
  auto paused = vm(512, "paused");
  auto resumed = vm(512, "running");
  EXPECT_TRUE(p.check(&paused, resumed)(store::Usage{.running = 10}, none()).ok());
}

TEST(QuotaPolicy, LoweredQuotaNeverBlocksShrinkingOrStopping) {
  QuotaPolicy p(QuotaLimits{.maxVms = 0, .maxRunning = 0, .maxMemoryTotalMib = 0, .maxMemoryVmMib = 100});
  auto running = vm(512, "running");
  auto stopped = vm(512, "stopped");
  EXPECT_TRUE(p.check(&running, stopped)(store::Usage{.vms = 9, .running = 9}, none()).ok());
  auto smaller = vm(256, "stopped");
  // A shrink still has to fit the per-VM maximum: the new size is what is asked.
  EXPECT_EQ(refusal(p.check(&stopped, smaller)({}, none())).quota->resource, "max_memory_vm");
  auto described = stopped;
  described.description = "renamed things only";
  EXPECT_TRUE(p.check(&stopped, described)(store::Usage{.vms = 9}, none()).ok());
}

TEST(QuotaPolicy, OwnerChangeCountsTheWholeVmAgainstTheNewOwner) {
  QuotaPolicy p(QuotaLimits{.maxVms = 1});
  auto before = vm(128, "stopped", "alice");
  auto after = vm(128, "stopped", "bob");
  auto e = refusal(p.check(&before, after)(store::Usage{.vms = 1}, none("bob")));
  EXPECT_EQ(e.quota->resource, "max_vms");
  EXPECT_NE(e.message.find("user bob"), std::string::npos);
}

TEST(QuotaPolicy, DescribeShowsUnlimitedAsNullAndOverridesApart) {
  QuotaPolicy p(QuotaLimits{.maxVms = 10});
  auto o = none();
  o.maxRunning = -1;
  auto j = p.describe(o, store::Usage{.vms = 3, .running = 1, .memoryRunningMib = 128});
  EXPECT_EQ(j["limits"]["max_vms"], 10);
  EXPECT_TRUE(j["limits"]["max_running"].is_null());
  EXPECT_EQ(j["overrides"]["max_running"], -1);
  EXPECT_TRUE(j["overrides"]["max_vms"].is_null());
  EXPECT_EQ(j["usage"]["vms"], 3);
  EXPECT_EQ(j["usage"]["memory_total"], 128);
  EXPECT_EQ(j["subject"], "alice");
}

}  // namespace
}  // namespace corral::core
