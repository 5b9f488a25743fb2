// UniqueFd: a move-only owner of one file descriptor, closed when it goes away.
//
// It is deliberately small: it closes and hands out the number, nothing more.
// Opening, polling and reading stay with the callers (util::Command, the QMP
// transport, tap devices...). makePipe() is here because every user of a pipe
// wants both ends owned from the first instant.
#pragma once

#include <fcntl.h>

#include <utility>

#include "util/result.h"

namespace corral::util {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  // Takes ownership of fd (which may be -1 for "none").
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

  // Gives up ownership without closing; the caller now owns the number.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  // Closes the held descriptor (if any) and takes fd. close() errors are
  // ignored: on Linux the descriptor is gone whatever close() returns, and
  // retrying on EINTR could close a number another thread just opened.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

struct PipeFds {
  UniqueFd read;
  UniqueFd write;
};

// pipe2(flags); O_CLOEXEC by default so that no other thread's child inherits it.
Result<PipeFds> makePipe(int flags = O_CLOEXEC);

}  // namespace corral::util
