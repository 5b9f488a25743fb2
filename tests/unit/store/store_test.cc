// Proves the Store contract (store/store.h) against real databases, the same
// tests on both implementations: a SQLite file and a real PostgreSQL server
// (store_fixture.h). Images and disks (the storage schema) are proven in
// store_storage_test.cc.
//
// Migrations apply once and survive reopening (and a SQLite database made by
// 0001 upgrades); uniqueness is enforced by the database, also under concurrent
// inserts; images, users and groups in use cannot be deleted and deleting a user
// takes their tokens, sessions and memberships with it; versions guard updates;
// usage counts what the contract says; quota checks see the owner's usage and
// overrides, and 50 concurrent quota-checked creates against a limit of 5 give
// exactly 5 rows; tokens, sessions and operations keep what they are given.
#include <sys/stat.h>

#include <atomic>
#include <set>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "store/migrations.h"
#include "store/store.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"
#include "unit/store/store_fixture.h"

namespace corral::store {
namespace {

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::Sqlite, Backend::Postgres), backendName);

// ---- migrations and the original VM/image behaviour

TEST_P(StoreTest, MigrationsApplyOnceAndPersist) {
  EXPECT_EQ(*store_->schemaVersion(), dialectMigrations().back().version);
  EXPECT_EQ(migrations().back().version, postgresMigrations().back().version) << "dialects out of step";
  ASSERT_TRUE(store_->insertVm(vm("a")).ok());
  store_.reset();
  auto again = open();
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(*again->schemaVersion(), dialectMigrations().back().version);
  auto found = again->findVm("a");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->image, "demo");
}

TEST_P(StoreTest, DuplicateVmNameIsAlreadyExistsNamingTheField) {
  ASSERT_TRUE(store_->insertVm(vm("a")).ok());
  auto dup = store_->insertVm(vm("a"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "name");
}

TEST_P(StoreTest, UnknownImageIsNotFoundNamingTheField) {
  auto v = vm("a");
  v.image = "nope";
  auto r = store_->insertVm(v);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
  EXPECT_EQ(r.error().field, "image");
  EXPECT_TRUE(store_->listVms()->empty());
}

TEST_P(StoreTest, ConcurrentCreatesOfOneNameGiveOneRow) {
  std::vector<std::thread> threads;
  std::atomic<int> created{0};
  std::atomic<int> exists{0};
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      auto v = vm("same");
      v.uuid = "u" + std::to_string(i);
      auto r = store_->insertVm(v);
      if (r.ok()) ++created;
      else if (r.error().code == ErrorCode::AlreadyExists) ++exists;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(exists.load(), 7);
  EXPECT_EQ(store_->listVms()->size(), 1u);
}

TEST_P(StoreTest, ImageInUseCannotBeDeleted) {
  ASSERT_TRUE(store_->insertVm(vm("web")).ok());
  auto r = store_->deleteImage("demo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("web"), std::string::npos);
  ASSERT_TRUE(store_->deleteVm("web").ok());
  EXPECT_TRUE(store_->deleteImage("demo").ok());
  EXPECT_EQ(store_->deleteImage("demo").error().code, ErrorCode::NotFound);
}

TEST_P(StoreTest, ImagesRoundTripAndDuplicateIsAlreadyExists) {
  auto found = store_->findImage("demo");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->append, "console=ttyS0");
  EXPECT_FALSE(store_->findImage("nope")->has_value());
  ImageRecord big{.name = "big", .kernel = "/k", .sizeBytes = int64_t{5} << 32, .createdAt = nowRfc3339()};
  ASSERT_TRUE(store_->insertImage(big).ok());
  EXPECT_EQ((*store_->findImage("big"))->sizeBytes, int64_t{5} << 32);  // beyond 32 bits on both
  EXPECT_EQ(store_->insertImage(big).error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(store_->listImages()->size(), 2u);
}

TEST_P(StoreTest, StateUpdateBumpsVersionAndKeepsDesiredUnlessGiven) {
  auto created = store_->insertVm(vm("a"));
  ASSERT_TRUE(created.ok());
  auto u = store_->updateVmState("a", {.state = "running", .stateReason = "", .pid = 42, .accel = "tcg",
                                       .desiredState = "running"});
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->state, "running");
  EXPECT_EQ(u->pid, 42);
  EXPECT_EQ(u->desiredState, "running");
  EXPECT_EQ(u->version, created->version + 1);
  auto v = store_->updateVmState("a", {.state = "crashed", .stateReason = "killed", .pid = std::nullopt});
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->desiredState, "running");
  EXPECT_FALSE(v->pid.has_value());
  EXPECT_EQ(store_->updateVmState("zz", {.state = "running"}).error().code, ErrorCode::NotFound);
}

// ---- VMs: control-plane fields, updateVm, usage, quota checks

