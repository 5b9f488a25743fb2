#include "support/api_client.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <fmt/format.h>

namespace corral::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

template <class Stream>
ApiReply exchange(Stream& stream, http::request<http::string_body>& req) {
  ApiReply out;
  beast::error_code ec;
  http::write(stream, req, ec);
  if (ec) {
    out.body = "write: " + ec.message();
    return out;
  }
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 << 20);
  http::read(stream, buf, parser, ec);
  if (ec) {
    out.body = "read: " + ec.message();
    return out;
  }
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  out.body = std::move(res.body());
  for (const auto& f : res) {
    std::string name(f.name_string());
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    out.headers[name] = std::string(f.value());
  }
  return out;
}

}  // namespace

nlohmann::json ApiReply::json() const { return nlohmann::json::parse(body, nullptr, false); }

std::string ApiReply::header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

ApiClient ApiClient::unixSocket(std::string path) {
  ApiClient c;
  c.socketPath_ = std::move(path);
  return c;
}

ApiClient ApiClient::tls(std::string host, uint16_t port) {
  ApiClient c;
  c.host_ = std::move(host);
  c.port_ = port;
  return c;
}

ApiClient& ApiClient::bearer(std::string token) { return header("Authorization", "Bearer " + token); }

ApiClient& ApiClient::header(std::string name, std::string value) {
  headers_[std::move(name)] = std::move(value);
  return *this;
}

ApiReply ApiClient::request(std::string_view method, std::string_view target, std::string_view body,
                            const std::map<std::string, std::string>& extraHeaders) const {
  http::request<http::string_body> req;
  req.method_string(std::string(method));
  req.target(std::string(target));
  req.version(11);
  req.set(http::field::host, host_.empty() ? "corrald" : fmt::format("{}:{}", host_, port_));
  for (const auto& [k, v] : headers_) req.set(k, v);
  for (const auto& [k, v] : extraHeaders) req.set(k, v);
  if (!body.empty()) req.set(http::field::content_type, "application/json");
  req.body() = std::string(body);
  req.keep_alive(false);
  req.prepare_payload();

  asio::io_context io;
  beast::error_code ec;
  if (!socketPath_.empty()) {
    asio::local::stream_protocol::socket sock(io);
    sock.connect(asio::local::stream_protocol::endpoint(socketPath_), ec);
    if (ec) return ApiReply{0, "connect: " + ec.message(), {}};
    return exchange(sock, req);
  }
  asio::ssl::context ctx(asio::ssl::context::tls_client);
  ctx.set_verify_mode(asio::ssl::verify_none);
  beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
  stream.next_layer().expires_after(std::chrono::seconds(120));
  stream.next_layer().connect(asio::ip::tcp::endpoint(asio::ip::make_address(host_), port_), ec);
  if (ec) return ApiReply{0, "connect: " + ec.message(), {}};
  stream.handshake(asio::ssl::stream_base::client, ec);
  if (ec) return ApiReply{0, "handshake: " + ec.message(), {}};
  ApiReply r = exchange(stream, req);
  stream.shutdown(ec);
  return r;
}

ApiReply ApiClient::runOperation(std::string_view method, std::string_view target, std::string_view body) const {
  ApiReply r = request(method, target, body);
  if (r.status != 202) return r;
  auto op = r.json();
  if (op.is_discarded() || !op.contains("id")) return r;
  return request("GET", fmt::format("/api/v1/operations/{}/wait?timeout=120", op["id"].get<std::string>()));
}

uint16_t freeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

}  // namespace corral::testing
