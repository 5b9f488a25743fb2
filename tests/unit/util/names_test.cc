// Proves the name allow-lists refuse shell and path characters and accept
// DNS-label names, naming the field in the error.
#include "util/names.h"

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(VmName, AcceptsDnsLabels) {
  for (auto n : {"a", "web1", "my-vm", "0abc", std::string(63, 'x').c_str()})
    EXPECT_TRUE(validateVmName("name", n).ok()) << n;
}

TEST(VmName, RefusesShellAndPathCharacters) {
  for (auto n : {"", "a;b", "../x", "$(x)", "-a", "a-", "A", "a b", "a/b", "a,b", "a.b", "a\nb",
                 std::string(64, 'x').c_str()}) {
    auto r = validateVmName("name", n);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(r.error().field, "name");
    EXPECT_EQ(r.error().value, n);
  }
}

TEST(ImageName, AllowsDotsButNotTraversal) {
  EXPECT_TRUE(validateImageName("image", "debian-12.4").ok());
  EXPECT_TRUE(validateImageName("image", "busy_box").ok());
  for (auto n : {"..", "a..b", ".hidden", "a/b", "a;b", "x."}) EXPECT_FALSE(validateImageName("image", n).ok()) << n;
}

}  // namespace
}  // namespace corral::util
