// The thin libpq layer under the PostgreSQL store: RAII owners for PGconn and
// PGresult, parameterised statements (PQexecParams, text format; no SQL is ever
// built from a value), a fixed-size connection pool and transactions.
//
// Why libpq and not libpqxx: Debian 12's libpqxx (6.4) is not -Werror clean under
// C++20, and what the store needs of it is this small.
//
// Internal to store/. Threads: a Pool is shared; a Lease, its Conn and a Tx
// belong to one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace corral::store::pg {

inline constexpr std::string_view kUniqueViolation = "23505";
inline constexpr std::string_view kForeignKeyViolation = "23503";

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// One statement parameter in text format; null() is SQL NULL.
struct Param {
  std::optional<std::string> text;
  Param(std::string s) : text(std::move(s)) {}   // NOLINT: implicit by design
  Param(const char* s) : text(s) {}              // NOLINT
  Param(int64_t v) : text(std::to_string(v)) {}  // NOLINT
  Param(std::optional<int64_t> v) {              // NOLINT
    if (v) text = std::to_string(*v);
  }
  static Param null() { return Param(std::optional<int64_t>{}); }
};

// store_sql.h's Row over one row of a PGresult (text format).
struct Row {
  const PGresult* r;
  int row;
  std::string text(int i) const { return PQgetvalue(r, row, i); }
  int64_t int64(int i) const;
  bool isNull(int i) const { return PQgetisnull(r, row, i) != 0; }
};

class Rows {
 public:
  explicit Rows(ResultPtr r) : r_(std::move(r)) {}
  int size() const { return PQntuples(r_.get()); }
  bool empty() const { return size() == 0; }
  Row operator[](int i) const { return Row{r_.get(), i}; }
  int64_t affected() const;  // rows an INSERT/UPDATE/DELETE touched

 private:
  ResultPtr r_;
};

// '?' placeholders to $1, $2, ... (the shared SQL has no '?' anywhere else).
std::string numberPlaceholders(std::string_view sqlText);

// A leased connection, and the SQLSTATE of the last statement that failed.
class Conn {
 public:
  explicit Conn(PGconn* c) : c_(c) {}

  // One statement with '?' placeholders. Errors: Unavailable when the connection
  // is lost, Internal otherwise ("database: <what>: <PostgreSQL's message>").
  Result<Rows> exec(std::string_view sqlText, std::initializer_list<Param> params, std::string_view what);
  // Several statements, no parameters (migrations).
  Result<Rows> execScript(const std::string& script, std::string_view what);

  bool failedWith(std::string_view sqlState) const { return sqlState_ == sqlState; }

 private:
  Result<Rows> check(ResultPtr r, std::string_view what);

  PGconn* c_;
  std::string sqlState_;
};

// At most `size` connections, made when first needed; one found broken or left
// inside a transaction is dropped and made anew by a later lease.
class Pool {
 public:
  Pool(std::string url, size_t size);

  class Lease {
   public:
    Lease(Pool* pool, ConnPtr c) : pool_(pool), c_(std::move(c)), conn_(c_.get()) {}
    Lease(Lease&& o) noexcept : pool_(o.pool_), c_(std::move(o.c_)), conn_(c_.get()) { o.pool_ = nullptr; }
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (pool_ && c_) pool_->release(std::move(c_));
    }
    Conn& operator*() { return conn_; }
    Conn* operator->() { return &conn_; }

   private:
    Pool* pool_;
    ConnPtr c_;
    Conn conn_;
  };

  // Waits up to 30 s for a free connection (then Unavailable). A caller holds at
  // most one lease at a time, so the pool cannot deadlock.
  Result<Lease> acquire();

 private:
  Result<ConnPtr> connect();
  void release(ConnPtr c);

  const std::string url_;
  const size_t size_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ConnPtr> idle_;
  size_t total_ = 0;
};

// BEGIN ... COMMIT; rolled back when it goes out of scope uncommitted.
class Tx {
 public:
  static Result<Tx> begin(Conn& c);
  Tx(Tx&& o) noexcept : c_(o.c_), open_(o.open_) { o.open_ = false; }
  Tx& operator=(Tx&&) = delete;
  ~Tx() { rollback(); }
  Result<void> commit();
  void rollback();

 private:
  explicit Tx(Conn& c) : c_(c) {}
  Conn& c_;
  bool open_ = true;
};

// Takes the transaction-scoped advisory locks of these keys in ascending order
// (two writers wanting the same two keys never wait for each other crosswise).
Result<void> lockKeys(Conn& c, std::vector<int64_t> keys);

}  // namespace corral::store::pg
