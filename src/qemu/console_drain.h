// ConsoleDrain: connects to a guest's serial console (QEMU's unix-socket chardev,
// server side) and copies every byte it sends into a RotatingLog, asynchronously
// on the io_context, so that a chatty guest never blocks on a full socket buffer
// and the daemon's memory stays bounded: one fixed-size read buffer, no queue.
//
// It also carries keystrokes the other way (write()): queued, bounded to
// kMaxPendingInputBytes, written in order on the drain's strand. A guest that
// never reads its serial input makes write() refuse bytes; it never makes the
// daemon grow or block.
//
// Interactive consoles (web terminal, `corral console`) are core/'s and api/'s
// business: they hear the bytes through the optional tap, and quiet() gives them
// an instant at which "the log so far" and "what the tap will hear next" meet
// exactly (history + live, every byte once). Reconnecting after QEMU closes the
// socket is not done: the console lives exactly as long as the QEMU process.
#pragma once

#include <atomic>
#include <deque>
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
  // block; the view is valid only during the call. It runs under the mutex that quiet() holds, so it
  // must not call back into the drain (quiet(), write(), close(), setTap()...).
  using Tap = std::function<void(std::string_view)>;

  static constexpr size_t kReadBufferBytes = 16 * 1024;
  // Most keystroke bytes queued for the guest and not yet taken by the socket.
  static constexpr size_t kMaxPendingInputBytes = 64 * 1024;

  // Connects (blocking, from any thread but the io thread is fine too) to
  // `socketPath` and starts draining into `log` on `io`. Unavailable when the
  // socket cannot be connected.
  static Result<std::shared_ptr<ConsoleDrain>> start(boost::asio::io_context& io, const std::string& socketPath,
                                                     std::shared_ptr<util::RotatingLog> log);

  ~ConsoleDrain();
  ConsoleDrain(const ConsoleDrain&) = delete;
  ConsoleDrain& operator=(const ConsoleDrain&) = delete;

  // Replaces the tap (nullptr: none). Thread-safe. A chunk being handed to the old
  // tap on the io thread may still reach it after setTap() returns.
  void setTap(Tap tap);

  // Queues `bytes` (keystrokes) for the guest; they are written in order, one
  // write at a time, on the drain's strand. False, and the bytes are dropped
  // whole, when the drain is finished or closing, or when more than
  // kMaxPendingInputBytes would then be waiting (the guest is not reading).
  // True for empty bytes on a live drain. A write error ends the drain like a
  // read error does. Thread-safe, never blocks.
  bool write(std::string bytes);

  // Runs fn while no chunk is between "appended to the log" and "handed to the
  // tap": the read handler holds the same mutex across both. So fn can read the
  // log's tail (and bytesDrained()) and register a viewer with whatever the tap
  // fans out to, and that viewer sees every byte exactly once: in the tail or
  // live. fn must be short, must not block and must not call back into the drain
  // (it may call log() and bytesDrained(), which take no drain lock). Do not call
  // quiet() while holding a lock that the tap takes (the tap runs under this
  // mutex: lock order is drain, then the tap's). Thread-safe; fn runs on the
  // calling thread.
  void quiet(const std::function<void()>& fn);

  // Closes the socket; no byte reaches the log or the tap after close() returns
  // (from a thread that is not running the io_context, close() waits up to 2 s
  // for the io side to run the close; when the io_context is not running, the
  // close happens whenever it runs again and no byte is logged meanwhile).
  // Idempotent, thread-safe, never throws.
  void close() noexcept;

  // True once the peer closed the connection, a read or write failed or close() ran.
  bool finished() const { return finished_.load(); }

  // Bytes drained so far (for tests and reports). Inside quiet(), exactly the
  // bytes that are in the log (before rotation) and that the tap has heard.
  uint64_t bytesDrained() const { return bytes_.load(); }

  // Keystroke bytes queued for the guest and not yet written (for tests).
  size_t pendingInputBytes() const;

  const std::shared_ptr<util::RotatingLog>& log() const { return log_; }

 private:
  ConsoleDrain(boost::asio::io_context& io, std::shared_ptr<util::RotatingLog> log);
  void readMore();
  void writeMore();
  void closeOnIoThread() noexcept;

  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::local::stream_protocol::socket socket_;  // touched only on strand_ after start()
  std::shared_ptr<util::RotatingLog> log_;
  std::unique_ptr<char[]> buffer_;
  // Held by the read handler across log append + tap call, and by quiet().
  // Taken before tapMu_ when both are.
  std::mutex streamMu_;
  std::mutex tapMu_;
  Tap tap_;  // guarded by tapMu_
  mutable std::mutex inMu_;
  std::deque<std::string> pending_;  // guarded by inMu_; front is being written while writing_
  size_t pendingBytes_ = 0;          // guarded by inMu_; sum of pending_ sizes
  bool writing_ = false;             // guarded by inMu_; a writeMore() is posted or an async_write runs
  std::atomic<bool> finished_{false};
  std::atomic<bool> closeRequested_{false};
  std::atomic<uint64_t> bytes_{0};
};

}  // namespace corral::qemu
