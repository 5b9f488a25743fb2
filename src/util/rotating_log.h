// A bounded log file: bytes are appended to NAME; when NAME would pass maxBytes
// it is renamed to NAME.1 (replacing the previous NAME.1) and NAME starts anew.
// Each file stays ≤ maxBytes, so the log never takes more than 2×maxBytes on disk.
//
// Used for guest serial consoles, which a guest may flood forever. What writes
// into it (and how fast) is the caller's business; this class only bounds disk.
// Not a logging framework: no levels, no timestamps, bytes in = bytes out.
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::util {

class RotatingLog {
 public:
  // Opens (creating 0600, appending to what is there) `path`. maxBytes > 0.
  static Result<std::unique_ptr<RotatingLog>> open(std::string path, size_t maxBytes);
  ~RotatingLog();
  RotatingLog(const RotatingLog&) = delete;
  RotatingLog& operator=(const RotatingLog&) = delete;

  // Appends all of `data`, rotating as often as needed. Thread-safe.
  Result<void> append(std::string_view data);

  // The last ≤ maxBytes bytes of NAME.1 followed by NAME. Thread-safe.
  std::string readTail(size_t maxBytes) const;

  // Same, for a log nobody holds open (e.g. after the writer is gone).
  static std::string readTail(const std::string& path, size_t maxBytes);

  const std::string& path() const { return path_; }
  size_t maxBytes() const { return maxBytes_; }

 private:
  RotatingLog(std::string path, size_t maxBytes, int fd, size_t size);
  Result<void> rotateLocked();

  const std::string path_;
  const size_t maxBytes_;
  mutable std::mutex mu_;
  int fd_;       // guarded by mu_
  size_t size_;  // bytes in the current file; guarded by mu_
};

}  // namespace corral::util
