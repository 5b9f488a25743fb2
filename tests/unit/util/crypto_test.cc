// Proves the crypto helpers against published test vectors (SHA-256 and HMAC
// from FIPS 180-2 / RFC 4231, base64url from RFC 4648), that base64url decoding
// refuses padding, foreign characters and non-canonical text, that random bytes
// differ between calls, and that constantTimeEquals compares by content.
#include "util/crypto.h"

#include <set>

#include <gtest/gtest.h>

namespace corral::util {
namespace {

std::string hex(std::string_view raw) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 0xf]);
  }
  return out;
}

TEST(Crypto, Sha256KnownVectors) {
  EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Crypto, HmacSha256Rfc4231Case2) {
  EXPECT_EQ(hex(hmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hmacSha256("k", "x").size(), 32u);
}

TEST(Crypto, Base64UrlRfc4648VectorsWithoutPadding) {
  const std::pair<std::string, std::string> cases[] = {{"", ""},         {"f", "Zg"},         {"fo", "Zm8"},
                                                       {"foo", "Zm9v"},  {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"},
                                                       {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, enc] : cases) {
    EXPECT_EQ(base64UrlEncode(plain), enc);
    auto dec = base64UrlDecode(enc);
    ASSERT_TRUE(dec) << enc;
    EXPECT_EQ(*dec, plain);
  }
  // The URL-safe alphabet: 0xfb 0xff -> "-_8", never '+' or '/'.
  EXPECT_EQ(base64UrlEncode(std::string("\xfb\xff", 2)), "-_8");
  EXPECT_EQ(base64UrlDecode("-_8"), std::string("\xfb\xff", 2));
}

TEST(Crypto, Base64UrlRoundTripsEveryByte) {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t n = 0; n <= all.size(); n += 7) {
    auto dec = base64UrlDecode(base64UrlEncode(all.substr(0, n)));
    ASSERT_TRUE(dec);
    EXPECT_EQ(*dec, all.substr(0, n));
  }
}

TEST(Crypto, Base64UrlRefusesMalformedText) {
  // Padding, the non-URL alphabet, impossible lengths, blanks; and "Zh"/"Zm9",
  // which carry non-zero unused bits (the canonical texts are "Zg" and "Zm8").
  for (const char* bad : {"Zg==", "Zm9v+", "Zm9v/", "Z", "Zm9vY", "Zh", "Zm9", "a b", "Zm\n9v"})
    EXPECT_FALSE(base64UrlDecode(bad)) << bad;
  EXPECT_TRUE(base64UrlDecode("Zm8"));
}

TEST(Crypto, RandomBytesHaveTheLengthAndDiffer) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    auto r = randomBytes(32);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->size(), 32u);
    seen.insert(*r);
  }
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_TRUE(randomBytes(0).ok());
}

TEST(Crypto, ConstantTimeEqualsComparesContentAndLength) {
  EXPECT_TRUE(constantTimeEquals("", ""));
  EXPECT_TRUE(constantTimeEquals("secret", "secret"));
  EXPECT_FALSE(constantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(constantTimeEquals("secret", "secret1"));
  EXPECT_FALSE(constantTimeEquals("", "x"));
}

}  // namespace
}  // namespace corral::util
