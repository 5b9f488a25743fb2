// Serial console drain into a bounded log; see console_drain.h.
#include "qemu/console_drain.h"

#include <chrono>
#include <future>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <spdlog/spdlog.h>

namespace corral::qemu {

namespace asio = boost::asio;
using stream = asio::local::stream_protocol;

ConsoleDrain::ConsoleDrain(asio::io_context& io, std::shared_ptr<util::RotatingLog> log)
    : strand_(asio::make_strand(io)), socket_(strand_), log_(std::move(log)), buffer_(new char[kReadBufferBytes]) {}

ConsoleDrain::~ConsoleDrain() {
  boost::system::error_code ec;
  socket_.close(ec);
}

Result<std::shared_ptr<ConsoleDrain>> ConsoleDrain::start(asio::io_context& io, const std::string& socketPath,
                                                          std::shared_ptr<util::RotatingLog> log) {
  std::shared_ptr<ConsoleDrain> d(new ConsoleDrain(io, std::move(log)));
  boost::system::error_code ec;
  // Connected before any async operation exists, so no other thread touches it yet.
  d->socket_.connect(stream::endpoint(socketPath), ec);
  if (ec) return Error::unavailable(fmt::format("serial console {}: {}", socketPath, ec.message()));
  asio::post(d->strand_, [d] { d->readMore(); });
  return d;
}

void ConsoleDrain::setTap(Tap tap) {
  std::lock_guard lock(tapMu_);
  tap_ = std::move(tap);
}

void ConsoleDrain::readMore() {
  if (closeRequested_.load()) {
    closeOnIoThread();
    return;
  }
  socket_.async_read_some(
      asio::buffer(buffer_.get(), kReadBufferBytes),
      asio::bind_executor(strand_, [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
        if (n > 0 && !self->closeRequested_.load()) {
          // One critical section from "in the log" to "heard by the tap": see quiet().
          std::lock_guard streamLock(self->streamMu_);
          std::string_view chunk(self->buffer_.get(), n);
          auto r = self->log_->append(chunk);
          if (!r.ok()) spdlog::warn("console log {}: {}", self->log_->path(), r.error().describe());
          self->bytes_ += n;
          Tap tap;
          {
            std::lock_guard lock(self->tapMu_);
            tap = self->tap_;
          }
          if (tap) tap(chunk);
        }
        if (ec) {
          // EOF: QEMU closed the chardev (it exited). operation_aborted: close().
          self->closeOnIoThread();
          return;
        }
        self->readMore();
      }));
}

void ConsoleDrain::quiet(const std::function<void()>& fn) {
  std::lock_guard streamLock(streamMu_);
  fn();
}

bool ConsoleDrain::write(std::string bytes) {
  std::lock_guard lock(inMu_);
  if (closeRequested_.load() || finished_.load()) return false;
  if (bytes.empty()) return true;
  // pendingBytes_ never passes the cap, so this does not wrap.
  if (bytes.size() > kMaxPendingInputBytes - pendingBytes_) return false;
  if (!writing_) {
    // Posted (never run inline), so holding inMu_ here is fine. If the post
    // throws (out of memory), nothing was queued.
    asio::post(strand_, [self = shared_from_this()] { self->writeMore(); });
    writing_ = true;
  }
  pendingBytes_ += bytes.size();
  pending_.push_back(std::move(bytes));
  return true;
}

size_t ConsoleDrain::pendingInputBytes() const {
  std::lock_guard lock(inMu_);
  return pendingBytes_;
}

// On the strand, with writing_ set: writes pending_.front(), then the next one,
// until the queue is empty (writing_ cleared) or the drain ends (queue dropped).
void ConsoleDrain::writeMore() {
  std::unique_lock queueLock(inMu_);
  if (closeRequested_.load() || pending_.empty()) {
    // Closed between write() and here (or nothing left): drop what waits. An
    // async_write is never running at this point: only this function starts one.
    pending_.clear();
    pendingBytes_ = 0;
    writing_ = false;
    return;
  }
  // Only this strand pops; write() pushes at the back, which keeps references to
  // the front valid, so the buffer stays put until the handler pops it.
  const std::string& front = pending_.front();
  queueLock.unlock();
  asio::async_write(
      socket_, asio::buffer(front),
      asio::bind_executor(strand_, [self = shared_from_this()](const boost::system::error_code& ec, size_t) {
        if (ec) {
          // EPIPE/ECONNRESET: QEMU is gone or shut its input. operation_aborted: close().
          self->closeOnIoThread();
          std::lock_guard lock(self->inMu_);
          self->pending_.clear();
          self->pendingBytes_ = 0;
          self->writing_ = false;
          return;
        }
        {
          std::lock_guard lock(self->inMu_);
          self->pendingBytes_ -= self->pending_.front().size();
          self->pending_.pop_front();
          if (self->pending_.empty()) {
            self->writing_ = false;
            return;
          }
        }
        self->writeMore();
      }));
}

void ConsoleDrain::closeOnIoThread() noexcept {
  closeRequested_ = true;
  boost::system::error_code ec;
  socket_.close(ec);
  finished_ = true;
}

void ConsoleDrain::close() noexcept {
  if (finished_.load()) return;
  closeRequested_ = true;
  try {
    if (strand_.running_in_this_thread()) {
      closeOnIoThread();
      return;
    }
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    asio::post(strand_, [self = shared_from_this(), done] {
      self->closeOnIoThread();
      done->set_value();
    });
    // If the io_context is not running the posted close runs whenever it does;
    // the read handler then sees closeRequested_ and drops its bytes.
    fut.wait_for(std::chrono::seconds(2));
  } catch (...) {
    // shared_from_this() throws only when nobody owns us (from the destructor); nothing to do.
  }
}

}  // namespace corral::qemu
