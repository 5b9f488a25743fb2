// TLS certificates for the API's TCP listener: the self-signed certificate that
// corrald makes on first start when none is configured, the SHA-256 fingerprint
// that `corral remote add` pins, and the email of a verified client certificate.
//
// What it leaves to others: the TLS context and handshakes (http_session.cc),
// deciding who an email is (the authenticator in daemon/).
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

struct x509_st;  // OpenSSL's X509, kept out of this header

namespace corral::api {

// When neither file exists: makes an EC P-256 key and a self-signed X.509 v3
// certificate (SAN: each of names as a DNS name, plus IP 127.0.0.1 and ::1;
// valid from an hour ago for 10 years; random 159-bit serial), writes the key
// 0600 and the certificate 0644, each atomically (temporary file + rename), and
// logs the certificate's SHA-256 fingerprint. When both exist: nothing (they are
// loaded later, where a bad file is reported). When only one exists: an
// InvalidInput error naming the missing one, because pairing a fresh key with an
// old certificate (or the other way round) can only fail later and less clearly.
// names: DNS names, e.g. the host's name and "localhost"; the first is also the
// subject's CN (default "corrald" when empty). Any thread.
Result<void> ensureSelfSignedCertificate(const std::string& certFile, const std::string& keyFile,
                                         const std::vector<std::string>& names);

// The SHA-256 fingerprint of the first certificate in a PEM file, as
// `openssl x509 -fingerprint -sha256` prints it: 32 uppercase hex pairs joined
// by ':'.
Result<std::string> certificateFingerprint(const std::string& certPemFile);

// The same fingerprint of a certificate in memory.
std::string certificateFingerprint(const x509_st* cert);

// The email a certificate names: its first SAN rfc822Name, else the subject's
// emailAddress; "" when it has none or the value holds a NUL (a forged name).
// The caller decides whether the certificate was verified.
std::string certificateEmail(const x509_st* cert);

}  // namespace corral::api
