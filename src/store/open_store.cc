// Picks the Store a --db value names, and the helpers both stores share.
#include <chrono>
#include <ctime>

#include <nlohmann/json.hpp>

#include "store/store.h"
#include "store/store_sql.h"

#include "util/report.h"

namespace corral::store {

Result<std::unique_ptr<Store>> openStore(const std::string& db) {
  // Only these two prefixes mean PostgreSQL: a SQLite file may be called anything
  // else, including names that contain "://".
  if (db.starts_with("postgres://") || db.starts_with("postgresql://")) return openPostgresStore(db);
  if (db.empty()) return Error::invalidInput("db", db, "a SQLite path or a postgres:// URL is needed");
  return openSqliteStore(db);
}

std::string nowRfc3339() {
  return util::formatRfc3339(std::chrono::system_clock::to_time_t(std::chrono::system_clock::now()));
}

namespace sql {

std::string interruptedResult(const std::string& reason) {
  nlohmann::json j = {{"code", toString(ErrorCode::Unavailable)}, {"message", reason}, {"field", ""}, {"value", ""}};
  return j.dump();
}

std::string joinNames(const std::vector<std::string>& names) {
  constexpr size_t kShown = 10;
  std::string out;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) {
    if (i) out += ", ";
    out += names[i];
  }
  if (names.size() > kShown) out += fmt::format(" and {} more", names.size() - kShown);
  return out;
}

}  // namespace sql
}  // namespace corral::store
