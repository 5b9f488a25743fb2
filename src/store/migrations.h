// Schema migrations, compiled in from src/store/migrations/NNNN_name.sql (SQLite)
// and src/store/migrations/postgres/NNNN_name.sql (PostgreSQL): one set per
// dialect, numbered in step, so that both stores report the same schema version.
// Applied in order, each in its own transaction, by every Store at open.
#pragma once

#include <string>
#include <vector>

namespace corral::store {

struct Migration {
  int version;
  std::string name;
  std::string sql;
};

const std::vector<Migration>& migrations();          // SQLite
const std::vector<Migration>& postgresMigrations();  // PostgreSQL

}  // namespace corral::store
