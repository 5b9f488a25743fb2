// A stand-in for corrald on a unix socket, for the CLI tests: it serves one
// connection at a time on its own thread, records every request (method,
// target, the headers the CLI must send, the body) and answers through a
// handler the test gives. Uploads ("Expect: 100-continue") are admitted with a
// "100 Continue", refused before the body (admit returns an answer; the bytes
// the client still sent are counted), or served without a 100 (ignoreExpect),
// as a server that does not know Expect would. Header-only: each test is its
// own executable.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "support/temp_dir.h"

namespace corral::cli::testutil {

struct SeenRequest {
  std::string method;
  std::string target;
  std::string contentType;
  std::string expect;
  std::optional<uint64_t> contentLength;
  std::string body;
  bool got100 = false;           // the daemon sent "100 Continue"
  uint64_t bytesAfterRefusal = 0; // body bytes that came after a refusal
};

struct Reply {
  int status = 200;
  std::string body;
  std::string contentType = "application/json";
};

class FakeDaemon {
public:
  using Handler = std::function<Reply(const SeenRequest &)>;
  // Before the body of an upload: nullopt admits it, an answer refuses it.
  using Admit = std::function<std::optional<Reply>(const SeenRequest &)>;

  explicit FakeDaemon(Handler handler, Admit admit = nullptr,
                      bool ignoreExpect = false)
      : handler_(std::move(handler)), admit_(std::move(admit)),
        ignoreExpect_(ignoreExpect), path_((dir_ / "corral.sock").string()),
        acceptor_(io_, Local::endpoint(path_)) {
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeDaemon() {
    stopping_ = true;
    boost::beast::error_code ec;
    Local::socket poke(io_);
    poke.connect(Local::endpoint(path_), ec); // wakes accept()
    thread_.join();
  }
  FakeDaemon(const FakeDaemon &) = delete;
  FakeDaemon &operator=(const FakeDaemon &) = delete;

  const std::string &socketPath() const { return path_; }
  std::vector<SeenRequest> requests() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  // The requests once at least n were recorded: a refused upload is recorded
  // only after the client hung up, which may be after the client returned.
  // Gives up after a minute (what is there by then is returned).
  std::vector<SeenRequest> requests(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::minutes(1),
                 [&] { return seen_.size() >= n; });
    return seen_;
  }

private:
  using Local = boost::asio::local::stream_protocol;

  void loop() {
    for (;;) {
      Local::socket s(io_);
      boost::beast::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stopping_)
        return;
      serve(s);
    }
  }

  void write(Local::socket &s, const Reply &r) {
    namespace http = boost::beast::http;
    boost::beast::error_code ec;
    http::response<http::string_body> res{http::status(r.status), 11};
    if (!r.body.empty())
      res.set(http::field::content_type, r.contentType);
    res.body() = r.body;
    res.keep_alive(false);
    res.prepare_payload();
    http::write(s, res, ec);
  }

  void record(SeenRequest r) {
    {
      std::lock_guard lock(mu_);
      seen_.push_back(std::move(r));
    }
    cv_.notify_all();
  }

  void serve(Local::socket &s) {
    namespace http = boost::beast::http;
    boost::beast::error_code ec;
    boost::beast::flat_buffer buf;
    http::request_parser<http::string_body> p;
    p.body_limit(uint64_t(256) << 20);
    http::read_header(s, buf, p, ec);
    if (ec)
      return;
    SeenRequest r;
    const auto &h = p.get();
    r.method = std::string(h.method_string());
    r.target = std::string(h.target());
    r.contentType = std::string(h[http::field::content_type]);
    r.expect = std::string(h[http::field::expect]);
    if (auto len = p.content_length())
      r.contentLength = *len;
    if (r.expect == "100-continue" && !ignoreExpect_) {
      if (admit_) {
        if (auto refusal = admit_(r)) {
          write(s, *refusal);
          s.shutdown(Local::socket::shutdown_send, ec);
          // What the client sent anyway, until it hangs up.
          r.bytesAfterRefusal = buf.size();
          char sink[65536];
          for (;;) {
            size_t n = s.read_some(boost::asio::buffer(sink), ec);
            if (ec)
              break;
            r.bytesAfterRefusal += n;
          }
          record(std::move(r));
          return;
        }
      }
      http::response<http::empty_body> cont{http::status::continue_, 11};
      http::write(s, cont, ec);
      r.got100 = true;
    }
    http::read(s, buf, p, ec);
    if (ec)
      return;
    r.body = p.get().body();
    Reply reply = handler_(r);
    record(r);
    write(s, reply);
    s.shutdown(Local::socket::shutdown_send, ec);
  }

  Handler handler_;
  Admit admit_;
  bool ignoreExpect_;
  corral::testing::TempDir dir_;
  std::string path_;
  boost::asio::io_context io_;
  Local::acceptor acceptor_;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<SeenRequest> seen_;
};

} // namespace corral::cli::testutil
