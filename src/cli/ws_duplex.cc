// WsDuplex (ws_duplex.h): one Session per connection, a template over the two
// transports (the unix socket; TLS over TCP). Only connecting differs; the
// upgrade, the read loop, the send queue and the ending are shared. Every
// asynchronous step holds the session alive; finish() runs once and hands the
// outcome to onEnd.
#include "cli/ws_duplex.h"

#include <fmt/format.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <cctype>
#include <deque>
#include <memory>
#include <type_traits>
#include <utility>

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
using UnixWs = websocket::stream<Local::socket>;
using TlsWs = websocket::stream<ssl::stream<Tcp::socket>>;

template <class Ws>
class Session final : public WsDuplex, public std::enable_shared_from_this<Session<Ws>> {
  static constexpr bool kTls = std::is_same_v<Ws, TlsWs>;

 public:
  Session(asio::io_context &io, Target target, std::string path, WsHandlers handlers, WsOptions options)
      : io_(io),
        target_(std::move(target)),
        path_(std::move(path)),
        h_(std::move(handlers)),
        opt_(options),
        ctx_(kTls ? tls::makeContext(target_.fingerprint.empty()) : nullptr),
        ws_(makeStream(io, ctx_.get())),
        resolver_(io),
        timer_(io) {}

  void begin() {
    auto self = this->shared_from_this();
    timer_.expires_after(opt_.connectTimeout);
    timer_.async_wait([self](beast::error_code ec) {
      if (ec || self->open_ || self->ended_) return;
      self->timedOut_ = true;
      self->dropSocket();
    });
    if constexpr (kTls) {
      connectTls();
    } else {
      beast::get_lowest_layer(ws_).async_connect(Local::endpoint(target_.socketPath), [self](beast::error_code ec) {
        if (ec) return self->fail(ec);
        self->upgrade();
      });
    }
  }

  void send(std::string data, std::function<void()> sent) override {
    if (ended_ || closing_) return;
    queue_.emplace_back(std::move(data), std::move(sent));
    if (open_) writeNext();
  }

  void close(std::string reason) override {
    if (ended_ || closing_) return;
    if (!open_) return abort();
    closing_ = true;
    closeReason_ = std::move(reason);
    auto self = this->shared_from_this();
    timer_.expires_after(opt_.closeTimeout);
    timer_.async_wait([self](beast::error_code ec) {
      if (ec || self->ended_) return;
      self->aborted_ = true;  // the daemon did not answer the close in time
      self->dropSocket();
    });
    writeNext();  // the close frame goes after what is queued
  }

  void abort() override {
    if (ended_ || aborted_) return;
    aborted_ = true;
    dropSocket();
    // Nothing may be pending (reading paused, nothing to write): end from
    // here, never from inside the caller's call.
    auto self = this->shared_from_this();
    asio::post(io_, [self] { self->finish(WsEnded{WsEnded::By::Client, {}}); });
  }

  void pauseReading() override { paused_ = true; }
  void resumeReading() override {
    paused_ = false;
    readNext();
  }
  bool isOpen() const override { return open_ && !ended_; }

 private:
  static Ws makeStream(asio::io_context &io, ssl::context *ctx) {
    if constexpr (kTls)
      return Ws(io, *ctx);
    else
      return Ws(io);
  }

  void connectTls() {
    auto self = this->shared_from_this();
    const bool pinned = !target_.fingerprint.empty();
    if (auto r = tls::configureConnection(ws_.next_layer().native_handle(), target_.host, !pinned); !r) {
      asio::post(io_, [self, e = r.error()] { self->finish(e); });
      return;
    }
    resolver_.async_resolve(target_.host, std::to_string(target_.port),
                            [self, pinned](beast::error_code ec, Tcp::resolver::results_type results) {
                              if (ec) return self->fail(ec);
                              asio::async_connect(
                                  beast::get_lowest_layer(self->ws_), results,
                                  [self, pinned](beast::error_code cec, const Tcp::endpoint &) {
                                    if (cec) return self->fail(cec);
                                    self->stage_ = "tls";
                                    self->ws_.next_layer().async_handshake(
                                        ssl::stream_base::client,
                                        [self, pinned](beast::error_code hec) { self->tlsDone(hec, pinned); });
                                  });
                            });
  }

