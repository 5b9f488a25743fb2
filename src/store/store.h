// The Store interface: the desired and last observed state of this host's images
// and VMs, and the control plane's users, groups, quotas, tokens, sessions and
// operations. Two implementations behind it: SQLite (store/sqlite_store, the
// default) and PostgreSQL (store/postgres_store, for fleets); one test suite
// runs on both.
//
// Records are plain values; the rules about them (validation, state transitions)
// live in core/. Every method is thread-safe. Uniqueness is enforced by the
// database itself, so two concurrent creates of one name give one row and one
// AlreadyExists.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace corral::store {

// An image in the library. kind "direct-boot" (kernel, initrd, append), "disk"
// (path: a qcow2 or raw file that VMs clone) or "iso" (path: a CD image VMs boot
// or mount). While an import runs the row exists with state "importing" (the
// name is taken, nobody can use it); a failed import removes the row.
struct ImageRecord {
  int64_t id = 0;
  std::string name;
  std::string kind = "direct-boot";  // direct-boot | disk | iso
  std::string kernel;  // absolute path of the image's own copy
  std::string initrd;  // empty: none
  std::string append;
  int64_t sizeBytes = 0;  // bytes the image's files take on the host
  std::string createdAt;  // RFC 3339, UTC
  // Storage issue.
  std::string path;         // disk/iso: the library's own copy
  std::string format;       // disk: qcow2 | raw; iso: raw; direct-boot: ""
  int64_t virtualSize = 0;  // disk: the guest-visible size in bytes; iso: its size
  std::string sha256;       // hex SHA-256 of the file as imported (the source's bytes)
  std::string ownerKind;    // "" public (everyone sees it) | user | group
  std::string owner;        // with ownerKind
  std::string state = "ready";  // importing | ready
  std::string description;
};

// One disk of one VM, a volume in a storage pool.
struct DiskRecord {
  int64_t id = 0;
  int64_t vmId = 0;
  std::string name;    // disk0, disk1, ... unique per VM; "disk0" is the boot disk
  std::string pool;    // the pool's name in the daemon's config
  std::string volume;  // the volume's name inside the pool
  std::string path;    // what QEMU opens (a file, or /dev/VG/LV)
  std::string format;  // qcow2 | raw (a LUKS disk on LVM is raw + encrypted)
  int64_t sizeBytes = 0;  // guest-visible size
  bool encrypted = false;
  std::string wrappedKey;     // the disk's LUKS passphrase wrapped by the host master key; "" unless encrypted
  std::string backingImage;   // name of the image this disk is a linked clone of; "" for none (joined)
  int64_t backingImageId = 0; // 0: none
  std::string createdAt;
};

// A network admins define (networking issue). mode "user": QEMU user-mode
// networking, host port forwards bound to forwardBind; "nat": a bridge corral
// makes (bridge), its address gateway, dnsmasq serving the pool, masquerade out;
// "bridged": taps on the host's existing bridge, addresses from the pool.
struct NetworkRecord {
  int64_t id = 0;
  std::string name;
  std::string mode = "user";  // user | nat | bridged
  std::string bridge;         // nat: the bridge corral makes; bridged: the host's bridge; user: ""
  std::string subnet;         // nat/bridged: "10.77.0.0/24"
  std::string gateway;        // nat: the bridge's own address; bridged: the LAN's router ("" none)
  std::string poolStart;      // first and last address handed to NICs
  std::string poolEnd;
  std::string dns;            // comma-separated resolvers given to guests ("" none)
  std::string domain;         // the DNS domain of the network's hostnames ("" none)
  std::string forwardBind;    // user: the host address forwards bind to
  std::string description;
  std::string createdAt;
};

