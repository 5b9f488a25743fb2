// Proves console tokens: a minted token verifies back to the same claims; the
// key file is made 0600 with 32 bytes, survives a restart, and a bad one is
// refused; expired tokens, tokens for the other console kind, forged or
// re-signed tokens and every malformed input are refused as Unauthenticated
// with a message naming the check (and never the key); rotation refuses old
// tokens; two tokens minted at one instant differ; the ttl is bounded; and
// mint/verify run safely beside rotate.
#include "core/console_tokens.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/files.h"
#include "support/temp_dir.h"
#include "util/crypto.h"

namespace corral::core {
namespace {

namespace fs = std::filesystem;
using corral::testing::modeOf;
using corral::testing::readAll;
using std::chrono::seconds;
using std::chrono::system_clock;

constexpr int64_t kT0 = 1'800'000'000;  // a fixed "now" (2027-01-15)

// A clock the test moves by hand; shared with the ConsoleTokens it was given to.
struct FakeClock {
  std::atomic<int64_t> now{kT0};
  std::function<system_clock::time_point()> fn() {
    return [this] { return system_clock::time_point(seconds(now.load())); };
  }
};

ConsoleTokenClaims someClaims() {
  ConsoleTokenClaims c;
  c.login = "alice";
  c.userId = 42;
  c.via = "token";
  c.apiTokenId = 7;
  c.vmUuid = "0b7e1c1e-3f7a-4c55-9a3e-6d1f6c2b9a10";
  c.kind = ConsoleKind::Serial;
  return c;
}

// What mint() writes, as JSON, for tests that sign their own payloads.
nlohmann::json goodPayload() {
  return {{"v", 1},       {"sub", "alice"},     {"uid", 42},  {"via", "token"}, {"tok", 7},
          {"vm", "vm-1"}, {"kind", "serial"},   {"iat", kT0}, {"exp", kT0 + 300},
          {"n", "AAAAAAAAAAAAAAAAAAAAAA"}};
}

// A token over any payload bytes, signed the documented way under key.
std::string signRaw(const std::string& key, const std::string& payload) {
  const std::string first = util::base64UrlEncode(payload);
  return first + "." + util::base64UrlEncode(util::hmacSha256(key, "corral-console-v1." + first));
}

class ConsoleTokensTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }

  void reopen(seconds ttl = seconds(300)) {
    tokens_.reset();
    auto t = ConsoleTokens::open({keyFile(), ttl, clock_.fn()});
    ASSERT_TRUE(t.ok()) << t.error().describe();
    tokens_ = std::move(t).take();
  }
  fs::path keyFile() const { return dir_ / "keys" / "console.key"; }
  std::string key() const { return readAll(keyFile()); }

  // Expects an Unauthenticated refusal whose message contains `needle` and not the key.
  void expectRefused(std::string_view token, std::string_view needle, ConsoleKind kind = ConsoleKind::Serial) {
    auto r = tokens_->verify(token, kind);
    ASSERT_FALSE(r.ok()) << "accepted: " << token.substr(0, 80);
    EXPECT_EQ(r.error().code, ErrorCode::Unauthenticated) << r.error().describe();
    EXPECT_NE(r.error().message.find(needle), std::string::npos)
        << "message: " << r.error().message << "\nexpected to contain: " << needle;
    EXPECT_EQ(r.error().message.find(util::base64UrlEncode(key())), std::string::npos);
  }

  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<ConsoleTokens> tokens_;
};

// Proves the kind names and their parser agree, and nothing else parses.
TEST(ConsoleKindNames, RoundTrip) {
  for (ConsoleKind k : {ConsoleKind::Serial, ConsoleKind::Vnc}) EXPECT_EQ(parseConsoleKind(consoleKindName(k)), k);
  EXPECT_EQ(consoleKindName(ConsoleKind::Serial), "serial");
  EXPECT_EQ(consoleKindName(ConsoleKind::Vnc), "vnc");
  EXPECT_FALSE(parseConsoleKind("VNC"));
  EXPECT_FALSE(parseConsoleKind(""));
  EXPECT_FALSE(parseConsoleKind("spice"));
}

