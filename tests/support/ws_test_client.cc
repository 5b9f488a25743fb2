// See ws_test_client.h. One io_context thread per client runs the reads and the
// queued writes; the upgrade itself is synchronous, before that thread starts.
#include "support/ws_test_client.h"

#include <deque>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace corral::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using Local = asio::local::stream_protocol;

struct WsTestClient::Impl {
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
  websocket::stream<Local::socket> ws{io};
  beast::flat_buffer buffer;
  std::deque<std::pair<std::string, bool>> out;  // on the io thread
};

std::unique_ptr<WsTestClient> WsTestClient::open(const std::string& socketPath, const std::string& target,
                                                 const std::map<std::string, std::string>& headers,
                                                 bool startReading) {
  std::unique_ptr<WsTestClient> c(new WsTestClient());
  c->impl_ = std::make_unique<Impl>();
  beast::error_code ec;
  c->impl_->ws.next_layer().connect(Local::endpoint(socketPath), ec);
  if (ec) {
    c->body_ = "connect: " + ec.message();
    c->closed_ = true;
    return c;
  }
  c->impl_->ws.set_option(websocket::stream_base::decorator([headers](websocket::request_type& req) {
    for (const auto& [k, v] : headers) req.set(k, v);
  }));
  // Asynchronous on purpose: Beast 1.74's synchronous handshake leaves the
  // response empty when the upgrade is declined, and a refusal's status and
  // body are what the tests look at.
  websocket::response_type res;
  bool done = false;
  c->impl_->ws.async_handshake(res, "corrald", target, [&](beast::error_code e) {
    ec = e;
    done = true;
  });
  while (!done && c->impl_->io.run_one() > 0) {
  }
  c->impl_->io.restart();
  c->status_ = static_cast<int>(res.result_int());
  if (ec) {
    c->body_ = res.body().empty() ? "handshake: " + ec.message() : res.body();
    if (c->status_ == 101) c->status_ = 0;
    c->closed_ = true;
    return c;
  }
  c->reader_ = std::thread([raw = c.get()] { raw->impl_->io.run(); });
  if (startReading) c->startReading();
  return c;
}

WsTestClient::~WsTestClient() {
  if (reader_.joinable()) {
    asio::post(impl_->io, [this] {
      beast::error_code ignored;
      impl_->ws.next_layer().close(ignored);
    });
    impl_->guard.reset();
    impl_->io.stop();
    reader_.join();
  }
}

void WsTestClient::startReading() {
  if (!reader_.joinable() || reading_.exchange(true)) return;
  asio::post(impl_->io, [this] { readLoop(); });
}

void WsTestClient::readLoop() {
  impl_->ws.async_read(impl_->buffer, [this](beast::error_code ec, size_t n) {
    if (ec) {
      std::lock_guard lock(mu_);
      closeReason_ = std::string(impl_->ws.reason().reason.c_str());
      closed_ = true;
      cv_.notify_all();
      return;
    }
    {
      std::lock_guard lock(mu_);
      tail_ += beast::buffers_to_string(impl_->buffer.data());
      // Trimmed in halves, not per message: a flood must not memmove the tail each time.
      if (tail_.size() > 2 * kTailBytes) tail_.erase(0, tail_.size() - kTailBytes);
      bytes_ += n;
    }
    impl_->buffer.consume(impl_->buffer.size());
    cv_.notify_all();
    readLoop();
  });
}

bool WsTestClient::send(const std::string& data, bool binary) {
  if (!reader_.joinable() || closed_.load()) return false;
  asio::post(impl_->io, [this, data, binary] {
    impl_->out.emplace_back(data, binary);
    if (impl_->out.size() > 1) return;
    auto writeNext = std::make_shared<std::function<void()>>();
    *writeNext = [this, writeNext] {
      impl_->ws.binary(impl_->out.front().second);
      impl_->ws.async_write(asio::buffer(impl_->out.front().first), [this, writeNext](beast::error_code ec, size_t) {
        impl_->out.pop_front();
        if (ec) {
          impl_->out.clear();
          *writeNext = nullptr;
          return;
        }
        if (!impl_->out.empty()) (*writeNext)();
        else *writeNext = nullptr;
      });
    };
    (*writeNext)();
  });
  return true;
}

bool WsTestClient::waitFor(const std::string& needle, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  auto found = [&] { return tail_.find(needle) != std::string::npos; };
  cv_.wait_for(lock, timeout, [&] { return found() || closed_.load(); });
  return found();
}

bool WsTestClient::waitForBytes(uint64_t total, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return bytes_.load() >= total || closed_.load(); }) &&
         bytes_.load() >= total;
}

bool WsTestClient::waitClosed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return closed_.load(); });
}

std::string WsTestClient::tail() const {
  std::lock_guard lock(mu_);
  return tail_.size() > kTailBytes ? tail_.substr(tail_.size() - kTailBytes) : tail_;
}

std::string WsTestClient::closeReason() const {
  std::lock_guard lock(mu_);
  return closeReason_;
}

void WsTestClient::abort() {
  if (!reader_.joinable()) return;
  asio::post(impl_->io, [this] {
    beast::error_code ignored;
    impl_->ws.next_layer().shutdown(Local::socket::shutdown_both, ignored);
    impl_->ws.next_layer().close(ignored);
  });
}

}  // namespace corral::testing
