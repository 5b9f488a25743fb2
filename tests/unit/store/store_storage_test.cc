// Proves the storage part of the Store contract (store/store.h, migration 0003)
// on both implementations (store_fixture.h): images keep every storage field
// through insert, update and find; an image is not deleted while a VM is made
// from it, has a disk cloned from it or has it in its CD drive, and the refusal
// names those VMs; disks are unique per VM by name and per pool by volume, list
// in the order of their numbers, update and delete, and go with their VM; a VM's
// CD drive and boot flag round-trip; operations keep their byte progress; and a
// database made by migrations 0001 and 0002 upgrades to 0003 keeping its rows
// and its foreign keys.
#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "store/migrations.h"
#include "store/postgres_connection.h"
#include "store/store.h"
#include "unit/store/store_fixture.h"

namespace corral::store {
namespace {

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ::testing::Values(Backend::Sqlite, Backend::Postgres), backendName);

constexpr int64_t kGiB = int64_t{1} << 30;

ImageRecord diskImage(std::string name) {
  return ImageRecord{.name = name, .kind = "disk", .sizeBytes = 300 * (int64_t{1} << 20), .createdAt = nowRfc3339(),
                     .path = "/var/lib/corral/images/" + name + ".qcow2", .format = "qcow2", .virtualSize = 8 * kGiB,
                     .sha256 = std::string(64, 'a'), .state = "ready"};
}

ImageRecord isoImage(std::string name) {
  auto img = diskImage(name);
  img.kind = "iso";
  img.format = "raw";
  img.path = "/var/lib/corral/images/" + name + ".iso";
  return img;
}

DiskRecord disk(int64_t vmId, std::string name, int64_t size = 4 * kGiB) {
  std::string volume = "vm" + std::to_string(vmId) + "-" + name;
  return DiskRecord{.vmId = vmId, .name = name, .pool = "default", .volume = volume,
                    .path = "/var/lib/corral/pools/default/" + volume + ".qcow2", .format = "qcow2",
                    .sizeBytes = size, .createdAt = nowRfc3339()};
}

std::vector<std::string> namesOf(const std::vector<DiskRecord>& disks) {
  std::vector<std::string> out;
  for (const auto& d : disks) out.push_back(d.name);
  return out;
}

// ---- images

// Every storage field of an image survives insert and find, updateImage writes
// all of them but the name, and a vanished row is NotFound.
TEST_P(StoreTest, ImageStorageFieldsRoundTripThroughInsertUpdateAndFind) {
  auto img = diskImage("debian-12");
  img.state = "importing";
  img.ownerKind = "group";
  img.owner = "devs";
  img.description = "Debian 12 cloud image";
  img.virtualSize = 5 * (int64_t{1} << 32);  // beyond 32 bits on both
  auto inserted = store_->insertImage(img);
  ASSERT_TRUE(inserted.ok()) << inserted.error().describe();
  auto f = store_->findImage("debian-12");
  ASSERT_TRUE(f.ok() && f->has_value());
  const ImageRecord& r = **f;
  EXPECT_EQ(r.id, inserted->id);
  EXPECT_EQ(r.kind, "disk");
  EXPECT_EQ(r.path, img.path);
  EXPECT_EQ(r.format, "qcow2");
  EXPECT_EQ(r.virtualSize, 5 * (int64_t{1} << 32));
  EXPECT_EQ(r.sizeBytes, img.sizeBytes);
  EXPECT_EQ(r.sha256, std::string(64, 'a'));
  EXPECT_EQ(r.ownerKind, "group");
  EXPECT_EQ(r.owner, "devs");
  EXPECT_EQ(r.state, "importing");
  EXPECT_EQ(r.description, "Debian 12 cloud image");
  EXPECT_EQ(r.kernel, "");

  ImageRecord next = r;
  next.name = "renamed";  // not written
  next.state = "ready";
  next.sha256 = std::string(64, 'b');
  next.sizeBytes = 700;
  next.virtualSize = 10 * kGiB;
  next.format = "raw";
  next.path = "/elsewhere.raw";
  next.ownerKind = "user";
  next.owner = "alice";
  next.description = "changed";
  auto u = store_->updateImage(next);
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->name, "debian-12");
  EXPECT_EQ(u->createdAt, r.createdAt);
  auto g = **store_->findImage("debian-12");
  EXPECT_EQ(g.state, "ready");
  EXPECT_EQ(g.sha256, std::string(64, 'b'));
  EXPECT_EQ(g.sizeBytes, 700);
  EXPECT_EQ(g.virtualSize, 10 * kGiB);
  EXPECT_EQ(g.format, "raw");
  EXPECT_EQ(g.path, "/elsewhere.raw");
  EXPECT_EQ(g.ownerKind, "user");
  EXPECT_EQ(g.owner, "alice");
  EXPECT_EQ(g.description, "changed");
  EXPECT_FALSE(store_->findImage("renamed")->has_value());

