// What the SQLite store's files share: store_sql.h's Row over a SQLiteCpp
// cursor, binding, error mapping; and the parts of the store that live outside
// sqlite_store.cc (to keep it readable): the image and disk methods
// (sqlite_storage.cc), networks, NICs and SSH keys (sqlite_network.cc) and the
// migration runner (sqlite_migrate.cc). Each takes
// the store's connection; the caller holds the store's mutex.
//
// Internal to store/.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include "store/store.h"

namespace corral::store::sqlite {

// store_sql.h's Row over a SQLiteCpp cursor.
struct Row {
  SQLite::Statement& q;
  std::string text(int i) const { return q.getColumn(i).getString(); }
  int64_t int64(int i) const { return q.getColumn(i).getInt64(); }
  bool isNull(int i) const { return q.getColumn(i).isNull(); }
};

inline Error dbError(const SQLite::Exception& e, std::string_view what) {
  return Error::internal(fmt::format("database: {}: {}", what, e.what()));
}

inline bool isUnique(const SQLite::Exception& e) {
  int c = e.getExtendedErrorCode();
  return c == SQLITE_CONSTRAINT_UNIQUE || c == SQLITE_CONSTRAINT_PRIMARYKEY;
}

inline void bindOne(SQLite::Statement& q, int i, const std::string& v) { q.bind(i, v); }
inline void bindOne(SQLite::Statement& q, int i, int64_t v) { q.bind(i, v); }
template <class T>
void bindOne(SQLite::Statement& q, int i, const std::optional<T>& v) {
  if (v)
    bindOne(q, i, *v);
  else
    q.bind(i);  // NULL
}

// Binds the arguments to ?1, ?2, ... in order.
template <class... A>
void bindAll(SQLite::Statement& q, const A&... a) {
  int i = 0;
  (bindOne(q, ++i, a), ...);
}

// ---- images and disks (sqlite_storage.cc), with Store's contract.

Result<ImageRecord> insertImage(SQLite::Database& db, const ImageRecord& image);
Result<std::optional<ImageRecord>> findImage(SQLite::Database& db, const std::string& name);
Result<std::vector<ImageRecord>> listImages(SQLite::Database& db);
Result<ImageRecord> updateImage(SQLite::Database& db, const ImageRecord& image);
Result<void> deleteImage(SQLite::Database& db, const std::string& name);

Result<DiskRecord> insertDisk(SQLite::Database& db, const DiskRecord& disk);
Result<std::vector<DiskRecord>> listDisks(SQLite::Database& db, int64_t vmId);
Result<std::vector<DiskRecord>> listAllDisks(SQLite::Database& db);
Result<DiskRecord> updateDisk(SQLite::Database& db, const DiskRecord& disk);
Result<void> deleteDisk(SQLite::Database& db, int64_t id);

// ---- networks, NICs and SSH keys (sqlite_network.cc), with Store's contract.

Result<NetworkRecord> insertNetwork(SQLite::Database& db, const NetworkRecord& net);
Result<std::optional<NetworkRecord>> findNetwork(SQLite::Database& db, const std::string& name);
Result<std::vector<NetworkRecord>> listNetworks(SQLite::Database& db);
Result<void> deleteNetwork(SQLite::Database& db, const std::string& name);

Result<NicRecord> insertNic(SQLite::Database& db, const NicRecord& nic);
Result<std::vector<NicRecord>> listNics(SQLite::Database& db, int64_t vmId);
Result<std::vector<NicRecord>> listNetworkNics(SQLite::Database& db, const std::string& network);
Result<std::vector<NicRecord>> listAllNics(SQLite::Database& db);
Result<void> deleteNic(SQLite::Database& db, int64_t id);

Result<SshKeyRecord> insertSshKey(SQLite::Database& db, const SshKeyRecord& key);
Result<std::vector<SshKeyRecord>> listSshKeys(SQLite::Database& db, const std::string& login);
Result<void> deleteSshKey(SQLite::Database& db, const std::string& login, int64_t id);

// NotFound (field "cdrom") unless the image a VM's CD drive names exists; ""
// (an empty drive) passes. Throws SQLite::Exception, for the caller's catch.
Result<void> checkCdrom(SQLite::Database& db, const std::string& cdrom);

// ---- the schema (sqlite_migrate.cc)

// Applies the pending migrations, each in its own transaction.
Result<void> applyMigrations(SQLite::Database& db);
Result<int> schemaVersion(SQLite::Database& db);

}  // namespace corral::store::sqlite
