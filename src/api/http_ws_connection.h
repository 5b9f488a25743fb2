// Internal to the HTTP transport (http_session.cc): a WebSocket connection after
// an upgrade, and what it shares with the HTTP session (the peer's identity).
// A template over the stream so that the unix and TLS paths are the same code.
// Not for use outside src/api/http_*.cc.
//
// Threads: everything that touches the socket runs on the connection's strand;
// send() and close() may be called from any thread, and its queue of unsent
// messages is bounded instead of blocking the senders.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/http_server_impl.h"
#include "api/websocket.h"

namespace corral::api::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using Clock = std::chrono::steady_clock;

// Who is on the other end, read once per connection.
struct Peer {
  uid_t uid = (uid_t)-1;  // unix
  pid_t pid = 0;          // unix
  std::string address;    // TLS
  std::string certEmail;  // TLS, a verified client certificate's

  std::string describe() const {
    if (!address.empty()) return fmt::format("addr={}", address);
    return fmt::format("uid={}", uid == (uid_t)-1 ? -1L : static_cast<long>(uid));
  }
};

template <class S>
auto& lowest(S& s) {
  return beast::get_lowest_layer(s);
}

// --------------------------------------------------------------------------
// WebSocket

template <class Stream>
class WsConnection : public WebSocket, public Connection, public std::enable_shared_from_this<WsConnection<Stream>> {
 public:
  WsConnection(ConnectionSlot slot, Stream&& stream, Strand strand, Peer peer, std::string requestId, std::string path)
      : srv_(slot.serverPtr()),
        slot_(std::move(slot)),
        strand_(std::move(strand)),
        ws_(std::move(stream)),
        writeTimer_(strand_),
        peer_(std::move(peer)),
        requestId_(std::move(requestId)),
        path_(std::move(path)),
        opened_(Clock::now()) {
    if (srv_->metrics) srv_->metrics->websockets.inc();
  }

  ~WsConnection() override {
    if (srv_->metrics) srv_->metrics->websockets.dec();
    srv_->untrack(this);
  }