// One NIC of one VM on a network. ip and hostname are "" on user-mode networks.
struct NicRecord {
  int64_t id = 0;
  int64_t vmId = 0;
  std::string vm;         // the VM's name (joined)
  std::string name;       // nic0, nic1, ... unique per VM
  int64_t networkId = 0;  // insertNic takes the id, or 0 and the network's name
  std::string network;    // the network's name (joined)
  std::string model = "virtio-net";  // virtio-net | e1000
  std::string mac;        // 52:54:00:xx:xx:xx, unique
  std::string ip;         // the pool address, unique per network
  std::string hostname;   // unique per network
  std::string forwards;   // user mode: "tcp:2222:22,udp:5353:53" ("" none)
  std::string createdAt;
};

// One SSH public key of a user: the OpenSSH line ("ssh-ed25519 AAAA... comment").
struct SshKeyRecord {
  int64_t id = 0;
  std::string login;        // whose key (insert by login)
  std::string name;         // a label, by default the key's comment
  std::string key;          // the whole line
  std::string fingerprint;  // "SHA256:..." unique per user
  std::string createdAt;
};

struct VmRecord {
  int64_t id = 0;
  std::string name;
  std::string uuid;
  std::string image;  // image name (joined)
  int64_t imageId = 0;
  uint64_t memoryMib = 0;
  unsigned vcpus = 1;
  std::string onCrash = "restart";    // restart | stop | preserve
  std::string desiredState = "stopped";  // running | paused | stopped
  std::string state = "stopped";      // see core/vm_state.h
  std::string stateReason;
  std::optional<int64_t> pid;
  std::string accel;
  std::string createdAt;
  std::string updatedAt;
  int64_t version = 1;
  // Control plane. The owner is a user or a group (users and groups share one
  // namespace, so the name alone is unambiguous); the administrator a user.
  std::string ownerKind = "user";  // user | group
  std::string owner;               // "" only for VMs made before owners existed
  std::string administrator;
  std::string contact;  // email
  std::string description;
  int64_t diskGib = 0;  // total of the VM's disks in GiB, each disk rounded up
  // CDs: the image (kind iso) in the VM's CD drive, "" for an empty drive; and
  // whether its next start boots from that CD (cleared once it has).
  std::string cdrom;
  bool bootCdrom = false;
  // The facts of its creation (who, how, which corral, the root image as it was),
  // a JSON object written by core/vm_metadata.h at insert and never updated; ""
  // for VMs made before corral recorded them.
  std::string creation;
};

struct UserRecord {
  int64_t id = 0;
  std::string login;
  std::string displayName;
  std::string email;
  std::string passwordHash;  // argon2id encoded string; "" = no password login
  bool admin = false;
  std::string createdAt;
  int64_t version = 1;
};

struct GroupRecord {
  int64_t id = 0;
  std::string name;
  std::string description;
  std::string createdAt;
  std::vector<std::string> members;  // logins, sorted
};

// Per-subject quota overrides; nullopt means "the configured default".
struct QuotaRecord {
  std::string subjectKind;  // user | group
  std::string subject;
  std::optional<int64_t> maxVms;
  std::optional<int64_t> maxRunning;
  std::optional<int64_t> maxMemoryTotalMib;  // memory of running VMs in total
  std::optional<int64_t> minMemoryVmMib;
  std::optional<int64_t> maxMemoryVmMib;
  std::optional<int64_t> maxDiskTotalGib;
  std::optional<int64_t> maxDiskVmGib;
};

// What a subject (the owner of VMs) uses now. A VM counts as running while its
// desired state is not "stopped" or its state is starting/running/paused/stopping.
struct Usage {
  int64_t vms = 0;
  int64_t running = 0;
  int64_t memoryRunningMib = 0;
  int64_t diskTotalGib = 0;
};

struct TokenRecord {
  int64_t id = 0;
  std::string login;       // whose token
  std::string name;        // a label given at creation
  std::string secretHash;  // hex SHA-256 of the secret; the secret itself is never stored
  std::string createdAt;
  std::string expiresAt;  // "" = never
  std::string revokedAt;  // "" = live
};