TEST_P(StoreTest, VmControlPlaneFieldsRoundTrip) {
  auto v = vm("a", "devs");
  v.ownerKind = "group";
  v.administrator = "bob";
  v.contact = "devs@example.org";
  v.description = "build box";
  v.diskGib = 20;
  ASSERT_TRUE(store_->insertVm(v).ok());
  auto f = store_->findVm("a");
  ASSERT_TRUE(f.ok() && f->has_value());
  const VmRecord& r = **f;
  EXPECT_EQ(r.ownerKind, "group");
  EXPECT_EQ(r.owner, "devs");
  EXPECT_EQ(r.administrator, "bob");
  EXPECT_EQ(r.contact, "devs@example.org");
  EXPECT_EQ(r.description, "build box");
  EXPECT_EQ(r.diskGib, 20);
  EXPECT_EQ(r.version, 1);
  EXPECT_GT(r.id, 0);
  auto bad = vm("b");
  bad.ownerKind = "robot";  // the CHECK constraint
  EXPECT_FALSE(store_->insertVm(bad).ok());
}

TEST_P(StoreTest, UpdateVmWritesSettableFieldsAndChecksTheVersion) {
  auto created = store_->insertVm(vm("a"));
  ASSERT_TRUE(created.ok());
  VmRecord next = *created;
  next.memoryMib = 512;
  next.vcpus = 2;
  next.contact = "a@example.org";
  next.description = "changed";
  next.desiredState = "running";
  next.diskGib = 3;
  next.state = "crashed";  // not settable: observed state stays the store's
  auto u = store_->updateVm(next, created->version);
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->memoryMib, 512u);
  EXPECT_EQ(u->vcpus, 2u);
  EXPECT_EQ(u->contact, "a@example.org");
  EXPECT_EQ(u->description, "changed");
  EXPECT_EQ(u->desiredState, "running");
  EXPECT_EQ(u->diskGib, 3);
  EXPECT_EQ(u->state, "stopped");
  EXPECT_EQ(u->version, created->version + 1);

  // A writer holding the old version loses, and nothing changes.
  next.memoryMib = 1024;
  auto stale = store_->updateVm(next, created->version);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::VersionMismatch);
  EXPECT_EQ((*store_->findVm("a"))->memoryMib, 512u);
  // Version 0 skips the check.
  auto forced = store_->updateVm(next, 0);
  ASSERT_TRUE(forced.ok());
  EXPECT_EQ(forced->memoryMib, 1024u);
  EXPECT_EQ(forced->version, created->version + 2);

  ASSERT_TRUE(store_->deleteVm("a").ok());
  EXPECT_EQ(store_->updateVm(next, 0).error().code, ErrorCode::NotFound);
}

TEST_P(StoreTest, RenameKeepsTheRowAndRefusesATakenName) {
  auto a = store_->insertVm(vm("a"));
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(store_->insertVm(vm("b")).ok());
  VmRecord r = *a;
  r.name = "b";
  auto taken = store_->updateVm(r, 0);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(taken.error().field, "name");
  r.name = "c";
  auto renamed = store_->updateVm(r, a->version);
  ASSERT_TRUE(renamed.ok());
  EXPECT_EQ(renamed->id, a->id);
  EXPECT_EQ(renamed->uuid, a->uuid);
  EXPECT_FALSE(store_->findVm("a")->has_value());
  EXPECT_TRUE(store_->findVm("c")->has_value());
}

TEST_P(StoreTest, UsageCountsVmsRunningMemoryAndDiskOfOneOwner) {
  auto add = [&](const std::string& name, const std::string& owner, uint64_t mib, int64_t disk, std::string desired,
                 std::string state) {
    auto v = vm(name, owner);
    v.memoryMib = mib;
    v.diskGib = disk;
    v.desiredState = desired;
    v.state = state;
    ASSERT_TRUE(store_->insertVm(v).ok());
  };
  add("stopped", "alice", 100, 1, "stopped", "stopped");
  add("wanted", "alice", 200, 2, "running", "stopped");      // desired running counts
  add("booting", "alice", 400, 4, "stopped", "starting");    // observed up counts
  add("paused", "alice", 800, 8, "paused", "paused");
  add("crashed", "alice", 1600, 16, "stopped", "crashed");   // neither
  add("other", "bob", 3200, 32, "running", "running");       // another owner
  auto u = store_->usage("user", "alice");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->vms, 5);
  EXPECT_EQ(u->running, 3);
  EXPECT_EQ(u->memoryRunningMib, 1400);
  EXPECT_EQ(u->diskTotalGib, 31);
  EXPECT_EQ(store_->usage("group", "alice")->vms, 0);  // kind is part of the owner
  EXPECT_EQ(store_->usage("user", "nobody")->vms, 0);
  EXPECT_EQ(store_->usage("robot", "alice").error().code, ErrorCode::InvalidInput);
}

