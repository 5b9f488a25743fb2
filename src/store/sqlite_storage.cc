// The SQLite store's images and disks (declared in sqlite_support.h). The
// caller, SqliteStore, holds its mutex around each call, so a check and the
// write after it see no other writer of this process in between; BEGIN
// IMMEDIATE keeps other processes out too.
#include <fmt/format.h>

#include "store/sqlite_support.h"
#include "store/store_sql.h"

namespace corral::store::sqlite {
namespace {

std::optional<int64_t> orNull(int64_t id) { return id == 0 ? std::nullopt : std::optional<int64_t>{id}; }

std::optional<ImageRecord> imageById(SQLite::Database& db, int64_t id) {
  SQLite::Statement q(db, fmt::format("SELECT {} FROM images WHERE id = ?", sql::kImageColumns));
  q.bind(1, id);
  if (!q.executeStep()) return std::nullopt;
  return sql::readImage(Row{q});
}

std::optional<DiskRecord> diskById(SQLite::Database& db, int64_t id) {
  SQLite::Statement q(db, fmt::format("SELECT {} FROM {} WHERE d.id = ?", sql::kDiskColumns, sql::kDiskFrom));
  q.bind(1, id);
  if (!q.executeStep()) return std::nullopt;
  return sql::readDisk(Row{q});
}

std::vector<DiskRecord> disksWhere(SQLite::Database& db, std::string_view where, std::optional<int64_t> bind) {
  SQLite::Statement q(db, fmt::format("SELECT {} FROM {} {}", sql::kDiskColumns, sql::kDiskFrom, where));
  if (bind) q.bind(1, *bind);
  std::vector<DiskRecord> out;
  while (q.executeStep()) out.push_back(sql::readDisk(Row{q}));
  return out;
}

bool exists(SQLite::Database& db, const char* query, int64_t id) {
  SQLite::Statement q(db, query);
  q.bind(1, id);
  return q.executeStep();
}

// The id of the image a new disk is cloned from: by id when given, else by
// name, 0 for none.
Result<int64_t> backingImageId(SQLite::Database& db, const DiskRecord& d) {
  if (d.backingImageId != 0) {
    if (!exists(db, "SELECT 1 FROM images WHERE id = ?", d.backingImageId))
      return sql::noImage("backing_image", d.backingImage.empty() ? std::to_string(d.backingImageId) : d.backingImage);
    return d.backingImageId;
  }
  if (d.backingImage.empty()) return int64_t{0};
  SQLite::Statement q(db, "SELECT id FROM images WHERE name = ?");
  q.bind(1, d.backingImage);
  if (!q.executeStep()) return sql::noImage("backing_image", d.backingImage);
  return q.getColumn(0).getInt64();
}

// Which unique constraint of disks a write hit: the VM's disk name, else the
// pool's volume.
Error diskClash(SQLite::Database& db, const DiskRecord& d) {
  try {
    SQLite::Statement q(db, "SELECT 1 FROM disks WHERE vm_id = ? AND name = ? AND id <> ?");
    bindAll(q, d.vmId, d.name, d.id);
    if (!q.executeStep()) return sql::volumeTaken(d);
  } catch (const SQLite::Exception&) {
    // Fall through to the likelier cause.
  }
  return sql::diskExists(d);
}

}  // namespace

// ---- images

Result<ImageRecord> insertImage(SQLite::Database& db, const ImageRecord& image) {
  try {
    SQLite::Statement q(db, sql::kInsertImage);
    bindAll(q, image.name, image.kind, image.kernel, image.initrd, image.append, image.sizeBytes, image.createdAt,
            image.path, image.format, image.virtualSize, image.sha256, image.ownerKind, image.owner, image.state,
            image.description);
    q.exec();
    ImageRecord out = image;
    out.id = db.getLastInsertRowid();
    return out;
  } catch (const SQLite::Exception& e) {
    if (isUnique(e))
      return Error::alreadyExists("name", image.name, fmt::format("name: image {} already exists", image.name));
    return dbError(e, "insert image");
  }
}

Result<std::optional<ImageRecord>> findImage(SQLite::Database& db, const std::string& name) {
  try {
    SQLite::Statement q(db, fmt::format("SELECT {} FROM images WHERE name = ?", sql::kImageColumns));
    q.bind(1, name);
    if (!q.executeStep()) return std::optional<ImageRecord>{};
    return std::optional<ImageRecord>{sql::readImage(Row{q})};
  } catch (const SQLite::Exception& e) {
    return dbError(e, "find image");
  }
}

Result<std::vector<ImageRecord>> listImages(SQLite::Database& db) {
  try {
    SQLite::Statement q(db, fmt::format("SELECT {} FROM images ORDER BY name", sql::kImageColumns));
    std::vector<ImageRecord> out;
    while (q.executeStep()) out.push_back(sql::readImage(Row{q}));
    return out;
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list images");
  }
}

Result<ImageRecord> updateImage(SQLite::Database& db, const ImageRecord& image) {
  try {
    SQLite::Statement q(db, sql::kUpdateImage);
    bindAll(q, image.kind, image.kernel, image.initrd, image.append, image.sizeBytes, image.path, image.format,
            image.virtualSize, image.sha256, image.ownerKind, image.owner, image.state, image.description, image.id);
    if (q.exec() == 0) return Error::notFound(fmt::format("image {} not found", image.name));
    auto out = imageById(db, image.id);
    if (!out) return Error::notFound(fmt::format("image {} not found", image.name));
    return std::move(*out);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "update image");
  }
}