  // On the strand, with the upgrade request the session read.
  void start(http::request<http::string_body> upgradeReq, WsAccept accept) {
    srv_->track(this, this->weak_from_this());
    const auto& o = srv_->opts;
    lowest(ws_).expires_never();  // the WebSocket's own timeouts take over
    websocket::stream_base::timeout t{};
    t.handshake_timeout = o.writeTimeout;  // also bounds the closing handshake
    t.idle_timeout = 2 * o.wsPingInterval;  // a ping after half of it
    t.keep_alive_pings = true;
    ws_.set_option(t);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, "corrald"); }));
    ws_.read_message_max(o.maxWsMessageBytes);
    ws_.auto_fragment(false);
    upgradeReq_ = std::move(upgradeReq);
    ws_.async_accept(upgradeReq_, [self = this->shared_from_this(), accept = std::move(accept)](
                                      beast::error_code ec) mutable { self->onAccepted(ec, std::move(accept)); });
  }

  bool send(std::string data, bool binary) override {
    bool startWriting = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) return false;
      if (queuedBytes_ + data.size() > srv_->opts.maxWsQueueBytes) {
        closed_ = true;
        spdlog::warn("ws {} {}: peer is not keeping up ({} bytes queued, limit {}); dropping it", path_,
                     peer_.describe(), queuedBytes_ + data.size(), srv_->opts.maxWsQueueBytes);
        asio::post(strand_, [self = this->shared_from_this()] { self->hardClose(); });
        return false;
      }
      queuedBytes_ += data.size();
      queue_.push_back(Message{std::move(data), binary});
      if (!writing_) writing_ = startWriting = true;
    }
    if (startWriting) asio::post(strand_, [self = this->shared_from_this()] { self->writeNext(); });
    return true;
  }

  void close(std::string reason) override {
    bool startWriting = false;
    {
      std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      closing_ = true;
      closeReason_ = std::move(reason);
      if (!writing_) writing_ = startWriting = true;
    }
    // Queued messages go first, then the close frame.
    if (startWriting) asio::post(strand_, [self = this->shared_from_this()] { self->writeNext(); });
  }

  bool closed() const override { return closed_; }

  void onMessage(std::function<void(std::string, bool)> cb) override {
    std::lock_guard lock(mu_);
    onMessage_ = std::move(cb);
  }

  void onClose(std::function<void()> cb) override {
    std::lock_guard lock(mu_);
    onClose_ = std::move(cb);
  }

  void shutdown() override {
    asio::post(strand_, [self = this->shared_from_this()] { self->hardClose(); });
  }

 private:
  struct Message {
    std::string data;
    bool binary;
  };

  void onAccepted(beast::error_code ec, WsAccept accept) {
    if (ec) {
      spdlog::debug("ws {} {}: upgrade failed: {}", path_, peer_.describe(), ec.message());
      return finish("upgrade failed");
    }
    spdlog::info("ws {} open {} req={}", path_, peer_.describe(), requestId_);
    std::unique_lock lock(srv_->mu);  // stop() takes it too: no post to a joined pool
    if (srv_->stopped) {
      lock.unlock();
      hardClose();
      return finish("server stopping");
    }
    // The route's accept runs on a handler thread (it may subscribe, look things
    // up); reading starts only once it has set the callbacks.
    asio::post(srv_->pool, [self = this->shared_from_this(), accept = std::move(accept)] {
      RequestIdScope scope(self->requestId_);
      try {
        accept(self);
      } catch (const std::exception& e) {
        spdlog::error("ws {}: accept threw: {} req={}", self->path_, e.what(), self->requestId_);
        self->close("internal error");
      } catch (...) {
        spdlog::error("ws {}: accept threw req={}", self->path_, self->requestId_);
        self->close("internal error");
      }
      asio::post(self->strand_, [self] { self->readNext(); });
    });
  }

  void readNext() {
    ws_.async_read(rbuf_, [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRead(ec); });
  }

  void onRead(beast::error_code ec) {
    if (ec) {
      std::string why = ec == websocket::error::closed ? "closed by peer" : ec.message();
      if (hardClosed_) why = dropped_ ? "dropped" : "closed";
      return finish(why);
    }
    std::string data = beast::buffers_to_string(rbuf_.data());
    rbuf_.consume(rbuf_.size());
    bool binary = ws_.got_binary();
    std::function<void(std::string, bool)> cb;
    {
      std::lock_guard lock(mu_);
      cb = onMessage_;
    }
    if (cb) {
      try {
        cb(std::move(data), binary);
      } catch (const std::exception& e) {
        spdlog::error("ws {}: onMessage threw: {} req={}", path_, e.what(), requestId_);
      }
    }
    readNext();
  }

  // On the strand: the next queued message, or the close frame once the queue is
  // empty after close(), or nothing.
  void writeNext() {
    Message* m = nullptr;
    bool sendClose = false;
    {
      std::lock_guard lock(mu_);
      if (hardClosed_) {
        writing_ = false;
        return;
      }
      if (queue_.empty()) {
        writing_ = false;
        if (closing_ && !closeSent_) sendClose = closeSent_ = true;
      } else {
        m = &queue_.front();  // stays put: deque::push_back keeps references valid
      }
    }
    if (sendClose) {
      armWriteTimer();
      ws_.async_close(websocket::close_reason(websocket::close_code::normal, closeReason_),
                      [self = this->shared_from_this()](beast::error_code ec) {
                        self->writeTimer_.cancel();
                        if (ec) self->hardClose();  // the read then ends, and finish() runs
                      });
      return;
    }
    if (m == nullptr) return;
    ws_.binary(m->binary);
    armWriteTimer();
    ws_.async_write(asio::buffer(m->data), [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->writeTimer_.cancel();
      if (ec) {
        self->hardClose();
        std::lock_guard lock(self->mu_);
        self->writing_ = false;
        return;
      }
      {
        std::lock_guard lock(self->mu_);
        self->queuedBytes_ -= self->queue_.front().data.size();
        self->queue_.pop_front();
        ++self->sent_;
      }
      self->writeNext();
    });
  }

  void armWriteTimer() {
    writeTimer_.expires_after(srv_->opts.writeTimeout);
    writeTimer_.async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return;  // cancelled: the write finished
      spdlog::info("ws {} {}: a write took over {} ms; closing", self->path_, self->peer_.describe(),
                   self->srv_->opts.writeTimeout.count());
      self->hardClose();
    });
  }

  // On the strand: closes the socket now, without a closing handshake. Pending
  // operations fail, and the read's failure runs finish().
  void hardClose() {
    {
      std::lock_guard lock(mu_);
      if (hardClosed_) return;
      hardClosed_ = true;
      dropped_ = closed_ && !closing_;  // send() past the queue limit
      closed_ = true;
    }
    writeTimer_.cancel();
    beast::error_code ec;
    lowest(ws_).socket().shutdown(asio::socket_base::shutdown_both, ec);
    lowest(ws_).close();
  }

  // On the strand, once per connection, however it ends.
  void finish(const std::string& why) {
    std::function<void()> cb;
    {
      std::lock_guard lock(mu_);
      if (finished_) return;
      finished_ = true;
      closed_ = true;
      cb = std::move(onClose_);
      // Routes' callbacks usually hold this socket: dropping them breaks the cycle.
      onClose_ = nullptr;
      onMessage_ = nullptr;
      queue_.clear();
      queuedBytes_ = 0;
    }
    if (!hardClosed_) hardClose();
    slot_.reset();  // the socket is closed: room for another, even while a route still holds this object
    double s = std::chrono::duration<double>(Clock::now() - opened_).count();
    spdlog::info("ws {} closed {} ({}) after {:.1f}s, {} messages sent req={}", path_, peer_.describe(), why, s, sent_,
                 requestId_);
    if (cb) {
      try {
        cb();
      } catch (const std::exception& e) {
        spdlog::error("ws {}: onClose threw: {} req={}", path_, e.what(), requestId_);
      }
    }
  }

  std::shared_ptr<HttpServerImpl> srv_;
  std::optional<ConnectionSlot> slot_;
  Strand strand_;
  websocket::stream<Stream> ws_;
  asio::steady_timer writeTimer_;
  http::request<http::string_body> upgradeReq_;
  beast::flat_buffer rbuf_;
  Peer peer_;
  std::string requestId_;
  std::string path_;
  Clock::time_point opened_;
  uint64_t sent_ = 0;

  mutable std::mutex mu_;  // guards everything below
  std::deque<Message> queue_;
  size_t queuedBytes_ = 0;
  bool writing_ = false;  // a writeNext chain is posted or in flight
  bool closing_ = false;  // close() was called: the close frame follows the queue
  bool closeSent_ = false;
  bool hardClosed_ = false;
  bool dropped_ = false;
  bool finished_ = false;
  std::atomic<bool> closed_{false};
  std::string closeReason_;
  std::function<void(std::string, bool)> onMessage_;
  std::function<void()> onClose_;
};

}  // namespace corral::api::detail