struct SessionRecord {
  std::string idHash;  // hex SHA-256 of the cookie value
  std::string login;
  std::string csrfToken;
  std::string createdAt;
  std::string expiresAt;
};

struct OperationRecord {
  std::string id;      // random, 16 hex digits
  std::string kind;    // "vm.start", "vm.stop", "vm.reboot", "vm.create", "image.import", ...
  std::string target;  // the VM or image name
  std::string requester;  // login
  std::string state = "running";  // pending | running | succeeded | failed
  int progress = 0;               // 0..100
  std::string result;             // JSON text: the final object, or the error JSON
  int64_t bytesDone = 0;          // for byte-sized work (image import): done / total
  int64_t bytesTotal = 0;         // 0: not byte-sized
  std::string createdAt;
  std::string updatedAt;
};

// Called inside the store's transaction, with the usage of the VM's (new) owner
// not counting the VM itself, and that owner's quota overrides (fields nullopt
// when none). An Error aborts the transaction and is returned unchanged. An
// empty QuotaCheck checks nothing. The store serialises every quota-checked
// write per owner, so checks never race: 50 concurrent creates against a limit
// of 5 give exactly 5 rows.
using QuotaCheck = std::function<Result<void>(const Usage& ownerUsage, const QuotaRecord& ownerQuota)>;

// What changes when a VM's observed state changes.
struct VmStateUpdate {
  std::string state;
  std::string stateReason;
  std::optional<int64_t> pid;
  std::string accel;
  std::optional<std::string> desiredState;  // unchanged when empty
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Result<ImageRecord> insertImage(const ImageRecord& image) = 0;
  virtual Result<std::optional<ImageRecord>> findImage(const std::string& name) = 0;
  virtual Result<std::vector<ImageRecord>> listImages() = 0;
  // Writes every field but id/name/created_at of the row with image.id. NotFound when gone.
  virtual Result<ImageRecord> updateImage(const ImageRecord& image) = 0;
  // NotFound when absent; FailedPrecondition naming the VMs when in use: a VM
  // made from it (vms.image_id), a disk backed by it, or a VM with it in its CD drive.
  virtual Result<void> deleteImage(const std::string& name) = 0;

  // Disks. insertDisk: AlreadyExists (field "disk") when the VM has a disk of
  // that name; NotFound when the VM or the backing image is gone. Deleting a VM
  // deletes its disk rows (the caller removes the volumes first).
  virtual Result<DiskRecord> insertDisk(const DiskRecord& disk) = 0;
  virtual Result<std::vector<DiskRecord>> listDisks(int64_t vmId) = 0;  // ordered by name's number
  virtual Result<std::vector<DiskRecord>> listAllDisks() = 0;           // every VM's, for reconcile and verify
  // Writes pool, volume, path, format, size, encrypted, wrapped key of the row with disk.id.
  virtual Result<DiskRecord> updateDisk(const DiskRecord& disk) = 0;
  virtual Result<void> deleteDisk(int64_t id) = 0;  // NotFound when absent

  // AlreadyExists (field "name") when the name is taken; NotFound for an unknown
  // image; check's error when the quota check refuses.
  virtual Result<VmRecord> insertVm(const VmRecord& vm, const QuotaCheck& check = {}) = 0;
  virtual Result<std::optional<VmRecord>> findVm(const std::string& name) = 0;
  virtual Result<std::vector<VmRecord>> listVms() = 0;
  virtual Result<VmRecord> updateVmState(const std::string& name, const VmStateUpdate& update) = 0;
  // Writes the settable fields of vm (name, owner kind/name, administrator,
  // contact, description, memory, vcpus, on_crash, desired state, disk, cdrom,
  // boot_cdrom) to the row
  // with vm.id, bumping version. expectedVersion 0 skips the version check;
  // otherwise a different stored version is VersionMismatch. NotFound when the
  // row is gone; AlreadyExists (field "name") on a rename to a taken name.
  virtual Result<VmRecord> updateVm(const VmRecord& vm, int64_t expectedVersion, const QuotaCheck& check = {}) = 0;
  virtual Result<void> deleteVm(const std::string& name) = 0;
  // A short string that changes whenever the vms table may have changed (any
  // daemon's write), cheap next to listVms(): lets a caller keep a rendered list
  // until it does. Equal marks mean nothing in vms changed in between.
  virtual Result<std::string> vmsChangeMark() = 0;
  virtual Result<Usage> usage(const std::string& subjectKind, const std::string& subject) = 0;

