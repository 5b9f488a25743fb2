// SQLite implementation of Store, through SQLiteCpp.
//
// One connection guarded by a mutex: the daemon's writes are few and short, and
// SQLite serialises writers anyway. The mutex also serialises quota-checked
// writes, so a check and its write see no other writer in between; BEGIN
// IMMEDIATE keeps another process (an admin's sqlite3 shell) from slipping a
// write in, too. WAL mode lets a second reader look without blocking us.
// Constraint violations are mapped to the project's error codes here, so callers
// never see SQLite's words. Images and disks (sqlite_storage.cc) and the
// migration runner (sqlite_migrate.cc) live beside this file.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "store/sqlite_support.h"
#include "store/store.h"
#include "store/store_sql.h"

namespace corral::store {
namespace {

using sqlite::bindAll;
using sqlite::dbError;
using sqlite::isUnique;
using sqlite::Row;

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const std::string& path)
      : db_(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX) {
    db_.setBusyTimeout(5000);
    enableWal();
    db_.exec("PRAGMA foreign_keys=ON");
    db_.exec("PRAGMA synchronous=NORMAL");
  }

  // Switching a new file to WAL while another connection does the same can fail
  // with SQLITE_BUSY at once, without the busy handler (SQLite will not wait on
  // a lock it might deadlock on): daemons starting together on one new file
  // retry instead, for as long as the busy timeout.
  void enableWal() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (true) {
      try {
        db_.exec("PRAGMA journal_mode=WAL");
        return;
      } catch (const SQLite::Exception& e) {
        if ((e.getErrorCode() & 0xff) != SQLITE_BUSY || std::chrono::steady_clock::now() > deadline) throw;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  Result<void> migrate() {
    std::lock_guard lock(mu_);
    return sqlite::applyMigrations(db_);
  }

  Result<int> schemaVersion() override {
    std::lock_guard lock(mu_);
    return sqlite::schemaVersion(db_);
  }

  // ---- images

  // Images and disks live in sqlite_storage.cc.
  Result<ImageRecord> insertImage(const ImageRecord& image) override {
    std::lock_guard lock(mu_);
    return sqlite::insertImage(db_, image);
  }

  Result<std::optional<ImageRecord>> findImage(const std::string& name) override {
    std::lock_guard lock(mu_);
    return sqlite::findImage(db_, name);
  }

  Result<std::vector<ImageRecord>> listImages() override {
    std::lock_guard lock(mu_);
    return sqlite::listImages(db_);
  }

  Result<ImageRecord> updateImage(const ImageRecord& image) override {
    std::lock_guard lock(mu_);
    return sqlite::updateImage(db_, image);
  }

  Result<void> deleteImage(const std::string& name) override {
    std::lock_guard lock(mu_);
    return sqlite::deleteImage(db_, name);
  }

  // ---- disks

  Result<DiskRecord> insertDisk(const DiskRecord& disk) override {
    std::lock_guard lock(mu_);
    return sqlite::insertDisk(db_, disk);
  }

  Result<std::vector<DiskRecord>> listDisks(int64_t vmId) override {
    std::lock_guard lock(mu_);
    return sqlite::listDisks(db_, vmId);
  }

  Result<std::vector<DiskRecord>> listAllDisks() override {
    std::lock_guard lock(mu_);
    return sqlite::listAllDisks(db_);
  }

  Result<DiskRecord> updateDisk(const DiskRecord& disk) override {
    std::lock_guard lock(mu_);
    return sqlite::updateDisk(db_, disk);
  }

  Result<void> deleteDisk(int64_t id) override {
    std::lock_guard lock(mu_);
    return sqlite::deleteDisk(db_, id);
  }

  // ---- networks, NICs and SSH keys

  // They live in sqlite_network.cc.
  Result<NetworkRecord> insertNetwork(const NetworkRecord& net) override {
    std::lock_guard lock(mu_);
    return sqlite::insertNetwork(db_, net);
  }

  Result<std::optional<NetworkRecord>> findNetwork(const std::string& name) override {
    std::lock_guard lock(mu_);
    return sqlite::findNetwork(db_, name);
  }

  Result<std::vector<NetworkRecord>> listNetworks() override {
    std::lock_guard lock(mu_);
    return sqlite::listNetworks(db_);
  }

  Result<void> deleteNetwork(const std::string& name) override {
    std::lock_guard lock(mu_);
    return sqlite::deleteNetwork(db_, name);
  }

  Result<NicRecord> insertNic(const NicRecord& nic) override {
    std::lock_guard lock(mu_);
    return sqlite::insertNic(db_, nic);
  }

  Result<std::vector<NicRecord>> listNics(int64_t vmId) override {
    std::lock_guard lock(mu_);
    return sqlite::listNics(db_, vmId);
  }

  Result<std::vector<NicRecord>> listNetworkNics(const std::string& network) override {
    std::lock_guard lock(mu_);
    return sqlite::listNetworkNics(db_, network);
  }

  Result<std::vector<NicRecord>> listAllNics() override {
    std::lock_guard lock(mu_);
    return sqlite::listAllNics(db_);
  }

  Result<void> deleteNic(int64_t id) override {
    std::lock_guard lock(mu_);
    return sqlite::deleteNic(db_, id);
  }

  Result<SshKeyRecord> insertSshKey(const SshKeyRecord& key) override {
    std::lock_guard lock(mu_);
    return sqlite::insertSshKey(db_, key);
  }

  Result<std::vector<SshKeyRecord>> listSshKeys(const std::string& login) override {
    std::lock_guard lock(mu_);
    return sqlite::listSshKeys(db_, login);
  }

  Result<void> deleteSshKey(const std::string& login, int64_t id) override {
    std::lock_guard lock(mu_);
    return sqlite::deleteSshKey(db_, login, id);
  }

  // ---- VMs

  Result<VmRecord> insertVm(const VmRecord& vm, const QuotaCheck& check) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      SQLite::Statement img(db_, "SELECT id FROM images WHERE name = ?");
      img.bind(1, vm.image);
      if (!img.executeStep())
        return Error{ErrorCode::NotFound, fmt::format("image: no image named {}", vm.image), "image", vm.image};
      int64_t imageId = img.getColumn(0).getInt64();
      CORRAL_TRY(sqlite::checkCdrom(db_, vm.cdrom));
      if (check) CORRAL_TRY(runCheck(check, vm.ownerKind, vm.owner, 0));
      SQLite::Statement q(db_, sql::kInsertVm);
      bindAll(q, vm.name, vm.uuid, imageId, static_cast<int64_t>(vm.memoryMib), static_cast<int64_t>(vm.vcpus),
              vm.onCrash, vm.desiredState, vm.state, vm.stateReason, vm.createdAt, vm.createdAt, vm.ownerKind, vm.owner,
              vm.administrator, vm.contact, vm.description, vm.diskGib, vm.cdrom, int64_t{vm.bootCdrom ? 1 : 0},
              vm.creation);
      q.exec();
      tx.commit();
    } catch (const SQLite::Exception& e) {
      if (isUnique(e)) return vmExists(vm);
      return dbError(e, "insert vm");
    }
    return findVmLocked(vm.name);
  }

