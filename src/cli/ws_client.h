// Follows one of the daemon's WebSockets (`corral events`): connects over the
// unix socket or TLS (verified like HttpClient), sends the Bearer token in the
// upgrade request, and hands each text message to a callback until the server
// closes, the user interrupts (SIGINT/SIGTERM) or the connection breaks.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "cli/http_client.h"
#include "util/result.h"

namespace corral::cli {

enum class WsEnd {
  ServerClosed, // a close frame from the daemon
  Interrupted,  // SIGINT or SIGTERM
};

// Blocks until the stream ends. Errors: Unavailable with field "connect" or
// "tls" (nothing was followed), "upgrade" when the daemon refused the upgrade
// (message = its API error, value = the HTTP status), "exchange" when an open
// stream broke without a close frame. onMessage runs on the calling thread.
Result<WsEnd>
followWebSocket(const Target &target, const std::string &path,
                const std::function<void(const std::string &)> &onMessage,
                std::chrono::seconds connectTimeout = std::chrono::seconds(30));

} // namespace corral::cli
