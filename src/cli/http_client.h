// A small synchronous HTTP/1.1 client of corrald, one request per connection,
// over the daemon's unix socket or over TLS to a remote with a Bearer token.
// An HTTP error status is a normal answer (the caller maps it to an exit code);
// only transport failures are errors: cannot connect, TLS refused (an
// untrusted or unpinned certificate), the connection dropped, or no answer
// within the timeout. Beast and OpenSSL stay in the .cc files.
//
// Server verification over TLS: when the target pins a certificate
// fingerprint, the peer's leaf certificate must have exactly that SHA-256 and
// nothing else is checked (a self-signed daemon certificate, trusted on first
// use by `corral remote add`); without a pin, the chain must verify against the
// system's CA store and name the host. Nothing is sent before that check.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace corral::cli {

// Where a request goes: the unix socket, or a remote over TLS.
struct Target {
  std::string name = "local"; // the remote's name, for messages
  std::string socketPath;     // non-empty: the unix socket
  std::string url;            // remote: "https://host:port", for messages
  std::string host; // remote: host name or address (IPv6 without brackets)
  uint16_t port = 0;
  std::string hostHeader;  // remote: "host:port" / "[v6]:port"
  std::string token;       // Bearer token; never printed, never logged
  std::string fingerprint; // pinned SHA-256 ("AB:CD:..."); empty: system CAs +
                           // host name

  static Target unixSocket(std::string path) {
    Target t;
    t.socketPath = std::move(path);
    return t;
  }
  bool isUnix() const { return !socketPath.empty(); }
  // The socket path or the URL: what messages name.
  const std::string &where() const { return isUnix() ? socketPath : url; }
};

struct HttpResponse {
  int status = 0;
  std::string contentType;
  std::string body;
  std::string etag;     // ETag header, as sent (quotes included)
  std::string location; // Location header (202 answers)
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

// What `corral remote add` learns about a server before trusting it.
struct PeerCertificate {
  std::string fingerprint; // SHA-256, canonical
  std::string subject;     // one line, for the person deciding
  std::string issuer;
  std::string notAfter;
  bool trusted = false;   // chains to the system store and names the host
  std::string trustError; // why not, when !trusted
};

// What upload() reports after each chunk went out: bytes sent of the total.
using UploadProgress = std::function<void(uint64_t sent, uint64_t total)>;

struct UploadOptions {
  // Each step (connecting, each chunk, the answer after the body) must make
  // progress within this; an upload as a whole may take as long as it moves.
  std::chrono::seconds idleTimeout{300};
  // How long to wait for "100 Continue" before sending the body anyway (a
  // server that ignores Expect); a refusal that comes first saves the send.
  std::chrono::milliseconds continueWait{5000};
  // The most of the file in memory at once.
  size_t chunkBytes = size_t(1) << 20;
};

class HttpClient {
public:
  explicit HttpClient(std::string socketPath)
      : target_(Target::unixSocket(std::move(socketPath))) {}
  explicit HttpClient(Target target) : target_(std::move(target)) {}

  // method "GET"/"POST"/"PUT"/"PATCH"/"DELETE"; target "/api/v1/vms?x=y"
  // (already encoded); jsonBody sent as application/json when non-empty;
  // extra headers (If-Match) as given. The timeout covers the whole exchange.
  // Errors: Unavailable with field "connect" when no connection could be made,
  // "tls" when the server's certificate was refused or the handshake failed,
  // "exchange" after that.
  Result<HttpResponse>
  request(std::string_view method, std::string_view target,
          std::string_view jsonBody = {},
          std::chrono::seconds timeout = std::chrono::seconds(300),
          const HttpHeaders &headers = {}) const;

  // Sends the file at `filePath` as the body (application/octet-stream,
  // Content-Length its size, "Expect: 100-continue"), read and written a chunk
  // at a time, never whole in memory. The daemon's answer may come before the
  // body went out (a refusal): it is returned like any answer. Errors as
  // request()'s, plus InvalidInput/Unavailable with field "file" when the file
  // cannot be opened or read.
  Result<HttpResponse> upload(std::string_view method, std::string_view target,
                              const std::string &filePath,
                              const HttpHeaders &headers = {},
                              const UploadProgress &progress = nullptr,
                              const UploadOptions &opts = {}) const;

  const std::string &socketPath() const { return target_.socketPath; }
  const Target &target() const { return target_; }

  // Connects to host:port over TLS without trusting anything, and reports the
  // server's certificate and whether the system's CA store vouches for it.
  // Errors as request()'s ("connect", "tls").
  static Result<PeerCertificate>
  probeCertificate(const std::string &host, uint16_t port,
                   std::chrono::seconds timeout = std::chrono::seconds(30));

private:
  Target target_;
};

} // namespace corral::cli
