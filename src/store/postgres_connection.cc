#include "store/postgres_connection.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace corral::store::pg {
namespace {

int64_t parseInt64(const char* s) {
  int64_t v = 0;
  std::from_chars(s, s + std::strlen(s), v);
  return v;
}

std::string trimmed(std::string msg) {
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
  return msg;
}

}  // namespace

int64_t Row::int64(int i) const { return parseInt64(PQgetvalue(r, row, i)); }

int64_t Rows::affected() const { return parseInt64(PQcmdTuples(r_.get())); }

std::string numberPlaceholders(std::string_view sqlText) {
  std::string out;
  out.reserve(sqlText.size() + 16);
  int n = 0;
  for (char c : sqlText) {
    if (c == '?')
      out += fmt::format("${}", ++n);
    else
      out += c;
  }
  return out;
}

Result<Rows> Conn::exec(std::string_view sqlText, std::initializer_list<Param> params, std::string_view what) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const Param& p : params) values.push_back(p.text ? p.text->c_str() : nullptr);
  const std::string text = numberPlaceholders(sqlText);
  ResultPtr r(
      PQexecParams(c_, text.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0));
  return check(std::move(r), what);
}

Result<Rows> Conn::execScript(const std::string& script, std::string_view what) {
  return check(ResultPtr(PQexec(c_, script.c_str())), what);
}

Result<Rows> Conn::check(ResultPtr r, std::string_view what) {
  sqlState_.clear();
  ExecStatusType st = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return Rows(std::move(r));
  if (r) {
    const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
    sqlState_ = state ? state : "";
  }
  std::string msg = trimmed(r ? PQresultErrorMessage(r.get()) : PQerrorMessage(c_));
  if (PQstatus(c_) != CONNECTION_OK)
    return Error::unavailable(fmt::format("database: {}: connection lost: {}", what, msg));
  return Error::internal(fmt::format("database: {}: {}", what, msg));
}

Pool::Pool(std::string url, size_t size) : url_(std::move(url)), size_(std::max<size_t>(size, 1)) {}

Result<Pool::Lease> Pool::acquire() {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, std::chrono::seconds(30), [&] { return !idle_.empty() || total_ < size_; }))
    return Error::unavailable(fmt::format("database: all {} connections busy for 30 s", size_));
  if (!idle_.empty()) {
    ConnPtr c = std::move(idle_.back());
    idle_.pop_back();
    return Lease(this, std::move(c));
  }
  ++total_;
  lock.unlock();  // connecting takes a round trip or more; others may lease meanwhile
  auto c = connect();
  if (!c.ok()) {
    std::lock_guard again(mu_);
    --total_;
    cv_.notify_one();
    return std::move(c).error();
  }
  return Lease(this, std::move(c).take());
}

Result<ConnPtr> Pool::connect() {
  // expand_dbname: the URL (or keyword string) is the dbname; the later
  // fallback_application_name applies only when the URL names none.
  const char* keys[] = {"dbname", "fallback_application_name", nullptr};
  const char* values[] = {url_.c_str(), "corrald", nullptr};
  ConnPtr c(PQconnectdbParams(keys, values, 1));
  if (!c) return Error::unavailable("database: out of memory connecting to PostgreSQL");
  if (PQstatus(c.get()) != CONNECTION_OK)
    return Error::unavailable(
        fmt::format("database: cannot connect to PostgreSQL: {}", trimmed(PQerrorMessage(c.get()))));
  // Notices ("relation exists, skipping") are not for the daemon's stderr.
  PQsetNoticeProcessor(c.get(), [](void*, const char*) {}, nullptr);
  return c;
}

void Pool::release(ConnPtr c) {
  std::lock_guard lock(mu_);
  if (PQstatus(c.get()) != CONNECTION_OK || PQtransactionStatus(c.get()) != PQTRANS_IDLE) {
    c.reset();
    --total_;
  } else {
    idle_.push_back(std::move(c));
  }
  cv_.notify_one();
}

Result<Tx> Tx::begin(Conn& c) {
  CORRAL_TRY(c.exec("BEGIN", {}, "begin"));
  return Tx(c);
}

Result<void> Tx::commit() {
  open_ = false;
  CORRAL_TRY(c_.exec("COMMIT", {}, "commit"));
  return ok();
}

void Tx::rollback() {
  if (open_) (void)c_.exec("ROLLBACK", {}, "rollback");
  open_ = false;
}

Result<void> lockKeys(Conn& c, std::vector<int64_t> keys) {
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  for (int64_t k : keys) CORRAL_TRY(c.exec("SELECT pg_advisory_xact_lock(?::bigint)", {k}, "lock"));
  return ok();
}

}  // namespace corral::store::pg