// Proves a minted token verifies to the claims it was minted with, that mint
// sets iat/exp/nonce itself (ignoring the caller's), and that the token and its
// payload have the documented form ("tok" only with an API token).
TEST_F(ConsoleTokensTest, RoundTrip) {
  ConsoleTokenClaims in = someClaims();
  in.issuedAt = 1;
  in.expiresAt = 2;
  in.nonce = "mine";
  auto m = tokens_->mint(in);
  ASSERT_TRUE(m.ok()) << m.error().describe();
  EXPECT_EQ(m->expiresAt, kT0 + 300);
  EXPECT_EQ(m->token.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."),
            std::string::npos);

  auto c = tokens_->verify(m->token, ConsoleKind::Serial);
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ(c->login, "alice");
  EXPECT_EQ(c->userId, 42);
  EXPECT_EQ(c->via, "token");
  EXPECT_EQ(c->apiTokenId, std::optional<int64_t>(7));
  EXPECT_EQ(c->vmUuid, in.vmUuid);
  EXPECT_EQ(c->kind, ConsoleKind::Serial);
  EXPECT_EQ(c->issuedAt, kT0);
  EXPECT_EQ(c->expiresAt, kT0 + 300);
  auto nonce = util::base64UrlDecode(c->nonce);
  ASSERT_TRUE(nonce);
  EXPECT_EQ(nonce->size(), 16u);

  const size_t dot = m->token.find('.');
  ASSERT_NE(dot, std::string::npos);
  auto payload = nlohmann::json::parse(*util::base64UrlDecode(m->token.substr(0, dot)));
  EXPECT_EQ(payload["v"], 1);
  EXPECT_EQ(payload["sub"], "alice");
  EXPECT_EQ(payload["tok"], 7);
  EXPECT_EQ(payload["kind"], "serial");
  EXPECT_EQ(payload["n"], c->nonce);

  // Without an API token (root over the unix socket): no "tok", and vnc.
  ConsoleTokenClaims root;
  root.login = "root";
  root.via = "unix";
  root.vmUuid = "vm-2";
  root.kind = ConsoleKind::Vnc;
  auto mr = tokens_->mint(root);
  ASSERT_TRUE(mr.ok());
  auto pr = nlohmann::json::parse(*util::base64UrlDecode(mr->token.substr(0, mr->token.find('.'))));
  EXPECT_FALSE(pr.contains("tok"));
  EXPECT_EQ(pr["uid"], 0);
  auto cr = tokens_->verify(mr->token, ConsoleKind::Vnc);
  ASSERT_TRUE(cr.ok()) << cr.error().describe();
  EXPECT_FALSE(cr->apiTokenId);
  EXPECT_EQ(cr->userId, 0);

  // A token needs a VM.
  ConsoleTokenClaims noVm = someClaims();
  noVm.vmUuid.clear();
  EXPECT_FALSE(tokens_->mint(noVm).ok());
}

// Proves the key file is made on first open: 32 bytes, mode 0600, its
// directory 0700, and nothing else left beside it.
TEST_F(ConsoleTokensTest, KeyFileMadePrivateWith32Bytes) {
  EXPECT_EQ(fs::file_size(keyFile()), 32u);
  EXPECT_EQ(modeOf(keyFile()), 0600u);
  EXPECT_EQ(modeOf(keyFile().parent_path()), 0700u);
  EXPECT_EQ(std::distance(fs::directory_iterator(keyFile().parent_path()), fs::directory_iterator()), 1);
}

// Proves a key file that group or others may read is refused, naming the file.
TEST_F(ConsoleTokensTest, KeyFileWithMode0644Refused) {
  tokens_.reset();
  fs::permissions(keyFile(), fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                                 fs::perms::others_read);
  auto r = ConsoleTokens::open({keyFile(), seconds(300), clock_.fn()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find(keyFile().string()), std::string::npos);
  EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos);
}

