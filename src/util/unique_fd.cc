#include "util/unique_fd.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

namespace corral::util {

void UniqueFd::reset(int fd) noexcept {
  int old = std::exchange(fd_, fd);
  if (old >= 0 && old != fd) ::close(old);
}

Result<PipeFds> makePipe(int flags) {
  int fds[2];
  if (::pipe2(fds, flags) != 0) return errorf(ErrorCode::Internal, "pipe: {}", ::strerror(errno));
  return PipeFds{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace corral::util
