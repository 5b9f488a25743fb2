// Self-signed certificate generation, fingerprints and certificate emails with
// the OpenSSL 3 API. See tls.h.
//
// Why these choices: EC P-256 because every browser, curl and OpenSSL client
// accepts it (Ed25519 certificates are still refused by browsers); no keyUsage
// extension and CA:FALSE because a self-signed leaf with a keyUsage lacking
// keyCertSign is not "self-issued" to OpenSSL (clients pinning it with --cacert
// then fail with "unable to get local issuer certificate"), while CA:TRUE makes
// Firefox refuse a CA used as a server certificate.
#include "api/tls.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

namespace corral::api {
namespace {

struct Free {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(X509* p) const { X509_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(BIGNUM* p) const { BN_free(p); }
  void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
template <class T>
using Ptr = std::unique_ptr<T, Free>;

// The most recent OpenSSL error as text, and the queue cleared (it is per thread
// and would otherwise leak into the next, unrelated call's report).
std::string sslError() {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown OpenSSL error";
  if (e != 0) ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

Error sslFailure(std::string_view what) { return Error::internal(fmt::format("{}: {}", what, sslError())); }

std::string bioString(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

// Writes data to path through a temporary file in the same directory and a
// rename, so a reader (or a crash) never sees half a key. The mode is set with
// fchmod, which the umask does not touch.
Result<void> writeAtomically(const std::string& path, const std::string& data, mode_t mode, std::string_view field) {
  std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return Error::invalidInput(std::string(field), path, fmt::format("cannot create {}: {}", tmp, std::strerror(errno)));
  auto fail = [&](std::string_view step) -> Error {
    int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Error::invalidInput(std::string(field), path, fmt::format("cannot {} {}: {}", step, tmp, std::strerror(err)));
  };
  if (::fchmod(fd, mode) != 0) return fail("chmod");
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("sync");
  if (::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::invalidInput(std::string(field), path, fmt::format("cannot close {}: {}", tmp, std::strerror(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return Error::invalidInput(std::string(field), path,
                               fmt::format("cannot rename {} to {}: {}", tmp, path, std::strerror(err)));
  }
  return ok();
}

Result<void> addExtension(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  Ptr<X509_EXTENSION> ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext) return sslFailure(fmt::format("certificate extension {}={}", OBJ_nid2sn(nid), value));
  if (X509_add_ext(cert, ext.get(), -1) != 1) return sslFailure("add certificate extension");
  return ok();
}

// A DNS name fit for a SAN: letters, digits, '-', '.', and a leading "*." at most.
bool plausibleDnsName(const std::string& n) {
  if (n.empty() || n.size() > 253) return false;
  for (char c : n)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '*')) return false;
  return true;
}

std::string asn1String(const ASN1_STRING* s) {
  if (s == nullptr) return {};
  const unsigned char* data = ASN1_STRING_get0_data(s);
  int len = ASN1_STRING_length(s);
  if (data == nullptr || len <= 0) return {};
  std::string out(reinterpret_cast<const char*>(data), static_cast<size_t>(len));
  if (out.find('\0') != std::string::npos) return {};  // "a@b.org\0.evil.com"
  return out;
}

}  // namespace

Result<void> ensureSelfSignedCertificate(const std::string& certFile, const std::string& keyFile,
                                         const std::vector<std::string>& names) {
  if (certFile.empty()) return Error::invalidInput("tls_cert", certFile, "must name a file");
  if (keyFile.empty()) return Error::invalidInput("tls_key", keyFile, "must name a file");
  std::error_code ec;
  bool haveCert = std::filesystem::exists(certFile, ec);
  bool haveKey = std::filesystem::exists(keyFile, ec);
  if (haveCert && haveKey) return ok();
  if (haveCert != haveKey) {
    const std::string& missing = haveCert ? keyFile : certFile;
    const std::string& present = haveCert ? certFile : keyFile;
    return Error::invalidInput(haveCert ? "tls_key" : "tls_cert", missing,
                               fmt::format("{} exists but {} does not; supply both, or remove {} to have a "
                                           "self-signed pair generated",
                                           present, missing, present));
  }
  for (const auto& n : names)
    if (!plausibleDnsName(n)) return Error::invalidInput("tls_name", n, "must be a DNS name (letters, digits, '-', '.')");

  Ptr<EVP_PKEY> key(EVP_EC_gen("P-256"));
  if (!key) return sslFailure("generate an EC P-256 key");
  Ptr<X509> cert(X509_new());
  if (!cert) return sslFailure("allocate a certificate");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) return sslFailure("set certificate version");

  // A random positive serial of 159 bits (RFC 5280 allows 20 octets, positive).
  Ptr<BIGNUM> serial(BN_new());
  if (!serial || BN_rand(serial.get(), 159, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
      BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr)
    return sslFailure("make a certificate serial");

  // An hour of slack for clients whose clock runs behind the host's.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600) == nullptr ||
      X509_time_adj_ex(X509_getm_notAfter(cert.get()), 3650, 0, nullptr) == nullptr)
    return sslFailure("set certificate validity");
  if (X509_set_pubkey(cert.get(), key.get()) != 1) return sslFailure("set certificate key");

  std::string cn = names.empty() ? "corrald" : names.front();
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("corral"), -1, -1,
                                 0) != 1 ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1,
                                 -1, 0) != 1 ||
      X509_set_issuer_name(cert.get(), subject) != 1)
    return sslFailure("set certificate subject");

