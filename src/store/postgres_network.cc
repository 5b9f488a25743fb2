// The PostgreSQL store's networks, NICs and SSH keys (declared in
// postgres_storage.h).
//
// Uniqueness is the schema's (a network's name; a NIC's name per VM, address and
// hostname per network, MAC; a key's fingerprint per user): two daemons racing
// for one address or hostname get one row and one unique violation, mapped here
// to the key it hit. deleteNetwork locks the network's row FOR UPDATE before it
// looks for NICs, and a NIC's insert takes KEY SHARE on that row (its foreign
// key check), which conflicts: either the insert waits and then finds the
// network gone (NotFound), or the delete waits and then sees the NIC.
#include <fmt/format.h>

#include "store/postgres_storage.h"
#include "store/store_sql.h"

namespace corral::store::pg {
namespace {

// "" is stored as NULL: the unique keys on (network_id, ip) and
// (network_id, hostname) then never match two unset ones.
Param textOrNull(const std::string& s) { return s.empty() ? Param::null() : Param(s); }

Result<std::vector<NicRecord>> nicsWhere(Conn& c, const std::string& where, std::initializer_list<Param> params) {
  auto r = CORRAL_TRY(
      c.exec(fmt::format("SELECT {} FROM {} {}", sql::kNicColumns, sql::kNicFrom, where), params, "list nics"));
  std::vector<NicRecord> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) out.push_back(sql::readNic(r[i]));
  return out;
}

// The id and name of a new NIC's network: by id when given, else by name.
Result<std::pair<int64_t, std::string>> networkOf(Conn& c, const NicRecord& nic) {
  if (nic.networkId != 0) {
    auto r = CORRAL_TRY(c.exec("SELECT name FROM networks WHERE id = ?", {nic.networkId}, "insert nic"));
    if (r.empty()) return sql::noNetwork(nic.network.empty() ? std::to_string(nic.networkId) : nic.network);
    return std::pair{nic.networkId, r[0].text(0)};
  }
  auto r = CORRAL_TRY(c.exec("SELECT id FROM networks WHERE name = ?", {nic.network}, "insert nic"));
  if (r.empty()) return sql::noNetwork(nic.network);
  return std::pair{r[0].int64(0), nic.network};
}

// Which unique key of nics an insert hit: ask, in the order Store reports. The
// row in the way has committed (a unique violation waits for that), so this
// statement sees it.
Error nicClash(Conn& c, const NicRecord& n) {
  auto r =
      c.exec(sql::kNicClashes,
             {n.vmId, n.name, n.networkId, textOrNull(n.ip), n.networkId, textOrNull(n.hostname), n.mac}, "insert nic");
  return sql::nicClash(n, r.ok() && !r->empty() ? (*r)[0].int64(0) : 1);
}

}  // namespace

// ---- networks

Result<NetworkRecord> insertNetwork(Conn& c, const NetworkRecord& net) {
  auto r = c.exec(fmt::format("{} RETURNING id", sql::kInsertNetwork),
                  {net.name, net.mode, net.bridge, net.subnet, net.gateway, net.poolStart, net.poolEnd, net.dns,
                   net.domain, net.forwardBind, net.description, net.createdAt},
                  "insert network");
  if (!r.ok()) {
    if (c.failedWith(kUniqueViolation)) return sql::networkExists(net);
    return std::move(r).error();
  }
  NetworkRecord out = net;
  out.id = (*r)[0].int64(0);
  return out;
}

Result<std::optional<NetworkRecord>> findNetwork(Conn& c, const std::string& name) {
  auto r = CORRAL_TRY(
      c.exec(fmt::format("SELECT {} FROM networks WHERE name = ?", sql::kNetworkColumns), {name}, "find network"));
  if (r.empty()) return std::optional<NetworkRecord>{};
  return std::optional<NetworkRecord>{sql::readNetwork(r[0])};
}

Result<std::vector<NetworkRecord>> listNetworks(Conn& c) {
  auto r = CORRAL_TRY(
      c.exec(fmt::format("SELECT {} FROM networks ORDER BY name", sql::kNetworkColumns), {}, "list networks"));
  std::vector<NetworkRecord> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) out.push_back(sql::readNetwork(r[i]));
  return out;
}

