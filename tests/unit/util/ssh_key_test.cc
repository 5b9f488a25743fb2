// Proves that parseSshPublicKey accepts real keys made by ssh-keygen (every
// allowed type it can make without hardware) with the fingerprint `ssh-keygen
// -l` prints, accepts hand-built security-key blobs the same way, and refuses
// each kind of bad line with InvalidInput on field "key": options before the
// type, unknown types, newlines, bad base64, a blob of another type, short
// RSA, a curve point off its curve, malformed or trailing blob bytes, bad
// comments and oversized lines.
#include "util/ssh_key.h"

#include <openssl/evp.h>

#include <fstream>
#include <initializer_list>
#include <string>

#include <gtest/gtest.h>

#include "support/files.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::util {
namespace {

using corral::testing::readAll;
using corral::testing::TempDir;

bool haveSshKeygen() {
  Command probe("ssh-keygen");
  probe.keepEnv({"PATH"}).arg("-?").allowFailureStatus();
  return probe.run().ok();  // only an exec failure (not installed) is an error here
}

// Makes a key with ssh-keygen in dir and returns its public line (without the newline).
std::string makeKey(const TempDir& dir, const std::string& name, const std::string& type, const std::string& bits,
                    const std::string& comment) {
  std::string path = (dir / name).string();
  Command cmd("ssh-keygen");
  cmd.keepEnv({"PATH"}).args({"-q", "-t"}).arg(type).args({"-N", "", "-C"}).arg(comment).arg("-f").arg(path);
  if (!bits.empty()) cmd.arg("-b").arg(bits);
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
  std::string line = readAll(path + ".pub");
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

// The SHA256 fingerprint `ssh-keygen -lf` prints for the public key file at path.
std::string keygenFingerprint(const std::string& path) {
  Command cmd("ssh-keygen");
  cmd.keepEnv({"PATH"}).args({"-E", "sha256", "-lf"}).arg(path).stdoutToBuffer().stderrToBuffer();
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
  if (!r.ok()) return "";
  // "256 SHA256:abc... comment (ED25519)"
  const std::string& out = r->out;
  size_t start = out.find(' ');
  size_t end = out.find(' ', start + 1);
  return start == std::string::npos ? "" : out.substr(start + 1, end - start - 1);
}

std::string b64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// SSH wire format: each part as uint32 length + bytes.
std::string wire(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto& p : parts) {
    uint32_t n = static_cast<uint32_t>(p.size());
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>((n >> shift) & 0xff));
    out += p;
  }
  return out;
}

std::string ecPoint(size_t coord) { return "\x04" + std::string(2 * coord, '\x11'); }

std::string unhex(std::string_view h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out.push_back(static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16)));
  return out;
}

// The generator of P-256 (SEC 2), uncompressed: a point ssh-keygen accepts as on the curve.
std::string p256Generator() {
  return unhex(
      "04"
      "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296"
      "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5");
}

// An RSA blob whose modulus has exactly `bits` bits.
std::string rsaBlob(unsigned bits) {
  std::string n((bits + 7) / 8, '\xa5');
  unsigned topBits = bits % 8 == 0 ? 8 : bits % 8;
  n[0] = static_cast<char>(1u << (topBits - 1));                           // only the top bit set in the lead byte
  if (static_cast<unsigned char>(n[0]) & 0x80) n.insert(n.begin(), '\0');  // mpint: stay positive
  return wire({"ssh-rsa", std::string("\x01\x00\x01", 3), n});
}

void expectRefused(std::string_view line, std::string_view reasonPart) {
  auto r = parseSshPublicKey(line);
  ASSERT_FALSE(r.ok()) << "accepted: " << line.substr(0, 80);
  EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(r.error().field, "key");
  EXPECT_LE(r.error().value.size(), 43u) << "the error value is the start of the line only";
  EXPECT_NE(r.error().message.find(reasonPart), std::string::npos) << r.error().message;
}