TEST_P(StoreTest, PatchQuotaChangesOnlyWhatItTouchesAndConcurrentPatchesKeepBoth) {
  ASSERT_TRUE(store_->setQuota({.subjectKind = "user", .subject = "alice", .maxVms = 2, .maxRunning = 1}).ok());
  auto patched = store_->patchQuota("user", "alice", [](QuotaRecord& q) {
    EXPECT_EQ(q.maxVms, 2);  // the change sees the current overrides
    q.maxRunning = std::nullopt;
    q.maxDiskVmGib = 40;
  });
  ASSERT_TRUE(patched.ok()) << patched.error().describe();
  auto now = store_->findQuota("user", "alice");
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(now->maxVms, 2);
  EXPECT_FALSE(now->maxRunning.has_value());
  EXPECT_EQ(now->maxDiskVmGib, 40);
  EXPECT_EQ(patched->maxDiskVmGib, 40);
  EXPECT_EQ(store_->patchQuota("robot", "alice", [](QuotaRecord&) {}).error().code, ErrorCode::InvalidInput);

  // Clearing every override leaves no row, as setQuota does.
  ASSERT_TRUE(store_->patchQuota("user", "alice", [](QuotaRecord& q) { q = {}; }).ok());
  EXPECT_FALSE(store_->findQuota("user", "alice")->maxVms.has_value());

  // 20 patches at once, each of its own field: none is lost.
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      auto r = store_->patchQuota("group", "devs", [i](QuotaRecord& q) {
        if (i % 2 == 0) q.maxVms = q.maxVms.value_or(0) + 1;
        else q.maxRunning = q.maxRunning.value_or(0) + 1;
      });
      EXPECT_TRUE(r.ok()) << r.error().describe();
    });
  }
  for (auto& t : threads) t.join();
  auto devs = store_->findQuota("group", "devs");
  ASSERT_TRUE(devs.ok());
  EXPECT_EQ(devs->maxVms, 10);
  EXPECT_EQ(devs->maxRunning, 10);
}

TEST_P(StoreTest, QuotaCheckSeesTheOwnersUsageAndOverridesAndItsRefusalWritesNothing) {
  addUser("alice");
  ASSERT_TRUE(store_->setQuota({.subjectKind = "user", .subject = "alice", .maxVms = 2}).ok());
  ASSERT_TRUE(store_->insertVm(vm("a")).ok());
  Usage seen;
  QuotaRecord seenQuota;
  auto refuse = [&](const Usage& u, const QuotaRecord& q) -> Result<void> {
    seen = u;
    seenQuota = q;
    return Error::quotaExceeded({.resource = "vms", .limit = 2, .usage = u.vms, .requested = 1}, "user alice");
  };
  auto r = store_->insertVm(vm("b"), refuse);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::QuotaExceeded);
  ASSERT_TRUE(r.error().quota.has_value());
  EXPECT_EQ(seen.vms, 1);
  EXPECT_EQ(seenQuota.subject, "alice");
  EXPECT_EQ(seenQuota.maxVms, 2);
  EXPECT_FALSE(seenQuota.maxRunning.has_value());
  EXPECT_FALSE(store_->findVm("b")->has_value());

  // On update the VM itself does not count, and the new owner's usage is given.
  auto a = *store_->findVm("a");
  ASSERT_TRUE(store_->insertVm(vm("c", "bob")).ok());
  auto accept = [&](const Usage& u, const QuotaRecord& q) -> Result<void> {
    seen = u;
    seenQuota = q;
    return ok();
  };
  a->memoryMib = 256;
  ASSERT_TRUE(store_->updateVm(*a, 0, accept).ok());
  EXPECT_EQ(seen.vms, 0);
  a->owner = "bob";
  a->memoryMib = 128;
  auto moved = store_->updateVm(*a, 0, refuse);
  ASSERT_FALSE(moved.ok());
  EXPECT_EQ(seen.vms, 1);  // bob's "c"
  EXPECT_EQ(seenQuota.subject, "bob");
  EXPECT_EQ((*store_->findVm("a"))->owner, "alice");
  EXPECT_EQ((*store_->findVm("a"))->memoryMib, 256u);
}

// The issue's race: 50 concurrent creates against a limit of 5 give exactly 5.
TEST_P(StoreTest, FiftyConcurrentQuotaCheckedCreatesGiveExactlyTheLimit) {
  auto limit5 = [](const Usage& u, const QuotaRecord&) -> Result<void> {
    if (u.vms >= 5)
      return Error::quotaExceeded({.resource = "vms", .limit = 5, .usage = u.vms, .requested = 1}, "user alice");
    return ok();
  };
  std::atomic<int> created{0};
  std::atomic<int> refused{0};
  std::atomic<int> other{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i)
    threads.emplace_back([&, i] {
      auto r = store_->insertVm(vm("vm" + std::to_string(i)), limit5);
      if (r.ok()) ++created;
      else if (r.error().code == ErrorCode::QuotaExceeded) ++refused;
      else ++other;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 5);
  EXPECT_EQ(refused.load(), 45);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(store_->usage("user", "alice")->vms, 5);
  EXPECT_EQ(store_->listVms()->size(), 5u);
}

// Owner changes race too: moving VMs into one owner concurrently stays within it.
TEST_P(StoreTest, ConcurrentOwnerChangesRespectTheNewOwnersLimit) {
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(store_->insertVm(vm("vm" + std::to_string(i), "u" + std::to_string(i))).ok());
  auto limit3 = [](const Usage& u, const QuotaRecord&) -> Result<void> {
    if (u.vms >= 3) return Error::quotaExceeded({.resource = "vms", .limit = 3, .usage = u.vms, .requested = 1}, "bob");
    return ok();
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < 12; ++i)
    threads.emplace_back([&, i] {
      auto v = *store_->findVm("vm" + std::to_string(i));
      v->owner = "bob";
      (void)store_->updateVm(*v, 0, limit3);
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(store_->usage("user", "bob")->vms, 3);
}

// ---- users

TEST_P(StoreTest, UsersRoundTripAndLoginsAreUnique) {
  auto a = addUser("alice", true);
  EXPECT_GT(a.id, 0);
  EXPECT_EQ(a.version, 1);
  auto f = store_->findUser("alice");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->displayName, "The alice");
  EXPECT_EQ((*f)->email, "alice@example.org");
  EXPECT_EQ((*f)->passwordHash, "$argon2id$x");
  EXPECT_TRUE((*f)->admin);
  EXPECT_EQ((*f)->id, a.id);
  EXPECT_FALSE(store_->findUser("nobody")->has_value());
  auto dup = store_->insertUser({.login = "alice", .createdAt = nowRfc3339()});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "login");
  addUser("bob");
  auto all = store_->listUsers();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].login, "alice");
  EXPECT_FALSE((*all)[1].admin);
}

