// Proves that a database URL's password is masked wherever libpq accepts one
// (userinfo and the password= query parameter) and that nothing else changes.
#include "util/redact.h"

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(RedactTest, MasksTheUserinfoPassword) {
  EXPECT_EQ(maskUrlPassword("postgres://corral:s3cret@db.example.org:5432/corral"),
            "postgres://corral:***@db.example.org:5432/corral");
  EXPECT_EQ(maskUrlPassword("postgresql://postgres:p%40ss@/corral?host=/run/pg"),
            "postgresql://postgres:***@/corral?host=/run/pg");
}

TEST(RedactTest, MasksEveryPasswordQueryParameter) {
  EXPECT_EQ(maskUrlPassword("postgresql:///corral?host=/run/pg&password=hunter2&user=x"),
            "postgresql:///corral?host=/run/pg&password=***&user=x");
  EXPECT_EQ(maskUrlPassword("postgresql:///corral?password=a&password=b"),
            "postgresql:///corral?password=***&password=***");
  EXPECT_EQ(maskUrlPassword("postgres://u:one@h/db?password=two"), "postgres://u:***@h/db?password=***");
}

TEST(RedactTest, LeavesUrlsWithoutAPasswordAlone) {
  for (const char* url : {"postgres://corral@db/corral", "postgresql:///corral?host=/run/pg&user=postgres",
                          "/var/lib/corral/corral.db", "", "postgres://h/db?passwords=x&xpassword=y"})
    EXPECT_EQ(maskUrlPassword(url), url) << url;
}

TEST(RedactTest, AnAtSignInThePathIsNotUserinfo) {
  EXPECT_EQ(maskUrlPassword("http://host:80/a@b"), "http://host:80/a@b");
}

}  // namespace
}  // namespace corral::util
