// followWebSocket (ws_client.h): a WsDuplex session (which owns connecting,
// TLS and the upgrade) on an io_context of its own, with a signal set beside
// it; text messages go to the callback, binary ones are not for this reader.
#include "cli/ws_client.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <csignal>
#include <optional>

#include "cli/ws_duplex.h"

namespace corral::cli {

Result<WsEnd> followWebSocket(const Target &target, const std::string &path,
                              const std::function<void(const std::string &)> &onMessage,
                              std::chrono::seconds connectTimeout) {
  boost::asio::io_context io;
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  bool interrupted = false;
  std::optional<Result<WsEnded>> outcome;

  WsHandlers handlers;
  handlers.onMessage = [&onMessage](std::string data, bool binary) {
    if (!binary) onMessage(data);
  };
  handlers.onEnd = [&](Result<WsEnded> r) {
    outcome = std::move(r);
    signals.cancel();
  };
  WsOptions options;
  options.connectTimeout = connectTimeout;
  auto ws = WsDuplex::start(io, target, path, std::move(handlers), options);
  signals.async_wait([&](const boost::system::error_code &ec, int) {
    if (ec) return;  // cancelled: the stream ended first
    interrupted = true;
    ws->abort();
  });
  io.run();

  if (interrupted) return WsEnd::Interrupted;
  if (outcome && !outcome->ok()) return std::move(*outcome).error();
  return WsEnd::ServerClosed;
}

}  // namespace corral::cli
