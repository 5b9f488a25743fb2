// Proves password hashing uses argon2id with the contract's parameters
// (t=3, m=64 MiB, p=1) and a fresh salt each time, that verification accepts
// the right password only, and that anything not an argon2id hash verifies as
// false rather than crashing.
#include "util/password.h"

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(Password, DefaultHashIsArgon2idWithContractParameters) {
  auto h = hashPassword("correct horse battery staple");
  ASSERT_TRUE(h.ok()) << h.error().describe();
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=65536,t=3,p=1$", 0), 0u) << *h;
  EXPECT_TRUE(verifyPassword(*h, "correct horse battery staple"));
  EXPECT_FALSE(verifyPassword(*h, "correct horse battery stapl"));
  EXPECT_FALSE(verifyPassword(*h, ""));
}

TEST(Password, SaltMakesEachHashDifferent) {
  PasswordCost cheap{1, 64, 1};
  auto a = hashPassword("same password", cheap);
  auto b = hashPassword("same password", cheap);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(verifyPassword(*a, "same password"));
  EXPECT_TRUE(verifyPassword(*b, "same password"));
  // 16-byte salt and 32-byte hash: 22 and 43 base64 characters.
  auto salt = a->substr(a->rfind('$', a->rfind('$') - 1) + 1);
  EXPECT_EQ(salt.size(), 22u + 1u + 43u) << *a;
}

TEST(Password, GarbageAndOtherVariantsNeverVerify) {
  EXPECT_FALSE(verifyPassword("", "x"));
  EXPECT_FALSE(verifyPassword("plain-text", "plain-text"));
  EXPECT_FALSE(verifyPassword("$argon2id$v=19$m=65536,t=3,p=1$broken", "x"));
  // An argon2i hash of "password" (salt "somesalt"), valid but not argon2id.
  EXPECT_FALSE(verifyPassword("$argon2i$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$wWKIMhR9lyDFvRz9YTZweHKfbftvj+qf+YFY4NeBbtA",
                              "password"));
}

TEST(Password, BinaryPasswordsWork) {
  PasswordCost cheap{1, 64, 1};
  std::string pw("a\0b\xff", 4);
  auto h = hashPassword(pw, cheap);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(verifyPassword(*h, pw));
  EXPECT_FALSE(verifyPassword(*h, std::string("a\0b\xfe", 4)));
}

}  // namespace
}  // namespace corral::util
