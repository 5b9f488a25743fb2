// See ssh_key.h.
#include "util/ssh_key.h"

#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <fmt/format.h>

namespace corral::util {

namespace {

constexpr std::array<std::string_view, 7> kAllowedTypes = {
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
};

// OpenSSH's own ceiling (SSHBUF_MAX_BIGNUM): a bigger modulus is no key it would use.
constexpr unsigned kMaxRsaBits = 16384;
constexpr size_t kShownPrefix = 40;

bool allowedType(std::string_view t) {
  return std::find(kAllowedTypes.begin(), kAllowedTypes.end(), t) != kAllowedTypes.end();
}

bool isBlank(char c) { return c == ' ' || c == '\t'; }

// The start of the line for an error's value: enough to recognise it, never the
// whole 16 KiB, and nothing that could rewrite a terminal.
std::string shortValue(std::string_view line) {
  std::string out;
  for (char c : line.substr(0, kShownPrefix)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (line.size() > kShownPrefix) out += "...";
  return out;
}

// Splits off the next blank-separated token of s (s is advanced past it).
std::string_view nextToken(std::string_view& s) {
  while (!s.empty() && isBlank(s.front())) s.remove_prefix(1);
  size_t end = 0;
  while (end < s.size() && !isBlank(s[end])) ++end;
  std::string_view tok = s.substr(0, end);
  s.remove_prefix(end);
  return tok;
}

// Standard base64 with '=' padding, decoded by libcrypto. nullopt for a foreign
// character, misplaced padding or a length that is not a multiple of 4 (which
// EVP_DecodeBlock would otherwise partly forgive).
std::optional<std::string> decodeBase64(std::string_view text) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > kMaxSshKeyLine) return std::nullopt;
  size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=') ++pad;
  for (size_t i = 0; i < text.size() - pad; ++i) {
    char c = text[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (!ok) return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);  // EVP_DecodeBlock counts the padding as zero bytes
  return out;
}

std::string encodeBase64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  return out;
}

// Reads the SSH wire format: uint32 big-endian length, then that many bytes.
class WireReader {
 public:
  explicit WireReader(std::string_view data) : data_(data) {}

  std::optional<std::string_view> string() {
    if (data_.size() < 4) return std::nullopt;
    uint32_t len = 0;
    for (int i = 0; i < 4; ++i) len = (len << 8) | static_cast<unsigned char>(data_[i]);
    data_.remove_prefix(4);
    if (len > data_.size()) return std::nullopt;
    std::string_view s = data_.substr(0, len);
    data_.remove_prefix(len);
    return s;
  }

  bool atEnd() const { return data_.empty(); }

 private:
  std::string_view data_;
};

// Bits of a positive mpint (RFC 4251 §5); 0 for zero, nullopt for a negative one.
std::optional<unsigned> mpintBits(std::string_view m) {
  if (!m.empty() && (static_cast<unsigned char>(m.front()) & 0x80)) return std::nullopt;
  while (!m.empty() && m.front() == '\0') m.remove_prefix(1);
  if (m.empty()) return 0u;
  auto lead = static_cast<unsigned char>(m.front());
  return static_cast<unsigned>((m.size() - 1) * 8 + std::bit_width(lead));
}

// Whether q (uncompressed, 0x04 | X | Y) is a point of the curve: what
// ssh-keygen and sshd check too, so a key they would refuse is refused here.
bool onCurve(int nid, std::string_view q) {
  std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)> group(EC_GROUP_new_by_curve_name(nid), EC_GROUP_free);
  if (!group) return false;
  std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)> point(EC_POINT_new(group.get()), EC_POINT_free);
  return point &&
         EC_POINT_oct2point(group.get(), point.get(), reinterpret_cast<const unsigned char*>(q.data()), q.size(),
                            nullptr) == 1 &&
         EC_POINT_is_on_curve(group.get(), point.get(), nullptr) == 1;
}

