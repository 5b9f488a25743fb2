// The WebSocket as handlers see it: a message pipe with no Beast in sight. The
// transport (http_server.cc) does the upgrade, the framing, ping/pong and the
// per-connection send queue; a route only sends, receives and closes.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "util/result.h"

namespace corral::api {

struct Request;

class WebSocket {
 public:
  virtual ~WebSocket() = default;
  // Queues one message; any thread. A peer that stops reading lets the queue
  // grow to the transport's limit, and then the connection is closed instead
  // (never waited for): false when the message was not queued for that reason
  // or because the socket is closed.
  virtual bool send(std::string data, bool binary = false) = 0;
  // Sends a close frame with reason (when open) and ends the connection; any thread.
  virtual void close(std::string reason = {}) = 0;
  virtual bool closed() const = 0;
  // Set both before returning from the WsAccept call; they run on the transport's
  // threads, one at a time per socket, and must not block.
  virtual void onMessage(std::function<void(std::string data, bool binary)> cb) = 0;
  virtual void onClose(std::function<void()> cb) = 0;  // exactly once, however it ends
};

// Called with the socket once the upgrade has been accepted.
using WsAccept = std::function<void(std::shared_ptr<WebSocket>)>;
// A WebSocket route: runs on a handler thread after authentication, before the
// upgrade is answered. An Error answers the upgrade request with that error
// (e.g. 404 for a VM the caller may not see); a WsAccept accepts it.
using WsHandler = std::function<Result<WsAccept>(const Request&)>;

}  // namespace corral::api