  ASSERT_TRUE(store_->deleteImage("debian-12").ok());
  EXPECT_EQ(store_->updateImage(next).error().code, ErrorCode::NotFound);
}

// The schema takes the three kinds and nothing else; the original direct-boot
// image reads back with the new fields at their defaults.
TEST_P(StoreTest, ImageKindsAreDirectBootDiskAndIso) {
  ASSERT_TRUE(store_->insertImage(diskImage("d")).ok());
  ASSERT_TRUE(store_->insertImage(isoImage("i")).ok());
  auto bad = diskImage("x");
  bad.kind = "floppy";
  EXPECT_FALSE(store_->insertImage(bad).ok());
  auto list = store_->listImages();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 3u);
  EXPECT_EQ((*list)[0].name, "d");
  EXPECT_EQ((*list)[1].name, "demo");
  EXPECT_EQ((*list)[1].kind, "direct-boot");
  EXPECT_EQ((*list)[1].state, "ready");
  EXPECT_EQ((*list)[1].ownerKind, "");
  EXPECT_EQ((*list)[2].kind, "iso");
}

// Refused while VMs are made from the image, naming them sorted; allowed after.
TEST_P(StoreTest, DeleteImageIsRefusedWhileVmsAreMadeFromIt) {
  ASSERT_TRUE(store_->insertImage(diskImage("base")).ok());
  for (const char* name : {"zeta", "alpha"}) {
    auto v = vm(name);
    v.image = "base";
    ASSERT_TRUE(store_->insertVm(v).ok());
  }
  auto r = store_->deleteImage("base");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("alpha, zeta"), std::string::npos) << r.error().message;
  ASSERT_TRUE(store_->deleteVm("alpha").ok());
  ASSERT_TRUE(store_->deleteVm("zeta").ok());
  EXPECT_TRUE(store_->deleteImage("base").ok());
}

// Refused while a disk (of a VM made from another image) is cloned from the
// image, naming that VM once; allowed once the disk is gone.
TEST_P(StoreTest, DeleteImageIsRefusedWhileADiskIsClonedFromIt) {
  ASSERT_TRUE(store_->insertImage(diskImage("base")).ok());
  auto a = store_->insertVm(vm("a"));
  ASSERT_TRUE(a.ok());
  auto d0 = disk(a->id, "disk0");
  d0.backingImage = "base";
  auto d1 = disk(a->id, "disk1");
  d1.backingImage = "base";
  auto made0 = store_->insertDisk(d0);
  ASSERT_TRUE(made0.ok()) << made0.error().describe();
  auto made1 = store_->insertDisk(d1);
  ASSERT_TRUE(made1.ok()) << made1.error().describe();
  auto r = store_->deleteImage("base");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("VMs a "), std::string::npos) << r.error().message;
  ASSERT_TRUE(store_->deleteDisk(made0->id).ok());
  ASSERT_TRUE(store_->deleteDisk(made1->id).ok());
  EXPECT_TRUE(store_->deleteImage("base").ok());
  EXPECT_TRUE(store_->findVm("a")->has_value());
}