// The body of the blob after its type string; "" when it is well formed, else why not.
std::string checkKeyBody(std::string_view type, WireReader& r) {
  auto ecPoint = [&](std::string_view curve, int nid, size_t coordBytes) -> std::string {
    auto name = r.string();
    if (!name || *name != curve) return fmt::format("the key data does not name the curve {}", curve);
    auto q = r.string();
    if (!q || q->size() != 1 + 2 * coordBytes || q->front() != '\x04')
      return "the key data does not hold an uncompressed curve point";
    if (!onCurve(nid, *q)) return fmt::format("the key's point is not on the curve {}", curve);
    return "";
  };
  std::string why;
  if (type == "ssh-rsa") {
    auto e = r.string();
    auto n = r.string();
    if (!e || !n) return "the RSA key data is truncated";
    auto eBits = mpintBits(*e);
    auto nBits = mpintBits(*n);
    if (!eBits || !nBits || *eBits == 0) return "the RSA key data is malformed";
    if (*nBits < kMinRsaBits)
      return fmt::format("an RSA key must have at least {} bits (this one has {})", kMinRsaBits, *nBits);
    if (*nBits > kMaxRsaBits) return fmt::format("an RSA key may have at most {} bits", kMaxRsaBits);
  } else if (type == "ssh-ed25519" || type == "sk-ssh-ed25519@openssh.com") {
    auto pk = r.string();
    if (!pk || pk->size() != 32) return "the Ed25519 key data is malformed";
    if (type.starts_with("sk-") && !r.string()) return "the security key's application is missing";
  } else if (type == "ecdsa-sha2-nistp256") {
    why = ecPoint("nistp256", NID_X9_62_prime256v1, 32);
  } else if (type == "ecdsa-sha2-nistp384") {
    why = ecPoint("nistp384", NID_secp384r1, 48);
  } else if (type == "ecdsa-sha2-nistp521") {
    why = ecPoint("nistp521", NID_secp521r1, 66);
  } else if (type == "sk-ecdsa-sha2-nistp256@openssh.com") {
    why = ecPoint("nistp256", NID_X9_62_prime256v1, 32);
    if (why.empty() && !r.string()) why = "the security key's application is missing";
  }
  if (why.empty() && !r.atEnd()) why = "the key data has trailing bytes";
  return why;
}

std::string fingerprintOf(std::string_view blob) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  EVP_Digest(blob.data(), blob.size(), md.data(), &len, EVP_sha256(), nullptr);
  std::string b64 = encodeBase64(std::string_view(reinterpret_cast<const char*>(md.data()), len));
  while (!b64.empty() && b64.back() == '=') b64.pop_back();  // ssh-keygen prints it unpadded
  return "SHA256:" + b64;
}

}  // namespace

std::string SshPublicKey::line() const {
  std::string out = type + " " + blob;
  if (!comment.empty()) out += " " + comment;
  return out;
}

Result<SshPublicKey> parseSshPublicKey(std::string_view line) {
  auto refuse = [&](std::string_view reason) { return Error::invalidInput("key", shortValue(line), reason); };
  if (line.size() > kMaxSshKeyLine) return refuse(fmt::format("must be at most {} bytes", kMaxSshKeyLine));
  for (char c : line) {
    if (c == '\n' || c == '\r') return refuse("must be one line (one key)");
    if ((c < 0x20 && c != '\t') || static_cast<unsigned char>(c) >= 0x7f)
      return refuse("must be printable ASCII, without control characters");
  }

  std::string_view rest = line;
  std::string_view type = nextToken(rest);
  if (type.empty()) return refuse("is empty");
  if (!allowedType(type)) {
    // authorized_keys options (from="...", command="...", no-pty) come before
    // the type: a later token that is a type gives them away.
    std::string_view scan = rest;
    bool typeLater = false;
    for (auto tok = nextToken(scan); !tok.empty(); tok = nextToken(scan)) typeLater = typeLater || allowedType(tok);
    if (typeLater || type.find_first_of("=,\"") != std::string_view::npos)
      return refuse("must not start with options (from=, command=, ...): give only the key");
    return refuse(
        fmt::format("unsupported key type '{}' (allowed: ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, "
                    "sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com)",
                    shortValue(type)));
  }

  std::string_view encoded = nextToken(rest);
  if (encoded.empty()) return refuse("the key data (base64) is missing after the type");
  auto blob = decodeBase64(encoded);
  if (!blob) return refuse("the key data is not valid base64");

  WireReader r(*blob);
  auto inner = r.string();
  if (!inner || *inner != type) return refuse(fmt::format("the key data is not a {} key", type));
  if (std::string why = checkKeyBody(type, r); !why.empty()) return refuse(why);

  while (!rest.empty() && isBlank(rest.front())) rest.remove_prefix(1);
  while (!rest.empty() && isBlank(rest.back())) rest.remove_suffix(1);
  if (rest.find('\t') != std::string_view::npos) return refuse("the comment must not contain tabs");
  if (rest.size() > kMaxSshKeyComment)
    return refuse(fmt::format("the comment must be at most {} characters", kMaxSshKeyComment));

  SshPublicKey key;
  key.type = std::string(type);
  key.blob = encodeBase64(*blob);
  key.comment = std::string(rest);
  key.fingerprint = fingerprintOf(*blob);
  return key;
}

}  // namespace corral::util
