// Proves the networking part of the Store contract (store/store.h, migration
// 0005) on both implementations (store_fixture.h): a fresh database holds the
// seeded user-mode network "default"; networks round-trip and list by name,
// their names are unique, and one is not deleted while a VM has a NIC on it; NICs are inserted by network name or id
// and come back with their VM's and network's names, list in the order of their numbers, are unique per VM by name, per
// network by address and hostname (unset ones, stored as NULL, never clash) and everywhere by MAC, and go with their
// VM; SSH keys are unique per user by fingerprint, deleted only by their owner, and go with the user; the schema is at
// version 5; and concurrent writers racing for one address or one network name get one row, the database deciding.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "store/store.h"
#include "unit/store/store_fixture.h"

namespace corral::store {
namespace {

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::Sqlite, Backend::Postgres), backendName);

NetworkRecord natNetwork(std::string name, std::string subnet = "10.77.0.0/24") {
  return NetworkRecord{.name = name,
                       .mode = "nat",
                       .bridge = "cbr-" + name,
                       .subnet = subnet,
                       .gateway = "10.77.0.1",
                       .poolStart = "10.77.0.10",
                       .poolEnd = "10.77.0.200",
                       .dns = "10.77.0.1,9.9.9.9",
                       .domain = name + ".corral",
                       .description = "the " + name + " net",
                       .createdAt = nowRfc3339()};
}

NetworkRecord userNetwork(std::string name) {
  return NetworkRecord{.name = name, .mode = "user", .forwardBind = "127.0.0.1", .createdAt = nowRfc3339()};
}

// A NIC on the network of that name; a MAC made from a counter, so each call's is new.
NicRecord nic(int64_t vmId, std::string name, std::string network, std::string ip = "", std::string hostname = "") {
  static int serial = 0;
  ++serial;
  return NicRecord{.vmId = vmId,
                   .name = name,
                   .network = network,
                   .mac = fmt::format("52:54:00:00:{:02x}:{:02x}", (serial >> 8) & 0xff, serial & 0xff),
                   .ip = ip,
                   .hostname = hostname,
                   .createdAt = nowRfc3339()};
}

std::vector<std::string> namesOf(const std::vector<NicRecord>& nics) {
  std::vector<std::string> out;
  for (const auto& n : nics) out.push_back(n.vm + "/" + n.name);
  return out;
}

SshKeyRecord sshKey(std::string login, std::string fingerprint) {
  return SshKeyRecord{.login = login,
                      .name = login + "@laptop",
                      .key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA" + fingerprint + " " + login + "@laptop",
                      .fingerprint = "SHA256:" + fingerprint,
                      .createdAt = nowRfc3339()};
}

// ---- networks

// Every field of a network survives insert and find; listNetworks is by name;
// an unknown name finds nothing.
TEST_P(StoreTest, NetworksRoundTripAndListByName) {
  auto lan = store_->insertNetwork(natNetwork("lan"));
  ASSERT_TRUE(lan.ok()) << lan.error().describe();
  EXPECT_NE(lan->id, 0);
  auto guest = store_->insertNetwork(userNetwork("guest"));
  ASSERT_TRUE(guest.ok()) << guest.error().describe();
  EXPECT_NE(guest->id, lan->id);

  auto found = store_->findNetwork("lan");
  ASSERT_TRUE(found.ok() && found->has_value());
  const NetworkRecord& n = **found;
  NetworkRecord want = natNetwork("lan");
  EXPECT_EQ(n.id, lan->id);
  EXPECT_EQ(n.name, "lan");
  EXPECT_EQ(n.mode, "nat");
  EXPECT_EQ(n.bridge, want.bridge);
  EXPECT_EQ(n.subnet, want.subnet);
  EXPECT_EQ(n.gateway, want.gateway);
  EXPECT_EQ(n.poolStart, want.poolStart);
  EXPECT_EQ(n.poolEnd, want.poolEnd);
  EXPECT_EQ(n.dns, want.dns);
  EXPECT_EQ(n.domain, want.domain);
  EXPECT_EQ(n.forwardBind, "");
  EXPECT_EQ(n.description, want.description);
  EXPECT_EQ(n.createdAt, lan->createdAt);
  auto g = store_->findNetwork("guest");
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->mode, "user");
  EXPECT_EQ((*g)->forwardBind, "127.0.0.1");
  EXPECT_EQ((*g)->subnet, "");

  EXPECT_FALSE(store_->findNetwork("nope")->has_value());
  ASSERT_TRUE(store_->insertNetwork(userNetwork("dmz")).ok());
  auto list = store_->listNetworks();
  ASSERT_TRUE(list.ok());
  std::vector<std::string> names;
  for (const auto& x : *list) names.push_back(x.name);
  EXPECT_EQ(names, (std::vector<std::string>{"default", "dmz", "guest", "lan"}));
}