TEST_P(StoreTest, UsersAndGroupsShareOneNamespace) {
  addUser("alice");
  auto g = store_->insertGroup({.name = "alice", .createdAt = nowRfc3339()});
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(g.error().field, "name");
  ASSERT_TRUE(store_->insertGroup({.name = "devs", .createdAt = nowRfc3339()}).ok());
  auto u = store_->insertUser({.login = "devs", .createdAt = nowRfc3339()});
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(u.error().field, "login");
}

TEST_P(StoreTest, UpdateUserChecksTheVersion) {
  auto a = addUser("alice");
  UserRecord next = a;
  next.displayName = "Alice A.";
  next.email = "aa@example.org";
  next.passwordHash = "$argon2id$y";
  next.admin = true;
  auto u = store_->updateUser(next, a.version);
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->displayName, "Alice A.");
  EXPECT_EQ(u->email, "aa@example.org");
  EXPECT_EQ(u->passwordHash, "$argon2id$y");
  EXPECT_TRUE(u->admin);
  EXPECT_EQ(u->version, a.version + 1);
  next.displayName = "stale";
  auto stale = store_->updateUser(next, a.version);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.error().code, ErrorCode::VersionMismatch);
  EXPECT_EQ((*store_->findUser("alice"))->displayName, "Alice A.");
  EXPECT_TRUE(store_->updateUser(next, 0).ok());
  next.login = "nobody";
  EXPECT_EQ(store_->updateUser(next, 0).error().code, ErrorCode::NotFound);
}

TEST_P(StoreTest, DeleteUserIsRefusedWhileOwningOrAdministeringVms) {
  addUser("alice");
  addUser("bob");
  ASSERT_TRUE(store_->insertVm(vm("mine", "alice")).ok());
  auto adm = vm("theirs", "bob");
  adm.administrator = "alice";
  ASSERT_TRUE(store_->insertVm(adm).ok());
  auto r = store_->deleteUser("alice");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("mine"), std::string::npos);
  EXPECT_NE(r.error().message.find("theirs"), std::string::npos);
  ASSERT_TRUE(store_->deleteVm("mine").ok());
  EXPECT_EQ(store_->deleteUser("alice").error().code, ErrorCode::FailedPrecondition);
  ASSERT_TRUE(store_->deleteVm("theirs").ok());
  EXPECT_TRUE(store_->deleteUser("alice").ok());
  EXPECT_EQ(store_->deleteUser("alice").error().code, ErrorCode::NotFound);
}

TEST_P(StoreTest, DeleteUserTakesTokensSessionsMembershipsAndQuotaWithIt) {
  addUser("alice");
  addUser("bob");
  ASSERT_TRUE(store_->insertGroup({.name = "devs", .createdAt = nowRfc3339()}).ok());
  ASSERT_TRUE(store_->addMember("devs", "alice").ok());
  ASSERT_TRUE(store_->addMember("devs", "bob").ok());
  auto t = store_->insertToken(token("alice", "h-alice"));
  ASSERT_TRUE(t.ok());
  ASSERT_TRUE(store_->insertToken(token("bob", "h-bob")).ok());
  ASSERT_TRUE(store_->insertSession({.idHash = "s-alice", .login = "alice", .csrfToken = "c", .createdAt = nowRfc3339(),
                                     .expiresAt = "2999-01-01T00:00:00Z"})
                  .ok());
  ASSERT_TRUE(store_->setQuota({.subjectKind = "user", .subject = "alice", .maxVms = 1}).ok());

  ASSERT_TRUE(store_->deleteUser("alice").ok());
  EXPECT_FALSE(store_->findTokenByHash("h-alice")->has_value());
  EXPECT_FALSE(store_->findToken(t->id)->has_value());
  EXPECT_FALSE(store_->findSession("s-alice")->has_value());
  EXPECT_EQ((*store_->findGroup("devs"))->members, std::vector<std::string>{"bob"});
  EXPECT_TRUE(store_->groupsOf("alice")->empty());
  EXPECT_TRUE(store_->findTokenByHash("h-bob")->has_value());
  // A new alice starts with the defaults, not the old one's overrides.
  addUser("alice");
  EXPECT_FALSE(store_->findQuota("user", "alice")->maxVms.has_value());
}

