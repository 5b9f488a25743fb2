// A small synchronous HTTP/1.1 client over the daemon's unix socket, one request
// per connection. An HTTP error status is a normal answer (the caller maps it to
// an exit code); only transport failures are errors: cannot connect, the
// connection dropped, or no answer within the timeout. Beast stays in
// http_client.cc.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::cli {

struct HttpResponse {
  int status = 0;
  std::string contentType;
  std::string body;
};

class HttpClient {
 public:
  explicit HttpClient(std::string socketPath) : socketPath_(std::move(socketPath)) {}

  // method "GET"/"POST"/"DELETE"; target "/api/v1/vms?x=y" (already encoded);
  // jsonBody sent as application/json when non-empty. The timeout covers the
  // whole exchange: a VM stop may legitimately take its own timeout + 30 s.
  // Errors: Unavailable, message "<reason>" (e.g. "No such file or directory"),
  // field "connect" when no connection could be made, "exchange" after.
  Result<HttpResponse> request(std::string_view method, std::string_view target, std::string_view jsonBody = {},
                               std::chrono::seconds timeout = std::chrono::seconds(300)) const;

  const std::string& socketPath() const { return socketPath_; }

 private:
  std::string socketPath_;
};

}  // namespace corral::cli