  void tlsDone(beast::error_code ec, bool pinned) {
    if (ended_) return;
    SSL *native = ws_.next_layer().native_handle();
    if (ec) {
      if (aborted_ || timedOut_) return fail(ec);
      return finish(Error{ErrorCode::Unavailable, tls::handshakeFailure(native, ec, !pinned), "tls", {}});
    }
    // Nothing (the token least of all) goes out before the pin matched.
    if (pinned) {
      if (auto r = tls::checkPin(native, target_.fingerprint); !r) return finish(r.error());
    }
    upgrade();
  }

  void upgrade() {
    if (ended_) return;
    if (aborted_)  // the connect completed before abort() closed the socket
      return finish(WsEnded{WsEnded::By::Client, {}});
    stage_ = "upgrade";
    auto timeouts = websocket::stream_base::timeout::suggested(beast::role_type::client);
    if (opt_.idleTimeout.count() > 0) {
      timeouts.idle_timeout = opt_.idleTimeout;
      timeouts.keep_alive_pings = true;
    }
    ws_.set_option(timeouts);
    // Over the unix socket the peer's uid is the authentication; over TLS the
    // Bearer token (a console WebSocket ignores it: its query token decides).
    std::string token = target_.isUnix() ? std::string() : target_.token;
    ws_.set_option(websocket::stream_base::decorator([token](websocket::request_type &req) {
      req.set(http::field::user_agent, "corral-cli");
      if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    }));
    std::string host = target_.isUnix() ? std::string("corrald") : target_.hostHeader;
    auto self = this->shared_from_this();
    ws_.async_handshake(upgrade_, host, path_, [self](beast::error_code ec) { self->upgraded(ec); });
  }

  void upgraded(beast::error_code ec) {
    if (ended_) return disarmStreamTimer();
    if (ec) {
      unsigned status = upgrade_.result_int();
      if (status != 0 && status != 101 && !aborted_)
        return finish(Error{ErrorCode::Unavailable, apiErrorMessage(int(status), upgrade_.body()), "upgrade",
                            std::to_string(status)});
      return fail(ec);
    }
    stage_ = "exchange";
    open_ = true;
    timer_.cancel();
    ws_.binary(true);
    if (h_.onOpen) h_.onOpen();
    readNext();
    writeNext();
  }

  void readNext() {
    if (reading_ || paused_ || ended_ || !open_) return;
    reading_ = true;
    auto self = this->shared_from_this();
    ws_.async_read(buffer_, [self](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (ec) return self->readFailed(ec);
      if (self->ended_) return;
      std::string data = beast::buffers_to_string(self->buffer_.data());
      self->buffer_.consume(self->buffer_.size());
      if (self->h_.onMessage) self->h_.onMessage(std::move(data), !self->ws_.got_text());
      self->readNext();
    });
  }

  void readFailed(beast::error_code ec) {
    if (ended_) return;
    if (aborted_ || closing_) return finish(WsEnded{WsEnded::By::Client, {}});
    if (ec == websocket::error::closed) return finish(WsEnded{WsEnded::By::Server, closeReasonText()});
    fail(ec);
  }

  void writeNext() {
    if (writing_ || ended_ || !open_) return;
    if (queue_.empty()) {
      if (closing_ && !closeSent_) sendClose();
      return;
    }
    writing_ = true;
    auto self = this->shared_from_this();
    ws_.async_write(asio::buffer(queue_.front().first), [self](beast::error_code ec, size_t) {
      self->writing_ = false;
      if (self->ended_) {
        self->queue_.clear();
        return;
      }
      if (ec) return self->writeFailed(ec);
      auto sent = std::move(self->queue_.front().second);
      self->queue_.pop_front();
      if (sent) sent();
      self->writeNext();
    });
  }

