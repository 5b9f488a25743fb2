// PostgreSQL implementation of Store, on the libpq layer in postgres_connection.h.
//
// The SQL is shared with the SQLite store (store_sql.h, '?' placeholders, numbered
// by the layer). Each call leases one connection for its whole duration and
// never a second one. Writes that a quota check guards (insertVm, updateVm), and
// deletes that refuse while an owner has VMs, first take a transaction-scoped
// advisory lock per owner (both owners on an owner change, in a fixed order), so
// two daemons or threads checking one owner's quota run one after the other: 50
// concurrent creates against a limit of 5 give exactly 5 rows. The default
// isolation (READ COMMITTED) then suffices: every statement after the lock sees
// what the previous holder committed. Constraint violations are mapped to the
// project's error codes by SQLSTATE.
#include <algorithm>
#include <cstdint>
#include <optional>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "store/migrations.h"
#include "store/postgres_connection.h"
#include "store/postgres_storage.h"
#include "store/store.h"
#include "store/store_sql.h"

namespace corral::store {
namespace {

using pg::Conn;
using pg::kForeignKeyViolation;
using pg::kUniqueViolation;
using pg::lockKeys;
using pg::Param;
using pg::Row;
using pg::Tx;

// Advisory lock keys. Migrations and the user/group namespace have fixed keys;
// owners get a 64-bit FNV-1a hash of "owner\0kind\0name" (a collision only makes
// two owners wait for each other, never a wrong answer).
constexpr int64_t kMigrationLock = 0x636f7272616c0001;  // "corral" 1
constexpr int64_t kNamespaceLock = 0x636f7272616c0002;

int64_t ownerLockKey(const std::string& kind, const std::string& owner) {
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&](std::string_view s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ULL;
    }
    h ^= 0;  // the "\0" after each part: ("ab","c") and ("a","bc") differ
    h *= 1099511628211ULL;
  };
  mix("owner");
  mix(kind);
  mix(owner);
  return static_cast<int64_t>(h);
}

class PostgresStore final : public Store {
 public:
  PostgresStore(std::string url, size_t connections) : pool_(std::move(url), connections) {}

  Result<void> migrate() {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    // A session-level lock: many daemons starting at once migrate once.
    CORRAL_TRY(c.exec("SELECT pg_advisory_lock(?::bigint)", {kMigrationLock}, "migration lock"));
    auto result = migrateLocked(c);
    (void)c.exec("SELECT pg_advisory_unlock(?::bigint)", {kMigrationLock}, "migration unlock");
    return result;
  }

