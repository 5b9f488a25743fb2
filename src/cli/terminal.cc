// RawMode and InputReader (terminal.h). The active raw terminal is also kept
// in process-wide slots so that the atexit and terminate hooks, which see no
// objects, can put it back; a RawMode's own restore() empties the slot first,
// so the settings are restored exactly once.
#include "cli/terminal.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>

namespace corral::cli {
namespace {

std::atomic<bool> gActive{false};
int gFd = -1;
termios gSaved{};
std::terminate_handler gPreviousTerminate = nullptr;

void restoreGlobal() noexcept {
  if (gActive.exchange(false)) ::tcsetattr(gFd, TCSANOW, &gSaved);
}

[[noreturn]] void onTerminate() {
  restoreGlobal();
  if (gPreviousTerminate != nullptr) gPreviousTerminate();
  std::abort();
}

void installHooks() {
  static std::once_flag once;
  std::call_once(once, [] {
    std::atexit([] { restoreGlobal(); });
    gPreviousTerminate = std::set_terminate(onTerminate);
  });
}

}  // namespace

Result<void> RawMode::enter(int fd) {
  if (active_ || ::isatty(fd) != 1) return ok();
  termios current{};
  if (::tcgetattr(fd, &current) != 0)
    return Error{ErrorCode::Unavailable,
                 fmt::format("cannot read the terminal's settings: {}", std::strerror(errno)),
                 "terminal",
                 {}};
  if (gActive.load()) return Error{ErrorCode::Unavailable, "another terminal is already in raw mode", "terminal", {}};
  installHooks();
  gFd = fd;
  gSaved = current;
  // Armed before the change: a crash between the two still restores.
  gActive = true;
  termios raw = current;
  ::cfmakeraw(&raw);
  if (::tcsetattr(fd, TCSADRAIN, &raw) != 0) {
    int err = errno;
    restoreGlobal();
    return Error{ErrorCode::Unavailable,
                 fmt::format("cannot put the terminal in raw mode: {}", std::strerror(err)),
                 "terminal",
                 {}};
  }
  fd_ = fd;
  saved_ = current;
  active_ = true;
  return ok();
}

void RawMode::restore() {
  if (!active_) return;
  active_ = false;
  gActive = false;  // this object restores; the hooks need not
  while (::tcsetattr(fd_, TCSADRAIN, &saved_) != 0 && errno == EINTR) {
  }
}

struct InputReader::State {
  State(boost::asio::io_context &io, int fd, std::function<void(std::string)> onChunk)
      : io_(io), fd_(fd), onChunk_(std::move(onChunk)) {}

  boost::asio::io_context &io_;
  int fd_;
  std::function<void(std::string)> onChunk_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wanted_ = false;    // under mu_: the io side asked for a chunk
  bool stopping_ = false;  // under mu_
  bool stopped_ = false;   // io thread only: drop posted chunks
  int wake_[2] = {-1, -1};
  std::thread thread_;

  // Blocks in poll() on fd and the wake pipe; a read only after poll said
  // fd is readable, so stop() is never stuck behind a read.
  void run() {
    char buf[16384];
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return wanted_ || stopping_; });
        if (stopping_) return;
        wanted_ = false;
      }
      ssize_t n = -1;
      for (;;) {
        pollfd p[2] = {{fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
        int r = ::poll(p, 2, -1);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) break;
        if (p[1].revents != 0) return;
        if (p[0].revents == 0) continue;
        n = ::read(fd_, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        break;
      }
      std::string chunk = n > 0 ? std::string(buf, size_t(n)) : std::string();
      // A weak reference: the reader (and its state) may be gone by then.
      boost::asio::post(io_, [self = self_, chunk = std::move(chunk)] {
        if (auto st = self.lock(); st && !st->stopped_) st->onChunk_(chunk);
      });
      if (n <= 0) return;
    }
  }

  std::weak_ptr<State> self_;
};

InputReader::InputReader(boost::asio::io_context &io, int fd, std::function<void(std::string)> onChunk)
    : st_(std::make_shared<State>(io, fd, std::move(onChunk))) {
  st_->self_ = st_;
  // Without a wake pipe the reader could not be stopped: a process out of
  // descriptors cannot run a console anyway.
  if (::pipe2(st_->wake_, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
}

InputReader::~InputReader() {
  stop();
  if (st_->thread_.joinable()) st_->thread_.join();
  for (int fd : st_->wake_)
    if (fd >= 0) ::close(fd);
}

void InputReader::start() {
  if (!st_->thread_.joinable()) st_->thread_ = std::thread([st = st_.get()] { st->run(); });
  next();
}

void InputReader::next() {
  {
    std::lock_guard lock(st_->mu_);
    st_->wanted_ = true;
  }
  st_->cv_.notify_one();
}

void InputReader::stop() {
  st_->stopped_ = true;
  {
    std::lock_guard lock(st_->mu_);
    if (st_->stopping_) return;
    st_->stopping_ = true;
  }
  st_->cv_.notify_one();
  char c = 'x';
  while (::write(st_->wake_[1], &c, 1) < 0 && errno == EINTR) {
  }
}

}  // namespace corral::cli
