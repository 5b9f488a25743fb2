// A test's HTTP client for corrald's API: over the unix socket (the test
// process's uid is the identity) or over TLS (with a Bearer token or cookies).
// One connection per request, so a test sees exactly what a fresh client sees.
// TLS here does not verify the server's certificate: the tests that prove
// verification and pinning are the CLI's; this client is only a way in.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace corral::testing {

struct ApiReply {
  int status = 0;  // 0: no answer (connection failed or dropped); body says why
  std::string body;
  std::map<std::string, std::string> headers;  // lowercase names

  nlohmann::json json() const;  // discarded (is_discarded()) when not JSON
  std::string header(const std::string& lowercaseName) const;
};

class ApiClient {
 public:
  static ApiClient unixSocket(std::string path);
  static ApiClient tls(std::string host, uint16_t port);

  ApiClient& bearer(std::string token);
  // Headers sent with every request (Cookie, X-CSRF-Token, Origin ...).
  ApiClient& header(std::string name, std::string value);

  ApiReply request(std::string_view method, std::string_view target, std::string_view body = {},
                   const std::map<std::string, std::string>& extraHeaders = {}) const;
  ApiReply get(std::string_view target) const { return request("GET", target); }
  ApiReply post(std::string_view target, const nlohmann::json& body) const {
    return request("POST", target, body.dump());
  }
  // A 202's operation, waited for; the final operation JSON as the body.
  ApiReply runOperation(std::string_view method, std::string_view target, std::string_view body = {}) const;

 private:
  std::string socketPath_;
  std::string host_;
  uint16_t port_ = 0;
  std::map<std::string, std::string> headers_;
};

// A free TCP port on 127.0.0.1 (bound then released: fine for tests on loopback).
uint16_t freeLoopbackPort();

}  // namespace corral::testing
