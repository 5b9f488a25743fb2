// The PostgreSQL store's images and disks (declared in postgres_storage.h).
//
// Races with other daemons are settled by row locks: deleteImage locks the
// image's row FOR UPDATE before it looks for users, and every way of starting
// to use an image takes a lock that conflicts with that one (the foreign key
// checks of vms.image_id and disks.backing_image_id take KEY SHARE; a CD drive,
// a name and no foreign key, takes SHARE in checkCdrom). So "not in use" cannot
// go stale between the check and the delete.
#include "store/postgres_storage.h"

#include <fmt/format.h>

#include "store/store_sql.h"

namespace corral::store::pg {
namespace {

Param idOrNull(int64_t id) { return id == 0 ? Param::null() : Param(id); }

Result<std::vector<DiskRecord>> disksWhere(Conn& c, const std::string& where, std::initializer_list<Param> params) {
  auto r = CORRAL_TRY(
      c.exec(fmt::format("SELECT {} FROM {} {}", sql::kDiskColumns, sql::kDiskFrom, where), params, "list disks"));
  std::vector<DiskRecord> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) out.push_back(sql::readDisk(r[i]));
  return out;
}

Result<DiskRecord> diskById(Conn& c, int64_t id, const std::string& name) {
  auto r = CORRAL_TRY(disksWhere(c, "WHERE d.id = ?", {id}));
  if (r.empty()) return Error::notFound(fmt::format("disk {} not found", name));
  return std::move(r.front());
}

// The id of the image a new disk is cloned from: by id when given, else by
// name; 0 for none.
Result<int64_t> backingImageId(Conn& c, const DiskRecord& d) {
  if (d.backingImageId != 0) {
    auto r = CORRAL_TRY(c.exec("SELECT 1 FROM images WHERE id = ?", {d.backingImageId}, "insert disk"));
    if (r.empty())
      return sql::noImage("backing_image", d.backingImage.empty() ? std::to_string(d.backingImageId) : d.backingImage);
    return d.backingImageId;
  }
  if (d.backingImage.empty()) return int64_t{0};
  auto r = CORRAL_TRY(c.exec("SELECT id FROM images WHERE name = ?", {d.backingImage}, "insert disk"));
  if (r.empty()) return sql::noImage("backing_image", d.backingImage);
  return r[0].int64(0);
}

// Which unique constraint of disks a write hit: the VM's disk name, else the
// pool's volume.
Error diskClash(Conn& c, const DiskRecord& d) {
  auto r = c.exec("SELECT 1 FROM disks WHERE vm_id = ? AND name = ? AND id <> ?", {d.vmId, d.name, d.id},
                  "insert disk");
  if (r.ok() && r->empty()) return sql::volumeTaken(d);
  return sql::diskExists(d);
}

}  // namespace

// ---- images

Result<ImageRecord> insertImage(Conn& c, const ImageRecord& image) {
  auto r = c.exec(fmt::format("{} RETURNING id", sql::kInsertImage),
                  {image.name, image.kind, image.kernel, image.initrd, image.append, image.sizeBytes, image.createdAt,
                   image.path, image.format, image.virtualSize, image.sha256, image.ownerKind, image.owner,
                   image.state, image.description},
                  "insert image");
  if (!r.ok()) {
    if (c.failedWith(kUniqueViolation))
      return Error::alreadyExists("name", image.name, fmt::format("name: image {} already exists", image.name));
    return std::move(r).error();
  }
  ImageRecord out = image;
  out.id = (*r)[0].int64(0);
  return out;
}

Result<std::optional<ImageRecord>> findImage(Conn& c, const std::string& name) {
  auto r = CORRAL_TRY(c.exec(fmt::format("SELECT {} FROM images WHERE name = ?", sql::kImageColumns), {name},
                             "find image"));
  if (r.empty()) return std::optional<ImageRecord>{};
  return std::optional<ImageRecord>{sql::readImage(r[0])};
}

Result<std::vector<ImageRecord>> listImages(Conn& c) {
  auto r = CORRAL_TRY(
      c.exec(fmt::format("SELECT {} FROM images ORDER BY name", sql::kImageColumns), {}, "list images"));
  std::vector<ImageRecord> out;
  out.reserve(static_cast<size_t>(r.size()));
  for (int i = 0; i < r.size(); ++i) out.push_back(sql::readImage(r[i]));
  return out;
}

