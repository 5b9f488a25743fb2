// Bounded, rotated log file; see rotating_log.h.
#include "util/rotating_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace corral::util {
namespace {

Error sysError(std::string_view what, const std::string& path, int err) {
  return Error::internal(fmt::format("{} {}: {}", what, path, std::strerror(err)));
}

// Reads at most `maxBytes` from the end of `path` into the front of `out`'s tail.
std::string readFileTail(const std::string& path, size_t maxBytes) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && st.st_size > 0 && maxBytes > 0) {
    size_t size = static_cast<size_t>(st.st_size);
    size_t want = std::min(size, maxBytes);
    out.resize(want);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd, out.data() + got, want - got, static_cast<off_t>(size - want + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    out.resize(got);
  }
  ::close(fd);
  return out;
}

}  // namespace

RotatingLog::RotatingLog(std::string path, size_t maxBytes, int fd, size_t size)
    : path_(std::move(path)), maxBytes_(maxBytes), fd_(fd), size_(size) {}

RotatingLog::~RotatingLog() {
  if (fd_ >= 0) ::close(fd_);
}

Result<std::unique_ptr<RotatingLog>> RotatingLog::open(std::string path, size_t maxBytes) {
  if (maxBytes == 0) return Error::invalidInput("maxBytes", "0", "must be positive");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return sysError("open", path, errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return sysError("stat", path, err);
  }
  auto log = std::unique_ptr<RotatingLog>(
      new RotatingLog(std::move(path), maxBytes, fd, static_cast<size_t>(st.st_size)));
  // A file left larger than the bound (by an older writer with a bigger max)
  // is rotated now so the bound holds from the start.
  if (log->size_ >= maxBytes) {
    std::lock_guard lock(log->mu_);
    CORRAL_TRY(log->rotateLocked());
  }
  return log;
}

Result<void> RotatingLog::rotateLocked() {
  std::string old = path_ + ".1";
  // rename() replaces NAME.1 atomically; the data in the open fd moves with it.
  if (::rename(path_.c_str(), old.c_str()) != 0 && errno != ENOENT) {
    return sysError("rename", path_, errno);
  }
  int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return sysError("open", path_, errno);
  ::close(fd_);
  fd_ = fd;
  size_ = 0;
  return ok();
}

Result<void> RotatingLog::append(std::string_view data) {
  std::lock_guard lock(mu_);
  while (!data.empty()) {
    if (size_ >= maxBytes_) CORRAL_TRY(rotateLocked());
    // Never let one file pass maxBytes: split the write at the boundary.
    size_t room = maxBytes_ - size_;
    size_t chunk = std::min(room, data.size());
    ssize_t n = ::write(fd_, data.data(), chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return sysError("write", path_, errno);
    }
    size_ += static_cast<size_t>(n);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return ok();
}

std::string RotatingLog::readTail(size_t maxBytes) const {
  std::lock_guard lock(mu_);
  return readTail(path_, maxBytes);
}

std::string RotatingLog::readTail(const std::string& path, size_t maxBytes) {
  std::string current = readFileTail(path, maxBytes);
  if (current.size() >= maxBytes) return current;
  std::string older = readFileTail(path + ".1", maxBytes - current.size());
  return older + current;
}

}  // namespace corral::util