TEST(SshKey, RealKeysMatchSshKeygenFingerprints) {
  if (!haveSshKeygen()) GTEST_SKIP() << "ssh-keygen (openssh-client) is not installed";
  TempDir dir;
  struct Case {
    std::string name, type, bits;
  };
  const Case cases[] = {{"ed", "ed25519", ""},     {"rsa", "rsa", "2048"},    {"rsa4k", "rsa", "4096"},
                        {"ec256", "ecdsa", "256"}, {"ec384", "ecdsa", "384"}, {"ec521", "ecdsa", "521"}};
  for (const auto& c : cases) {
    std::string line = makeKey(dir, c.name, c.type, c.bits, "alice@laptop " + c.name);
    auto key = parseSshPublicKey(line);
    ASSERT_TRUE(key.ok()) << c.name << ": " << key.error().describe();
    EXPECT_EQ(key->fingerprint, keygenFingerprint((dir / (c.name + ".pub")).string())) << c.name;
    EXPECT_EQ(key->comment, "alice@laptop " + c.name);
    EXPECT_EQ(key->line(), line) << "ssh-keygen's line is already canonical";
    EXPECT_TRUE(line.starts_with(key->type + " " + key->blob + " "));
  }
}

TEST(SshKey, SecurityKeyBlobsParseAndMatchSshKeygen) {
  if (!haveSshKeygen()) GTEST_SKIP() << "ssh-keygen (openssh-client) is not installed";
  TempDir dir;
  const std::string lines[] = {
      "sk-ssh-ed25519@openssh.com " + b64(wire({"sk-ssh-ed25519@openssh.com", std::string(32, '\x42'), "ssh:"})) +
          " yubi",
      "sk-ecdsa-sha2-nistp256@openssh.com " +
          b64(wire({"sk-ecdsa-sha2-nistp256@openssh.com", "nistp256", p256Generator(), "ssh:"})) + " yubi",
  };
  int i = 0;
  for (const auto& line : lines) {
    auto key = parseSshPublicKey(line);
    ASSERT_TRUE(key.ok()) << key.error().describe();
    std::string path = (dir / ("sk" + std::to_string(i++) + ".pub")).string();
    std::ofstream(path) << line << "\n";
    EXPECT_EQ(key->fingerprint, keygenFingerprint(path));
  }
}

TEST(SshKey, BlanksAreTrimmedAndTheLineIsCanonical) {
  std::string blob = b64(wire({"ssh-ed25519", std::string(32, '\x07')}));
  auto key = parseSshPublicKey("  ssh-ed25519\t" + blob + "   my  key \t");
  ASSERT_TRUE(key.ok()) << key.error().describe();
  EXPECT_EQ(key->type, "ssh-ed25519");
  EXPECT_EQ(key->blob, blob);
  EXPECT_EQ(key->comment, "my  key");
  EXPECT_EQ(key->line(), "ssh-ed25519 " + blob + " my  key");
  EXPECT_TRUE(key->fingerprint.starts_with("SHA256:"));
  EXPECT_EQ(key->fingerprint.size(), 7u + 43u) << "32 bytes in base64 without padding";

  auto bare = parseSshPublicKey("ssh-ed25519 " + blob);
  ASSERT_TRUE(bare.ok());
  EXPECT_EQ(bare->comment, "");
  EXPECT_EQ(bare->line(), "ssh-ed25519 " + blob);
}

TEST(SshKey, RsaNeedsAtLeast2048Bits) {
  auto at = parseSshPublicKey("ssh-rsa " + b64(rsaBlob(2048)));
  EXPECT_TRUE(at.ok()) << at.error().describe();
  expectRefused("ssh-rsa " + b64(rsaBlob(2047)), "at least 2048 bits (this one has 2047)");
  expectRefused("ssh-rsa " + b64(rsaBlob(1024)), "at least 2048 bits");
  if (haveSshKeygen()) {
    TempDir dir;
    std::string small = makeKey(dir, "small", "rsa", "1024", "old");
    if (!small.empty()) expectRefused(small, "at least 2048 bits (this one has 1024)");
  }
}