Result<ImageRecord> updateImage(Conn& c, const ImageRecord& image) {
  auto r = CORRAL_TRY(c.exec(fmt::format("{} RETURNING {}", sql::kUpdateImage, sql::kImageColumns),
                             {image.kind, image.kernel, image.initrd, image.append, image.sizeBytes, image.path,
                              image.format, image.virtualSize, image.sha256, image.ownerKind, image.owner, image.state,
                              image.description, image.id},
                             "update image"));
  if (r.empty()) return Error::notFound(fmt::format("image {} not found", image.name));
  return sql::readImage(r[0]);
}

Result<void> deleteImage(Conn& c, const std::string& name) {
  auto tx = CORRAL_TRY(Tx::begin(c));
  auto img = CORRAL_TRY(c.exec("SELECT id FROM images WHERE name = ? FOR UPDATE", {name}, "delete image"));
  if (img.empty()) return Error::notFound(fmt::format("image {} not found", name));
  int64_t id = img[0].int64(0);
  auto users = CORRAL_TRY(c.exec(sql::kImageUsers, {id, id, name}, "delete image"));
  if (!users.empty()) {
    std::vector<std::string> vms;
    for (int i = 0; i < users.size(); ++i) vms.push_back(users[i].text(0));
    return sql::imageInUse(name, vms);
  }
  CORRAL_TRY(c.exec("DELETE FROM images WHERE id = ?", {id}, "delete image"));
  return tx.commit();
}

// ---- disks

Result<DiskRecord> insertDisk(Conn& c, const DiskRecord& disk) {
  auto vm = CORRAL_TRY(c.exec("SELECT 1 FROM vms WHERE id = ?", {disk.vmId}, "insert disk"));
  if (vm.empty()) return sql::noVmWithId(disk.vmId);
  int64_t backing = CORRAL_TRY(backingImageId(c, disk));
  auto r = c.exec(fmt::format("{} RETURNING id", sql::kInsertDisk),
                  {disk.vmId, disk.name, disk.pool, disk.volume, disk.path, disk.format, disk.sizeBytes,
                   int64_t{disk.encrypted ? 1 : 0}, disk.wrappedKey, idOrNull(backing), disk.createdAt},
                  "insert disk");
  if (!r.ok()) {
    if (c.failedWith(kUniqueViolation)) return diskClash(c, disk);
    if (c.failedWith(kForeignKeyViolation)) {
      // The VM or the image went away since we looked.
      auto again = c.exec("SELECT 1 FROM vms WHERE id = ?", {disk.vmId}, "insert disk");
      if (again.ok() && again->empty()) return sql::noVmWithId(disk.vmId);
      return sql::noImage("backing_image", disk.backingImage.empty() ? std::to_string(backing) : disk.backingImage);
    }
    return std::move(r).error();
  }
  return diskById(c, (*r)[0].int64(0), disk.name);
}

Result<std::vector<DiskRecord>> listDisks(Conn& c, int64_t vmId) {
  return disksWhere(c, fmt::format("WHERE d.vm_id = ? ORDER BY {}", sql::kDiskOrder), {vmId});
}

Result<std::vector<DiskRecord>> listAllDisks(Conn& c) {
  return disksWhere(c, fmt::format("ORDER BY d.vm_id, {}", sql::kDiskOrder), {});
}

Result<DiskRecord> updateDisk(Conn& c, const DiskRecord& disk) {
  auto r = c.exec(sql::kUpdateDisk,
                  {disk.pool, disk.volume, disk.path, disk.format, disk.sizeBytes, int64_t{disk.encrypted ? 1 : 0},
                   disk.wrappedKey, disk.id},
                  "update disk");
  if (!r.ok()) {
    if (c.failedWith(kUniqueViolation)) return sql::volumeTaken(disk);
    return std::move(r).error();
  }
  if (r->affected() == 0) return Error::notFound(fmt::format("disk {} not found", disk.name));
  return diskById(c, disk.id, disk.name);
}

Result<void> deleteDisk(Conn& c, int64_t id) {
  auto r = CORRAL_TRY(c.exec("DELETE FROM disks WHERE id = ?", {id}, "delete disk"));
  if (r.affected() == 0) return Error::notFound(fmt::format("disk {} not found", id));
  return ok();
}

Result<void> checkCdrom(Conn& c, const std::string& cdrom) {
  if (cdrom.empty()) return ok();
  auto r = CORRAL_TRY(c.exec("SELECT 1 FROM images WHERE name = ? FOR SHARE", {cdrom}, "check cdrom"));
  if (r.empty()) return sql::noImage("cdrom", cdrom);
  return ok();
}

}  // namespace corral::store::pg