// ---- groups

TEST_P(StoreTest, GroupsMembersAndGroupsOf) {
  addUser("alice");
  addUser("bob");
  auto g = store_->insertGroup({.name = "devs", .description = "developers", .createdAt = nowRfc3339()});
  ASSERT_TRUE(g.ok());
  EXPECT_GT(g->id, 0);
  ASSERT_TRUE(store_->insertGroup({.name = "ops", .createdAt = nowRfc3339()}).ok());
  auto dup = store_->insertGroup({.name = "devs", .createdAt = nowRfc3339()});
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "name");

  ASSERT_TRUE(store_->addMember("devs", "bob").ok());
  ASSERT_TRUE(store_->addMember("devs", "alice").ok());
  ASSERT_TRUE(store_->addMember("devs", "alice").ok());  // twice is fine
  ASSERT_TRUE(store_->addMember("ops", "alice").ok());
  auto f = store_->findGroup("devs");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->description, "developers");
  EXPECT_EQ((*f)->members, (std::vector<std::string>{"alice", "bob"}));
  EXPECT_EQ(*store_->groupsOf("alice"), (std::vector<std::string>{"devs", "ops"}));
  EXPECT_TRUE(store_->groupsOf("nobody")->empty());
  auto all = store_->listGroups();
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].name, "devs");
  EXPECT_EQ((*all)[0].members.size(), 2u);
  EXPECT_EQ((*all)[1].members, std::vector<std::string>{"alice"});

  auto noGroup = store_->addMember("nope", "alice");
  ASSERT_FALSE(noGroup.ok());
  EXPECT_EQ(noGroup.error().code, ErrorCode::NotFound);
  EXPECT_EQ(noGroup.error().field, "group");
  auto noUser = store_->addMember("devs", "nobody");
  ASSERT_FALSE(noUser.ok());
  EXPECT_EQ(noUser.error().code, ErrorCode::NotFound);
  EXPECT_EQ(noUser.error().field, "login");

  ASSERT_TRUE(store_->removeMember("devs", "alice").ok());
  EXPECT_EQ(*store_->groupsOf("alice"), std::vector<std::string>{"ops"});
  EXPECT_EQ(store_->removeMember("devs", "nobody").error().code, ErrorCode::NotFound);
  EXPECT_FALSE(store_->findGroup("nope")->has_value());
}

TEST_P(StoreTest, DeleteGroupIsRefusedWhileOwningVmsAndTakesMemberships) {
  addUser("alice");
  ASSERT_TRUE(store_->insertGroup({.name = "devs", .createdAt = nowRfc3339()}).ok());
  ASSERT_TRUE(store_->addMember("devs", "alice").ok());
  ASSERT_TRUE(store_->setQuota({.subjectKind = "group", .subject = "devs", .maxRunning = 1}).ok());
  auto v = vm("build", "devs");
  v.ownerKind = "group";
  ASSERT_TRUE(store_->insertVm(v).ok());
  auto r = store_->deleteGroup("devs");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("build"), std::string::npos);
  ASSERT_TRUE(store_->deleteVm("build").ok());
  ASSERT_TRUE(store_->deleteGroup("devs").ok());
  EXPECT_TRUE(store_->groupsOf("alice")->empty());
  EXPECT_FALSE(store_->findGroup("devs")->has_value());
  EXPECT_EQ(store_->deleteGroup("devs").error().code, ErrorCode::NotFound);
  ASSERT_TRUE(store_->insertGroup({.name = "devs", .createdAt = nowRfc3339()}).ok());
  EXPECT_FALSE(store_->findQuota("group", "devs")->maxRunning.has_value());
}

// ---- quotas

TEST_P(StoreTest, SetQuotaWritesEveryFieldAndNulloptClears) {
  addUser("alice");
  auto none = store_->findQuota("user", "alice");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->subject, "alice");
  EXPECT_FALSE(none->maxVms || none->maxRunning || none->maxMemoryTotalMib || none->minMemoryVmMib ||
               none->maxMemoryVmMib || none->maxDiskTotalGib || none->maxDiskVmGib);
  QuotaRecord q{.subjectKind = "user", .subject = "alice", .maxVms = 1, .maxRunning = 2, .maxMemoryTotalMib = 3,
                .minMemoryVmMib = 4, .maxMemoryVmMib = 5, .maxDiskTotalGib = 6, .maxDiskVmGib = int64_t{1} << 40};
  ASSERT_TRUE(store_->setQuota(q).ok());
  auto got = store_->findQuota("user", "alice");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->maxVms, 1);
  EXPECT_EQ(got->maxRunning, 2);
  EXPECT_EQ(got->maxMemoryTotalMib, 3);
  EXPECT_EQ(got->minMemoryVmMib, 4);
  EXPECT_EQ(got->maxMemoryVmMib, 5);
  EXPECT_EQ(got->maxDiskTotalGib, 6);
  EXPECT_EQ(got->maxDiskVmGib, int64_t{1} << 40);
  // nullopt clears back to the default; zero is a limit, not a default.
  q.maxVms = std::nullopt;
  q.maxRunning = 0;
  ASSERT_TRUE(store_->setQuota(q).ok());
  got = store_->findQuota("user", "alice");
  EXPECT_FALSE(got->maxVms.has_value());
  EXPECT_EQ(got->maxRunning, 0);
  EXPECT_EQ(got->maxDiskTotalGib, 6);
  ASSERT_TRUE(store_->setQuota({.subjectKind = "user", .subject = "alice"}).ok());
  got = store_->findQuota("user", "alice");
  EXPECT_FALSE(got->maxRunning || got->maxDiskTotalGib || got->maxDiskVmGib);
  // The kind is part of the subject.
  EXPECT_FALSE(store_->findQuota("group", "alice")->maxRunning.has_value());
  // Subjects without a row (root) may have overrides: core checks who exists.
  ASSERT_TRUE(store_->setQuota({.subjectKind = "user", .subject = "root", .maxVms = 7}).ok());
  EXPECT_EQ(store_->findQuota("user", "root")->maxVms, 7);
  EXPECT_EQ(store_->setQuota({.subjectKind = "robot", .subject = "alice"}).error().code, ErrorCode::InvalidInput);
}