Result<void> deleteImage(SQLite::Database& db, const std::string& name) {
  try {
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement img(db, "SELECT id FROM images WHERE name = ?");
    img.bind(1, name);
    if (!img.executeStep()) return Error::notFound(fmt::format("image {} not found", name));
    int64_t id = img.getColumn(0).getInt64();
    SQLite::Statement users(db, sql::kImageUsers);
    bindAll(users, id, id, name);
    std::vector<std::string> vms;
    while (users.executeStep()) vms.push_back(users.getColumn(0).getString());
    if (!vms.empty()) return sql::imageInUse(name, vms);
    SQLite::Statement q(db, "DELETE FROM images WHERE id = ?");
    q.bind(1, id);
    q.exec();
    tx.commit();
    return ok();
  } catch (const SQLite::Exception& e) {
    return dbError(e, "delete image");
  }
}

// ---- disks

Result<DiskRecord> insertDisk(SQLite::Database& db, const DiskRecord& disk) {
  int64_t id = 0;
  try {
    SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
    if (!exists(db, "SELECT 1 FROM vms WHERE id = ?", disk.vmId)) return sql::noVmWithId(disk.vmId);
    int64_t backing = CORRAL_TRY(backingImageId(db, disk));
    SQLite::Statement q(db, sql::kInsertDisk);
    bindAll(q, disk.vmId, disk.name, disk.pool, disk.volume, disk.path, disk.format, disk.sizeBytes,
            int64_t{disk.encrypted ? 1 : 0}, disk.wrappedKey, orNull(backing), disk.createdAt);
    q.exec();
    id = db.getLastInsertRowid();
    tx.commit();
  } catch (const SQLite::Exception& e) {
    if (isUnique(e)) return diskClash(db, disk);
    return dbError(e, "insert disk");
  }
  try {
    auto out = diskById(db, id);
    if (!out) return Error::notFound(fmt::format("disk {} not found", disk.name));
    return std::move(*out);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "insert disk");
  }
}

Result<std::vector<DiskRecord>> listDisks(SQLite::Database& db, int64_t vmId) {
  try {
    return disksWhere(db, fmt::format("WHERE d.vm_id = ? ORDER BY {}", sql::kDiskOrder), vmId);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list disks");
  }
}

Result<std::vector<DiskRecord>> listAllDisks(SQLite::Database& db) {
  try {
    return disksWhere(db, fmt::format("ORDER BY d.vm_id, {}", sql::kDiskOrder), std::nullopt);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "list disks");
  }
}

Result<DiskRecord> updateDisk(SQLite::Database& db, const DiskRecord& disk) {
  try {
    SQLite::Statement q(db, sql::kUpdateDisk);
    bindAll(q, disk.pool, disk.volume, disk.path, disk.format, disk.sizeBytes, int64_t{disk.encrypted ? 1 : 0},
            disk.wrappedKey, disk.id);
    if (q.exec() == 0) return Error::notFound(fmt::format("disk {} not found", disk.name));
    auto out = diskById(db, disk.id);
    if (!out) return Error::notFound(fmt::format("disk {} not found", disk.name));
    return std::move(*out);
  } catch (const SQLite::Exception& e) {
    if (isUnique(e)) return sql::volumeTaken(disk);
    return dbError(e, "update disk");
  }
}

Result<void> deleteDisk(SQLite::Database& db, int64_t id) {
  try {
    SQLite::Statement q(db, "DELETE FROM disks WHERE id = ?");
    q.bind(1, id);
    if (q.exec() == 0) return Error::notFound(fmt::format("disk {} not found", id));
    return ok();
  } catch (const SQLite::Exception& e) {
    return dbError(e, "delete disk");
  }
}

Result<void> checkCdrom(SQLite::Database& db, const std::string& cdrom) {
  if (cdrom.empty()) return ok();
  SQLite::Statement q(db, "SELECT 1 FROM images WHERE name = ?");
  q.bind(1, cdrom);
  if (!q.executeStep()) return sql::noImage("cdrom", cdrom);
  return ok();
}

}  // namespace corral::store::sqlite