Result<void> deleteNetwork(Conn& c, const std::string& name) {
  auto tx = CORRAL_TRY(Tx::begin(c));
  auto net = CORRAL_TRY(c.exec("SELECT id FROM networks WHERE name = ? FOR UPDATE", {name}, "delete network"));
  if (net.empty()) return Error::notFound(fmt::format("network {} not found", name));
  int64_t id = net[0].int64(0);
  auto users = CORRAL_TRY(c.exec(sql::kNetworkUsers, {id}, "delete network"));
  if (!users.empty()) {
    std::vector<std::string> vms;
    for (int i = 0; i < users.size(); ++i) vms.push_back(users[i].text(0));
    return sql::networkInUse(name, vms);
  }
  CORRAL_TRY(c.exec("DELETE FROM networks WHERE id = ?", {id}, "delete network"));
  return tx.commit();
}

// ---- NICs

Result<NicRecord> insertNic(Conn& c, const NicRecord& nic) {
  auto vm = CORRAL_TRY(c.exec("SELECT 1 FROM vms WHERE id = ?", {nic.vmId}, "insert nic"));
  if (vm.empty()) return sql::noVmWithId(nic.vmId);
  auto [netId, netName] = CORRAL_TRY(networkOf(c, nic));
  NicRecord want = nic;  // with the network's id and name, for the clash message
  want.networkId = netId;
  want.network = netName;
  auto r = c.exec(fmt::format("{} RETURNING id", sql::kInsertNic),
                  {nic.vmId, nic.name, netId, nic.model, nic.mac, textOrNull(nic.ip), textOrNull(nic.hostname),
                   nic.forwards, nic.createdAt},
                  "insert nic");
  if (!r.ok()) {
    if (c.failedWith(kUniqueViolation)) return nicClash(c, want);
    if (c.failedWith(kForeignKeyViolation)) {
      // The VM or the network went away since we looked.
      auto again = c.exec("SELECT 1 FROM vms WHERE id = ?", {nic.vmId}, "insert nic");
      if (again.ok() && again->empty()) return sql::noVmWithId(nic.vmId);
      return sql::noNetwork(netName);
    }
    return std::move(r).error();
  }
  int64_t id = (*r)[0].int64(0);
  auto out = CORRAL_TRY(nicsWhere(c, "WHERE n.id = ?", {id}));
  if (out.empty()) return sql::noNic(id);
  return std::move(out.front());
}

Result<std::vector<NicRecord>> listNics(Conn& c, int64_t vmId) {
  return nicsWhere(c, fmt::format("WHERE n.vm_id = ? ORDER BY {}", sql::kNicOrder), {vmId});
}

Result<std::vector<NicRecord>> listNetworkNics(Conn& c, const std::string& network) {
  return nicsWhere(c, "WHERE w.name = ? ORDER BY n.id", {network});
}

Result<std::vector<NicRecord>> listAllNics(Conn& c) { return nicsWhere(c, "ORDER BY n.id", {}); }

Result<void> deleteNic(Conn& c, int64_t id) {
  auto r = CORRAL_TRY(c.exec("DELETE FROM nics WHERE id = ?", {id}, "delete nic"));
  if (r.affected() == 0) return sql::noNic(id);
  return ok();
}

// ---- SSH keys

Result<SshKeyRecord> insertSshKey(Conn& c, const SshKeyRecord& key) {
  auto user = CORRAL_TRY(c.exec("SELECT id FROM users WHERE login = ?", {key.login}, "insert ssh key"));
  if (user.empty()) return sql::noUser(key.login);
  auto r =
      c.exec("INSERT INTO ssh_keys (user_id, name, key, fingerprint, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
             {user[0].int64(0), key.name, key.key, key.fingerprint, key.createdAt}, "insert ssh key");
  if (!r.ok()) {
    if (c.failedWith(kUniqueViolation)) return sql::sshKeyExists(key);
    if (c.failedWith(kForeignKeyViolation)) return sql::noUser(key.login);  // deleted since we looked
    return std::move(r).error();
  }
  SshKeyRecord out = key;
  out.id = (*r)[0].int64(0);
  return out;
}

Result<std::vector<SshKeyRecord>> listSshKeys(Conn& c, const std::string& login) {
  auto r = CORRAL_TRY(
      c.exec(fmt::format("{} WHERE u.login = ? ORDER BY k.id", sql::kSshKeySelect), {login}, "list ssh keys"));
  std::vector<SshKeyRecord> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) out.push_back(sql::readSshKey(r[i]));
  return out;
}

Result<void> deleteSshKey(Conn& c, const std::string& login, int64_t id) {
  // Only the user's own: another user's key id is NotFound, like one that never was.
  auto r = CORRAL_TRY(c.exec("DELETE FROM ssh_keys WHERE id = ? AND user_id IN (SELECT id FROM users WHERE login = ?)",
                             {id, login}, "delete ssh key"));
  if (r.affected() == 0) return sql::noSshKey(login, id);
  return ok();
}

}  // namespace corral::store::pg