// ---- tokens

TEST_P(StoreTest, TokensAreFoundByHashListedAndRevoked) {
  addUser("alice");
  addUser("bob");
  auto t1 = store_->insertToken(token("alice", "aaaa"));
  ASSERT_TRUE(t1.ok());
  auto t2 = store_->insertToken({.login = "alice", .name = "laptop", .secretHash = "bbbb", .createdAt = nowRfc3339(),
                                 .expiresAt = "2030-01-01T00:00:00Z"});
  ASSERT_TRUE(t2.ok());
  ASSERT_TRUE(store_->insertToken(token("bob", "cccc")).ok());
  EXPECT_NE(t1->id, t2->id);

  auto dup = store_->insertToken(token("bob", "aaaa"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "secret_hash");
  auto noUser = store_->insertToken(token("nobody", "dddd"));
  ASSERT_FALSE(noUser.ok());
  EXPECT_EQ(noUser.error().code, ErrorCode::NotFound);
  EXPECT_EQ(noUser.error().field, "login");

  auto byHash = store_->findTokenByHash("bbbb");
  ASSERT_TRUE(byHash.ok() && byHash->has_value());
  EXPECT_EQ((*byHash)->id, t2->id);
  EXPECT_EQ((*byHash)->login, "alice");
  EXPECT_EQ((*byHash)->name, "laptop");
  EXPECT_EQ((*byHash)->expiresAt, "2030-01-01T00:00:00Z");
  EXPECT_EQ((*byHash)->revokedAt, "");
  EXPECT_FALSE(store_->findTokenByHash("zzzz")->has_value());
  EXPECT_EQ((*store_->findToken(t1->id))->secretHash, "aaaa");
  EXPECT_FALSE(store_->findToken(999999)->has_value());

  EXPECT_EQ(store_->listTokens("alice")->size(), 2u);
  EXPECT_EQ(store_->listTokens("bob")->size(), 1u);
  EXPECT_EQ(store_->listTokens("")->size(), 3u);
  EXPECT_TRUE(store_->listTokens("nobody")->empty());

  ASSERT_TRUE(store_->revokeToken(t1->id, "2026-01-01T00:00:00Z").ok());
  EXPECT_EQ((*store_->findTokenByHash("aaaa"))->revokedAt, "2026-01-01T00:00:00Z");
  ASSERT_TRUE(store_->revokeToken(t1->id, "2027-01-01T00:00:00Z").ok());  // the first time stays
  EXPECT_EQ((*store_->findToken(t1->id))->revokedAt, "2026-01-01T00:00:00Z");
  EXPECT_EQ(store_->revokeToken(999999, nowRfc3339()).error().code, ErrorCode::NotFound);
}

// ---- sessions

TEST_P(StoreTest, SessionsAreFoundDeletedAndExpired) {
  addUser("alice");
  addUser("bob");
  auto session = [](std::string id, std::string login, std::string expires) {
    return SessionRecord{.idHash = id, .login = login, .csrfToken = "csrf-" + id, .createdAt = "2026-01-01T00:00:00Z",
                         .expiresAt = expires};
  };
  ASSERT_TRUE(store_->insertSession(session("s1", "alice", "2026-01-01T01:00:00Z")).ok());
  ASSERT_TRUE(store_->insertSession(session("s2", "alice", "2026-01-02T00:00:00Z")).ok());
  ASSERT_TRUE(store_->insertSession(session("s3", "bob", "2026-01-01T00:30:00Z")).ok());
  ASSERT_TRUE(store_->insertSession(session("s4", "bob", "2026-01-03T00:00:00Z")).ok());
  EXPECT_EQ(store_->insertSession(session("s1", "bob", "2026-01-01T01:00:00Z")).error().code,
            ErrorCode::AlreadyExists);
  auto noUser = store_->insertSession(session("s9", "nobody", "2026-01-01T01:00:00Z"));
  ASSERT_FALSE(noUser.ok());
  EXPECT_EQ(noUser.error().code, ErrorCode::NotFound);

  auto f = store_->findSession("s1");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->login, "alice");
  EXPECT_EQ((*f)->csrfToken, "csrf-s1");
  EXPECT_EQ((*f)->createdAt, "2026-01-01T00:00:00Z");
  EXPECT_EQ((*f)->expiresAt, "2026-01-01T01:00:00Z");

  // Expired: s1 (exactly now) and s3.
  auto n = store_->deleteExpiredSessions("2026-01-01T01:00:00Z");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);
  EXPECT_FALSE(store_->findSession("s1")->has_value());
  EXPECT_FALSE(store_->findSession("s3")->has_value());
  EXPECT_TRUE(store_->findSession("s2")->has_value());

  ASSERT_TRUE(store_->deleteSession("s2").ok());
  EXPECT_FALSE(store_->findSession("s2")->has_value());
  EXPECT_TRUE(store_->deleteSession("s2").ok());  // logging out twice is fine
  ASSERT_TRUE(store_->deleteSessionsOf("bob").ok());
  EXPECT_FALSE(store_->findSession("s4")->has_value());
}