// A fresh database has the network migration 0005 seeds: "default", user-mode,
// forwards bound to 127.0.0.1; it deletes like any other.
TEST_P(StoreTest, FreshDatabaseHasTheDefaultUserNetwork) {
  auto d = store_->findNetwork("default");
  ASSERT_TRUE(d.ok() && d->has_value());
  EXPECT_EQ((*d)->mode, "user");
  EXPECT_EQ((*d)->forwardBind, "127.0.0.1");
  EXPECT_EQ((*d)->bridge, "");
  EXPECT_EQ((*d)->createdAt.size(), std::string("2026-11-23T10:00:00Z").size()) << (*d)->createdAt;
  EXPECT_EQ((*d)->createdAt.back(), 'Z');
  ASSERT_TRUE(store_->deleteNetwork("default").ok());
  EXPECT_TRUE(store_->listNetworks()->empty());
}

// A network's name is unique: AlreadyExists naming the field "name", and nothing written.
TEST_P(StoreTest, NetworkNamesAreUnique) {
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lan")).ok());
  auto dup = store_->insertNetwork(userNetwork("lan"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "name");
  EXPECT_EQ(store_->listNetworks()->size(), 2u);  // "default" and lan
  EXPECT_EQ((*store_->findNetwork("lan"))->mode, "nat");
}

// deleteNetwork refuses while a VM has a NIC on it, naming the VM, and leaves
// the network; once the NIC is gone it deletes; then the name is NotFound.
TEST_P(StoreTest, DeleteNetworkIsRefusedWhileANicIsOnIt) {
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lan")).ok());
  auto web = store_->insertVm(vm("web"));
  ASSERT_TRUE(web.ok());
  auto n = store_->insertNic(nic(web->id, "nic0", "lan", "10.77.0.10", "web"));
  ASSERT_TRUE(n.ok()) << n.error().describe();

  auto refused = store_->deleteNetwork("lan");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(refused.error().message.find("web"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(store_->findNetwork("lan")->has_value());

  ASSERT_TRUE(store_->deleteNic(n->id).ok());
  auto deleted = store_->deleteNetwork("lan");
  ASSERT_TRUE(deleted.ok()) << deleted.error().describe();
  EXPECT_FALSE(store_->findNetwork("lan")->has_value());
  EXPECT_EQ(store_->deleteNetwork("lan").error().code, ErrorCode::NotFound);
}

// ---- NICs

// insertNic takes the network by name (id 0) or by id (no name), and every
// NIC comes back with its VM's and network's names and ids joined and every
// field as written; an unknown network, by name or id, or VM is NotFound naming
// the field.
TEST_P(StoreTest, NicsInsertByNetworkNameOrIdWithJoinedNames) {
  auto lan = store_->insertNetwork(natNetwork("lan"));
  ASSERT_TRUE(lan.ok());
  auto web = store_->insertVm(vm("web"));
  ASSERT_TRUE(web.ok());

  auto byName = nic(web->id, "nic0", "lan", "10.77.0.10", "web");
  byName.model = "e1000";
  auto a = store_->insertNic(byName);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  EXPECT_NE(a->id, 0);
  EXPECT_EQ(a->vmId, web->id);
  EXPECT_EQ(a->vm, "web");
  EXPECT_EQ(a->name, "nic0");
  EXPECT_EQ(a->networkId, lan->id);
  EXPECT_EQ(a->network, "lan");
  EXPECT_EQ(a->model, "e1000");
  EXPECT_EQ(a->mac, byName.mac);
  EXPECT_EQ(a->ip, "10.77.0.10");
  EXPECT_EQ(a->hostname, "web");
  EXPECT_EQ(a->forwards, "");
  EXPECT_EQ(a->createdAt, byName.createdAt);

  auto byId = nic(web->id, "nic1", "", "10.77.0.11", "web-2");
  byId.networkId = lan->id;
  auto b = store_->insertNic(byId);
  ASSERT_TRUE(b.ok()) << b.error().describe();
  EXPECT_EQ(b->networkId, lan->id);
  EXPECT_EQ(b->network, "lan");
  EXPECT_EQ(b->vm, "web");
  EXPECT_EQ(b->model, "virtio-net");

  auto listed = store_->listNics(web->id);
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].id, a->id);
  EXPECT_EQ((*listed)[0].network, "lan");
  EXPECT_EQ((*listed)[0].hostname, "web");
  EXPECT_EQ((*listed)[1].ip, "10.77.0.11");

  auto noNet = store_->insertNic(nic(web->id, "nic2", "nope"));
  ASSERT_FALSE(noNet.ok());
  EXPECT_EQ(noNet.error().code, ErrorCode::NotFound);
  EXPECT_EQ(noNet.error().field, "network");
  auto noNetId = nic(web->id, "nic2", "");
  noNetId.networkId = lan->id + 1000;
  auto r = store_->insertNic(noNetId);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
  EXPECT_EQ(r.error().field, "network");
  auto noVm = store_->insertNic(nic(web->id + 1000, "nic0", "lan", "10.77.0.12"));
  ASSERT_FALSE(noVm.ok());
  EXPECT_EQ(noVm.error().code, ErrorCode::NotFound);
  EXPECT_EQ(noVm.error().field, "vm");
  EXPECT_EQ(store_->listAllNics()->size(), 2u);
}

// On a user-mode network a NIC has no address or hostname: "" is stored as
// NULL, so many such NICs share the network without tripping its unique keys,
// and they read back as "". Forwards round-trip.
TEST_P(StoreTest, UserModeNicsWithoutAddressOrHostnameCoexist) {
  ASSERT_TRUE(store_->insertNetwork(userNetwork("guest")).ok());
  for (const char* name : {"a", "b", "c"}) {
    auto v = store_->insertVm(vm(name));
    ASSERT_TRUE(v.ok());
    auto n = nic(v->id, "nic0", "guest");
    n.forwards = "tcp:2222:22,udp:5353:53";
    auto made = store_->insertNic(n);
    ASSERT_TRUE(made.ok()) << name << ": " << made.error().describe();
    EXPECT_EQ(made->ip, "");
    EXPECT_EQ(made->hostname, "");
    EXPECT_EQ(made->forwards, "tcp:2222:22,udp:5353:53");
  }
  auto all = store_->listNetworkNics("guest");
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  for (const auto& n : *all) {
    EXPECT_EQ(n.ip, "");
    EXPECT_EQ(n.hostname, "");
  }
}

// A NIC's address and hostname are unique per network (fields "ip",
// "hostname"), yet the same ones are fine on another network; a MAC is unique
// everywhere (field "mac"); a VM's NIC names are unique (field "nic"). A
// refused insert writes nothing.
TEST_P(StoreTest, NicUniqueKeysMapToTheirFields) {
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lan")).ok());
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lab", "10.77.0.0/24")).ok());
  auto a = store_->insertVm(vm("a"));
  auto b = store_->insertVm(vm("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  auto first = store_->insertNic(nic(a->id, "nic0", "lan", "10.77.0.10", "a"));
  ASSERT_TRUE(first.ok()) << first.error().describe();

  auto sameIp = store_->insertNic(nic(b->id, "nic0", "lan", "10.77.0.10", "b"));
  ASSERT_FALSE(sameIp.ok());
  EXPECT_EQ(sameIp.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(sameIp.error().field, "ip");
  EXPECT_EQ(sameIp.error().value, "10.77.0.10");

  auto sameHost = store_->insertNic(nic(b->id, "nic0", "lan", "10.77.0.11", "a"));
  ASSERT_FALSE(sameHost.ok());
  EXPECT_EQ(sameHost.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(sameHost.error().field, "hostname");

  auto otherNet = store_->insertNic(nic(b->id, "nic0", "lab", "10.77.0.10", "a"));
  ASSERT_TRUE(otherNet.ok()) << otherNet.error().describe();

  auto sameMac = nic(b->id, "nic1", "lan", "10.77.0.12", "b");
  sameMac.mac = first->mac;
  auto mac = store_->insertNic(sameMac);
  ASSERT_FALSE(mac.ok());
  EXPECT_EQ(mac.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(mac.error().field, "mac");

  auto sameName = store_->insertNic(nic(a->id, "nic0", "lab", "10.77.0.13", "a-lab"));
  ASSERT_FALSE(sameName.ok());
  EXPECT_EQ(sameName.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(sameName.error().field, "nic");

  EXPECT_EQ(namesOf(*store_->listAllNics()), (std::vector<std::string>{"a/nic0", "b/nic0"}));
}

// listNics orders a VM's NICs by the number in the name (nic2 before nic10);
// listNetworkNics gives one network's NICs of every VM and listAllNics every
// NIC, both in the order they were made.
TEST_P(StoreTest, NicListsOrderByNumberOrById) {
  ASSERT_TRUE(store_->insertNetwork(userNetwork("guest")).ok());
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lan")).ok());
  auto a = store_->insertVm(vm("a"));
  auto b = store_->insertVm(vm("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store_->insertNic(nic(a->id, "nic10", "guest")).ok());
  ASSERT_TRUE(store_->insertNic(nic(b->id, "nic0", "lan", "10.77.0.10", "b")).ok());
  ASSERT_TRUE(store_->insertNic(nic(a->id, "nic2", "lan", "10.77.0.11", "a")).ok());
  ASSERT_TRUE(store_->insertNic(nic(a->id, "nic0", "guest")).ok());

  EXPECT_EQ(namesOf(*store_->listNics(a->id)), (std::vector<std::string>{"a/nic0", "a/nic2", "a/nic10"}));
  EXPECT_EQ(namesOf(*store_->listNics(b->id)), (std::vector<std::string>{"b/nic0"}));
  EXPECT_EQ(namesOf(*store_->listNetworkNics("guest")), (std::vector<std::string>{"a/nic10", "a/nic0"}));
  EXPECT_EQ(namesOf(*store_->listNetworkNics("lan")), (std::vector<std::string>{"b/nic0", "a/nic2"}));
  EXPECT_TRUE(store_->listNetworkNics("nope")->empty());
  EXPECT_EQ(namesOf(*store_->listAllNics()), (std::vector<std::string>{"a/nic10", "b/nic0", "a/nic2", "a/nic0"}));
}

// Deleting a VM deletes its NIC rows (and only its), after which its network
// can go; deleteNic of an absent id is NotFound.
TEST_P(StoreTest, DeletingAVmDeletesItsNics) {
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lan")).ok());
  ASSERT_TRUE(store_->insertNetwork(userNetwork("guest")).ok());
  auto a = store_->insertVm(vm("a"));
  auto b = store_->insertVm(vm("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store_->insertNic(nic(a->id, "nic0", "lan", "10.77.0.10", "a")).ok());
  ASSERT_TRUE(store_->insertNic(nic(a->id, "nic1", "guest")).ok());
  auto bNic = store_->insertNic(nic(b->id, "nic0", "guest"));
  ASSERT_TRUE(bNic.ok());

  ASSERT_TRUE(store_->deleteVm("a").ok());
  EXPECT_TRUE(store_->listNics(a->id)->empty());
  EXPECT_EQ(namesOf(*store_->listAllNics()), (std::vector<std::string>{"b/nic0"}));
  EXPECT_TRUE(store_->deleteNetwork("lan").ok());
  EXPECT_EQ(store_->deleteNetwork("guest").error().code, ErrorCode::FailedPrecondition);

  ASSERT_TRUE(store_->deleteNic(bNic->id).ok());
  auto again = store_->deleteNic(bNic->id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::NotFound);
}

// ---- SSH keys

// A user's keys round-trip in the order added; a fingerprint is unique per
// user (field "key") but two users may hold one key; an unknown user is
// NotFound (field "login"); a user cannot delete another's key (NotFound, the
// key stays); and deleting the user deletes their keys, not others'.
TEST_P(StoreTest, SshKeysArePerUserAndGoWithTheUser) {
  addUser("alice");
  addUser("bob");
  auto k1 = store_->insertSshKey(sshKey("alice", "one"));
  ASSERT_TRUE(k1.ok()) << k1.error().describe();
  auto k2 = store_->insertSshKey(sshKey("alice", "two"));
  ASSERT_TRUE(k2.ok()) << k2.error().describe();
  EXPECT_NE(k1->id, k2->id);

  auto list = store_->listSshKeys("alice");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, k1->id);
  EXPECT_EQ((*list)[0].login, "alice");
  EXPECT_EQ((*list)[0].name, "alice@laptop");
  EXPECT_EQ((*list)[0].key, sshKey("alice", "one").key);
  EXPECT_EQ((*list)[0].fingerprint, "SHA256:one");
  EXPECT_EQ((*list)[0].createdAt, k1->createdAt);
  EXPECT_EQ((*list)[1].fingerprint, "SHA256:two");

  auto dup = store_->insertSshKey(sshKey("alice", "one"));
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "key");
  auto bobs = store_->insertSshKey(sshKey("bob", "one"));
  ASSERT_TRUE(bobs.ok()) << bobs.error().describe();
  auto nobody = store_->insertSshKey(sshKey("carol", "three"));
  ASSERT_FALSE(nobody.ok());
  EXPECT_EQ(nobody.error().code, ErrorCode::NotFound);
  EXPECT_EQ(nobody.error().field, "login");

  auto notHers = store_->deleteSshKey("bob", k1->id);
  ASSERT_FALSE(notHers.ok());
  EXPECT_EQ(notHers.error().code, ErrorCode::NotFound);
  EXPECT_EQ(store_->listSshKeys("alice")->size(), 2u);
  ASSERT_TRUE(store_->deleteSshKey("alice", k2->id).ok());
  EXPECT_EQ(store_->deleteSshKey("alice", k2->id).error().code, ErrorCode::NotFound);
  ASSERT_EQ(store_->listSshKeys("alice")->size(), 1u);

  // The key row would block the user's delete (foreign key) unless it goes with it.
  auto gone = store_->deleteUser("alice");
  ASSERT_TRUE(gone.ok()) << gone.error().describe();
  addUser("alice");
  EXPECT_TRUE(store_->listSshKeys("alice")->empty());
  ASSERT_EQ(store_->listSshKeys("bob")->size(), 1u);
  EXPECT_EQ((*store_->listSshKeys("bob"))[0].id, bobs->id);
}

// ---- schema and races

// Both dialects are at the networking migration.
// The newest migration is 0006 (the operation list indexes): a new store is at it.
TEST_P(StoreTest, SchemaVersionIsSix) {
  auto v = store_->schemaVersion();
  ASSERT_TRUE(v.ok()) << v.error().describe();
  EXPECT_EQ(*v, 6);
  EXPECT_EQ(dialectMigrations().back().version, 6);
  EXPECT_EQ(dialectMigrations().back().name, "0006_operation_lists");
}

// Sixteen writers racing for the last address of a network, each for its own
// VM, get one NIC and fifteen AlreadyExists (field "ip"); sixteen creating one
// network name get one network. No check-then-insert in the store could make
// this hold on PostgreSQL; the unique keys do.
TEST_P(StoreTest, ConcurrentInsertsOfOneAddressOrNetworkNameGiveOneRow) {
  ASSERT_TRUE(store_->insertNetwork(natNetwork("lan")).ok());
  constexpr int kWriters = 16;
  std::vector<int64_t> vmIds;
  for (int i = 0; i < kWriters; ++i) {
    auto v = store_->insertVm(vm("vm" + std::to_string(i)));
    ASSERT_TRUE(v.ok());
    vmIds.push_back(v->id);
  }
  std::vector<NicRecord> nics;
  for (int i = 0; i < kWriters; ++i)
    nics.push_back(nic(vmIds[i], "nic0", "lan", "10.77.0.200", "h" + std::to_string(i)));

  std::atomic<int> made{0}, taken{0}, other{0};
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < kWriters; ++i)
      threads.emplace_back([&, i] {
        auto r = store_->insertNic(nics[i]);
        if (r.ok())
          ++made;
        else if (r.error().code == ErrorCode::AlreadyExists && r.error().field == "ip")
          ++taken;
        else
          ++other;
      });
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(made.load(), 1);
  EXPECT_EQ(taken.load(), kWriters - 1);
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(store_->listNetworkNics("lan")->size(), 1u);

  std::atomic<int> nets{0}, exists{0};
  {
    std::vector<std::thread> threads;
    for (int i = 0; i < kWriters; ++i)
      threads.emplace_back([&] {
        auto r = store_->insertNetwork(userNetwork("shared"));
        if (r.ok())
          ++nets;
        else if (r.error().code == ErrorCode::AlreadyExists && r.error().field == "name")
          ++exists;
      });
    for (auto& t : threads) t.join();
  }
  EXPECT_EQ(nets.load(), 1);
  EXPECT_EQ(exists.load(), kWriters - 1);
  EXPECT_EQ(store_->listNetworks()->size(), 3u);  // "default", lan and shared
}

}  // namespace
}  // namespace corral::store
