// Schema migrations, compiled in from src/store/migrations/NNNN_name.sql.
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

const std::vector<Migration>& migrations();

}  // namespace corral::store