// Proves a key file of the wrong size is refused and left untouched.
TEST_F(ConsoleTokensTest, WrongSizeKeyRefused) {
  const fs::path file = dir_ / "short.key";
  std::ofstream(file) << "0123456789";
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  auto r = ConsoleTokens::open({file, seconds(300), clock_.fn()});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find(file.string()), std::string::npos);
  EXPECT_EQ(readAll(file), "0123456789");
  EXPECT_FALSE(ConsoleTokens::open({"relative/console.key", seconds(300), {}}).ok());
}

// Proves expiry: valid up to the second before exp, refused at exp and after,
// with the expiry time in the message; a token issued more than 60 s ahead of
// the verifier's clock is refused, one 60 s ahead is accepted.
TEST_F(ConsoleTokensTest, Expired) {
  const std::string t = tokens_->mint(someClaims())->token;
  clock_.now = kT0 + 299;
  EXPECT_TRUE(tokens_->verify(t, ConsoleKind::Serial).ok());
  clock_.now = kT0 + 300;
  expectRefused(t, "console token expired at 2027-01-15T08:05:00Z");
  clock_.now = kT0 + 100000;
  expectRefused(t, "expired");

  clock_.now = kT0 + 61;  // minted 61 s in the verifier's future
  const std::string ahead = tokens_->mint(someClaims())->token;
  clock_.now = kT0 + 60;  // exactly 60 s ahead: within the allowed skew
  const std::string justAhead = tokens_->mint(someClaims())->token;
  clock_.now = kT0;
  expectRefused(ahead, "issued at");
  EXPECT_TRUE(tokens_->verify(justAhead, ConsoleKind::Serial).ok());
}

// Proves a token opens one console connection: the second redeem of the same
// token is refused, another token for the same VM is not, and a refused
// (expired) token is not spent by the refusal.
TEST_F(ConsoleTokensTest, RedeemSpendsTheTokenOnce) {
  const std::string t = tokens_->mint(someClaims())->token;
  const std::string other = tokens_->mint(someClaims())->token;
  ASSERT_TRUE(tokens_->redeem(t, ConsoleKind::Serial).ok());
  auto again = tokens_->redeem(t, ConsoleKind::Serial);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::Unauthenticated);
  EXPECT_NE(again.error().message.find("already used"), std::string::npos) << again.error().message;
  EXPECT_TRUE(tokens_->redeem(other, ConsoleKind::Serial).ok());
  EXPECT_FALSE(tokens_->redeem(t, ConsoleKind::Vnc).ok()) << "the wrong kind is refused before spending";
  clock_.now = kT0 + 300;
  const std::string late = tokens_->mint(someClaims())->token;
  clock_.now = kT0 + 600;
  EXPECT_FALSE(tokens_->redeem(late, ConsoleKind::Serial).ok());
}

// Proves a token for one console kind does not open the other.
TEST_F(ConsoleTokensTest, WrongKind) {
  ConsoleTokenClaims c = someClaims();
  c.kind = ConsoleKind::Vnc;
  const std::string vnc = tokens_->mint(c)->token;
  expectRefused(vnc, "console token is for the vnc console, not serial", ConsoleKind::Serial);
  EXPECT_TRUE(tokens_->verify(vnc, ConsoleKind::Vnc).ok());
  const std::string serial = tokens_->mint(someClaims())->token;
  expectRefused(serial, "console token is for the serial console, not vnc", ConsoleKind::Vnc);
}

