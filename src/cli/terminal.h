// What `corral console` needs from the terminal it runs in: raw mode that is
// always undone, and a reader of stdin that leaves stdin's flags alone.
//
// RawMode saves a terminal's settings, applies cfmakeraw (no echo, no line
// editing, no signals from keys: Ctrl-C and Ctrl-Z go to the guest) and
// restores the saved settings exactly: from its destructor, from restore(),
// and from process-wide hooks (std::atexit, std::set_terminate) for the paths
// that skip destructors. Signals are the caller's to catch (console.cc does,
// with an asio signal_set, and restores before it exits). One terminal is in
// raw mode at a time.
//
// InputReader reads a descriptor on a thread of its own with plain blocking
// reads: an asio descriptor would set O_NONBLOCK on it, and a terminal's flags
// are shared with the shell that started us (a crash would leave the shell a
// non-blocking terminal). It reads one chunk, hands it to the io_context and
// waits for next() before reading again, so a fast stdin (a pipe, a file)
// cannot outrun the connection.
#pragma once

#include <termios.h>

#include <functional>
#include <memory>
#include <string>

#include "util/result.h"

namespace boost::asio {
class io_context;
}

namespace corral::cli {

class RawMode {
 public:
  RawMode() = default;
  ~RawMode() { restore(); }
  RawMode(const RawMode &) = delete;
  RawMode &operator=(const RawMode &) = delete;

  // Raw mode on fd when it is a terminal; a no-op (active() stays false) when
  // it is not. Errors: Unavailable when the terminal refused the settings, or
  // when another RawMode is active.
  Result<void> enter(int fd);
  // Puts the saved settings back; idempotent. Safe from any path.
  void restore();
  bool active() const { return active_; }

 private:
  bool active_ = false;
  int fd_ = -1;
  termios saved_{};
};

class InputReader {
 public:
  // onChunk runs on io's thread with each chunk read; an empty chunk means end
  // of input (EOF, a hangup or a read error) and is the last call.
  InputReader(boost::asio::io_context &io, int fd, std::function<void(std::string)> onChunk);
  // Stops the thread and waits for it; no onChunk runs afterwards.
  ~InputReader();
  InputReader(const InputReader &) = delete;
  InputReader &operator=(const InputReader &) = delete;

  // Reads the first chunk. Call once, from io's thread.
  void start();
  // Reads the next chunk: call after handling the last one.
  void next();
  // No more reads and no more onChunk calls (one already posted is dropped).
  void stop();

 private:
  struct State;
  std::shared_ptr<State> st_;
};

}  // namespace corral::cli