  void writeFailed(beast::error_code ec) {
    if (aborted_ || closing_) return finish(WsEnded{WsEnded::By::Client, {}});
    // The daemon's close frame came first: the read loop reports it, unless
    // reading is paused.
    if (ec == websocket::error::closed) return finish(WsEnded{WsEnded::By::Server, closeReasonText()});
    fail(ec);
  }

  std::string closeReasonText() const {
    const auto &r = ws_.reason().reason;
    return std::string(r.data(), r.size());
  }

  void sendClose() {
    closeSent_ = true;
    auto self = this->shared_from_this();
    ws_.async_close(websocket::close_reason(websocket::close_code::normal, closeReason_), [self](beast::error_code) {
      self->finish(WsEnded{WsEnded::By::Client, {}});
    });
  }

  // A transport error: what it means depends on who caused it and when.
  void fail(beast::error_code ec) {
    if (ended_) return;
    if (aborted_) return finish(WsEnded{WsEnded::By::Client, {}});
    // An "upgrade" failure without an HTTP status is the transport failing
    // before a stream existed.
    std::string stage = std::string_view(stage_) == "upgrade" ? "connect" : stage_;
    if (timedOut_)
      return finish(
          Error{ErrorCode::Unavailable, fmt::format("no answer within {} s", opt_.connectTimeout.count()), stage, {}});
    finish(Error{ErrorCode::Unavailable, ec.message(), stage, {}});
  }

  void dropSocket() {
    beast::error_code ignored;
    resolver_.cancel();
    beast::get_lowest_layer(ws_).close(ignored);
  }

  // Beast's own handshake/idle timer stays armed after a failed upgrade or a
  // broken stream, and would keep io.run() from returning until it fires.
  void disarmStreamTimer() {
    ws_.set_option(
        websocket::stream_base::timeout{websocket::stream_base::none(), websocket::stream_base::none(), false});
  }

  void finish(Result<WsEnded> outcome) {
    if (ended_) return;
    ended_ = true;
    open_ = false;
    timer_.cancel();
    disarmStreamTimer();
    dropSocket();                   // a clean close already tore the connection down
    if (!writing_) queue_.clear();  // else the write's completion does, once it let go
    // Drop the caller's callbacks now: they may hold this session.
    WsHandlers h = std::move(h_);
    h_ = {};
    if (h.onEnd) h.onEnd(std::move(outcome));
  }

  asio::io_context &io_;
  Target target_;
  std::string path_;
  WsHandlers h_;
  WsOptions opt_;
  std::unique_ptr<ssl::context> ctx_;  // before ws_, which uses it
  Ws ws_;
  Tcp::resolver resolver_;
  asio::steady_timer timer_;  // the connect timeout, then the close timeout
  const char *stage_ = "connect";
  bool open_ = false, ended_ = false, closing_ = false, closeSent_ = false;
  bool aborted_ = false, timedOut_ = false;
  bool paused_ = false, reading_ = false, writing_ = false;
  websocket::response_type upgrade_;
  beast::flat_buffer buffer_;
  std::deque<std::pair<std::string, std::function<void()>>> queue_;
  std::string closeReason_;
};

template <class Ws>
std::shared_ptr<WsDuplex> startSession(asio::io_context &io, const Target &target, std::string path,
                                       WsHandlers handlers, WsOptions options) {
  auto s = std::make_shared<Session<Ws>>(io, target, std::move(path), std::move(handlers), options);
  s->begin();
  return s;
}

}  // namespace

std::shared_ptr<WsDuplex> WsDuplex::start(asio::io_context &io, const Target &target, std::string path,
                                          WsHandlers handlers, WsOptions options) {
  if (target.isUnix()) return startSession<UnixWs>(io, target, std::move(path), std::move(handlers), options);
  return startSession<TlsWs>(io, target, std::move(path), std::move(handlers), options);
}

std::string tokenQuery(std::string_view token) {
  std::string out = "?token=";
  for (unsigned char c : token) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~')
      out += char(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

}  // namespace corral::cli