  Result<std::optional<VmRecord>> findVm(const std::string& name) override {
    std::lock_guard lock(mu_);
    auto r = findVmLocked(name);
    if (!r.ok()) {
      if (r.error().code == ErrorCode::NotFound) return std::optional<VmRecord>{};
      return std::move(r).error();
    }
    return std::optional<VmRecord>{std::move(r).take()};
  }

  Result<std::vector<VmRecord>> listVms() override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM {} ORDER BY v.name", sql::kVmColumns, sql::kVmFrom));
      std::vector<VmRecord> out;
      while (q.executeStep()) out.push_back(sql::readVm(Row{q}));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list vms");
    }
  }

  Result<std::string> vmsChangeMark() override {
    std::lock_guard lock(mu_);
    try {
      // Our own writes (any table: coarse, never stale) and other connections'
      // commits (data_version moves only for those).
      int64_t others = db_.execAndGet("PRAGMA data_version").getInt64();
      return fmt::format("{}:{}", sqlite3_total_changes64(db_.getHandle()), others);
    } catch (const SQLite::Exception& e) {
      return dbError(e, "vms change mark");
    }
  }

  Result<VmRecord> updateVmState(const std::string& name, const VmStateUpdate& u) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "UPDATE vms SET state = ?, state_reason = ?, pid = ?, accel = ?, "
                          "desired_state = COALESCE(?, desired_state), updated_at = ?, version = version + 1 "
                          "WHERE name = ?");
      bindAll(q, u.state, u.stateReason, u.pid, u.accel, u.desiredState, nowRfc3339(), name);
      if (q.exec() == 0) return Error::notFound(fmt::format("vm {} not found", name));
    } catch (const SQLite::Exception& e) {
      return dbError(e, "update vm state");
    }
    return findVmLocked(name);
  }

  Result<VmRecord> updateVm(const VmRecord& vm, int64_t expectedVersion, const QuotaCheck& check) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      SQLite::Statement cur(db_, "SELECT version FROM vms WHERE id = ?");
      cur.bind(1, vm.id);
      if (!cur.executeStep()) return Error::notFound(fmt::format("vm {} not found", vm.name));
      int64_t stored = cur.getColumn(0).getInt64();
      if (expectedVersion != 0 && stored != expectedVersion) return Error::versionMismatch(expectedVersion, stored);
      CORRAL_TRY(sqlite::checkCdrom(db_, vm.cdrom));
      if (check) CORRAL_TRY(runCheck(check, vm.ownerKind, vm.owner, vm.id));
      SQLite::Statement q(db_, sql::kUpdateVm);
      bindAll(q, vm.name, vm.ownerKind, vm.owner, vm.administrator, vm.contact, vm.description,
              static_cast<int64_t>(vm.memoryMib), static_cast<int64_t>(vm.vcpus), vm.onCrash, vm.desiredState,
              vm.diskGib, vm.cdrom, int64_t{vm.bootCdrom ? 1 : 0}, nowRfc3339(), vm.id);
      q.exec();
      tx.commit();
    } catch (const SQLite::Exception& e) {
      if (isUnique(e)) return vmExists(vm);
      return dbError(e, "update vm");
    }
    return findVmLocked(vm.name);
  }

  Result<void> deleteVm(const std::string& name) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, "DELETE FROM vms WHERE name = ?");
      q.bind(1, name);
      if (q.exec() == 0) return Error::notFound(fmt::format("vm {} not found", name));
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "delete vm");
    }
  }

  Result<Usage> usage(const std::string& subjectKind, const std::string& subject) override {
    if (!sql::validSubjectKind(subjectKind)) return sql::badSubjectKind(subjectKind);
    std::lock_guard lock(mu_);
    try {
      return usageLocked(subjectKind, subject, 0);
    } catch (const SQLite::Exception& e) {
      return dbError(e, "usage");
    }
  }

  // ---- users

  Result<UserRecord> insertUser(const UserRecord& user) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      // Users and groups share one namespace (a VM owner is a bare name).
      if (!namesOf("SELECT name FROM groups WHERE name = ?", {user.login}).empty())
        return Error::alreadyExists("login", user.login,
                                    fmt::format("login: {} is taken by a group (users and groups share names)",
                                                user.login));
      SQLite::Statement q(db_,
                          "INSERT INTO users (login, display_name, email, password_hash, admin, created_at, version) "
                          "VALUES (?, ?, ?, ?, ?, ?, 1)");
      bindAll(q, user.login, user.displayName, user.email, user.passwordHash, user.admin ? 1 : 0, user.createdAt);
      q.exec();
      UserRecord out = user;
      out.id = db_.getLastInsertRowid();
      out.version = 1;
      tx.commit();
      return out;
    } catch (const SQLite::Exception& e) {
      if (isUnique(e))
        return Error::alreadyExists("login", user.login, fmt::format("login: a user {} already exists", user.login));
      return dbError(e, "insert user");
    }
  }

  Result<std::optional<UserRecord>> findUser(const std::string& login) override {
    std::lock_guard lock(mu_);
    try {
      return findUserLocked(login);
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find user");
    }
  }

  Result<std::vector<UserRecord>> listUsers() override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM users ORDER BY login", sql::kUserColumns));
      std::vector<UserRecord> out;
      while (q.executeStep()) out.push_back(sql::readUser(Row{q}));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list users");
    }
  }

  Result<UserRecord> updateUser(const UserRecord& user, int64_t expectedVersion) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto cur = findUserLocked(user.login);
      if (!cur) return Error::notFound(fmt::format("user {} not found", user.login));
      if (expectedVersion != 0 && cur->version != expectedVersion)
        return Error::versionMismatch(expectedVersion, cur->version);
      SQLite::Statement q(db_,
                          "UPDATE users SET display_name = ?, email = ?, password_hash = ?, admin = ?, "
                          "version = version + 1 WHERE login = ?");
      bindAll(q, user.displayName, user.email, user.passwordHash, user.admin ? 1 : 0, user.login);
      q.exec();
      auto out = findUserLocked(user.login);
      tx.commit();
      return std::move(*out);
    } catch (const SQLite::Exception& e) {
      return dbError(e, "update user");
    }
  }

  Result<void> deleteUser(const std::string& login) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto vms = namesOf(
          "SELECT name FROM vms WHERE (owner_kind = 'user' AND owner = ?) OR administrator = ? ORDER BY name",
          {login, login});
      if (!vms.empty())
        return Error::failedPrecondition(fmt::format(
            "user {} owns or administers VMs {}: delete them or give them to someone else first", login,
            sql::joinNames(vms)));
      // Tokens, sessions and memberships go with the row (ON DELETE CASCADE).
      SQLite::Statement q(db_, "DELETE FROM users WHERE login = ?");
      q.bind(1, login);
      if (q.exec() == 0) return Error::notFound(fmt::format("user {} not found", login));
      SQLite::Statement qq(db_, "DELETE FROM quotas WHERE subject_kind = 'user' AND subject = ?");
      qq.bind(1, login);
      qq.exec();
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "delete user");
    }
  }

  // ---- groups

  Result<GroupRecord> insertGroup(const GroupRecord& group) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      if (!namesOf("SELECT login FROM users WHERE login = ?", {group.name}).empty())
        return Error::alreadyExists("name", group.name,
                                    fmt::format("name: {} is taken by a user (users and groups share names)",
                                                group.name));
      SQLite::Statement q(db_, "INSERT INTO groups (name, description, created_at) VALUES (?, ?, ?)");
      bindAll(q, group.name, group.description, group.createdAt);
      q.exec();
      GroupRecord out = group;
      out.id = db_.getLastInsertRowid();
      out.members.clear();
      tx.commit();
      return out;
    } catch (const SQLite::Exception& e) {
      if (isUnique(e))
        return Error::alreadyExists("name", group.name, fmt::format("name: a group {} already exists", group.name));
      return dbError(e, "insert group");
    }
  }

  Result<std::optional<GroupRecord>> findGroup(const std::string& name) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, "SELECT id, name, description, created_at FROM groups WHERE name = ?");
      q.bind(1, name);
      if (!q.executeStep()) return std::optional<GroupRecord>{};
      GroupRecord g = readGroup(q);
      g.members = membersOf(g.id);
      return std::optional<GroupRecord>{std::move(g)};
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find group");
    }
  }

  Result<std::vector<GroupRecord>> listGroups() override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, "SELECT id, name, description, created_at FROM groups ORDER BY name");
      std::vector<GroupRecord> out;
      while (q.executeStep()) out.push_back(readGroup(q));
      for (auto& g : out) g.members = membersOf(g.id);
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list groups");
    }
  }

  Result<void> deleteGroup(const std::string& name) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto vms = namesOf("SELECT name FROM vms WHERE owner_kind = 'group' AND owner = ? ORDER BY name", {name});
      if (!vms.empty())
        return Error::failedPrecondition(fmt::format(
            "group {} owns VMs {}: delete them or give them to someone else first", name, sql::joinNames(vms)));
      SQLite::Statement q(db_, "DELETE FROM groups WHERE name = ?");
      q.bind(1, name);
      if (q.exec() == 0) return Error::notFound(fmt::format("group {} not found", name));
      SQLite::Statement qq(db_, "DELETE FROM quotas WHERE subject_kind = 'group' AND subject = ?");
      qq.bind(1, name);
      qq.exec();
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "delete group");
    }
  }

  Result<void> addMember(const std::string& group, const std::string& login) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto [gid, uid] = CORRAL_TRY(groupAndUser(group, login));
      SQLite::Statement q(db_, "INSERT INTO memberships (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING");
      bindAll(q, gid, uid);
      q.exec();
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "add member");
    }
  }

  Result<void> removeMember(const std::string& group, const std::string& login) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto [gid, uid] = CORRAL_TRY(groupAndUser(group, login));
      SQLite::Statement q(db_, "DELETE FROM memberships WHERE group_id = ? AND user_id = ?");
      bindAll(q, gid, uid);
      q.exec();
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "remove member");
    }
  }

  Result<std::vector<std::string>> groupsOf(const std::string& login) override {
    std::lock_guard lock(mu_);
    try {
      return namesOf(
          "SELECT g.name FROM groups g JOIN memberships m ON m.group_id = g.id JOIN users u ON m.user_id = u.id "
          "WHERE u.login = ? ORDER BY g.name",
          {login});
    } catch (const SQLite::Exception& e) {
      return dbError(e, "groups of user");
    }
  }

  // ---- quotas

  Result<void> setQuota(const QuotaRecord& quota) override {
    if (!sql::validSubjectKind(quota.subjectKind)) return sql::badSubjectKind(quota.subjectKind);
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      writeQuotaLocked(quota);
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "set quota");
    }
  }

  Result<QuotaRecord> patchQuota(const std::string& subjectKind, const std::string& subject,
                                 const std::function<void(QuotaRecord&)>& change) override {
    if (!sql::validSubjectKind(subjectKind)) return sql::badSubjectKind(subjectKind);
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      QuotaRecord q = findQuotaLocked(subjectKind, subject);
      change(q);
      q.subjectKind = subjectKind;
      q.subject = subject;
      writeQuotaLocked(q);
      tx.commit();
      return q;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "set quota");
    }
  }

  // Caller holds mu_ and a transaction; throws SQLite::Exception.
  void writeQuotaLocked(const QuotaRecord& quota) {
    if (sql::quotaIsEmpty(quota)) {
      // All defaults: no row, so that findQuota and a missing row agree.
      SQLite::Statement q(db_, "DELETE FROM quotas WHERE subject_kind = ? AND subject = ?");
      bindAll(q, quota.subjectKind, quota.subject);
      q.exec();
    } else {
      SQLite::Statement q(db_, sql::kSetQuota);
      bindAll(q, quota.subjectKind, quota.subject, quota.maxVms, quota.maxRunning, quota.maxMemoryTotalMib,
              quota.minMemoryVmMib, quota.maxMemoryVmMib, quota.maxDiskTotalGib, quota.maxDiskVmGib);
      q.exec();
    }
  }

  Result<QuotaRecord> findQuota(const std::string& subjectKind, const std::string& subject) override {
    if (!sql::validSubjectKind(subjectKind)) return sql::badSubjectKind(subjectKind);
    std::lock_guard lock(mu_);
    try {
      return findQuotaLocked(subjectKind, subject);
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find quota");
    }
  }

  // ---- tokens

  Result<TokenRecord> insertToken(const TokenRecord& token) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto uid = CORRAL_TRY(userId(token.login));
      SQLite::Statement q(db_,
                          "INSERT INTO tokens (user_id, name, secret_hash, created_at, expires_at, revoked_at) "
                          "VALUES (?, ?, ?, ?, ?, ?)");
      bindAll(q, uid, token.name, token.secretHash, token.createdAt, token.expiresAt, token.revokedAt);
      q.exec();
      TokenRecord out = token;
      out.id = db_.getLastInsertRowid();
      tx.commit();
      return out;
    } catch (const SQLite::Exception& e) {
      // The hash is not echoed: it is as good as the secret for a lookup.
      if (isUnique(e)) return Error::alreadyExists("secret_hash", "", "secret_hash: a token with this secret exists");
      return dbError(e, "insert token");
    }
  }

  Result<std::optional<TokenRecord>> findTokenByHash(const std::string& secretHash) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("{} WHERE t.secret_hash = ?", sql::kTokenSelect));
      q.bind(1, secretHash);
      if (!q.executeStep()) return std::optional<TokenRecord>{};
      return std::optional<TokenRecord>{sql::readToken(Row{q})};
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find token");
    }
  }

  Result<std::optional<TokenRecord>> findToken(int64_t id) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("{} WHERE t.id = ?", sql::kTokenSelect));
      q.bind(1, id);
      if (!q.executeStep()) return std::optional<TokenRecord>{};
      return std::optional<TokenRecord>{sql::readToken(Row{q})};
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find token");
    }
  }

  Result<std::vector<TokenRecord>> listTokens(const std::string& login) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("{} WHERE ? = '' OR u.login = ? ORDER BY t.id", sql::kTokenSelect));
      bindAll(q, login, login);
      std::vector<TokenRecord> out;
      while (q.executeStep()) out.push_back(sql::readToken(Row{q}));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list tokens");
    }
  }

  Result<void> revokeToken(int64_t id, const std::string& when) override {
    std::lock_guard lock(mu_);
    try {
      // A second revoke keeps the first time.
      SQLite::Statement q(db_,
                          "UPDATE tokens SET revoked_at = CASE WHEN revoked_at = '' THEN ? ELSE revoked_at END "
                          "WHERE id = ?");
      bindAll(q, when, id);
      if (q.exec() == 0) return Error::notFound(fmt::format("token {} not found", id));
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "revoke token");
    }
  }

  // ---- sessions

  Result<void> insertSession(const SessionRecord& s) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
      auto uid = CORRAL_TRY(userId(s.login));
      SQLite::Statement q(db_,
                          "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at) "
                          "VALUES (?, ?, ?, ?, ?)");
      bindAll(q, s.idHash, uid, s.csrfToken, s.createdAt, s.expiresAt);
      q.exec();
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      if (isUnique(e)) return Error::alreadyExists("id_hash", "", "id_hash: a session with this id exists");
      return dbError(e, "insert session");
    }
  }

  Result<std::optional<SessionRecord>> findSession(const std::string& idHash) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("{} WHERE s.id_hash = ?", sql::kSessionSelect));
      q.bind(1, idHash);
      if (!q.executeStep()) return std::optional<SessionRecord>{};
      return std::optional<SessionRecord>{sql::readSession(Row{q})};
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find session");
    }
  }

  Result<void> deleteSession(const std::string& idHash) override {
    auto r = execCount("DELETE FROM sessions WHERE id_hash = ?", {idHash}, "delete session");
    if (!r.ok()) return std::move(r).error();
    return ok();
  }

  Result<void> deleteSessionsOf(const std::string& login) override {
    auto r = execCount("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE login = ?)", {login},
                       "delete sessions");
    if (!r.ok()) return std::move(r).error();
    return ok();
  }

  Result<int64_t> deleteExpiredSessions(const std::string& now) override {
    return execCount("DELETE FROM sessions WHERE expires_at <= ?", {now}, "delete expired sessions");
  }

  // ---- operations

  Result<void> insertOperation(const OperationRecord& op) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "INSERT INTO operations (id, kind, target, requester, state, progress, result, created_at, "
                          "updated_at, bytes_done, bytes_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
      bindAll(q, op.id, op.kind, op.target, op.requester, op.state, op.progress, op.result, op.createdAt,
              op.updatedAt.empty() ? op.createdAt : op.updatedAt, op.bytesDone, op.bytesTotal);
      q.exec();
      return ok();
    } catch (const SQLite::Exception& e) {
      if (isUnique(e)) return Error::alreadyExists("id", op.id, fmt::format("id: operation {} already exists", op.id));
      return dbError(e, "insert operation");
    }
  }

  Result<void> updateOperation(const OperationRecord& op) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "UPDATE operations SET state = ?, progress = ?, bytes_done = ?, bytes_total = ?, "
                          "result = ?, updated_at = ? WHERE id = ?");
      bindAll(q, op.state, op.progress, op.bytesDone, op.bytesTotal, op.result,
              op.updatedAt.empty() ? nowRfc3339() : op.updatedAt, op.id);
      if (q.exec() == 0) return Error::notFound(fmt::format("operation {} not found", op.id));
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "update operation");
    }
  }

  Result<std::optional<OperationRecord>> findOperation(const std::string& id) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM operations WHERE id = ?", sql::kOperationColumns));
      q.bind(1, id);
      if (!q.executeStep()) return std::optional<OperationRecord>{};
      return std::optional<OperationRecord>{sql::readOperation(Row{q})};
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find operation");
    }
  }

  Result<std::vector<OperationRecord>> listOperations(size_t limit) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM operations ORDER BY created_at DESC, seq DESC LIMIT ?",
                                           sql::kOperationColumns));
      q.bind(1, static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
      std::vector<OperationRecord> out;
      while (q.executeStep()) out.push_back(sql::readOperation(Row{q}));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list operations");
    }
  }

  Result<std::vector<OperationRecord>> listOperationsFor(const std::string& requester,
                                                         const std::vector<std::string>& vmTargets,
                                                         size_t limit) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM operations WHERE requester = ? OR (kind LIKE 'vm.%' AND "
                                           "target IN (SELECT value FROM json_each(?))) "
                                           "ORDER BY created_at DESC, seq DESC LIMIT ?",
                                           sql::kOperationColumns));
      bindAll(q, requester, nlohmann::json(vmTargets).dump(),
              static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX)));
      std::vector<OperationRecord> out;
      while (q.executeStep()) out.push_back(sql::readOperation(Row{q}));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list operations");
    }
  }

  Result<int64_t> deleteOperationsEndedBefore(const std::string& cutoff) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, "DELETE FROM operations WHERE state IN ('succeeded', 'failed') AND updated_at < ?");
      bindAll(q, cutoff);
      return static_cast<int64_t>(q.exec());
    } catch (const SQLite::Exception& e) {
      return dbError(e, "prune operations");
    }
  }

  Result<int64_t> failUnfinishedOperations(const std::string& reason) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "UPDATE operations SET state = 'failed', result = ?, updated_at = ? "
                          "WHERE state IN ('pending', 'running')");
      bindAll(q, sql::interruptedResult(reason), nowRfc3339());
      return static_cast<int64_t>(q.exec());
    } catch (const SQLite::Exception& e) {
      return dbError(e, "fail unfinished operations");
    }
  }

 private:
  Result<VmRecord> findVmLocked(const std::string& name) {
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM {} WHERE v.name = ?", sql::kVmColumns, sql::kVmFrom));
      q.bind(1, name);
      if (!q.executeStep()) return Error::notFound(fmt::format("vm {} not found", name));
      return sql::readVm(Row{q});
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find vm");
    }
  }

  std::optional<UserRecord> findUserLocked(const std::string& login) {
    SQLite::Statement q(db_, fmt::format("SELECT {} FROM users WHERE login = ?", sql::kUserColumns));
    q.bind(1, login);
    if (!q.executeStep()) return std::nullopt;
    return sql::readUser(Row{q});
  }

  static GroupRecord readGroup(SQLite::Statement& q) {
    return GroupRecord{.id = q.getColumn(0).getInt64(), .name = q.getColumn(1).getString(),
                       .description = q.getColumn(2).getString(), .createdAt = q.getColumn(3).getString()};
  }

  std::vector<std::string> membersOf(int64_t groupId) {
    SQLite::Statement q(db_,
                        "SELECT u.login FROM memberships m JOIN users u ON m.user_id = u.id WHERE m.group_id = ? "
                        "ORDER BY u.login");
    q.bind(1, groupId);
    std::vector<std::string> out;
    while (q.executeStep()) out.push_back(q.getColumn(0).getString());
    return out;
  }

  // The first column of every row, all binds being text.
  std::vector<std::string> namesOf(const char* query, std::initializer_list<std::string> binds) {
    SQLite::Statement q(db_, query);
    int i = 1;
    for (const auto& b : binds) q.bind(i++, b);
    std::vector<std::string> out;
    while (q.executeStep()) out.push_back(q.getColumn(0).getString());
    return out;
  }

  Result<int64_t> execCount(const char* query, std::initializer_list<std::string> binds, std::string_view what) {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_, query);
      int i = 1;
      for (const auto& b : binds) q.bind(i++, b);
      return static_cast<int64_t>(q.exec());
    } catch (const SQLite::Exception& e) {
      return dbError(e, what);
    }
  }

  Result<int64_t> userId(const std::string& login) {
    SQLite::Statement q(db_, "SELECT id FROM users WHERE login = ?");
    q.bind(1, login);
    if (!q.executeStep())
      return Error{ErrorCode::NotFound, fmt::format("login: no user {}", login), "login", login};
    return q.getColumn(0).getInt64();
  }

  Result<std::pair<int64_t, int64_t>> groupAndUser(const std::string& group, const std::string& login) {
    SQLite::Statement q(db_, "SELECT id FROM groups WHERE name = ?");
    q.bind(1, group);
    if (!q.executeStep())
      return Error{ErrorCode::NotFound, fmt::format("group: no group {}", group), "group", group};
    int64_t gid = q.getColumn(0).getInt64();
    int64_t uid = CORRAL_TRY(userId(login));
    return std::pair{gid, uid};
  }

  // Which unique column of vms a violation hit. SQLite names only one of them
  // when both clash, so ask: the name, when another row has it, else the uuid.
  Error vmExists(const VmRecord& vm) {
    try {
      SQLite::Statement q(db_, "SELECT 1 FROM vms WHERE name = ? AND id <> ?");
      bindAll(q, vm.name, vm.id);
      if (!q.executeStep())
        return Error::alreadyExists("uuid", vm.uuid, fmt::format("uuid: a VM with uuid {} already exists", vm.uuid));
    } catch (const SQLite::Exception&) {
      // Fall through to the likelier cause.
    }
    return Error::alreadyExists("name", vm.name, fmt::format("name: a VM named {} already exists", vm.name));
  }

  Usage usageLocked(const std::string& kind, const std::string& subject, int64_t excludeId) {
    SQLite::Statement q(db_, sql::kUsage);
    bindAll(q, kind, subject, excludeId);
    q.executeStep();
    return sql::readUsage(Row{q});
  }

  QuotaRecord findQuotaLocked(const std::string& kind, const std::string& subject) {
    QuotaRecord out{.subjectKind = kind, .subject = subject};
    SQLite::Statement q(db_,
                        fmt::format("SELECT {} FROM quotas WHERE subject_kind = ? AND subject = ?", sql::kQuotaColumns));
    bindAll(q, kind, subject);
    if (q.executeStep()) sql::readQuotaLimits(Row{q}, 0, out);
    return out;
  }

  // Inside the caller's transaction, under mu_: nothing else writes meanwhile.
  Result<void> runCheck(const QuotaCheck& check, const std::string& kind, const std::string& owner,
                        int64_t excludeId) {
    Usage u = usageLocked(kind, owner, excludeId);
    QuotaRecord q = findQuotaLocked(kind, owner);
    return check(u, q);
  }

  std::mutex mu_;
  SQLite::Database db_;
};

}  // namespace

Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path) {
  // The file holds password and token hashes: 0600 whatever the umask, made so
  // before SQLite creates it (its -wal and -shm files take the same mode), and
  // tightened when an older corral left it readable.
  if (int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600); fd >= 0) ::close(fd);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::string f = path + suffix;
    if (::chmod(f.c_str(), 0600) != 0 && errno != ENOENT)
      return Error::unavailable(fmt::format("database {}: chmod 0600: {}", f, std::strerror(errno)));
  }
  std::unique_ptr<SqliteStore> store;
  try {
    store = std::make_unique<SqliteStore>(path);
  } catch (const SQLite::Exception& e) {
    return Error::unavailable(fmt::format("database {}: {}", path, e.what()));
  }
  CORRAL_TRY(store->migrate());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace corral::store