// ---- operations

// Proves one caller's list (own requests, vm.* operations on the VMs given,
// nothing else, newest first, limited) and the pruning of ended operations by
// age (unfinished ones stay whatever their age).
TEST_P(StoreTest, OperationsListedPerCallerAndPrunedByAge) {
  int n = 0;
  auto add = [&](std::string kind, std::string target, std::string requester, std::string state,
                 std::string updated) {
    OperationRecord op{.id = fmt::format("{:016x}", ++n), .kind = kind, .target = target, .requester = requester,
                       .state = state, .createdAt = fmt::format("2026-01-01T00:00:{:02}Z", n), .updatedAt = updated};
    EXPECT_TRUE(store_->insertOperation(op).ok());
    return op.id;
  };
  auto own = add("image.import", "img", "alice", "succeeded", "2026-01-01T00:00:00Z");
  auto onWeb = add("vm.stop", "web", "bob", "succeeded", "2026-03-01T00:00:00Z");
  add("vm.stop", "db", "bob", "running", "2025-01-01T00:00:00Z");
  add("image.import", "web", "bob", "failed", "2026-03-01T00:00:00Z");
  auto onWeb2 = add("vm.start", "web", "carol", "pending", "2026-03-01T00:00:00Z");

  auto ids = [](const Result<std::vector<OperationRecord>>& r) {
    std::vector<std::string> out;
    if (r.ok())
      for (const auto& op : *r) out.push_back(op.id);
    return out;
  };
  EXPECT_EQ(ids(store_->listOperationsFor("alice", {"web", "other"}, 10)), (std::vector<std::string>{onWeb2, onWeb, own}));
  EXPECT_EQ(ids(store_->listOperationsFor("alice", {"web"}, 2)), (std::vector<std::string>{onWeb2, onWeb}));
  EXPECT_EQ(ids(store_->listOperationsFor("alice", {}, 10)), (std::vector<std::string>{own}));
  EXPECT_TRUE(ids(store_->listOperationsFor("dave", {}, 10)).empty());

  auto pruned = store_->deleteOperationsEndedBefore("2026-02-01T00:00:00Z");
  ASSERT_TRUE(pruned.ok()) << pruned.error().describe();
  EXPECT_EQ(*pruned, 1) << "only the ended one older than the cutoff";
  EXPECT_FALSE(store_->findOperation(own)->has_value());
  EXPECT_EQ(store_->listOperations(100)->size(), 4u) << "the old running one stays";
}

TEST_P(StoreTest, OperationsRoundTripListNewestFirstAndFailUnfinished) {
  auto op = [](std::string id, std::string state) {
    return OperationRecord{.id = id, .kind = "vm.start", .target = "web", .requester = "alice", .state = state,
                           .createdAt = "2026-01-01T00:00:00Z", .updatedAt = "2026-01-01T00:00:00Z"};
  };
  ASSERT_TRUE(store_->insertOperation(op("0000000000000001", "pending")).ok());
  ASSERT_TRUE(store_->insertOperation(op("0000000000000002", "running")).ok());
  ASSERT_TRUE(store_->insertOperation(op("0000000000000003", "running")).ok());
  auto dup = store_->insertOperation(op("0000000000000001", "pending"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);

  auto done = op("0000000000000003", "succeeded");
  done.progress = 100;
  done.result = R"({"name":"web"})";
  done.updatedAt = "2026-01-01T00:00:05Z";
  ASSERT_TRUE(store_->updateOperation(done).ok());
  auto f = store_->findOperation("0000000000000003");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->state, "succeeded");
  EXPECT_EQ((*f)->progress, 100);
  EXPECT_EQ((*f)->result, R"({"name":"web"})");
  EXPECT_EQ((*f)->kind, "vm.start");
  EXPECT_EQ((*f)->target, "web");
  EXPECT_EQ((*f)->requester, "alice");
  EXPECT_EQ((*f)->createdAt, "2026-01-01T00:00:00Z");
  EXPECT_EQ((*f)->updatedAt, "2026-01-01T00:00:05Z");
  EXPECT_FALSE(store_->findOperation("ffffffffffffffff")->has_value());
  EXPECT_EQ(store_->updateOperation(op("ffffffffffffffff", "failed")).error().code, ErrorCode::NotFound);

  // Same second: insertion order decides, newest first.
  auto list = store_->listOperations(2);
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, "0000000000000003");
  EXPECT_EQ((*list)[1].id, "0000000000000002");
  EXPECT_EQ(store_->listOperations(100)->size(), 3u);

  auto n = store_->failUnfinishedOperations("the daemon restarted");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2);
  auto failed = *store_->findOperation("0000000000000001");
  EXPECT_EQ(failed->state, "failed");
  EXPECT_NE(failed->result.find("the daemon restarted"), std::string::npos);
  EXPECT_NE(failed->result.find("\"code\""), std::string::npos);
  EXPECT_EQ((*store_->findOperation("0000000000000003"))->state, "succeeded");
  EXPECT_EQ(*store_->failUnfinishedOperations("again"), 0);
}