// Proves forgery is caught: any changed character of the payload or of the
// MAC, a truncated MAC, a payload changed and re-encoded, and a token signed
// under another key are all refused by the signature check.
TEST_F(ConsoleTokensTest, ForgedSignature) {
  const std::string t = tokens_->mint(someClaims())->token;
  const size_t dot = t.find('.');
  const std::string sig = "console token signature does not match (forged, or the key was rotated)";
  // The last character of each part carries unused bits; changing it is malformed instead.
  for (size_t i = 0; i + 1 < t.size(); ++i) {
    if (i == dot || i + 1 == dot) continue;
    std::string f = t;
    f[i] = f[i] == 'A' ? 'B' : 'A';
    expectRefused(f, sig);
  }
  expectRefused(t.substr(0, t.size() - 3), "");  // shorter MAC (or not base64url): refused either way

  // A payload edited (uid 42 -> 1, i.e. someone else) with the old MAC kept.
  auto payload = nlohmann::json::parse(*util::base64UrlDecode(t.substr(0, dot)));
  payload["uid"] = 1;
  expectRefused(util::base64UrlEncode(payload.dump()) + t.substr(dot), sig);

  // Signed under another key.
  auto other = ConsoleTokens::open({dir_ / "other.key", seconds(300), clock_.fn()});
  ASSERT_TRUE(other.ok());
  const std::string foreign = (*other)->mint(someClaims())->token;
  EXPECT_TRUE((*other)->verify(foreign, ConsoleKind::Serial).ok());
  expectRefused(foreign, sig);
  // The same payload signed properly under our key is accepted: the test's signer matches mint's.
  EXPECT_TRUE(tokens_->verify(signRaw(key(), goodPayload().dump()), ConsoleKind::Serial).ok());
}

// Proves every malformed input is refused before or after the signature check
// as documented: empty, no dot, too many dots, empty parts, bad base64url,
// oversize; and, when correctly signed, a non-JSON or non-object payload, each
// field missing or of the wrong type, an unknown kind and v = 2.
TEST_F(ConsoleTokensTest, MalformedInputs) {
  expectRefused("", "malformed console token");
  expectRefused("abcdef", "malformed console token");
  expectRefused("a.b.c", "malformed console token");
  expectRefused(".abc", "malformed console token");
  expectRefused("abc.", "malformed console token");
  expectRefused("ab*d.abcd", "malformed console token");
  expectRefused("abcd.ab=d", "malformed console token");
  expectRefused(std::string(4097, 'A'), "more than 4096");
  // Oversize is checked first: a well-formed prefix does not help.
  const std::string good = tokens_->mint(someClaims())->token;
  expectRefused(good + std::string(4097 - good.size(), 'A'), "more than 4096");

  const std::string k = key();
  expectRefused(signRaw(k, "not json"), "malformed console token: the payload is not a JSON object");
  expectRefused(signRaw(k, "[1,2]"), "not a JSON object");
  expectRefused(signRaw(k, "{\"v\":1"), "not a JSON object");

  const std::vector<std::pair<const char*, nlohmann::json>> wrongTypes = {
      {"v", "1"},     {"sub", 5},   {"uid", "42"}, {"uid", 4.5},     {"via", nullptr}, {"tok", "7"},
      {"vm", 3},      {"vm", ""},   {"kind", 1},   {"kind", "spice"}, {"iat", "now"},  {"exp", 1.5},
      {"n", false},   {"uid", nlohmann::json::array()}, {"exp", 18446744073709551615ull}};
  for (const auto& [field, value] : wrongTypes) {
    nlohmann::json p = goodPayload();
    p[field] = value;
    SCOPED_TRACE(p.dump());
    expectRefused(signRaw(k, p.dump()), fmt::format("malformed console token: field \"{}\"", field));
  }
  for (const char* field : {"v", "sub", "uid", "via", "vm", "kind", "iat", "exp", "n"}) {
    nlohmann::json p = goodPayload();
    p.erase(field);
    SCOPED_TRACE(field);
    expectRefused(signRaw(k, p.dump()), fmt::format("field \"{}\" is missing", field));
  }
  nlohmann::json v2 = goodPayload();
  v2["v"] = 2;
  expectRefused(signRaw(k, v2.dump()), "console token version 2 is not supported");
  // "tok" is optional: absent is fine.
  nlohmann::json noTok = goodPayload();
  noTok.erase("tok");
  EXPECT_TRUE(tokens_->verify(signRaw(k, noTok.dump()), ConsoleKind::Serial).ok());
}