// Refused while VMs have the image in their CD drive (put there at create or by
// an update), naming them; allowed once both are ejected.
TEST_P(StoreTest, DeleteImageIsRefusedWhileInACdDrive) {
  ASSERT_TRUE(store_->insertImage(isoImage("installer")).ok());
  auto b = vm("b");
  b.cdrom = "installer";
  ASSERT_TRUE(store_->insertVm(b).ok());
  auto c = store_->insertVm(vm("c"));
  ASSERT_TRUE(c.ok());
  VmRecord cc = *c;
  cc.cdrom = "installer";
  ASSERT_TRUE(store_->updateVm(cc, 0).ok());
  auto r = store_->deleteImage("installer");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find("b, c"), std::string::npos) << r.error().message;
  for (const char* name : {"b", "c"}) {
    VmRecord ejected = **store_->findVm(name);
    ejected.cdrom = "";
    ASSERT_TRUE(store_->updateVm(ejected, 0).ok());
  }
  EXPECT_TRUE(store_->deleteImage("installer").ok());
}

// ---- disks

// Disks keep their fields (the backing image joined by name), list in the order
// of their numbers (disk2 before disk10), update and delete by id.
TEST_P(StoreTest, DisksRoundTripListInNumberOrderUpdateAndDelete) {
  ASSERT_TRUE(store_->insertImage(diskImage("base")).ok());
  auto a = store_->insertVm(vm("a"));
  ASSERT_TRUE(a.ok());
  auto d0 = disk(a->id, "disk0", 10 * kGiB);
  d0.backingImage = "base";
  d0.encrypted = true;
  d0.wrappedKey = "wrapped:abc";
  auto made = store_->insertDisk(d0);
  ASSERT_TRUE(made.ok()) << made.error().describe();
  EXPECT_GT(made->id, 0);
  EXPECT_EQ(made->backingImage, "base");
  EXPECT_EQ(made->backingImageId, (*store_->findImage("base"))->id);
  EXPECT_TRUE(made->encrypted);
  EXPECT_EQ(made->wrappedKey, "wrapped:abc");
  EXPECT_EQ(made->sizeBytes, 10 * kGiB);
  EXPECT_EQ(made->pool, "default");
  EXPECT_EQ(made->volume, d0.volume);
  EXPECT_EQ(made->path, d0.path);
  EXPECT_EQ(made->format, "qcow2");
  EXPECT_EQ(made->createdAt, d0.createdAt);
  for (int n : {10, 2, 1, 3, 9, 5, 4, 8, 6, 7})
    ASSERT_TRUE(store_->insertDisk(disk(a->id, "disk" + std::to_string(n))).ok());
  auto list = store_->listDisks(a->id);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(namesOf(*list), (std::vector<std::string>{"disk0", "disk1", "disk2", "disk3", "disk4", "disk5", "disk6",
                                                       "disk7", "disk8", "disk9", "disk10"}));
  EXPECT_EQ((*list)[1].backingImage, "");
  EXPECT_EQ((*list)[1].backingImageId, 0);
  EXPECT_FALSE((*list)[1].encrypted);

  DiskRecord grown = *made;
  grown.sizeBytes = 20 * kGiB;
  grown.encrypted = false;
  grown.wrappedKey = "";
  grown.pool = "fast";
  grown.volume = "lv-a-disk0";
  grown.path = "/dev/fast/lv-a-disk0";
  grown.format = "raw";
  auto u = store_->updateDisk(grown);
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->sizeBytes, 20 * kGiB);
  EXPECT_FALSE(u->encrypted);
  EXPECT_EQ(u->wrappedKey, "");
  EXPECT_EQ(u->pool, "fast");
  EXPECT_EQ(u->path, "/dev/fast/lv-a-disk0");
  EXPECT_EQ(u->format, "raw");
  EXPECT_EQ(u->backingImage, "base");  // not settable
  EXPECT_EQ((*store_->listDisks(a->id))[0].sizeBytes, 20 * kGiB);

  ASSERT_TRUE(store_->deleteDisk(made->id).ok());
  EXPECT_EQ(store_->deleteDisk(made->id).error().code, ErrorCode::NotFound);
  EXPECT_EQ(store_->updateDisk(grown).error().code, ErrorCode::NotFound);
  EXPECT_EQ(store_->listDisks(a->id)->size(), 10u);
}