  // Users. AlreadyExists (field "login") on a taken login. Delete refuses
  // (FailedPrecondition naming them) while the user owns or administers VMs, and
  // removes the user's tokens, sessions and memberships with it.
  virtual Result<UserRecord> insertUser(const UserRecord& user) = 0;
  virtual Result<std::optional<UserRecord>> findUser(const std::string& login) = 0;
  virtual Result<std::vector<UserRecord>> listUsers() = 0;
  // display name, email, password hash, admin; version checked like updateVm.
  virtual Result<UserRecord> updateUser(const UserRecord& user, int64_t expectedVersion) = 0;
  virtual Result<void> deleteUser(const std::string& login) = 0;

  // Groups. AlreadyExists (field "name"); delete refuses while the group owns VMs.
  virtual Result<GroupRecord> insertGroup(const GroupRecord& group) = 0;
  virtual Result<std::optional<GroupRecord>> findGroup(const std::string& name) = 0;
  virtual Result<std::vector<GroupRecord>> listGroups() = 0;
  virtual Result<void> deleteGroup(const std::string& name) = 0;
  // NotFound for an unknown group or user; adding a member twice is fine.
  virtual Result<void> addMember(const std::string& group, const std::string& login) = 0;
  virtual Result<void> removeMember(const std::string& group, const std::string& login) = 0;
  virtual Result<std::vector<std::string>> groupsOf(const std::string& login) = 0;

  // Quota overrides. setQuota writes every field of q (nullopt clears back to
  // the default); findQuota of a subject without overrides is all-nullopt.
  virtual Result<void> setQuota(const QuotaRecord& q) = 0;
  virtual Result<QuotaRecord> findQuota(const std::string& subjectKind, const std::string& subject) = 0;
  // Changes some overrides and keeps the rest: in one transaction, reads the
  // subject's overrides, lets `change` edit them and writes them as setQuota
  // does; returns what was written. Two patches of one subject at once never
  // lose either's change. `change` must not call the store.
  virtual Result<QuotaRecord> patchQuota(const std::string& subjectKind, const std::string& subject,
                                         const std::function<void(QuotaRecord&)>& change) = 0;

  // API tokens (hashes only).
  virtual Result<TokenRecord> insertToken(const TokenRecord& token) = 0;
  virtual Result<std::optional<TokenRecord>> findTokenByHash(const std::string& secretHash) = 0;
  virtual Result<std::optional<TokenRecord>> findToken(int64_t id) = 0;
  virtual Result<std::vector<TokenRecord>> listTokens(const std::string& login) = 0;  // "" = everyone's
  virtual Result<void> revokeToken(int64_t id, const std::string& when) = 0;            // NotFound when absent

  // Web login sessions.
  virtual Result<void> insertSession(const SessionRecord& session) = 0;
  virtual Result<std::optional<SessionRecord>> findSession(const std::string& idHash) = 0;
  virtual Result<void> deleteSession(const std::string& idHash) = 0;
  virtual Result<void> deleteSessionsOf(const std::string& login) = 0;
  virtual Result<int64_t> deleteExpiredSessions(const std::string& now) = 0;

