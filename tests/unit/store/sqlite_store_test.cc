// Proves the SQLite store against a real database file: migrations apply once
// and survive reopening, uniqueness is enforced by the database (also under
// concurrent inserts), images in use cannot be deleted, and state updates bump
// the version.
#include <thread>

#include <gtest/gtest.h>

#include "store/migrations.h"
#include "store/store.h"
#include "support/temp_dir.h"

namespace corral::store {
namespace {

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).take();
    ImageRecord img{.name = "demo", .kernel = "/k", .initrd = "/i", .append = "console=ttyS0", .createdAt = nowRfc3339()};
    ASSERT_TRUE(store_->insertImage(img).ok());
  }

  VmRecord vm(std::string name) {
    return VmRecord{.name = name, .uuid = "uuid-" + name, .image = "demo", .memoryMib = 128, .vcpus = 1,
                    .createdAt = nowRfc3339()};
  }

  testing::TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(SqliteStoreTest, MigrationsApplyOnceAndPersist) {
  EXPECT_EQ(*store_->schemaVersion(), migrations().back().version);
  ASSERT_TRUE(store_->insertVm(vm("a")).ok());
  store_.reset();
  auto again = openSqliteStore((dir_ / "corral.db").string());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*(*again)->schemaVersion(), migrations().back().version);
  auto found = (*again)->findVm("a");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->image, "demo");
}

TEST_F(SqliteStoreTest, DuplicateVmNameIsAlreadyExistsNamingTheField) {
  ASSERT_TRUE(store_->insertVm(vm("a")).ok());
  auto dup = store_->insertVm(vm("a"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "name");
}

TEST_F(SqliteStoreTest, UnknownImageIsNotFoundNamingTheField) {
  auto v = vm("a");
  v.image = "nope";
  auto r = store_->insertVm(v);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
  EXPECT_EQ(r.error().field, "image");
  EXPECT_TRUE(store_->listVms()->empty());
}

TEST_F(SqliteStoreTest, ConcurrentCreatesOfOneNameGiveOneRow) {
  std::vector<std::thread> threads;
  std::atomic<int> created{0};
  for (int i = 0; i < 8; ++i)
    threads.emplace_back([&, i] {
      auto v = vm("same");
      v.uuid = "u" + std::to_string(i);
      if (store_->insertVm(v).ok()) ++created;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(created.load(), 1);
  EXPECT_EQ(store_->listVms()->size(), 1u);
}

TEST_F(SqliteStoreTest, ImageInUseCannotBeDeleted) {
  ASSERT_TRUE(store_->insertVm(vm("web")).ok());
  auto r = store_->deleteImage("demo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("web"), std::string::npos);
  ASSERT_TRUE(store_->deleteVm("web").ok());
  EXPECT_TRUE(store_->deleteImage("demo").ok());
  EXPECT_EQ(store_->deleteImage("demo").error().code, ErrorCode::NotFound);
}

TEST_F(SqliteStoreTest, StateUpdateBumpsVersionAndKeepsDesiredUnlessGiven) {
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

}  // namespace
}  // namespace corral::store