  Result<int> schemaVersion() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return currentVersion(*lease);
  }

  // ---- images

  // Images and disks live in postgres_storage.cc.
  Result<ImageRecord> insertImage(const ImageRecord& image) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::insertImage(*lease, image);
  }

  Result<std::optional<ImageRecord>> findImage(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::findImage(*lease, name);
  }

  Result<std::vector<ImageRecord>> listImages() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listImages(*lease);
  }

  Result<ImageRecord> updateImage(const ImageRecord& image) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::updateImage(*lease, image);
  }

  Result<void> deleteImage(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::deleteImage(*lease, name);
  }

  // ---- disks

  Result<DiskRecord> insertDisk(const DiskRecord& disk) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::insertDisk(*lease, disk);
  }

  Result<std::vector<DiskRecord>> listDisks(int64_t vmId) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listDisks(*lease, vmId);
  }

  Result<std::vector<DiskRecord>> listAllDisks() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listAllDisks(*lease);
  }

  Result<DiskRecord> updateDisk(const DiskRecord& disk) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::updateDisk(*lease, disk);
  }

  Result<void> deleteDisk(int64_t id) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::deleteDisk(*lease, id);
  }

  // ---- networks, NICs and SSH keys

  // They live in postgres_network.cc.
  Result<NetworkRecord> insertNetwork(const NetworkRecord& net) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::insertNetwork(*lease, net);
  }

  Result<std::optional<NetworkRecord>> findNetwork(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::findNetwork(*lease, name);
  }

  Result<std::vector<NetworkRecord>> listNetworks() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listNetworks(*lease);
  }

  Result<void> deleteNetwork(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::deleteNetwork(*lease, name);
  }

  Result<NicRecord> insertNic(const NicRecord& nic) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::insertNic(*lease, nic);
  }

  Result<std::vector<NicRecord>> listNics(int64_t vmId) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listNics(*lease, vmId);
  }

  Result<std::vector<NicRecord>> listNetworkNics(const std::string& network) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listNetworkNics(*lease, network);
  }

  Result<std::vector<NicRecord>> listAllNics() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listAllNics(*lease);
  }

  Result<void> deleteNic(int64_t id) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::deleteNic(*lease, id);
  }

  Result<SshKeyRecord> insertSshKey(const SshKeyRecord& key) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::insertSshKey(*lease, key);
  }

  Result<std::vector<SshKeyRecord>> listSshKeys(const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::listSshKeys(*lease, login);
  }

  Result<void> deleteSshKey(const std::string& login, int64_t id) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return pg::deleteSshKey(*lease, login, id);
  }

  // ---- VMs

  Result<VmRecord> insertVm(const VmRecord& vm, const QuotaCheck& check) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    {
      auto tx = CORRAL_TRY(Tx::begin(c));
      CORRAL_TRY(lockKeys(c, {ownerLockKey(vm.ownerKind, vm.owner)}));
      auto img = CORRAL_TRY(c.exec("SELECT id FROM images WHERE name = ?", {vm.image}, "insert vm"));
      if (img.empty()) return imageNotFound(vm.image);
      CORRAL_TRY(pg::checkCdrom(c, vm.cdrom));
      if (check) CORRAL_TRY(runCheck(c, check, vm.ownerKind, vm.owner, 0));
      auto ins = c.exec(sql::kInsertVm,
                        {vm.name, vm.uuid, img[0].int64(0), static_cast<int64_t>(vm.memoryMib),
                         static_cast<int64_t>(vm.vcpus), vm.onCrash, vm.desiredState, vm.state, vm.stateReason,
                         vm.createdAt, vm.createdAt, vm.ownerKind, vm.owner, vm.administrator, vm.contact,
                         vm.description, vm.diskGib, vm.cdrom, int64_t{vm.bootCdrom ? 1 : 0}, vm.creation},
                        "insert vm");
      if (!ins.ok()) {
        bool unique = c.failedWith(kUniqueViolation);
        bool imageGone = c.failedWith(kForeignKeyViolation);
        tx.rollback();
        if (unique) return vmExists(c, vm);
        if (imageGone) return imageNotFound(vm.image);
        return std::move(ins).error();
      }
      CORRAL_TRY(tx.commit());
    }
    return findVmIn(c, vm.name);
  }

  Result<std::optional<VmRecord>> findVm(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = findVmIn(*lease, name);
    if (!r.ok()) {
      if (r.error().code == ErrorCode::NotFound) return std::optional<VmRecord>{};
      return std::move(r).error();
    }
    return std::optional<VmRecord>{std::move(r).take()};
  }

  Result<std::vector<VmRecord>> listVms() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(fmt::format("SELECT {} FROM {} ORDER BY v.name", sql::kVmColumns, sql::kVmFrom),
                                    {}, "list vms"));
    std::vector<VmRecord> out;
    out.reserve(static_cast<size_t>(r.size()));
    for (int i = 0; i < r.size(); ++i) out.push_back(sql::readVm(r[i]));
    return out;
  }

  Result<std::string> vmsChangeMark() override {
    // Every write to a row bumps its version; an insert raises max(id) or the
    // count, a delete lowers the count or the sum. One aggregate over the table.
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec("SELECT count(*), coalesce(sum(version), 0), coalesce(max(id), 0) FROM vms", {},
                                    "vms change mark"));
    if (r.size() != 1) return Error::internal("vms change mark: no row");
    return fmt::format("{}:{}:{}", r[0].text(0), r[0].text(1), r[0].text(2));
  }

  Result<VmRecord> updateVmState(const std::string& name, const VmStateUpdate& u) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    Param desiredParam = u.desiredState ? Param(*u.desiredState) : Param::null();
    auto r = CORRAL_TRY(c.exec("UPDATE vms SET state = ?, state_reason = ?, pid = ?, accel = ?, "
                               "desired_state = COALESCE(?, desired_state), updated_at = ?, version = version + 1 "
                               "WHERE name = ?",
                               {u.state, u.stateReason, u.pid, u.accel, desiredParam, nowRfc3339(), name},
                               "update vm state"));
    if (r.affected() == 0) return Error::notFound(fmt::format("vm {} not found", name));
    return findVmIn(c, name);
  }

  Result<VmRecord> updateVm(const VmRecord& vm, int64_t expectedVersion, const QuotaCheck& check) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    {
      auto tx = CORRAL_TRY(Tx::begin(c));
      auto before = CORRAL_TRY(c.exec("SELECT owner_kind, owner FROM vms WHERE id = ?", {vm.id}, "update vm"));
      if (before.empty()) return Error::notFound(fmt::format("vm {} not found", vm.name));
      // Both owners, in key order: the one losing the VM and the one gaining it.
      CORRAL_TRY(lockKeys(c, {ownerLockKey(before[0].text(0), before[0].text(1)), ownerLockKey(vm.ownerKind, vm.owner)}));
      auto cur = CORRAL_TRY(c.exec("SELECT version FROM vms WHERE id = ? FOR UPDATE", {vm.id}, "update vm"));
      if (cur.empty()) return Error::notFound(fmt::format("vm {} not found", vm.name));
      int64_t stored = cur[0].int64(0);
      if (expectedVersion != 0 && stored != expectedVersion) return Error::versionMismatch(expectedVersion, stored);
      CORRAL_TRY(pg::checkCdrom(c, vm.cdrom));
      if (check) CORRAL_TRY(runCheck(c, check, vm.ownerKind, vm.owner, vm.id));
      auto up = c.exec(sql::kUpdateVm,
                       {vm.name, vm.ownerKind, vm.owner, vm.administrator, vm.contact, vm.description,
                        static_cast<int64_t>(vm.memoryMib), static_cast<int64_t>(vm.vcpus), vm.onCrash,
                        vm.desiredState, vm.diskGib, vm.cdrom, int64_t{vm.bootCdrom ? 1 : 0}, nowRfc3339(), vm.id},
                       "update vm");
      if (!up.ok()) {
        bool unique = c.failedWith(kUniqueViolation);
        tx.rollback();
        if (unique) return vmExists(c, vm);
        return std::move(up).error();
      }
      CORRAL_TRY(tx.commit());
    }
    return findVmIn(c, vm.name);
  }

  Result<void> deleteVm(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec("DELETE FROM vms WHERE name = ?", {name}, "delete vm"));
    if (r.affected() == 0) return Error::notFound(fmt::format("vm {} not found", name));
    return ok();
  }

  Result<Usage> usage(const std::string& subjectKind, const std::string& subject) override {
    if (!sql::validSubjectKind(subjectKind)) return sql::badSubjectKind(subjectKind);
    auto lease = CORRAL_TRY(pool_.acquire());
    return usageIn(*lease, subjectKind, subject, 0);
  }

  // ---- users

  Result<UserRecord> insertUser(const UserRecord& user) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    // Users and groups share one namespace (a VM owner is a bare name); the lock
    // makes the cross-table check and the insert one step.
    CORRAL_TRY(lockKeys(c, {kNamespaceLock}));
    auto clash = CORRAL_TRY(c.exec("SELECT 1 FROM groups WHERE name = ?", {user.login}, "insert user"));
    if (!clash.empty())
      return Error::alreadyExists(
          "login", user.login, fmt::format("login: {} is taken by a group (users and groups share names)", user.login));
    auto r = c.exec(
        "INSERT INTO users (login, display_name, email, password_hash, admin, created_at, version) "
        "VALUES (?, ?, ?, ?, ?, ?, 1) RETURNING id",
        {user.login, user.displayName, user.email, user.passwordHash, int64_t{user.admin ? 1 : 0}, user.createdAt},
        "insert user");
    if (!r.ok()) {
      if (c.failedWith(kUniqueViolation))
        return Error::alreadyExists("login", user.login, fmt::format("login: a user {} already exists", user.login));
      return std::move(r).error();
    }
    UserRecord out = user;
    out.id = (*r)[0].int64(0);
    out.version = 1;
    CORRAL_TRY(tx.commit());
    return out;
  }

  Result<std::optional<UserRecord>> findUser(const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return findUserIn(*lease, login, false);
  }

  Result<std::vector<UserRecord>> listUsers() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(
        lease->exec(fmt::format("SELECT {} FROM users ORDER BY login", sql::kUserColumns), {}, "list users"));
    std::vector<UserRecord> out;
    for (int i = 0; i < r.size(); ++i) out.push_back(sql::readUser(r[i]));
    return out;
  }

  Result<UserRecord> updateUser(const UserRecord& user, int64_t expectedVersion) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    auto cur = CORRAL_TRY(findUserIn(c, user.login, true));
    if (!cur) return Error::notFound(fmt::format("user {} not found", user.login));
    if (expectedVersion != 0 && cur->version != expectedVersion)
      return Error::versionMismatch(expectedVersion, cur->version);
    CORRAL_TRY(c.exec("UPDATE users SET display_name = ?, email = ?, password_hash = ?, admin = ?, "
                      "version = version + 1 WHERE login = ?",
                      {user.displayName, user.email, user.passwordHash, int64_t{user.admin ? 1 : 0}, user.login},
                      "update user"));
    auto out = CORRAL_TRY(findUserIn(c, user.login, false));
    CORRAL_TRY(tx.commit());
    return std::move(*out);
  }

  Result<void> deleteUser(const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    // The owner lock keeps a concurrent insertVm for this user from slipping in
    // between the check and the delete.
    CORRAL_TRY(lockKeys(c, {ownerLockKey("user", login)}));
    auto vms = CORRAL_TRY(names(
        c, "SELECT name FROM vms WHERE (owner_kind = 'user' AND owner = ?) OR administrator = ? ORDER BY name",
        {login, login}, "delete user"));
    if (!vms.empty())
      return Error::failedPrecondition(
          fmt::format("user {} owns or administers VMs {}: delete them or give them to someone else first", login,
                      sql::joinNames(vms)));
    // Tokens, sessions and memberships go with the row (ON DELETE CASCADE).
    auto r = CORRAL_TRY(c.exec("DELETE FROM users WHERE login = ?", {login}, "delete user"));
    if (r.affected() == 0) return Error::notFound(fmt::format("user {} not found", login));
    CORRAL_TRY(c.exec("DELETE FROM quotas WHERE subject_kind = 'user' AND subject = ?", {login}, "delete user"));
    return tx.commit();
  }

  // ---- groups

  Result<GroupRecord> insertGroup(const GroupRecord& group) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    CORRAL_TRY(lockKeys(c, {kNamespaceLock}));
    auto clash = CORRAL_TRY(c.exec("SELECT 1 FROM users WHERE login = ?", {group.name}, "insert group"));
    if (!clash.empty())
      return Error::alreadyExists(
          "name", group.name, fmt::format("name: {} is taken by a user (users and groups share names)", group.name));
    auto r = c.exec("INSERT INTO groups (name, description, created_at) VALUES (?, ?, ?) RETURNING id",
                    {group.name, group.description, group.createdAt}, "insert group");
    if (!r.ok()) {
      if (c.failedWith(kUniqueViolation))
        return Error::alreadyExists("name", group.name, fmt::format("name: a group {} already exists", group.name));
      return std::move(r).error();
    }
    GroupRecord out = group;
    out.id = (*r)[0].int64(0);
    out.members.clear();
    CORRAL_TRY(tx.commit());
    return out;
  }

  Result<std::optional<GroupRecord>> findGroup(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto r = CORRAL_TRY(
        c.exec("SELECT id, name, description, created_at FROM groups WHERE name = ?", {name}, "find group"));
    if (r.empty()) return std::optional<GroupRecord>{};
    GroupRecord g = readGroup(r[0]);
    g.members = CORRAL_TRY(membersOf(c, g.id));
    return std::optional<GroupRecord>{std::move(g)};
  }

  Result<std::vector<GroupRecord>> listGroups() override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto r = CORRAL_TRY(c.exec("SELECT id, name, description, created_at FROM groups ORDER BY name", {}, "list groups"));
    std::vector<GroupRecord> out;
    for (int i = 0; i < r.size(); ++i) out.push_back(readGroup(r[i]));
    for (auto& g : out) g.members = CORRAL_TRY(membersOf(c, g.id));
    return out;
  }

  Result<void> deleteGroup(const std::string& name) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    CORRAL_TRY(lockKeys(c, {ownerLockKey("group", name)}));
    auto vms = CORRAL_TRY(names(c, "SELECT name FROM vms WHERE owner_kind = 'group' AND owner = ? ORDER BY name",
                                {name}, "delete group"));
    if (!vms.empty())
      return Error::failedPrecondition(fmt::format(
          "group {} owns VMs {}: delete them or give them to someone else first", name, sql::joinNames(vms)));
    auto r = CORRAL_TRY(c.exec("DELETE FROM groups WHERE name = ?", {name}, "delete group"));
    if (r.affected() == 0) return Error::notFound(fmt::format("group {} not found", name));
    CORRAL_TRY(c.exec("DELETE FROM quotas WHERE subject_kind = 'group' AND subject = ?", {name}, "delete group"));
    return tx.commit();
  }

  Result<void> addMember(const std::string& group, const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto [gid, uid] = CORRAL_TRY(groupAndUser(c, group, login));
    auto r = c.exec("INSERT INTO memberships (group_id, user_id) VALUES (?, ?) ON CONFLICT DO NOTHING", {gid, uid},
                    "add member");
    if (!r.ok()) {
      // The group or user went away since we looked.
      if (c.failedWith(kForeignKeyViolation)) {
        auto again = groupAndUser(c, group, login);
        if (!again.ok()) return std::move(again).error();
      }
      return std::move(r).error();
    }
    return ok();
  }

  Result<void> removeMember(const std::string& group, const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto [gid, uid] = CORRAL_TRY(groupAndUser(c, group, login));
    CORRAL_TRY(c.exec("DELETE FROM memberships WHERE group_id = ? AND user_id = ?", {gid, uid}, "remove member"));
    return ok();
  }

  Result<std::vector<std::string>> groupsOf(const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    return names(*lease,
                 "SELECT g.name FROM groups g JOIN memberships m ON m.group_id = g.id JOIN users u ON m.user_id = u.id "
                 "WHERE u.login = ? ORDER BY g.name",
                 {login}, "groups of user");
  }

  // ---- quotas

  Result<void> setQuota(const QuotaRecord& q) override {
    if (!sql::validSubjectKind(q.subjectKind)) return sql::badSubjectKind(q.subjectKind);
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    // The subject's owner lock: a quota-checked write sees the old or the new
    // limits, never a half.
    CORRAL_TRY(lockKeys(c, {ownerLockKey(q.subjectKind, q.subject)}));
    CORRAL_TRY(writeQuotaIn(c, q));
    return tx.commit();
  }

  Result<QuotaRecord> patchQuota(const std::string& subjectKind, const std::string& subject,
                                 const std::function<void(QuotaRecord&)>& change) override {
    if (!sql::validSubjectKind(subjectKind)) return sql::badSubjectKind(subjectKind);
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto tx = CORRAL_TRY(Tx::begin(c));
    // The owner lock serialises patches of one subject (and quota-checked writes).
    CORRAL_TRY(lockKeys(c, {ownerLockKey(subjectKind, subject)}));
    QuotaRecord q = CORRAL_TRY(findQuotaIn(c, subjectKind, subject));
    change(q);
    q.subjectKind = subjectKind;
    q.subject = subject;
    CORRAL_TRY(writeQuotaIn(c, q));
    CORRAL_TRY(tx.commit());
    return q;
  }

  Result<void> writeQuotaIn(Conn& c, const QuotaRecord& q) {
    if (sql::quotaIsEmpty(q)) {
      // All defaults: no row, so that findQuota and a missing row agree.
      CORRAL_TRY(c.exec("DELETE FROM quotas WHERE subject_kind = ? AND subject = ?", {q.subjectKind, q.subject},
                        "set quota"));
    } else {
      CORRAL_TRY(c.exec(sql::kSetQuota,
                        {q.subjectKind, q.subject, q.maxVms, q.maxRunning, q.maxMemoryTotalMib, q.minMemoryVmMib,
                         q.maxMemoryVmMib, q.maxDiskTotalGib, q.maxDiskVmGib},
                        "set quota"));
    }
    return ok();
  }

  Result<QuotaRecord> findQuota(const std::string& subjectKind, const std::string& subject) override {
    if (!sql::validSubjectKind(subjectKind)) return sql::badSubjectKind(subjectKind);
    auto lease = CORRAL_TRY(pool_.acquire());
    return findQuotaIn(*lease, subjectKind, subject);
  }

  // ---- tokens

  Result<TokenRecord> insertToken(const TokenRecord& token) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto uid = CORRAL_TRY(userId(c, token.login));
    auto r = c.exec(
        "INSERT INTO tokens (user_id, name, secret_hash, created_at, expires_at, revoked_at) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        {uid, token.name, token.secretHash, token.createdAt, token.expiresAt, token.revokedAt}, "insert token");
    if (!r.ok()) {
      // The hash is not echoed: it is as good as the secret for a lookup.
      if (c.failedWith(kUniqueViolation))
        return Error::alreadyExists("secret_hash", "", "secret_hash: a token with this secret exists");
      if (c.failedWith(kForeignKeyViolation)) return noUser(token.login);
      return std::move(r).error();
    }
    TokenRecord out = token;
    out.id = (*r)[0].int64(0);
    return out;
  }

  Result<std::optional<TokenRecord>> findTokenByHash(const std::string& secretHash) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(
        lease->exec(fmt::format("{} WHERE t.secret_hash = ?", sql::kTokenSelect), {secretHash}, "find token"));
    if (r.empty()) return std::optional<TokenRecord>{};
    return std::optional<TokenRecord>{sql::readToken(r[0])};
  }

  Result<std::optional<TokenRecord>> findToken(int64_t id) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(fmt::format("{} WHERE t.id = ?", sql::kTokenSelect), {id}, "find token"));
    if (r.empty()) return std::optional<TokenRecord>{};
    return std::optional<TokenRecord>{sql::readToken(r[0])};
  }

  Result<std::vector<TokenRecord>> listTokens(const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(fmt::format("{} WHERE ? = '' OR u.login = ? ORDER BY t.id", sql::kTokenSelect),
                                    {login, login}, "list tokens"));
    std::vector<TokenRecord> out;
    for (int i = 0; i < r.size(); ++i) out.push_back(sql::readToken(r[i]));
    return out;
  }

  Result<void> revokeToken(int64_t id, const std::string& when) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    // A second revoke keeps the first time.
    auto r = CORRAL_TRY(lease->exec(
        "UPDATE tokens SET revoked_at = CASE WHEN revoked_at = '' THEN ? ELSE revoked_at END WHERE id = ?",
        {when, id}, "revoke token"));
    if (r.affected() == 0) return Error::notFound(fmt::format("token {} not found", id));
    return ok();
  }

  // ---- sessions

  Result<void> insertSession(const SessionRecord& s) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto uid = CORRAL_TRY(userId(c, s.login));
    auto r = c.exec(
        "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        {s.idHash, uid, s.csrfToken, s.createdAt, s.expiresAt}, "insert session");
    if (!r.ok()) {
      if (c.failedWith(kUniqueViolation))
        return Error::alreadyExists("id_hash", "", "id_hash: a session with this id exists");
      if (c.failedWith(kForeignKeyViolation)) return noUser(s.login);
      return std::move(r).error();
    }
    return ok();
  }

  Result<std::optional<SessionRecord>> findSession(const std::string& idHash) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(
        lease->exec(fmt::format("{} WHERE s.id_hash = ?", sql::kSessionSelect), {idHash}, "find session"));
    if (r.empty()) return std::optional<SessionRecord>{};
    return std::optional<SessionRecord>{sql::readSession(r[0])};
  }

  Result<void> deleteSession(const std::string& idHash) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    CORRAL_TRY(lease->exec("DELETE FROM sessions WHERE id_hash = ?", {idHash}, "delete session"));
    return ok();
  }

  Result<void> deleteSessionsOf(const std::string& login) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    CORRAL_TRY(lease->exec("DELETE FROM sessions WHERE user_id IN (SELECT id FROM users WHERE login = ?)", {login},
                           "delete sessions"));
    return ok();
  }

  Result<int64_t> deleteExpiredSessions(const std::string& now) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec("DELETE FROM sessions WHERE expires_at <= ?", {now}, "delete expired sessions"));
    return r.affected();
  }

  // ---- operations

  Result<void> insertOperation(const OperationRecord& op) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    Conn& c = *lease;
    auto r = c.exec(
        "INSERT INTO operations (id, kind, target, requester, state, progress, result, created_at, updated_at, "
        "bytes_done, bytes_total) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {op.id, op.kind, op.target, op.requester, op.state, int64_t{op.progress}, op.result, op.createdAt,
         op.updatedAt.empty() ? op.createdAt : op.updatedAt, op.bytesDone, op.bytesTotal},
        "insert operation");
    if (!r.ok()) {
      if (c.failedWith(kUniqueViolation))
        return Error::alreadyExists("id", op.id, fmt::format("id: operation {} already exists", op.id));
      return std::move(r).error();
    }
    return ok();
  }

  Result<void> updateOperation(const OperationRecord& op) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(
        lease->exec("UPDATE operations SET state = ?, progress = ?, bytes_done = ?, bytes_total = ?, result = ?, "
                    "updated_at = ? WHERE id = ?",
                    {op.state, int64_t{op.progress}, op.bytesDone, op.bytesTotal, op.result,
                     op.updatedAt.empty() ? nowRfc3339() : op.updatedAt, op.id},
                    "update operation"));
    if (r.affected() == 0) return Error::notFound(fmt::format("operation {} not found", op.id));
    return ok();
  }

  Result<std::optional<OperationRecord>> findOperation(const std::string& id) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(fmt::format("SELECT {} FROM operations WHERE id = ?", sql::kOperationColumns),
                                    {id}, "find operation"));
    if (r.empty()) return std::optional<OperationRecord>{};
    return std::optional<OperationRecord>{sql::readOperation(r[0])};
  }

  Result<std::vector<OperationRecord>> listOperations(size_t limit) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(
        fmt::format("SELECT {} FROM operations ORDER BY created_at DESC, seq DESC LIMIT ?", sql::kOperationColumns),
        {static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX))}, "list operations"));
    std::vector<OperationRecord> out;
    for (int i = 0; i < r.size(); ++i) out.push_back(sql::readOperation(r[i]));
    return out;
  }

  Result<std::vector<OperationRecord>> listOperationsFor(const std::string& requester,
                                                         const std::vector<std::string>& vmTargets,
                                                         size_t limit) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(
        fmt::format("SELECT {} FROM operations WHERE requester = ? OR (kind LIKE 'vm.%' AND "
                    "target IN (SELECT json_array_elements_text(?::json))) "
                    "ORDER BY created_at DESC, seq DESC LIMIT ?",
                    sql::kOperationColumns),
        {requester, nlohmann::json(vmTargets).dump(), static_cast<int64_t>(std::min<size_t>(limit, INT64_MAX))},
        "list operations"));
    std::vector<OperationRecord> out;
    for (int i = 0; i < r.size(); ++i) out.push_back(sql::readOperation(r[i]));
    return out;
  }

  Result<int64_t> deleteOperationsEndedBefore(const std::string& cutoff) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec(
        "DELETE FROM operations WHERE state IN ('succeeded', 'failed') AND updated_at < ?", {cutoff},
        "prune operations"));
    return r.affected();
  }

  Result<int64_t> failUnfinishedOperations(const std::string& reason) override {
    auto lease = CORRAL_TRY(pool_.acquire());
    auto r = CORRAL_TRY(lease->exec("UPDATE operations SET state = 'failed', result = ?, updated_at = ? "
                                    "WHERE state IN ('pending', 'running')",
                                    {sql::interruptedResult(reason), nowRfc3339()}, "fail unfinished operations"));
    return r.affected();
  }

 private:
  Result<void> migrateLocked(Conn& c) {
    CORRAL_TRY(c.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                      "name TEXT NOT NULL, applied_at TEXT NOT NULL)",
                      {}, "migrate"));
    int current = CORRAL_TRY(currentVersion(c));
    for (const Migration& m : postgresMigrations()) {
      if (m.version <= current) continue;
      auto tx = CORRAL_TRY(Tx::begin(c));
      CORRAL_TRY(c.execScript(m.sql, fmt::format("migration {}", m.name)));
      CORRAL_TRY(c.exec("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                        {int64_t{m.version}, m.name, nowRfc3339()}, "migrate"));
      CORRAL_TRY(tx.commit());
      spdlog::info("store: applied migration {} ({})", m.version, m.name);
    }
    return ok();
  }

  Result<int> currentVersion(Conn& c) {
    auto r = CORRAL_TRY(c.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", {}, "schema version"));
    return static_cast<int>(r[0].int64(0));
  }

  Result<VmRecord> findVmIn(Conn& c, const std::string& name) {
    auto r = CORRAL_TRY(
        c.exec(fmt::format("SELECT {} FROM {} WHERE v.name = ?", sql::kVmColumns, sql::kVmFrom), {name}, "find vm"));
    if (r.empty()) return Error::notFound(fmt::format("vm {} not found", name));
    return sql::readVm(r[0]);
  }

  Result<std::optional<UserRecord>> findUserIn(Conn& c, const std::string& login, bool forUpdate) {
    auto r = CORRAL_TRY(c.exec(
        fmt::format("SELECT {} FROM users WHERE login = ?{}", sql::kUserColumns, forUpdate ? " FOR UPDATE" : ""),
        {login}, "find user"));
    if (r.empty()) return std::optional<UserRecord>{};
    return std::optional<UserRecord>{sql::readUser(r[0])};
  }

  static GroupRecord readGroup(const Row& r) {
    return GroupRecord{.id = r.int64(0), .name = r.text(1), .description = r.text(2), .createdAt = r.text(3)};
  }

  Result<std::vector<std::string>> membersOf(Conn& c, int64_t groupId) {
    return names(c,
                 "SELECT u.login FROM memberships m JOIN users u ON m.user_id = u.id WHERE m.group_id = ? "
                 "ORDER BY u.login",
                 {groupId}, "group members");
  }

  // The first column of every row.
  static Result<std::vector<std::string>> names(Conn& c, std::string_view query, std::initializer_list<Param> params,
                                                std::string_view what) {
    auto r = CORRAL_TRY(c.exec(query, params, what));
    std::vector<std::string> out;
    out.reserve(static_cast<size_t>(r.size()));
    for (int i = 0; i < r.size(); ++i) out.push_back(r[i].text(0));
    return out;
  }

  static Error noUser(const std::string& login) {
    return Error{ErrorCode::NotFound, fmt::format("login: no user {}", login), "login", login};
  }

  static Error imageNotFound(const std::string& image) {
    return Error{ErrorCode::NotFound, fmt::format("image: no image named {}", image), "image", image};
  }

  Result<int64_t> userId(Conn& c, const std::string& login) {
    auto r = CORRAL_TRY(c.exec("SELECT id FROM users WHERE login = ?", {login}, "find user"));
    if (r.empty()) return noUser(login);
    return r[0].int64(0);
  }

  Result<std::pair<int64_t, int64_t>> groupAndUser(Conn& c, const std::string& group, const std::string& login) {
    auto r = CORRAL_TRY(c.exec("SELECT id FROM groups WHERE name = ?", {group}, "find group"));
    if (r.empty()) return Error{ErrorCode::NotFound, fmt::format("group: no group {}", group), "group", group};
    int64_t gid = r[0].int64(0);
    int64_t uid = CORRAL_TRY(userId(c, login));
    return std::pair{gid, uid};
  }

  // Which unique column of vms a violation hit: the name, when another row has
  // it, else the uuid (one statement can clash on both; the name is what people
  // chose and see).
  Error vmExists(Conn& c, const VmRecord& vm) {
    auto r = c.exec("SELECT 1 FROM vms WHERE name = ? AND id <> ?", {vm.name, vm.id}, "find vm");
    if (r.ok() && r->empty())
      return Error::alreadyExists("uuid", vm.uuid, fmt::format("uuid: a VM with uuid {} already exists", vm.uuid));
    return Error::alreadyExists("name", vm.name, fmt::format("name: a VM named {} already exists", vm.name));
  }

  Result<Usage> usageIn(Conn& c, const std::string& kind, const std::string& subject, int64_t excludeId) {
    auto r = CORRAL_TRY(c.exec(sql::kUsage, {kind, subject, excludeId}, "usage"));
    return sql::readUsage(r[0]);
  }

  Result<QuotaRecord> findQuotaIn(Conn& c, const std::string& kind, const std::string& subject) {
    QuotaRecord out{.subjectKind = kind, .subject = subject};
    auto r = CORRAL_TRY(
        c.exec(fmt::format("SELECT {} FROM quotas WHERE subject_kind = ? AND subject = ?", sql::kQuotaColumns),
               {kind, subject}, "find quota"));
    if (!r.empty()) sql::readQuotaLimits(r[0], 0, out);
    return out;
  }

  // Inside the caller's transaction, holding the owner's advisory lock.
  Result<void> runCheck(Conn& c, const QuotaCheck& check, const std::string& kind, const std::string& owner,
                        int64_t excludeId) {
    Usage u = CORRAL_TRY(usageIn(c, kind, owner, excludeId));
    QuotaRecord q = CORRAL_TRY(findQuotaIn(c, kind, owner));
    return check(u, q);
  }

  pg::Pool pool_;
};

}  // namespace

Result<std::unique_ptr<Store>> openPostgresStore(const std::string& url, size_t connections) {
  auto store = std::make_unique<PostgresStore>(url, connections);
  CORRAL_TRY(store->migrate());
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace corral::store
