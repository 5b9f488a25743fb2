// The client side of TLS that the HTTP and WebSocket clients share: a context
// that trusts the system's CAs (or nothing, when a fingerprint is pinned), the
// per-connection settings (SNI, the host name the certificate must carry), the
// pin check after the handshake, and a message that says why a handshake
// failed. Header-only so that http_client.cc stays one translation unit that
// tests can compile on its own.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl.hpp>
#include <fmt/format.h>

#include "cli/fingerprint.h"
#include "util/result.h"

namespace corral::cli::tls {

namespace ssl = boost::asio::ssl;

// verifyChain: load the system's CA store and require a chain to it. A pinned
// target passes false: the pin is the whole of the trust decision, and a
// self-signed daemon certificate would never chain.
inline std::unique_ptr<ssl::context> makeContext(bool loadSystemStore) {
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  if (loadSystemStore) {
    boost::system::error_code ec;
    ctx->set_default_verify_paths(
        ec); // none found: every chain fails to verify, which is the safe side
  }
  return ctx;
}

// Per connection, before the handshake. requireChain: the handshake fails
// unless the chain verifies and names `host`; without it OpenSSL still checks
// and records the result (SSL_get_verify_result) for probeCertificate.
inline Result<void> configureConnection(SSL *ssl, const std::string &host,
                                        bool requireChain) {
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(host, ec);
  X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
  if (!ec) {
    (void)addr;
    if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1)
      return Error{
          ErrorCode::Internal,
          fmt::format("cannot check certificates for address {}", host),
          "tls",
          {}};
  } else {
    // SNI only for names (RFC 6066 has no IP literals).
    if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 ||
        SSL_set1_host(ssl, host.c_str()) != 1)
      return Error{ErrorCode::Internal,
                   fmt::format("cannot check certificates for host {}", host),
                   "tls",
                   {}};
  }
  SSL_set_verify(ssl, requireChain ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                 nullptr);
  return ok();
}

// The peer's leaf certificate fingerprint; empty when there is none.
inline std::string peerFingerprint(SSL *ssl) {
  X509 *cert = SSL_get1_peer_certificate(ssl);
  std::string fp = certificateFingerprint(cert);
  X509_free(cert);
  return fp;
}

// After the handshake of a pinned connection: refuse anything but the pinned
// certificate, before a byte of the request (and its token) is sent.
inline Result<void> checkPin(SSL *ssl, const std::string &pinned) {
  std::string got = peerFingerprint(ssl);
  if (got.empty())
    return Error{
        ErrorCode::Unavailable, "the server sent no certificate", "tls", {}};
  if (!fingerprintsMatch(got, pinned)) {
    return Error{ErrorCode::Unavailable,
                 fmt::format("the server's certificate does not match the "
                             "pinned fingerprint (got {}, expected {}); "
                             "if the daemon's certificate changed on purpose, "
                             "remove the remote and add it again",
                             got, pinned),
                 "tls", got};
  }
  return ok();
}

// Why a handshake failed, in words: the verification result when the chain was
// refused, else the transport's message.
inline std::string handshakeFailure(SSL *ssl,
                                    const boost::system::error_code &ec,
                                    bool requireChain) {
  long v = SSL_get_verify_result(ssl);
  if (requireChain && v != X509_V_OK) {
    return fmt::format(
        "the server's certificate is not trusted ({}); pin it instead with "
        "`corral remote add NAME URL --fingerprint SHA256` (see `corral remote "
        "add --help`)",
        X509_verify_cert_error_string(v));
  }
  return fmt::format("TLS handshake failed: {}", ec.message());
}

} // namespace corral::cli::tls