  std::string san;
  for (const auto& n : names) san += fmt::format("DNS:{},", n);
  san += "IP:127.0.0.1,IP:::1";
  CORRAL_TRY(addExtension(cert.get(), NID_basic_constraints, "critical,CA:FALSE"));
  CORRAL_TRY(addExtension(cert.get(), NID_ext_key_usage, "serverAuth"));
  CORRAL_TRY(addExtension(cert.get(), NID_subject_key_identifier, "hash"));
  CORRAL_TRY(addExtension(cert.get(), NID_subject_alt_name, san));
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) <= 0) return sslFailure("sign the certificate");

  Ptr<BIO> keyPem(BIO_new(BIO_s_mem()));
  Ptr<BIO> certPem(BIO_new(BIO_s_mem()));
  if (!keyPem || !certPem || PEM_write_bio_PrivateKey(keyPem.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_bio_X509(certPem.get(), cert.get()) != 1)
    return sslFailure("encode the key and certificate");
  std::string keyText = bioString(keyPem.get());
  // The key first: a crash between the two renames leaves a key without a
  // certificate, which the next start reports instead of silently replacing.
  CORRAL_TRY(writeAtomically(keyFile, keyText, 0600, "tls_key"));
  OPENSSL_cleanse(keyText.data(), keyText.size());
  if (auto r = writeAtomically(certFile, bioString(certPem.get()), 0644, "tls_cert"); !r.ok()) {
    ::unlink(keyFile.c_str());
    return std::move(r).error();
  }
  spdlog::info("tls: generated a self-signed certificate {} (key {}) for {}; SHA-256 fingerprint {}", certFile,
               keyFile, san, certificateFingerprint(cert.get()));
  return ok();
}

std::string certificateFingerprint(const x509_st* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (cert == nullptr || X509_digest(cert, EVP_sha256(), md, &n) != 1) {
    ERR_clear_error();
    return {};
  }
  std::string out;
  out.reserve(n * 3);
  for (unsigned int i = 0; i < n; ++i) {
    if (i > 0) out += ':';
    out += fmt::format("{:02X}", md[i]);
  }
  return out;
}

Result<std::string> certificateFingerprint(const std::string& certPemFile) {
  Ptr<BIO> bio(BIO_new_file(certPemFile.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return Error::invalidInput("tls_cert", certPemFile, fmt::format("cannot open: {}", std::strerror(errno)));
  }
  Ptr<X509> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return Error::invalidInput("tls_cert", certPemFile, fmt::format("not a PEM certificate: {}", sslError()));
  return certificateFingerprint(cert.get());
}

std::string certificateEmail(const x509_st* cert) {
  if (cert == nullptr) return {};
  Ptr<GENERAL_NAMES> sans(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans.get()); ++i) {
      const GENERAL_NAME* gen = sk_GENERAL_NAME_value(sans.get(), i);
      if (gen->type == GEN_EMAIL) {
        std::string email = asn1String(gen->d.rfc822Name);
        if (!email.empty()) return email;
      }
    }
  }
  const X509_NAME* subject = X509_get_subject_name(cert);
  int idx = X509_NAME_get_index_by_NID(subject, NID_pkcs9_emailAddress, -1);
  if (idx < 0) return {};
  return asn1String(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, idx)));
}

}  // namespace corral::api
