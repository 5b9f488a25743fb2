// followWebSocket (ws_client.h). One io_context runs the connect, the upgrade,
// the read loop, a connect timer and the signal set; whichever ends the stream
// cancels the rest so that run() returns.
#include "cli/ws_client.h"

#include <csignal>
#include <memory>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <fmt/format.h>

#include "cli/output.h"
#include "cli/tls_setup.h"

namespace corral::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace ssl = asio::ssl;
using Local = asio::local::stream_protocol;
using Tcp = asio::ip::tcp;

struct Follow {
  const char *stage = "connect";
  bool ended = false;
  bool interrupted = false;
  bool timedOut = false;
  beast::error_code ec;
  std::optional<Error> failure;
  websocket::response_type upgrade;
  beast::flat_buffer buffer;
};

template <class Ws>
void upgradeAndRead(Ws &ws, Follow &st, const Target &target,
                    const std::string &path,
                    const std::function<void(const std::string &)> &onMessage,
                    std::function<void()> &end) {
  st.stage = "upgrade";
  ws.set_option(
      websocket::stream_base::timeout::suggested(beast::role_type::client));
  std::string token = target.isUnix() ? std::string() : target.token;
  ws.set_option(
      websocket::stream_base::decorator([token](websocket::request_type &req) {
        req.set(http::field::user_agent, "corral-cli");
        if (!token.empty())
          req.set(http::field::authorization, "Bearer " + token);
      }));
  std::string host =
      target.isUnix() ? std::string("corrald") : target.hostHeader;
  ws.async_handshake(
      st.upgrade, host, path,
      [&ws, &st, &onMessage, &end](beast::error_code ec) {
        if (ec) {
          if (st.upgrade.result_int() != 0 && st.upgrade.result_int() != 101) {
            int status = static_cast<int>(st.upgrade.result_int());
            st.failure = Error{ErrorCode::Unavailable,
                               apiErrorMessage(status, st.upgrade.body()),
                               "upgrade", std::to_string(status)};
          } else {
            st.ec = ec;
          }
          return end();
        }
        st.stage = "exchange";
        auto readNext = std::make_shared<std::function<void()>>();
        *readNext = [&ws, &st, &onMessage, &end, readNext] {
          ws.async_read(st.buffer, [&ws, &st, &onMessage, &end,
                                    readNext](beast::error_code rec, size_t) {
            if (rec) {
              if (rec != websocket::error::closed && !st.interrupted)
                st.ec = rec;
              *readNext = nullptr; // break the self-reference
              return end();
            }
            if (ws.got_text())
              onMessage(beast::buffers_to_string(st.buffer.data()));
            st.buffer.consume(st.buffer.size());
            (*readNext)();
          });
        };
        (*readNext)();
      });
}

} // namespace

Result<WsEnd>
followWebSocket(const Target &target, const std::string &path,
                const std::function<void(const std::string &)> &onMessage,
                std::chrono::seconds connectTimeout) {
  asio::io_context io;
  Follow st;
  asio::signal_set signals(io, SIGINT, SIGTERM);
  asio::steady_timer timer(io, connectTimeout);
  std::function<void()> closeSocket; // set below, per transport
  std::function<void()> end = [&] {
    if (st.ended)
      return;
    st.ended = true;
    signals.cancel();
    timer.cancel();
  };
  signals.async_wait([&](beast::error_code ec, int) {
    if (ec)
      return; // cancelled: the stream ended first
    st.interrupted = true;
    if (closeSocket)
      closeSocket();
    end();
  });
  timer.async_wait([&](beast::error_code ec) {
    if (ec || std::string_view(st.stage) == "exchange")
      return;
    st.timedOut = true;
    if (closeSocket)
      closeSocket();
  });

  std::unique_ptr<ssl::context> ctx;
  std::unique_ptr<websocket::stream<Local::socket>> unixWs;
  std::unique_ptr<websocket::stream<ssl::stream<Tcp::socket>>> tlsWs;
  Tcp::resolver resolver(io);
  const bool pinned = !target.fingerprint.empty();

  if (target.isUnix()) {
    unixWs = std::make_unique<websocket::stream<Local::socket>>(io);
    closeSocket = [&] {
      beast::error_code ignored;
      unixWs->next_layer().close(ignored);
    };
    unixWs->next_layer().async_connect(
        Local::endpoint(target.socketPath), [&](beast::error_code ec) {
          if (ec) {
            st.ec = ec;
            return end();
          }
          upgradeAndRead(*unixWs, st, target, path, onMessage, end);
        });
  } else {
    ctx = tls::makeContext(!pinned);
    tlsWs =
        std::make_unique<websocket::stream<ssl::stream<Tcp::socket>>>(io, *ctx);
    auto &tlsStream = tlsWs->next_layer();
    if (auto r = tls::configureConnection(tlsStream.native_handle(),
                                          target.host, !pinned);
        !r)
      return r.error();
    closeSocket = [&] {
      beast::error_code ignored;
      tlsStream.next_layer().close(ignored);
    };
    resolver.async_resolve(
        target.host, std::to_string(target.port),
        [&](beast::error_code ec, Tcp::resolver::results_type results) {
          if (ec) {
            st.ec = ec;
            return end();
          }
          asio::async_connect(
              tlsStream.next_layer(), results,
              [&](beast::error_code cec, const Tcp::endpoint &) {
                if (cec) {
                  st.ec = cec;
                  return end();
                }
                st.stage = "tls";
                tlsStream.async_handshake(
                    ssl::stream_base::client, [&](beast::error_code hec) {
                      if (hec) {
                        st.failure =
                            Error{ErrorCode::Unavailable,
                                  tls::handshakeFailure(
                                      tlsStream.native_handle(), hec, !pinned),
                                  "tls",
                                  {}};
                        return end();
                      }
                      if (pinned) {
                        if (auto r = tls::checkPin(tlsStream.native_handle(),
                                                   target.fingerprint);
                            !r) {
                          st.failure = r.error();
                          return end();
                        }
                      }
                      upgradeAndRead(*tlsWs, st, target, path, onMessage, end);
                    });
              });
        });
  }
  io.run();

  if (st.interrupted)
    return WsEnd::Interrupted;
  if (st.failure)
    return *st.failure;
  if (st.timedOut)
    return Error{ErrorCode::Unavailable,
                 fmt::format("no answer within {} s", connectTimeout.count()),
                 st.stage,
                 {}};
  if (st.ec) {
    // "upgrade" failures without a status are transport failures before the
    // stream existed.
    std::string stage =
        std::string_view(st.stage) == "upgrade" ? "connect" : st.stage;
    return Error{ErrorCode::Unavailable, st.ec.message(), stage, {}};
  }
  return WsEnd::ServerClosed;
}

} // namespace corral::cli
