// SQLite implementation of Store, through SQLiteCpp.
//
// One connection guarded by a mutex: the daemon's writes are few and short, and
// SQLite serialises writers anyway. WAL mode lets a second reader (the sqlite3
// shell of an admin) look without blocking us. Constraint violations are mapped
// to the project's error codes here, so callers never see SQLite's words.
#include <sqlite3.h>

#include <chrono>
#include <ctime>
#include <mutex>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "store/migrations.h"
#include "store/store.h"

namespace corral::store {
namespace {

constexpr const char* kVmColumns =
    "v.id, v.name, v.uuid, i.name, v.image_id, v.memory_mib, v.vcpus, v.on_crash, v.desired_state, v.state, "
    "v.state_reason, v.pid, v.accel, v.created_at, v.updated_at, v.version";

Error dbError(const SQLite::Exception& e, std::string_view what) {
  return Error::internal(fmt::format("database: {}: {}", what, e.what()));
}

ImageRecord readImage(SQLite::Statement& q) {
  ImageRecord r;
  r.id = q.getColumn(0).getInt64();
  r.name = q.getColumn(1).getString();
  r.kind = q.getColumn(2).getString();
  r.kernel = q.getColumn(3).getString();
  r.initrd = q.getColumn(4).getString();
  r.append = q.getColumn(5).getString();
  r.sizeBytes = q.getColumn(6).getInt64();
  r.createdAt = q.getColumn(7).getString();
  return r;
}

VmRecord readVm(SQLite::Statement& q) {
  VmRecord r;
  r.id = q.getColumn(0).getInt64();
  r.name = q.getColumn(1).getString();
  r.uuid = q.getColumn(2).getString();
  r.image = q.getColumn(3).getString();
  r.imageId = q.getColumn(4).getInt64();
  r.memoryMib = static_cast<uint64_t>(q.getColumn(5).getInt64());
  r.vcpus = static_cast<unsigned>(q.getColumn(6).getInt());
  r.onCrash = q.getColumn(7).getString();
  r.desiredState = q.getColumn(8).getString();
  r.state = q.getColumn(9).getString();
  r.stateReason = q.getColumn(10).getString();
  if (!q.getColumn(11).isNull()) r.pid = q.getColumn(11).getInt64();
  r.accel = q.getColumn(12).getString();
  r.createdAt = q.getColumn(13).getString();
  r.updatedAt = q.getColumn(14).getString();
  r.version = q.getColumn(15).getInt64();
  return r;
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(const std::string& path)
      : db_(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_FULLMUTEX) {
    db_.setBusyTimeout(5000);
    db_.exec("PRAGMA journal_mode=WAL");
    db_.exec("PRAGMA foreign_keys=ON");
    db_.exec("PRAGMA synchronous=NORMAL");
  }

  Result<void> migrate() {
    std::lock_guard lock(mu_);
    try {
      db_.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
               "applied_at TEXT NOT NULL)");
      int current = currentVersion();
      for (const Migration& m : migrations()) {
        if (m.version <= current) continue;
        SQLite::Transaction tx(db_);
        db_.exec(m.sql);
        SQLite::Statement ins(db_, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
        ins.bind(1, m.version);
        ins.bind(2, m.name);
        ins.bind(3, nowRfc3339());
        ins.exec();
        tx.commit();
        spdlog::info("store: applied migration {} ({})", m.version, m.name);
      }
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "migrate");
    }
  }

  Result<int> schemaVersion() override {
    std::lock_guard lock(mu_);
    try {
      return currentVersion();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "schema version");
    }
  }