// A VM's disk names are unique (AlreadyExists, field "disk"), another VM may
// reuse them; a volume belongs to one disk (field "volume"); an unknown VM or
// backing image is NotFound naming the field.
TEST_P(StoreTest, DiskNamesAreUniquePerVmAndVolumesPerPool) {
  auto a = store_->insertVm(vm("a"));
  auto b = store_->insertVm(vm("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(store_->insertDisk(disk(a->id, "disk0")).ok());
  auto dupName = disk(a->id, "disk0");
  dupName.volume = "other";
  auto dup = store_->insertDisk(dupName);
  ASSERT_FALSE(dup.ok());
  EXPECT_EQ(dup.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(dup.error().field, "disk");
  auto onB = store_->insertDisk(disk(b->id, "disk0"));
  ASSERT_TRUE(onB.ok()) << onB.error().describe();

  auto sameVolume = disk(b->id, "disk1");
  sameVolume.volume = disk(a->id, "disk0").volume;
  auto taken = store_->insertDisk(sameVolume);
  ASSERT_FALSE(taken.ok());
  EXPECT_EQ(taken.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(taken.error().field, "volume");
  DiskRecord moved = *onB;
  moved.volume = sameVolume.volume;
  EXPECT_EQ(store_->updateDisk(moved).error().field, "volume");

  auto noVm = store_->insertDisk(disk(a->id + b->id + 1000, "disk0"));
  ASSERT_FALSE(noVm.ok());
  EXPECT_EQ(noVm.error().code, ErrorCode::NotFound);
  EXPECT_EQ(noVm.error().field, "vm");
  auto noImage = disk(a->id, "disk1");
  noImage.backingImage = "nope";
  auto r = store_->insertDisk(noImage);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
  EXPECT_EQ(r.error().field, "backing_image");
  EXPECT_EQ(store_->listAllDisks()->size(), 2u);
}

// Deleting a VM deletes its disk rows (and only its); listAllDisks lists every
// VM's, a VM's disks together in number order.
TEST_P(StoreTest, DeletingAVmDeletesItsDiskRows) {
  auto a = store_->insertVm(vm("a"));
  auto b = store_->insertVm(vm("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  for (const char* n : {"disk10", "disk0", "disk2"}) ASSERT_TRUE(store_->insertDisk(disk(a->id, n)).ok());
  ASSERT_TRUE(store_->insertDisk(disk(b->id, "disk0")).ok());
  auto all = store_->listAllDisks();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 4u);
  EXPECT_EQ(namesOf(*all), (std::vector<std::string>{"disk0", "disk2", "disk10", "disk0"}));
  EXPECT_EQ((*all)[0].vmId, a->id);
  EXPECT_EQ((*all)[3].vmId, b->id);
  ASSERT_TRUE(store_->deleteVm("a").ok());
  EXPECT_TRUE(store_->listDisks(a->id)->empty());
  all = store_->listAllDisks();
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].vmId, b->id);
}

// ---- VMs and operations

// A VM's CD drive and its boot-from-CD flag round-trip through insert, find,
// list and update; a CD naming no image is NotFound (field "cdrom") and writes
// nothing.
TEST_P(StoreTest, VmCdromAndBootCdromRoundTrip) {
  ASSERT_TRUE(store_->insertImage(isoImage("installer")).ok());
  auto v = vm("a");
  v.cdrom = "installer";
  v.bootCdrom = true;
  auto made = store_->insertVm(v);
  ASSERT_TRUE(made.ok()) << made.error().describe();
  EXPECT_EQ(made->cdrom, "installer");
  EXPECT_TRUE(made->bootCdrom);
  auto listed = store_->listVms();
  ASSERT_TRUE(listed.ok() && listed->size() == 1u);
  EXPECT_EQ((*listed)[0].cdrom, "installer");
  EXPECT_TRUE((*listed)[0].bootCdrom);

  VmRecord booted = *made;
  booted.bootCdrom = false;
  auto u = store_->updateVm(booted, made->version);
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->cdrom, "installer");
  EXPECT_FALSE(u->bootCdrom);

  VmRecord bad = *u;
  bad.cdrom = "nope";
  bad.bootCdrom = true;
  auto r = store_->updateVm(bad, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);
  EXPECT_EQ(r.error().field, "cdrom");
  auto f = **store_->findVm("a");
  EXPECT_EQ(f.cdrom, "installer");
  EXPECT_FALSE(f.bootCdrom);
  EXPECT_EQ(f.version, u->version);
  auto badNew = vm("b");
  badNew.cdrom = "nope";
  EXPECT_EQ(store_->insertVm(badNew).error().field, "cdrom");
  EXPECT_FALSE(store_->findVm("b")->has_value());
}

// Operations keep their byte progress (beyond 32 bits) through insert, update,
// find and list.
TEST_P(StoreTest, OperationBytesRoundTrip) {
  OperationRecord op{.id = "00000000000000aa", .kind = "image.import", .target = "debian-12", .requester = "root",
                     .bytesTotal = 5 * (int64_t{1} << 32), .createdAt = "2026-01-01T00:00:00Z"};
  ASSERT_TRUE(store_->insertOperation(op).ok());
  auto f = store_->findOperation(op.id);
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->bytesDone, 0);
  EXPECT_EQ((*f)->bytesTotal, 5 * (int64_t{1} << 32));
  op.bytesDone = 3 * (int64_t{1} << 32);
  op.progress = 60;
  ASSERT_TRUE(store_->updateOperation(op).ok());
  auto g = **store_->findOperation(op.id);
  EXPECT_EQ(g.bytesDone, 3 * (int64_t{1} << 32));
  EXPECT_EQ(g.bytesTotal, 5 * (int64_t{1} << 32));
  EXPECT_EQ(g.progress, 60);
  auto list = store_->listOperations(10);
  ASSERT_TRUE(list.ok() && list->size() == 1u);
  EXPECT_EQ((*list)[0].bytesDone, 3 * (int64_t{1} << 32));
  EXPECT_EQ((*list)[0].bytesTotal, 5 * (int64_t{1} << 32));
}

// ---- upgrade

// A database made by migrations 0001 and 0002 (an image, a VM made from it, a
// user) upgrades to the newest schema keeping its rows and ids; the VM still
// joins its image, which cannot be deleted under it; foreign keys work after
// (a disk row goes with its VM); and the new image kinds are accepted.
TEST_P(StoreTest, DatabaseFromMigration2UpgradesKeepingItsRows) {
  ASSERT_GE(dialectMigrations().size(), 3u);
  std::string old;
  const char* kSchemaMigrations =
      "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)";
  const char* kRows[] = {
      "INSERT INTO images (name, kind, kernel, initrd, append, size_bytes, created_at) "
      "VALUES ('old-kernel', 'direct-boot', '/k', '/i', 'console=ttyS0', 1234, '2026-01-01T00:00:00Z')",
      "INSERT INTO vms (name, uuid, image_id, memory_mib, vcpus, on_crash, desired_state, state, created_at, "
      "updated_at, owner, administrator, disk_gib) SELECT 'old', 'u-old', id, 256, 2, 'restart', 'stopped', "
      "'stopped', 'x', 'x', 'alice', 'alice', 4 FROM images WHERE name = 'old-kernel'",
      "INSERT INTO users (login, created_at) VALUES ('alice', 'x')",
      "INSERT INTO operations (id, kind, state, created_at, updated_at) "
      "VALUES ('00000000000000ff', 'vm.start', 'succeeded', 'x', 'x')"};
  if (GetParam() == Backend::Postgres) {
    std::string error;
    auto url = PostgresEnvironment::server(&error)->createDatabase("store_test_old");
    ASSERT_TRUE(url.ok()) << url.error().describe();
    old = *url;
    pg::Pool pool(old, 1);
    auto lease = pool.acquire();
    ASSERT_TRUE(lease.ok()) << lease.error().describe();
    pg::Conn& c = **lease;
    ASSERT_TRUE(c.execScript(kSchemaMigrations, "old schema").ok());
    for (size_t i = 0; i < 2; ++i) {
      const Migration& m = postgresMigrations()[i];
      auto r = c.execScript(m.sql, m.name);
      ASSERT_TRUE(r.ok()) << r.error().describe();
      ASSERT_TRUE(c.exec("INSERT INTO schema_migrations VALUES (?, ?, 'x')", {int64_t{m.version}, m.name}, "old").ok());
    }
    for (const char* row : kRows) {
      auto r = c.execScript(row, "old rows");
      ASSERT_TRUE(r.ok()) << r.error().describe();
    }
  } else {
    old = (dir_ / "old.db").string();
    SQLite::Database db(old, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA foreign_keys=ON");
    db.exec(kSchemaMigrations);
    for (size_t i = 0; i < 2; ++i) {
      const Migration& m = migrations()[i];
      db.exec(m.sql);
      SQLite::Statement q(db, "INSERT INTO schema_migrations VALUES (?, ?, 'x')");
      q.bind(1, m.version);
      q.bind(2, m.name);
      q.exec();
    }
    for (const char* row : kRows) db.exec(row);
  }

  auto s = openStore(old);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  Store& st = **s;
  EXPECT_EQ(*st.schemaVersion(), dialectMigrations().back().version);
  auto img = st.findImage("old-kernel");
  ASSERT_TRUE(img.ok() && img->has_value());
  EXPECT_EQ((*img)->kind, "direct-boot");
  EXPECT_EQ((*img)->kernel, "/k");
  EXPECT_EQ((*img)->initrd, "/i");
  EXPECT_EQ((*img)->append, "console=ttyS0");
  EXPECT_EQ((*img)->sizeBytes, 1234);
  EXPECT_EQ((*img)->state, "ready");
  EXPECT_EQ((*img)->ownerKind, "");
  EXPECT_EQ((*img)->format, "");
  auto v = st.findVm("old");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ((*v)->image, "old-kernel");
  EXPECT_EQ((*v)->imageId, (*img)->id);
  EXPECT_EQ((*v)->memoryMib, 256u);
  EXPECT_EQ((*v)->vcpus, 2u);
  EXPECT_EQ((*v)->owner, "alice");
  EXPECT_EQ((*v)->diskGib, 4);
  EXPECT_EQ((*v)->cdrom, "");
  EXPECT_FALSE((*v)->bootCdrom);
  EXPECT_TRUE(st.findUser("alice")->has_value());
  auto op = st.findOperation("00000000000000ff");
  ASSERT_TRUE(op.ok() && op->has_value());
  EXPECT_EQ((*op)->bytesTotal, 0);

  EXPECT_EQ(st.deleteImage("old-kernel").error().code, ErrorCode::FailedPrecondition);
  ASSERT_TRUE(st.insertImage(diskImage("new-disk")).ok());
  ASSERT_TRUE(st.insertImage(isoImage("new-iso")).ok());
  auto d = disk((*v)->id, "disk0");
  d.backingImage = "new-disk";
  ASSERT_TRUE(st.insertDisk(d).ok());
  ASSERT_TRUE(st.deleteVm("old").ok());
  EXPECT_TRUE(st.listAllDisks()->empty());  // ON DELETE CASCADE: foreign keys are on again
  EXPECT_TRUE(st.deleteImage("new-disk").ok());
  EXPECT_TRUE(st.deleteImage("old-kernel").ok());
}

}  // namespace
}  // namespace corral::store
