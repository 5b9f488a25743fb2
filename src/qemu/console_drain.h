// ConsoleDrain: connects to a guest's serial console (QEMU's unix-socket chardev,
// server side) and copies every byte it sends into a RotatingLog, asynchronously
// on the io_context, so that a chatty guest never blocks on a full socket buffer
// and the daemon's memory stays bounded: one fixed-size read buffer, no queue.
//
// Interactive consoles (web terminal, `corral console`) are api/'s business: they
// hear the bytes through the optional tap. Reconnecting after QEMU closes the
// socket is not done: the console lives exactly as long as the QEMU process.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>

#include "util/result.h"
#include "util/rotating_log.h"

namespace corral::qemu {

class ConsoleDrain : public std::enable_shared_from_this<ConsoleDrain> {
 public:
  // Called on an io thread (the drain's strand) with each chunk read, after it is in the log. Must not
  // block; the view is valid only during the call.
  using Tap = std::function<void(std::string_view)>;

  static constexpr size_t kReadBufferBytes = 16 * 1024;

  // Connects (blocking, from any thread but the io thread is fine too) to
  // `socketPath` and starts draining into `log` on `io`. Unavailable when the
  // socket cannot be connected.
  static Result<std::shared_ptr<ConsoleDrain>> start(boost::asio::io_context& io, const std::string& socketPath,
                                                     std::shared_ptr<util::RotatingLog> log);

  ~ConsoleDrain();
  ConsoleDrain(const ConsoleDrain&) = delete;
  ConsoleDrain& operator=(const ConsoleDrain&) = delete;

  // Replaces the tap (nullptr: none). Thread-safe.
  void setTap(Tap tap);

  // Closes the socket; no byte reaches the log or the tap after close() returns
  // (from a thread that is not running the io_context, close() waits up to 2 s
  // for the io side to run the close; when the io_context is not running, the
  // close happens whenever it runs again and no byte is logged meanwhile).
  // Idempotent, thread-safe, never throws.
  void close() noexcept;

  // True once the peer closed the connection, a read failed or close() ran.
  bool finished() const { return finished_.load(); }

  // Bytes drained so far (for tests and reports).
  uint64_t bytesDrained() const { return bytes_.load(); }

  const std::shared_ptr<util::RotatingLog>& log() const { return log_; }

 private:
  ConsoleDrain(boost::asio::io_context& io, std::shared_ptr<util::RotatingLog> log);
  void readMore();
  void closeOnIoThread() noexcept;

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::local::stream_protocol::socket socket_;  // touched only on strand_ after start()
  std::shared_ptr<util::RotatingLog> log_;
  std::unique_ptr<char[]> buffer_;
  std::mutex tapMu_;
  Tap tap_;
  std::atomic<bool> finished_{false};
  std::atomic<bool> closeRequested_{false};
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace corral::qemu