  Result<ImageRecord> insertImage(const ImageRecord& image) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "INSERT INTO images (name, kind, kernel, initrd, append, size_bytes, created_at) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?)");
      q.bind(1, image.name);
      q.bind(2, image.kind);
      q.bind(3, image.kernel);
      q.bind(4, image.initrd);
      q.bind(5, image.append);
      q.bind(6, static_cast<int64_t>(image.sizeBytes));
      q.bind(7, image.createdAt);
      q.exec();
      ImageRecord out = image;
      out.id = db_.getLastInsertRowid();
      return out;
    } catch (const SQLite::Exception& e) {
      if (e.getExtendedErrorCode() == SQLITE_CONSTRAINT_UNIQUE)
        return Error::alreadyExists("name", image.name, fmt::format("name: image {} already exists", image.name));
      return dbError(e, "insert image");
    }
  }

  Result<std::optional<ImageRecord>> findImage(const std::string& name) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "SELECT id, name, kind, kernel, initrd, append, size_bytes, created_at FROM images WHERE "
                          "name = ?");
      q.bind(1, name);
      if (!q.executeStep()) return std::optional<ImageRecord>{};
      return std::optional<ImageRecord>{readImage(q)};
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find image");
    }
  }

  Result<std::vector<ImageRecord>> listImages() override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "SELECT id, name, kind, kernel, initrd, append, size_bytes, created_at FROM images ORDER BY "
                          "name");
      std::vector<ImageRecord> out;
      while (q.executeStep()) out.push_back(readImage(q));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list images");
    }
  }

  Result<void> deleteImage(const std::string& name) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_);
      SQLite::Statement users(db_,
                              "SELECT v.name FROM vms v JOIN images i ON v.image_id = i.id WHERE i.name = ? ORDER BY "
                              "v.name");
      users.bind(1, name);
      std::vector<std::string> vms;
      while (users.executeStep()) vms.push_back(users.getColumn(0).getString());
      if (!vms.empty())
        return Error::failedPrecondition(
            fmt::format("image {} is in use by {}: delete those VMs first", name, fmt::join(vms, ", ")));
      SQLite::Statement q(db_, "DELETE FROM images WHERE name = ?");
      q.bind(1, name);
      if (q.exec() == 0) return Error::notFound(fmt::format("image {} not found", name));
      tx.commit();
      return ok();
    } catch (const SQLite::Exception& e) {
      return dbError(e, "delete image");
    }
  }

  Result<VmRecord> insertVm(const VmRecord& vm) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Transaction tx(db_);
      SQLite::Statement img(db_, "SELECT id FROM images WHERE name = ?");
      img.bind(1, vm.image);
      if (!img.executeStep())
        return Error{ErrorCode::NotFound, fmt::format("image: no image named {}", vm.image), "image", vm.image};
      int64_t imageId = img.getColumn(0).getInt64();
      SQLite::Statement q(db_,
                          "INSERT INTO vms (name, uuid, image_id, memory_mib, vcpus, on_crash, desired_state, state, "
                          "state_reason, pid, accel, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, "
                          "'', ?, ?)");
      q.bind(1, vm.name);
      q.bind(2, vm.uuid);
      q.bind(3, imageId);
      q.bind(4, static_cast<int64_t>(vm.memoryMib));
      q.bind(5, static_cast<int>(vm.vcpus));
      q.bind(6, vm.onCrash);
      q.bind(7, vm.desiredState);
      q.bind(8, vm.state);
      q.bind(9, vm.stateReason);
      q.bind(10, vm.createdAt);
      q.bind(11, vm.createdAt);
      q.exec();
      tx.commit();
    } catch (const SQLite::Exception& e) {
      if (e.getExtendedErrorCode() == SQLITE_CONSTRAINT_UNIQUE)
        return Error::alreadyExists("name", vm.name, fmt::format("name: a VM named {} already exists", vm.name));
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
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM vms v JOIN images i ON v.image_id = i.id ORDER BY v.name",
                                           kVmColumns));
      std::vector<VmRecord> out;
      while (q.executeStep()) out.push_back(readVm(q));
      return out;
    } catch (const SQLite::Exception& e) {
      return dbError(e, "list vms");
    }
  }

  Result<VmRecord> updateVmState(const std::string& name, const VmStateUpdate& u) override {
    std::lock_guard lock(mu_);
    try {
      SQLite::Statement q(db_,
                          "UPDATE vms SET state = ?, state_reason = ?, pid = ?, accel = ?, "
                          "desired_state = COALESCE(?, desired_state), updated_at = ?, version = version + 1 "
                          "WHERE name = ?");
      q.bind(1, u.state);
      q.bind(2, u.stateReason);
      if (u.pid) q.bind(3, *u.pid); else q.bind(3);
      q.bind(4, u.accel);
      if (u.desiredState) q.bind(5, *u.desiredState); else q.bind(5);
      q.bind(6, nowRfc3339());
      q.bind(7, name);
      if (q.exec() == 0) return Error::notFound(fmt::format("vm {} not found", name));
    } catch (const SQLite::Exception& e) {
      return dbError(e, "update vm state");
    }
    return findVmLocked(name);
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

 private:
  int currentVersion() {
    SQLite::Statement q(db_, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    q.executeStep();
    return q.getColumn(0).getInt();
  }

  Result<VmRecord> findVmLocked(const std::string& name) {
    try {
      SQLite::Statement q(db_, fmt::format("SELECT {} FROM vms v JOIN images i ON v.image_id = i.id WHERE v.name = ?",
                                           kVmColumns));
      q.bind(1, name);
      if (!q.executeStep()) return Error::notFound(fmt::format("vm {} not found", name));
      return readVm(q);
    } catch (const SQLite::Exception& e) {
      return dbError(e, "find vm");
    }
  }

  std::mutex mu_;
  SQLite::Database db_;
};

}  // namespace

std::string nowRfc3339() {
  std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path) {
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