TEST(SshKey, RefusesOptionsBeforeTheKey) {
  std::string key = "ssh-ed25519 " + b64(wire({"ssh-ed25519", std::string(32, '\x07')})) + " me";
  expectRefused("from=\"10.0.0.1\" " + key, "must not start with options");
  expectRefused("command=\"/bin/sh -c 'x y'\" " + key, "must not start with options");
  expectRefused("no-pty " + key, "must not start with options");
  expectRefused("restrict,port-forwarding " + key, "must not start with options");
}

TEST(SshKey, RefusesUnknownTypesAndMismatchedBlobs) {
  expectRefused("ssh-dss " + b64(wire({"ssh-dss", "p", "q", "g", "y"})), "unsupported key type 'ssh-dss'");
  // A type the allow-list has, over the blob of another.
  expectRefused("ssh-rsa " + b64(wire({"ssh-ed25519", std::string(32, '\x07')})), "not a ssh-rsa key");
  expectRefused("ecdsa-sha2-nistp384 " + b64(wire({"ecdsa-sha2-nistp384", "nistp256", ecPoint(32)})),
                "does not name the curve nistp384");
  expectRefused("ecdsa-sha2-nistp256 " + b64(wire({"ecdsa-sha2-nistp256", "nistp256", ecPoint(32)})),
                "not on the curve nistp256");
  EXPECT_TRUE(
      parseSshPublicKey("ecdsa-sha2-nistp256 " + b64(wire({"ecdsa-sha2-nistp256", "nistp256", p256Generator()}))).ok());
  expectRefused("ssh-ed25519 " + b64(wire({"ssh-ed25519", std::string(31, '\x07')})), "malformed");
  expectRefused("ssh-ed25519 " + b64(wire({"ssh-ed25519", std::string(32, '\x07'), "extra"})), "trailing bytes");
  expectRefused("sk-ssh-ed25519@openssh.com " + b64(wire({"sk-ssh-ed25519@openssh.com", std::string(32, '\x07')})),
                "application is missing");
  expectRefused("ssh-rsa " + b64(wire({"ssh-rsa", std::string("\x01\x00\x01", 3)})), "truncated");
}

TEST(SshKey, RefusesBadBase64) {
  expectRefused("ssh-ed25519", "missing");
  expectRefused("ssh-ed25519 AAAA!!!!", "not valid base64");
  expectRefused("ssh-ed25519 AAAAC3NzaC1lZDI1NTE", "not valid base64");  // length not a multiple of 4
  expectRefused("ssh-ed25519 AA=A", "not valid base64");                 // padding inside
  expectRefused("ssh-ed25519 AAAA====", "not valid base64");
  expectRefused("", "is empty");
  expectRefused("   ", "is empty");
}

TEST(SshKey, RefusesNewlinesControlCharactersAndBadComments) {
  std::string key = "ssh-ed25519 " + b64(wire({"ssh-ed25519", std::string(32, '\x07')}));
  expectRefused(key + "\n", "one line");
  expectRefused(key + " a\nssh-ed25519 " + key, "one line");
  expectRefused(key + " a\rb", "one line");
  expectRefused(key + " bell\x07", "printable ASCII");
  expectRefused(key + " caf\xc3\xa9", "printable ASCII");
  expectRefused(key + std::string(" a\0b", 4), "printable ASCII");
  expectRefused(key + " a\tb", "tabs");
  EXPECT_TRUE(parseSshPublicKey(key + " " + std::string(200, 'c')).ok());
  expectRefused(key + " " + std::string(201, 'c'), "at most 200 characters");
}

TEST(SshKey, RefusesOversizedLines) {
  std::string key = "ssh-ed25519 " + b64(wire({"ssh-ed25519", std::string(32, '\x07')})) + " ";
  expectRefused(key + std::string(kMaxSshKeyLine + 1 - key.size(), 'c'), "at most 16384 bytes");
}

}  // namespace
}  // namespace corral::util