// Proves rotate() refuses every token minted before it (with the signature
// message), accepts tokens minted after, and writes the new key to the file
// (0600, 32 bytes) so that a restart keeps it.
TEST_F(ConsoleTokensTest, RotateRefusesOldTokensAcceptsNew) {
  const std::string before = tokens_->mint(someClaims())->token;
  const std::string oldKey = key();
  ASSERT_TRUE(tokens_->verify(before, ConsoleKind::Serial).ok());
  auto r = tokens_->rotate();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  expectRefused(before, "the key was rotated");
  const std::string after = tokens_->mint(someClaims())->token;
  EXPECT_TRUE(tokens_->verify(after, ConsoleKind::Serial).ok());
  EXPECT_NE(key(), oldKey);
  EXPECT_EQ(fs::file_size(keyFile()), 32u);
  EXPECT_EQ(modeOf(keyFile()), 0600u);
  reopen();
  EXPECT_TRUE(tokens_->verify(after, ConsoleKind::Serial).ok());
  expectRefused(before, "signature does not match");
}

// Proves two tokens minted at the same instant for the same claims differ (the nonce).
TEST_F(ConsoleTokensTest, TwoTokensSameInstantDiffer) {
  auto a = tokens_->mint(someClaims());
  auto b = tokens_->mint(someClaims());
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->token, b->token);
  EXPECT_EQ(a->expiresAt, b->expiresAt);
  EXPECT_NE(tokens_->verify(a->token, ConsoleKind::Serial)->nonce,
            tokens_->verify(b->token, ConsoleKind::Serial)->nonce);
}

// Proves the key survives a restart: a token minted before reopening the same
// key file still verifies, and the file's bytes are unchanged.
TEST_F(ConsoleTokensTest, KeyFileSurvivesReopen) {
  const std::string t = tokens_->mint(someClaims())->token;
  const std::string k = key();
  reopen();
  EXPECT_EQ(key(), k);
  auto c = tokens_->verify(t, ConsoleKind::Serial);
  ASSERT_TRUE(c.ok()) << c.error().describe();
  EXPECT_EQ(c->login, "alice");
}

// Proves the ttl must be 10 s .. 24 h (InvalidInput on console_token_ttl), and
// that the bounds themselves are accepted and used.
TEST_F(ConsoleTokensTest, TtlOutOfRangeRefused) {
  for (seconds bad : {seconds(0), seconds(-5), seconds(9), seconds(24 * 3600 + 1)}) {
    auto r = ConsoleTokens::open({keyFile(), bad, clock_.fn()});
    ASSERT_FALSE(r.ok()) << bad.count();
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(r.error().field, "console_token_ttl");
  }
  for (seconds good : {seconds(10), seconds(24 * 3600)}) {
    auto r = ConsoleTokens::open({keyFile(), good, clock_.fn()});
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ((*r)->ttl(), good);
    EXPECT_EQ((*r)->mint(someClaims())->expiresAt, kT0 + good.count());
  }
}

// Proves mint and verify may run on several threads while another rotates:
// every verify either accepts or refuses on the signature, nothing else (run
// under the sanitizer build, this is also the data-race check).
TEST_F(ConsoleTokensTest, ConcurrentMintVerifyAndRotate) {
  std::atomic<bool> stop{false};
  std::atomic<int> unexpected{0};
  std::vector<std::thread> workers;
  for (int w = 0; w < 3; ++w) {
    workers.emplace_back([&] {
      while (!stop.load()) {
        auto m = tokens_->mint(someClaims());
        if (!m.ok()) {
          ++unexpected;
          continue;
        }
        auto v = tokens_->verify(m->token, ConsoleKind::Serial);
        if (!v.ok() && v.error().message.find("signature does not match") == std::string::npos) ++unexpected;
      }
    });
  }
  int rotateFailures = 0;
  for (int i = 0; i < 20; ++i) rotateFailures += tokens_->rotate().ok() ? 0 : 1;
  stop = true;
  for (auto& t : workers) t.join();
  EXPECT_EQ(rotateFailures, 0);
  EXPECT_EQ(unexpected.load(), 0);
  EXPECT_TRUE(tokens_->verify(tokens_->mint(someClaims())->token, ConsoleKind::Serial).ok());
}

}  // namespace
}  // namespace corral::core