// Daemons starting at once on one new database migrate it once between them.
TEST_P(StoreTest, ConcurrentOpensOfANewDatabaseMigrateOnce) {
  std::string fresh;
  if (GetParam() == Backend::Postgres) {
    std::string error;
    auto url = PostgresEnvironment::server(&error)->createDatabase("store_test_fresh");
    ASSERT_TRUE(url.ok()) << url.error().describe();
    fresh = *url;
  } else {
    fresh = (dir_ / "fresh.db").string();
  }
  std::atomic<int> opened{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      auto s = openStore(fresh);
      EXPECT_TRUE(s.ok()) << s.error().describe();
      if (s.ok() && *(*s)->schemaVersion() == dialectMigrations().back().version) ++opened;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 4);
}

// ---- openStore

TEST_P(StoreTest, OpenStorePicksTheBackendFromTheLocation) {
  store_.reset();
  auto s = openStore(location_);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_TRUE((*s)->findImage("demo")->has_value());
}

TEST(PostgresStore, UnreachableServerIsUnavailable) {
  testing::TempDir dir;  // an empty dir: no server socket in it
  auto s = openStore(fmt::format("postgresql:///corral?host={}&port=5432&connect_timeout=2", dir.str()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::Unavailable);
  EXPECT_NE(s.error().message.find("PostgreSQL"), std::string::npos);
}

// ---- SQLite only: a database made by the first schema upgrades.

TEST(SqliteUpgrade, DatabaseFromMigration1UpgradesKeepingItsVms) {
  testing::TempDir dir;
  const std::string path = (dir / "old.db").string();
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)");
    db.exec(migrations().at(0).sql);
    db.exec("INSERT INTO schema_migrations VALUES (1, '0001_initial', '2026-01-01T00:00:00Z')");
    db.exec("INSERT INTO images (name, kind, kernel, created_at) VALUES ('demo', 'direct-boot', '/k', 'x')");
    db.exec("INSERT INTO vms (name, uuid, image_id, memory_mib, vcpus, on_crash, desired_state, state, created_at, "
            "updated_at) VALUES ('old', 'u-old', 1, 256, 1, 'restart', 'running', 'running', 'x', 'x')");
  }
  auto s = openSqliteStore(path);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_EQ(*(*s)->schemaVersion(), migrations().back().version);
  auto old = (*s)->findVm("old");
  ASSERT_TRUE(old.ok() && old->has_value());
  EXPECT_EQ((*old)->ownerKind, "user");
  // Made when only root could make VMs: root's now.
  EXPECT_EQ((*old)->owner, "root");
  EXPECT_EQ((*old)->administrator, "root");
  EXPECT_EQ((*old)->diskGib, 0);
  EXPECT_EQ((*old)->memoryMib, 256u);
  EXPECT_EQ((*s)->usage("user", "root")->running, 1);
}

// The file holds password and token hashes: a new one is 0600 whatever the
// umask, and one an older corral left 0644 is tightened, with its WAL files.
TEST(SqliteFileMode, NewAndExistingDatabasesAreOwnerOnly) {
  testing::TempDir dir;
  const std::string fresh = (dir / "fresh.db").string(), old = (dir / "old.db").string();
  mode_t previous = ::umask(022);
  {
    SQLite::Database db(old, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA journal_mode=WAL");
    db.exec("CREATE TABLE t (x INTEGER)");
  }
  ASSERT_EQ(::chmod(old.c_str(), 0644), 0);
  auto a = openSqliteStore(fresh);
  auto b = openSqliteStore(old);
  ::umask(previous);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  ASSERT_TRUE(b.ok()) << b.error().describe();
  ASSERT_TRUE((*a)->listVms().ok());
  for (const std::string& f : {fresh, fresh + "-wal", old, old + "-wal"}) {
    struct stat st {};
    ASSERT_EQ(::stat(f.c_str(), &st), 0) << f;
    EXPECT_EQ(st.st_mode & 07777, 0600u) << f;
  }
}

}  // namespace
}  // namespace corral::store
