// A real PostgreSQL server for tests: a fresh cluster (initdb) in a temp dir,
// on /dev/shm when there is one (initdb writes ~40 MB, which takes seconds on a
// busy disk, and a test cluster needs no durability). Run as the Debian
// `postgres` system user when we are root (PostgreSQL refuses to run as root),
// else as ourselves; reachable only over a unix socket in that dir (mode 0700,
// so no other local user gets in; authentication is "trust" inside it). The
// destructor stops the server and removes the dir, also when a test failed; if
// the test process dies instead, the server gets SIGQUIT from the kernel
// (parent-death signal).
//
// When PostgreSQL is not installed, start() fails saying so: CI installs it with
// scripts/install-deps, and a silent skip would hide that the PostgreSQL store
// went untested.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "util/command.h"
#include "util/result.h"

namespace corral::testing {

class PostgresServer {
 public:
  // initdb, start, wait until it accepts connections (30 s at most).
  static Result<std::unique_ptr<PostgresServer>> start();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Creates an empty database (name: [a-z0-9_]+) and returns its URL.
  Result<std::string> createDatabase(const std::string& name);
  // "postgresql:///NAME?host=SOCKDIR&port=PORT&user=postgres"
  std::string url(const std::string& database) const;

  const std::string& binDir() const { return binDir_; }
  const std::string& socketDir() const { return socketDir_; }

 private:
  PostgresServer() = default;

  std::string dir_;  // removed with everything in it by the destructor
  std::string binDir_;
  std::string socketDir_;
  int port_ = 5432;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  std::unique_ptr<util::Command> server_;
};

}  // namespace corral::testing
