// The SQLite store's networks, NICs and SSH keys (declared in sqlite_support.h).
// The caller, SqliteStore, holds its mutex around each call, and every
// check-then-write runs in a BEGIN IMMEDIATE transaction, so no writer of this
// or another process comes in between. Uniqueness (a network's name; a NIC's
// name per VM, address and hostname per network, MAC; a key's fingerprint per
// user) is the schema's: a violation is mapped to the key it hit here.
#include <fmt/format.h>

#include "store/sqlite_support.h"
#include "store/store_sql.h"

namespace corral::store::sqlite {
namespace {

// "" is stored as NULL: the unique keys on (network_id, ip) and
// (network_id, hostname) then never match two unset ones.
std::optional<std::string> textOrNull(const std::string& s) {
  return s.empty() ? std::nullopt : std::optional<std::string>{s};
}

bool exists(SQLite::Database& db, const char* query, int64_t id) {
  SQLite::Statement q(db, query);
  q.bind(1, id);
  return q.executeStep();
}

std::vector<NicRecord> nicsWhere(SQLite::Database& db, std::string_view where,
                                 const std::optional<std::string>& textBind, std::optional<int64_t> idBind) {
  SQLite::Statement q(db, fmt::format("SELECT {} FROM {} {}", sql::kNicColumns, sql::kNicFrom, where));
  if (textBind) q.bind(1, *textBind);
  if (idBind) q.bind(1, *idBind);
  std::vector<NicRecord> out;
  while (q.executeStep()) out.push_back(sql::readNic(Row{q}));
  return out;
}

// The id and name of a new NIC's network: by id when given, else by name.
Result<std::pair<int64_t, std::string>> networkOf(SQLite::Database& db, const NicRecord& nic) {
  if (nic.networkId != 0) {
    SQLite::Statement q(db, "SELECT name FROM networks WHERE id = ?");
    q.bind(1, nic.networkId);
    if (!q.executeStep()) return sql::noNetwork(nic.network.empty() ? std::to_string(nic.networkId) : nic.network);
    return std::pair{nic.networkId, q.getColumn(0).getString()};
  }
  SQLite::Statement q(db, "SELECT id FROM networks WHERE name = ?");
  q.bind(1, nic.network);
  if (!q.executeStep()) return sql::noNetwork(nic.network);
  return std::pair{q.getColumn(0).getInt64(), nic.network};
}

// Which unique key of nics an insert hit (SQLite names one even when several
// clash, and not in the words Store speaks): ask, in the order Store reports.
Error nicClash(SQLite::Database& db, const NicRecord& n) {
  int64_t rank = 1;
  try {
    SQLite::Statement q(db, sql::kNicClashes);
    bindAll(q, n.vmId, n.name, n.networkId, textOrNull(n.ip), n.networkId, textOrNull(n.hostname), n.mac);
    if (q.executeStep()) rank = q.getColumn(0).getInt64();
  } catch (const SQLite::Exception&) {
    // Fall through to the likelier cause.
  }
  return sql::nicClash(n, rank);
}

}  // namespace

// ---- networks

Result<NetworkRecord> insertNetwork(SQLite::Database& db, const NetworkRecord& net) {
  try {
    SQLite::Statement q(db, sql::kInsertNetwork);
    bindAll(q, net.name, net.mode, net.bridge, net.subnet, net.gateway, net.poolStart, net.poolEnd, net.dns, net.domain,
            net.forwardBind, net.description, net.createdAt);
    q.exec();
    NetworkRecord out = net;
    out.id = db.getLastInsertRowid();
    return out;
  } catch (const SQLite::Exception& e) {
    if (isUnique(e)) return sql::networkExists(net);
    return dbError(e, "insert network");
  }
}

Result<std::optional<NetworkRecord>> findNetwork(SQLite::Database& db, const std::string& name) {
  try {
    SQLite::Statement q(db, fmt::format("SELECT {} FROM networks WHERE name = ?", sql::kNetworkColumns));
    q.bind(1, name);
    if (!q.executeStep()) return std::optional<NetworkRecord>{};
    return std::optional<NetworkRecord>{sql::readNetwork(Row{q})};
  } catch (const SQLite::Exception& e) {
    return dbError(e, "find network");
  }
}

Result<std::vector<NetworkRecord>> listNetworks(SQLite::Database& db) {
  try {
    SQLite::Statement q(db, fmt::format("SELECT {} FROM networks ORDER BY name", sql::kNetworkColumns));
    std::vector<NetworkRecord> out;
    while (q.executeStep()) out.push_back(sql::readNetwork(Row{q}));
    return out;
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list networks");
  }
}

Result<void> deleteNetwork(SQLite::Database& db, const std::string& name) {
  try {
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement net(db, "SELECT id FROM networks WHERE name = ?");
    net.bind(1, name);
    if (!net.executeStep()) return Error::notFound(fmt::format("network {} not found", name));
    int64_t id = net.getColumn(0).getInt64();
    SQLite::Statement users(db, sql::kNetworkUsers);
    users.bind(1, id);
    std::vector<std::string> vms;
    while (users.executeStep()) vms.push_back(users.getColumn(0).getString());
    if (!vms.empty()) return sql::networkInUse(name, vms);
    SQLite::Statement q(db, "DELETE FROM networks WHERE id = ?");
    q.bind(1, id);
    q.exec();
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return dbError(e, "delete network");
  }
}

// ---- NICs

Result<NicRecord> insertNic(SQLite::Database& db, const NicRecord& nic) {
  NicRecord want = nic;  // with the network's id and name, for the clash message
  int64_t id = 0;
  try {
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    if (!exists(db, "SELECT 1 FROM vms WHERE id = ?", nic.vmId)) return sql::noVmWithId(nic.vmId);
    auto [netId, netName] = CORRAL_TRY(networkOf(db, nic));
    want.networkId = netId;
    want.network = netName;
    SQLite::Statement q(db, sql::kInsertNic);
    bindAll(q, nic.vmId, nic.name, netId, nic.model, nic.mac, textOrNull(nic.ip), textOrNull(nic.hostname),
            nic.forwards, nic.createdAt);
    q.exec();
    id = db.getLastInsertRowid();
    tx.commit();
  } catch (const SQLite::Exception& e) {
    if (isUnique(e)) return nicClash(db, want);
    return dbError(e, "insert nic");
  }
  try {
    auto out = nicsWhere(db, "WHERE n.id = ?", std::nullopt, id);
    if (out.empty()) return sql::noNic(id);
    return std::move(out.front());
  } catch (const SQLite::Exception& e) {
    return dbError(e, "insert nic");
  }
}

Result<std::vector<NicRecord>> listNics(SQLite::Database& db, int64_t vmId) {
  try {
    return nicsWhere(db, fmt::format("WHERE n.vm_id = ? ORDER BY {}", sql::kNicOrder), std::nullopt, vmId);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list nics");
  }
}

Result<std::vector<NicRecord>> listNetworkNics(SQLite::Database& db, const std::string& network) {
  try {
    return nicsWhere(db, "WHERE w.name = ? ORDER BY n.id", network, std::nullopt);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list network nics");
  }
}

Result<std::vector<NicRecord>> listAllNics(SQLite::Database& db) {
  try {
    return nicsWhere(db, "ORDER BY n.id", std::nullopt, std::nullopt);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list nics");
  }
}

Result<void> deleteNic(SQLite::Database& db, int64_t id) {
  try {
    SQLite::Statement q(db, "DELETE FROM nics WHERE id = ?");
    q.bind(1, id);
    if (q.exec() == 0) return sql::noNic(id);
    return ok();
  } catch (const SQLite::Exception& e) {
    return dbError(e, "delete nic");
  }
}

// ---- SSH keys

Result<SshKeyRecord> insertSshKey(SQLite::Database& db, const SshKeyRecord& key) {
  try {
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement user(db, "SELECT id FROM users WHERE login = ?");
    user.bind(1, key.login);
    if (!user.executeStep()) return sql::noUser(key.login);
    int64_t uid = user.getColumn(0).getInt64();
    SQLite::Statement q(db,
                        "INSERT INTO ssh_keys (user_id, name, key, fingerprint, created_at) VALUES (?, ?, ?, ?, ?)");
    bindAll(q, uid, key.name, key.key, key.fingerprint, key.createdAt);
    q.exec();
    SshKeyRecord out = key;
    out.id = db.getLastInsertRowid();
    tx.commit();
    return out;
  } catch (const SQLite::Exception& e) {
    if (isUnique(e)) return sql::sshKeyExists(key);
    return dbError(e, "insert ssh key");
  }
}

Result<std::vector<SshKeyRecord>> listSshKeys(SQLite::Database& db, const std::string& login) {
  try {
    SQLite::Statement q(db, fmt::format("{} WHERE u.login = ? ORDER BY k.id", sql::kSshKeySelect));
    q.bind(1, login);
    std::vector<SshKeyRecord> out;
    while (q.executeStep()) out.push_back(sql::readSshKey(Row{q}));
    return out;
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list ssh keys");
  }
}

Result<void> deleteSshKey(SQLite::Database& db, const std::string& login, int64_t id) {
  try {
    // Only the user's own: another user's key id is NotFound, like one that never was.
    SQLite::Statement q(db, "DELETE FROM ssh_keys WHERE id = ? AND user_id IN (SELECT id FROM users WHERE login = ?)");
    bindAll(q, id, login);
    if (q.exec() == 0) return sql::noSshKey(login, id);
    return ok();
  } catch (const SQLite::Exception& e) {
    return dbError(e, "delete ssh key");
  }
}

}  // namespace corral::store::sqlite
