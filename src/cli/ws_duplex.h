// A two-way WebSocket client of corrald on a caller's io_context: the one
// place where the CLI connects (the unix socket, or TLS verified like
// HttpClient: a pinned fingerprint or the system's CAs), upgrades (User-Agent,
// and the Bearer token on TLS) and then exchanges frames. followWebSocket
// (`corral events`) and `corral console` both sit on it.
//
// After the upgrade a read loop hands every message to onMessage; send()
// queues binary frames and writes one at a time; close() sends a close frame
// after what is queued. onEnd runs exactly once, however the session ends.
// Beast and OpenSSL stay in ws_duplex.cc.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "cli/http_client.h"
#include "util/result.h"

namespace boost::asio {
class io_context;
}

namespace corral::cli {

// How an open session ended without a transport error.
struct WsEnded {
  enum class By {
    Server,  // a close frame from the daemon
    Client,  // close() or abort() here
  };
  By by = By::Server;
  std::string reason;  // the close frame's reason (By::Server); may be empty
};

struct WsHandlers {
  // The upgrade succeeded; frames flow from now on. May be empty.
  std::function<void()> onOpen;
  // One message, text or binary. Runs on the io_context's thread.
  std::function<void(std::string data, bool binary)> onMessage;
  // Exactly once. Errors: Unavailable with field "connect" or "tls" (nothing
  // was opened), "upgrade" when the daemon refused the upgrade (message = its
  // API error line, value = the HTTP status), "exchange" when an open session
  // broke without a close frame; a connect timeout names the stage it stopped
  // in.
  std::function<void(Result<WsEnded>)> onEnd;
};

struct WsOptions {
  // Connecting, TLS and the upgrade together must finish within this.
  std::chrono::seconds connectTimeout{30};
  // Zero: an open session may stay silent forever. Otherwise the client pings
  // after half of it without a frame from the daemon and gives up (an
  // "exchange" error) when the whole of it passes: a remote that vanished
  // without a reset is noticed.
  std::chrono::seconds idleTimeout{0};
  // How long close() waits for the daemon's close frame before dropping the
  // connection.
  std::chrono::seconds closeTimeout{5};
};

// Every member runs on the io_context's thread (one thread runs it). The
// session keeps itself alive while anything is under way; the caller's
// shared_ptr may go at any time (the session then goes on until it ends).
class WsDuplex {
 public:
  // Starts connecting to `path` (already encoded, query included) at once.
  static std::shared_ptr<WsDuplex> start(boost::asio::io_context &io, const Target &target, std::string path,
                                         WsHandlers handlers, WsOptions options = {});
  virtual ~WsDuplex() = default;

  // Queues one binary frame; `sent` runs once it was written (not when the
  // session ended first). Ignored once close() was called or the session
  // ended. Before onOpen, frames wait for the upgrade.
  virtual void send(std::string data, std::function<void()> sent = {}) = 0;
  // Sends a close frame with `reason` after every queued frame, waits for the
  // daemon's answer (closeTimeout at most) and ends with WsEnded::By::Client.
  // Before the upgrade it is abort().
  virtual void close(std::string reason) = 0;
  // Drops the connection now, no close frame; ends with WsEnded::By::Client.
  virtual void abort() = 0;
  // Flow control: no message is read (and none delivered) while paused, so a
  // slow consumer slows the daemon down instead of filling memory here.
  virtual void pauseReading() = 0;
  virtual void resumeReading() = 0;
  virtual bool isOpen() const = 0;
};

// "?token=<t>" with t percent-encoded: what a console WebSocket path takes.
std::string tokenQuery(std::string_view token);

}  // namespace corral::cli
