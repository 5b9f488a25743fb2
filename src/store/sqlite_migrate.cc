// Applies the SQLite migrations (declared in sqlite_support.h).
//
// A migration may rebuild a table that others reference: SQLite cannot alter a
// CHECK, so 0003 makes a new images table, copies, drops the old one and renames
// (sqlite.org/lang_altertable.html). That needs foreign keys off, since dropping
// images would otherwise fail on, or cascade through, the rows that reference
// it; and the pragma only takes effect outside a transaction. So foreign keys
// are off for the whole run, each migration's result must pass
// foreign_key_check before it commits, and they are on again after (checked).
// A failed run may leave them off, but then openSqliteStore fails and the
// connection is never used.
#include <spdlog/spdlog.h>

#include "store/migrations.h"
#include "store/sqlite_support.h"

namespace corral::store::sqlite {
namespace {

// The rows PRAGMA foreign_key_check reports, as "table row N -> parent"; "" when none.
std::string foreignKeyProblems(SQLite::Database& db) {
  SQLite::Statement q(db, "PRAGMA foreign_key_check");
  std::string out;
  while (q.executeStep())
    out += fmt::format("{}{} row {} -> {}", out.empty() ? "" : "; ", q.getColumn(0).getString(),
                       q.getColumn(1).getInt64(), q.getColumn(2).getString());
  return out;
}

int currentVersion(SQLite::Database& db) {
  SQLite::Statement q(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  q.executeStep();
  return q.getColumn(0).getInt();
}

}  // namespace

Result<void> applyMigrations(SQLite::Database& db) {
  try {
    db.exec("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at TEXT NOT NULL)");
    db.exec("PRAGMA foreign_keys=OFF");
    for (const Migration& m : migrations()) {
      // The version is read inside the write transaction: two processes
      // opening one new file at once apply each migration once.
      SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
      if (m.version <= currentVersion(db)) continue;
      db.exec(m.sql);
      if (auto broken = foreignKeyProblems(db); !broken.empty())
        return Error::internal(fmt::format("database: migration {} breaks foreign keys: {}", m.name, broken));
      SQLite::Statement ins(db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)");
      bindAll(ins, m.version, m.name, nowRfc3339());
      ins.exec();
      tx.commit();
      spdlog::info("store: applied migration {} ({})", m.version, m.name);
    }
    db.exec("PRAGMA foreign_keys=ON");
    if (db.execAndGet("PRAGMA foreign_keys").getInt() != 1)
      return Error::internal("database: foreign keys stay off after migrating");
    return ok();
  } catch (const SQLite::Exception& e) {
    return dbError(e, "migrate");
  }
}

Result<int> schemaVersion(SQLite::Database& db) {
  try {
    return currentVersion(db);
  } catch (const SQLite::Exception& e) {
    return dbError(e, "schema version");
  }
}

}  // namespace corral::store::sqlite
