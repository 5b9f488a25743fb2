// corral's logs: one spdlog default logger whose lines are text, key=value or
// JSON (chosen by config), each carrying the request id of the action it serves.
//
// The request id is per thread: the API transport sets it around a handler
// (RequestScope), operations carry it to their worker thread, and whatever runs
// on that thread (core, store, a QMP command) logs under it without passing it
// along. So one id follows "start VM v1" from the HTTP line through the
// operation to the QMP `cont`.
//
// The newest warnings and errors are also kept in memory (recentProblems) for
// the Guru Meditation Report's "last errors" section.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"

namespace corral::util::log {

enum class Format { Text, KeyValue, Json };

// "text" | "keyvalue" | "json"; InvalidInput naming field otherwise.
Result<Format> parseFormat(std::string_view s, std::string_view field = "log_format");

struct Options {
  Format format = Format::Text;
  std::string level = "info";  // trace, debug, info, warn, error
  size_t recentProblems = 50;  // warnings and errors kept for reports
};

// Replaces the default logger's formatter and adds the in-memory sink of
// recent problems. Call once at start, before other threads log.
void setup(const Options& opts);

// The newest warning and error lines (oldest first), formatted as the log is;
// empty before setup().
std::vector<std::string> recentProblems();

// The request id the calling thread serves, "" outside any; and what that
// request is ("POST /api/v1/vms"), for the context of a report.
std::string_view requestId();
std::string_view requestWhat();

// Sets the calling thread's request id (and what it is) for its lifetime;
// restores the previous ones after (scopes nest).
class RequestScope {
 public:
  explicit RequestScope(std::string id, std::string what = {});
  ~RequestScope();
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

 private:
  std::string previousId_;
  std::string previousWhat_;
};

}  // namespace corral::util::log
