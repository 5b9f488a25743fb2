// HttpClient over Boost.Beast. Asynchronous operations driven by a private
// io_context with run_for(), because Asio's blocking calls ignore socket
// timeouts; from the caller's side the call is synchronous.
#include "cli/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>

namespace corral::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Local = asio::local::stream_protocol;

// Daemon answers (VM logs included) are capped so a runaway body cannot eat the
// client's memory.
constexpr uint64_t kMaxResponseBytes = 64ull << 20;

}  // namespace

Result<HttpResponse> HttpClient::request(std::string_view method, std::string_view target, std::string_view jsonBody,
                                         std::chrono::seconds timeout) const {
  asio::io_context io;
  Local::socket sock(io);
  http::request<http::string_body> req;
  req.method_string(beast::string_view(method.data(), method.size()));
  req.target(beast::string_view(target.data(), target.size()));
  req.version(11);
  req.set(http::field::host, "corrald");
  req.set(http::field::user_agent, "corral-cli");
  req.set(http::field::accept, "application/json, text/plain");
  req.keep_alive(false);
  if (!jsonBody.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::string(jsonBody);
  }
  req.prepare_payload();

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxResponseBytes);

  beast::error_code result;
  const char* stage = "connect";
  bool done = false;
  auto fail = [&](beast::error_code ec) {
    result = ec;
    done = true;
  };
  sock.async_connect(Local::endpoint(socketPath_), [&](beast::error_code ec) {
    if (ec) return fail(ec);
    stage = "exchange";
    http::async_write(sock, req, [&](beast::error_code wec, size_t) {
      // The daemon may answer before reading the whole body (413) and close: its
      // answer is still queued on our side, so read it before giving up.
      http::async_read(sock, buffer, parser, [&, wec](beast::error_code rec, size_t) { fail(rec ? (wec ? wec : rec) : rec); });
    });
  });
  io.run_for(timeout);
  if (!done) {
    return Error{ErrorCode::Unavailable,
                 fmt::format("no answer within {} s", timeout.count()), stage, {}};
  }
  if (result) return Error{ErrorCode::Unavailable, result.message(), stage, {}};

  auto& msg = parser.get();
  HttpResponse out;
  out.status = static_cast<int>(msg.result_int());
  if (auto it = msg.find(http::field::content_type); it != msg.end()) out.contentType = std::string(it->value());
  out.body = std::move(msg.body());
  return out;
}

}  // namespace corral::cli
