// The fixture of the store's tests (store_test.cc, store_storage_test.cc): each
// test runs on both implementations, a SQLite file and a real PostgreSQL server
// (support/postgres_server, one per test process, a fresh database per test),
// opened with every migration applied and holding one direct-boot image "demo".
// Each test file instantiates it:
//   INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::Sqlite, Backend::Postgres), backendName);
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "store/migrations.h"
#include "store/store.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"

namespace corral::store {

enum class Backend { Sqlite, Postgres };

// One PostgreSQL server per test process, started by the first test that needs
// it and stopped when the process's tests end.
class PostgresEnvironment : public ::testing::Environment {
 public:
  static testing::PostgresServer* server(std::string* error) {
    if (!server_) {
      auto s = testing::PostgresServer::start();
      if (!s.ok()) {
        *error = s.error().describe();
        return nullptr;
      }
      server_ = std::move(s).take();
    }
    return server_.get();
  }
  void TearDown() override { server_.reset(); }

 private:
  static inline std::unique_ptr<testing::PostgresServer> server_;
};

[[maybe_unused]] inline ::testing::Environment* const kPostgresEnv =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    if (GetParam() == Backend::Postgres) {
      std::string error;
      auto* server = PostgresEnvironment::server(&error);
      ASSERT_NE(server, nullptr) << "PostgreSQL test server: " << error;
      static int counter = 0;
      auto url = server->createDatabase("store_test_" + std::to_string(++counter));
      ASSERT_TRUE(url.ok()) << url.error().describe();
      location_ = *url;
    } else {
      location_ = (dir_ / "corral.db").string();
    }
    store_ = open();
    ASSERT_NE(store_, nullptr);
    ImageRecord img{.name = "demo", .kernel = "/k", .initrd = "/i", .append = "console=ttyS0", .createdAt = nowRfc3339()};
    ASSERT_TRUE(store_->insertImage(img).ok());
  }

  std::unique_ptr<Store> open() {
    auto s = GetParam() == Backend::Postgres ? openPostgresStore(location_, 8) : openSqliteStore(location_);
    EXPECT_TRUE(s.ok()) << s.error().describe();
    if (!s.ok()) return nullptr;
    return std::move(s).take();
  }

  const std::vector<Migration>& dialectMigrations() const {
    return GetParam() == Backend::Postgres ? postgresMigrations() : migrations();
  }

  static VmRecord vm(std::string name, std::string owner = "alice") {
    return VmRecord{.name = name, .uuid = "uuid-" + name, .image = "demo", .memoryMib = 128, .vcpus = 1,
                    .createdAt = nowRfc3339(), .owner = owner};
  }

  UserRecord addUser(const std::string& login, bool admin = false) {
    auto u = store_->insertUser(UserRecord{.login = login, .displayName = "The " + login, .email = login + "@example.org",
                                           .passwordHash = "$argon2id$x", .admin = admin, .createdAt = nowRfc3339()});
    EXPECT_TRUE(u.ok()) << u.error().describe();
    return u.ok() ? *u : UserRecord{};
  }

  TokenRecord token(const std::string& login, const std::string& hash) {
    return TokenRecord{.login = login, .name = "ci", .secretHash = hash, .createdAt = nowRfc3339()};
  }

  testing::TempDir dir_;
  std::string location_;
  std::unique_ptr<Store> store_;
};

inline std::string backendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::Postgres ? "postgres" : "sqlite";
}

}  // namespace corral::store