  // Operations (long actions), newest first in lists.
  virtual Result<void> insertOperation(const OperationRecord& op) = 0;
  // by id: state, progress, bytes done/total, result, updated_at
  virtual Result<void> updateOperation(const OperationRecord& op) = 0;
  virtual Result<std::optional<OperationRecord>> findOperation(const std::string& id) = 0;
  virtual Result<std::vector<OperationRecord>> listOperations(size_t limit) = 0;
  // One caller's list, by index: the operations `requester` asked for, and the
  // vm.* ones whose target is one of vmTargets (the VMs the caller may see).
  virtual Result<std::vector<OperationRecord>> listOperationsFor(const std::string& requester,
                                                                 const std::vector<std::string>& vmTargets,
                                                                 size_t limit) = 0;
  // Deletes ended (succeeded or failed) operations last updated before `cutoff`
  // (RFC 3339); returns how many.
  virtual Result<int64_t> deleteOperationsEndedBefore(const std::string& cutoff) = 0;
  // At daemon start: operations left pending/running by a previous daemon become
  // failed with this reason; returns how many.
  virtual Result<int64_t> failUnfinishedOperations(const std::string& reason) = 0;

  // Networks. insertNetwork: AlreadyExists (field "name"). deleteNetwork:
  // NotFound when absent; FailedPrecondition naming the VMs with a NIC on it.
  virtual Result<NetworkRecord> insertNetwork(const NetworkRecord& net) = 0;
  virtual Result<std::optional<NetworkRecord>> findNetwork(const std::string& name) = 0;
  virtual Result<std::vector<NetworkRecord>> listNetworks() = 0;  // by name
  virtual Result<void> deleteNetwork(const std::string& name) = 0;

  // NICs. insertNic: AlreadyExists with field "nic" (the VM has a NIC of that
  // name), "ip" (the address is taken on that network), "hostname" (taken on
  // that network) or "mac"; NotFound (field "vm" / "network") when either is
  // gone. Deleting a VM deletes its NIC rows.
  virtual Result<NicRecord> insertNic(const NicRecord& nic) = 0;
  virtual Result<std::vector<NicRecord>> listNics(int64_t vmId) = 0;  // by name's number
  virtual Result<std::vector<NicRecord>> listNetworkNics(const std::string& network) = 0;  // by id
  virtual Result<std::vector<NicRecord>> listAllNics() = 0;  // every VM's, by id
  virtual Result<void> deleteNic(int64_t id) = 0;  // NotFound when absent

  // SSH keys. insertSshKey: NotFound (field "login") for an unknown user,
  // AlreadyExists (field "key") when the user has a key with that fingerprint.
  virtual Result<SshKeyRecord> insertSshKey(const SshKeyRecord& key) = 0;
  virtual Result<std::vector<SshKeyRecord>> listSshKeys(const std::string& login) = 0;  // by id
  // NotFound when the user has no key with that id.
  virtual Result<void> deleteSshKey(const std::string& login, int64_t id) = 0;

  // The schema version after migrations, for node verification and tests.
  virtual Result<int> schemaVersion() = 0;
};

// Opens (creating when absent) the SQLite database at path and applies every
// pending migration, each in its own transaction.
Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path);

// Connects to PostgreSQL ("postgres://user@host:port/db?..." or a libpq
// keyword string), with a pool of `connections`, and applies pending migrations
// (under an advisory lock, so that many daemons starting at once migrate once).
// The password, when any, comes from the URL or PGPASSFILE, never argv.
Result<std::unique_ptr<Store>> openPostgresStore(const std::string& url, size_t connections = 8);

// Opens the store a --db value names: "postgres://..." / "postgresql://..." is
// PostgreSQL; anything else is a SQLite file path.
Result<std::unique_ptr<Store>> openStore(const std::string& db);

// Now in UTC as RFC 3339 with seconds ("2026-11-23T10:00:00Z").
std::string nowRfc3339();

}  // namespace corral::store
