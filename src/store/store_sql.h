// What the SQLite and PostgreSQL stores share: the SQL text (written with '?'
// placeholders; the PostgreSQL store numbers them), the column lists and the
// readers that turn a row into a record. A Row is anything with
// text(i), int64(i) and isNull(i); each store adapts its own cursor.
//
// Internal to store/: nothing outside the layer includes this.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "store/store.h"

namespace corral::store::sql {

inline constexpr const char* kImageColumns =
    "id, name, kind, kernel, initrd, append, size_bytes, created_at, path, format, virtual_size, sha256, owner_kind, "
    "owner, state, description";

inline constexpr const char* kInsertImage =
    "INSERT INTO images (name, kind, kernel, initrd, append, size_bytes, created_at, path, format, virtual_size, "
    "sha256, owner_kind, owner, state, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

inline constexpr const char* kUpdateImage =
    "UPDATE images SET kind = ?, kernel = ?, initrd = ?, append = ?, size_bytes = ?, path = ?, format = ?, "
    "virtual_size = ?, sha256 = ?, owner_kind = ?, owner = ?, state = ?, description = ? WHERE id = ?";

// The names of the VMs that use an image, sorted: made from it, with a disk
// cloned from it, or with it in their CD drive. Binds: the image's id (twice),
// its name.
inline constexpr const char* kImageUsers =
    "SELECT name FROM vms WHERE image_id = ? "
    "UNION SELECT v.name FROM disks d JOIN vms v ON d.vm_id = v.id WHERE d.backing_image_id = ? "
    "UNION SELECT name FROM vms WHERE cdrom = ? ORDER BY 1";

// Disks, with the backing image's name joined. Ordered by the number in the name
// (disk2 before disk10): by length first, then the text.
inline constexpr const char* kDiskColumns =
    "d.id, d.vm_id, d.name, d.pool, d.volume, d.path, d.format, d.size_bytes, d.encrypted, d.wrapped_key, "
    "COALESCE(i.name, ''), COALESCE(d.backing_image_id, 0), d.created_at";
inline constexpr const char* kDiskFrom = "disks d LEFT JOIN images i ON d.backing_image_id = i.id";
inline constexpr const char* kDiskOrder = "LENGTH(d.name), d.name";

inline constexpr const char* kInsertDisk =
    "INSERT INTO disks (vm_id, name, pool, volume, path, format, size_bytes, encrypted, wrapped_key, "
    "backing_image_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

inline constexpr const char* kUpdateDisk =
    "UPDATE disks SET pool = ?, volume = ?, path = ?, format = ?, size_bytes = ?, encrypted = ?, wrapped_key = ? "
    "WHERE id = ?";

inline constexpr const char* kVmColumns =
    "v.id, v.name, v.uuid, i.name, v.image_id, v.memory_mib, v.vcpus, v.on_crash, v.desired_state, v.state, "
    "v.state_reason, v.pid, v.accel, v.created_at, v.updated_at, v.version, v.owner_kind, v.owner, "
    "v.administrator, v.contact, v.description, v.disk_gib, v.cdrom, v.boot_cdrom, v.creation";
inline constexpr const char* kVmFrom = "vms v JOIN images i ON v.image_id = i.id";

inline constexpr const char* kUserColumns =
    "id, login, display_name, email, password_hash, admin, created_at, version";

inline constexpr const char* kTokenSelect =
    "SELECT t.id, u.login, t.name, t.secret_hash, t.created_at, t.expires_at, t.revoked_at "
    "FROM tokens t JOIN users u ON t.user_id = u.id";

inline constexpr const char* kSessionSelect =
    "SELECT s.id_hash, u.login, s.csrf_token, s.created_at, s.expires_at "
    "FROM sessions s JOIN users u ON s.user_id = u.id";

inline constexpr const char* kOperationColumns =
    "id, kind, target, requester, state, progress, result, created_at, updated_at, bytes_done, bytes_total";

inline constexpr const char* kQuotaColumns =
    "max_vms, max_running, max_memory_total_mib, min_memory_vm_mib, max_memory_vm_mib, max_disk_total_gib, "
    "max_disk_vm_gib";

// Store.h's Usage: a VM counts as running while its desired state is not
// "stopped" or QEMU is (or is about to be) up. Binds: owner_kind, owner, the id
// not to count (0 counts all).
inline constexpr const char* kUsage =
    "SELECT COUNT(*), "
    "COALESCE(SUM(CASE WHEN desired_state <> 'stopped' OR state IN ('starting', 'running', 'paused', 'stopping') "
    "THEN 1 ELSE 0 END), 0), "
    "COALESCE(SUM(CASE WHEN desired_state <> 'stopped' OR state IN ('starting', 'running', 'paused', 'stopping') "
    "THEN memory_mib ELSE 0 END), 0), "
    "COALESCE(SUM(disk_gib), 0) "
    "FROM vms WHERE owner_kind = ? AND owner = ? AND id <> ?";

inline constexpr const char* kInsertVm =
    "INSERT INTO vms (name, uuid, image_id, memory_mib, vcpus, on_crash, desired_state, state, state_reason, pid, "
    "accel, created_at, updated_at, owner_kind, owner, administrator, contact, description, disk_gib, cdrom, "
    "boot_cdrom, creation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

inline constexpr const char* kUpdateVm =
    "UPDATE vms SET name = ?, owner_kind = ?, owner = ?, administrator = ?, contact = ?, description = ?, "
    "memory_mib = ?, vcpus = ?, on_crash = ?, desired_state = ?, disk_gib = ?, cdrom = ?, boot_cdrom = ?, "
    "updated_at = ?, version = version + 1 WHERE id = ?";

// Networks, NICs and SSH keys (migration 0005).
inline constexpr const char* kNetworkColumns =
    "id, name, mode, bridge, subnet, gateway, pool_start, pool_end, dns, domain, forward_bind, description, "
    "created_at";

inline constexpr const char* kInsertNetwork =
    "INSERT INTO networks (name, mode, bridge, subnet, gateway, pool_start, pool_end, dns, domain, forward_bind, "
    "description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

// The names of the VMs with a NIC on a network, sorted. Binds: the network's id.
inline constexpr const char* kNetworkUsers =
    "SELECT DISTINCT v.name FROM nics n JOIN vms v ON n.vm_id = v.id WHERE n.network_id = ? ORDER BY 1";

// NICs, with their VM's and network's names joined. ip and hostname are NULL in
// the table when unset (so that many user-mode NICs share a network's unique
// keys) and "" in a NicRecord. Ordered within a VM by the number in the name
// (nic2 before nic10), like disks.
inline constexpr const char* kNicColumns =
    "n.id, n.vm_id, v.name, n.name, n.network_id, w.name, n.model, n.mac, COALESCE(n.ip, ''), "
    "COALESCE(n.hostname, ''), n.forwards, n.created_at";
inline constexpr const char* kNicFrom = "nics n JOIN vms v ON n.vm_id = v.id JOIN networks w ON n.network_id = w.id";
inline constexpr const char* kNicOrder = "LENGTH(n.name), n.name";

inline constexpr const char* kInsertNic =
    "INSERT INTO nics (vm_id, name, network_id, model, mac, ip, hostname, forwards, created_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";

// Which of a NIC's unique keys another row holds, in the order insertNic
// reports them: its name on the VM, its address or hostname on the network,
// its MAC. Binds: vm_id, name, network_id, ip, network_id, hostname, mac (ip
// and hostname NULL when unset, which matches nothing). One row per clash, the
// key's rank first.
inline constexpr const char* kNicClashes =
    "SELECT 1 FROM nics WHERE vm_id = ? AND name = ? "
    "UNION SELECT 2 FROM nics WHERE network_id = ? AND ip = ? "
    "UNION SELECT 3 FROM nics WHERE network_id = ? AND hostname = ? "
    "UNION SELECT 4 FROM nics WHERE mac = ? ORDER BY 1";

inline constexpr const char* kSshKeySelect =
    "SELECT k.id, u.login, k.name, k.key, k.fingerprint, k.created_at FROM ssh_keys k JOIN users u ON k.user_id = u.id";

inline constexpr const char* kSetQuota =
    "INSERT INTO quotas (subject_kind, subject, max_vms, max_running, max_memory_total_mib, min_memory_vm_mib, "
    "max_memory_vm_mib, max_disk_total_gib, max_disk_vm_gib) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (subject_kind, subject) DO UPDATE SET max_vms = excluded.max_vms, "
    "max_running = excluded.max_running, max_memory_total_mib = excluded.max_memory_total_mib, "
    "min_memory_vm_mib = excluded.min_memory_vm_mib, max_memory_vm_mib = excluded.max_memory_vm_mib, "
    "max_disk_total_gib = excluded.max_disk_total_gib, max_disk_vm_gib = excluded.max_disk_vm_gib";

template <class Row>
ImageRecord readImage(const Row& r) {
  ImageRecord x;
  x.id = r.int64(0);
  x.name = r.text(1);
  x.kind = r.text(2);
  x.kernel = r.text(3);
  x.initrd = r.text(4);
  x.append = r.text(5);
  x.sizeBytes = r.int64(6);
  x.createdAt = r.text(7);
  x.path = r.text(8);
  x.format = r.text(9);
  x.virtualSize = r.int64(10);
  x.sha256 = r.text(11);
  x.ownerKind = r.text(12);
  x.owner = r.text(13);
  x.state = r.text(14);
  x.description = r.text(15);
  return x;
}

template <class Row>
DiskRecord readDisk(const Row& r) {
  DiskRecord x;
  x.id = r.int64(0);
  x.vmId = r.int64(1);
  x.name = r.text(2);
  x.pool = r.text(3);
  x.volume = r.text(4);
  x.path = r.text(5);
  x.format = r.text(6);
  x.sizeBytes = r.int64(7);
  x.encrypted = r.int64(8) != 0;
  x.wrappedKey = r.text(9);
  x.backingImage = r.text(10);
  x.backingImageId = r.int64(11);
  x.createdAt = r.text(12);
  return x;
}

template <class Row>
NetworkRecord readNetwork(const Row& r) {
  NetworkRecord x;
  x.id = r.int64(0);
  x.name = r.text(1);
  x.mode = r.text(2);
  x.bridge = r.text(3);
  x.subnet = r.text(4);
  x.gateway = r.text(5);
  x.poolStart = r.text(6);
  x.poolEnd = r.text(7);
  x.dns = r.text(8);
  x.domain = r.text(9);
  x.forwardBind = r.text(10);
  x.description = r.text(11);
  x.createdAt = r.text(12);
  return x;
}

template <class Row>
NicRecord readNic(const Row& r) {
  NicRecord x;
  x.id = r.int64(0);
  x.vmId = r.int64(1);
  x.vm = r.text(2);
  x.name = r.text(3);
  x.networkId = r.int64(4);
  x.network = r.text(5);
  x.model = r.text(6);
  x.mac = r.text(7);
  x.ip = r.text(8);
  x.hostname = r.text(9);
  x.forwards = r.text(10);
  x.createdAt = r.text(11);
  return x;
}

template <class Row>
SshKeyRecord readSshKey(const Row& r) {
  return SshKeyRecord{.id = r.int64(0), .login = r.text(1), .name = r.text(2), .key = r.text(3),
                      .fingerprint = r.text(4), .createdAt = r.text(5)};
}

template <class Row>
VmRecord readVm(const Row& r) {
  VmRecord x;
  x.id = r.int64(0);
  x.name = r.text(1);
  x.uuid = r.text(2);
  x.image = r.text(3);
  x.imageId = r.int64(4);
  x.memoryMib = static_cast<uint64_t>(r.int64(5));
  x.vcpus = static_cast<unsigned>(r.int64(6));
  x.onCrash = r.text(7);
  x.desiredState = r.text(8);
  x.state = r.text(9);
  x.stateReason = r.text(10);
  if (!r.isNull(11)) x.pid = r.int64(11);
  x.accel = r.text(12);
  x.createdAt = r.text(13);
  x.updatedAt = r.text(14);
  x.version = r.int64(15);
  x.ownerKind = r.text(16);
  x.owner = r.text(17);
  x.administrator = r.text(18);
  x.contact = r.text(19);
  x.description = r.text(20);
  x.diskGib = r.int64(21);
  x.cdrom = r.text(22);
  x.bootCdrom = r.int64(23) != 0;
  x.creation = r.text(24);
  return x;
}

template <class Row>
UserRecord readUser(const Row& r) {
  UserRecord x;
  x.id = r.int64(0);
  x.login = r.text(1);
  x.displayName = r.text(2);
  x.email = r.text(3);
  x.passwordHash = r.text(4);
  x.admin = r.int64(5) != 0;
  x.createdAt = r.text(6);
  x.version = r.int64(7);
  return x;
}

template <class Row>
TokenRecord readToken(const Row& r) {
  TokenRecord x;
  x.id = r.int64(0);
  x.login = r.text(1);
  x.name = r.text(2);
  x.secretHash = r.text(3);
  x.createdAt = r.text(4);
  x.expiresAt = r.text(5);
  x.revokedAt = r.text(6);
  return x;
}

template <class Row>
SessionRecord readSession(const Row& r) {
  return SessionRecord{.idHash = r.text(0), .login = r.text(1), .csrfToken = r.text(2), .createdAt = r.text(3),
                       .expiresAt = r.text(4)};
}

template <class Row>
OperationRecord readOperation(const Row& r) {
  OperationRecord x;
  x.id = r.text(0);
  x.kind = r.text(1);
  x.target = r.text(2);
  x.requester = r.text(3);
  x.state = r.text(4);
  x.progress = static_cast<int>(r.int64(5));
  x.result = r.text(6);
  x.createdAt = r.text(7);
  x.updatedAt = r.text(8);
  x.bytesDone = r.int64(9);
  x.bytesTotal = r.int64(10);
  return x;
}

// Reads kQuotaColumns starting at column `first`.
template <class Row>
void readQuotaLimits(const Row& r, int first, QuotaRecord& q) {
  std::optional<int64_t>* fields[] = {&q.maxVms,        &q.maxRunning,     &q.maxMemoryTotalMib, &q.minMemoryVmMib,
                                      &q.maxMemoryVmMib, &q.maxDiskTotalGib, &q.maxDiskVmGib};
  for (int i = 0; i < 7; ++i) {
    if (r.isNull(first + i))
      fields[i]->reset();
    else
      *fields[i] = r.int64(first + i);
  }
}

template <class Row>
Usage readUsage(const Row& r) {
  return Usage{.vms = r.int64(0), .running = r.int64(1), .memoryRunningMib = r.int64(2), .diskTotalGib = r.int64(3)};
}

inline bool quotaIsEmpty(const QuotaRecord& q) {
  return !q.maxVms && !q.maxRunning && !q.maxMemoryTotalMib && !q.minMemoryVmMib && !q.maxMemoryVmMib &&
         !q.maxDiskTotalGib && !q.maxDiskVmGib;
}

inline bool validSubjectKind(std::string_view kind) { return kind == "user" || kind == "group"; }

inline Error badSubjectKind(const std::string& kind) {
  return Error::invalidInput("subject_kind", kind, "must be user or group");
}

// The result of an operation a dead daemon left behind: the API's error shape.
std::string interruptedResult(const std::string& reason);

// "a, b, c" of at most a few names, for messages that list what is in the way.
std::string joinNames(const std::vector<std::string>& names);

// Messages both stores give, word for word.
inline Error imageInUse(const std::string& image, const std::vector<std::string>& vms) {
  return Error::failedPrecondition(
      fmt::format("image {} is in use by VMs {} (made from it, with a disk cloned from it, or with it in the CD "
                  "drive): delete those VMs or eject it first",
                  image, joinNames(vms)));
}

inline Error noImage(const std::string& field, const std::string& image) {
  return Error{ErrorCode::NotFound, fmt::format("{}: no image named {}", field, image), field, image};
}

inline Error noVmWithId(int64_t vmId) {
  return Error{ErrorCode::NotFound, fmt::format("vm: no VM with id {}", vmId), "vm", std::to_string(vmId)};
}

inline Error diskExists(const DiskRecord& d) {
  return Error::alreadyExists("disk", d.name, fmt::format("disk: the VM already has a disk {}", d.name));
}

inline Error volumeTaken(const DiskRecord& d) {
  return Error::alreadyExists("volume", d.volume,
                              fmt::format("volume: {} in pool {} belongs to another disk", d.volume, d.pool));
}

inline Error networkExists(const NetworkRecord& n) {
  return Error::alreadyExists("name", n.name, fmt::format("name: a network {} already exists", n.name));
}

inline Error noNetwork(const std::string& network) {
  return Error{ErrorCode::NotFound, fmt::format("network: no network named {}", network), "network", network};
}

inline Error networkInUse(const std::string& network, const std::vector<std::string>& vms) {
  return Error::failedPrecondition(fmt::format(
      "network {} is in use by VMs {} (they have NICs on it): remove those NICs first", network, joinNames(vms)));
}

// The AlreadyExists of a NIC's unique key, by kNicClashes' rank (1 name, 2 ip,
// 3 hostname, 4 mac).
inline Error nicClash(const NicRecord& n, int64_t rank) {
  switch (rank) {
    case 2:
      return Error::alreadyExists("ip", n.ip, fmt::format("ip: {} is taken on network {}", n.ip, n.network));
    case 3:
      return Error::alreadyExists("hostname", n.hostname,
                                  fmt::format("hostname: {} is taken on network {}", n.hostname, n.network));
    case 4:
      return Error::alreadyExists("mac", n.mac, fmt::format("mac: {} belongs to another NIC", n.mac));
    default:
      return Error::alreadyExists("nic", n.name, fmt::format("nic: the VM already has a NIC {}", n.name));
  }
}

inline Error noNic(int64_t id) { return Error::notFound(fmt::format("nic {} not found", id)); }

inline Error noUser(const std::string& login) {
  return Error{ErrorCode::NotFound, fmt::format("login: no user {}", login), "login", login};
}

inline Error sshKeyExists(const SshKeyRecord& k) {
  return Error::alreadyExists("key", k.fingerprint,
                              fmt::format("key: {} already has the key {}", k.login, k.fingerprint));
}

inline Error noSshKey(const std::string& login, int64_t id) {
  return Error::notFound(fmt::format("ssh key {} of {} not found", id, login));
}

}  // namespace corral::store::sql
