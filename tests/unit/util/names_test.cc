// Proves the name allow-lists refuse shell and path characters and accept
// DNS-label names, naming the field in the error.
#include "util/names.h"

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(VmName, AcceptsDnsLabels) {
  for (const std::string& n : {std::string("a"), std::string("web1"), std::string("my-vm"), std::string("0abc"),
                               std::string(63, 'x')})
    EXPECT_TRUE(validateVmName("name", n).ok()) << n;
}

TEST(VmName, RefusesShellAndPathCharacters) {
  for (const std::string& n : {std::string(""), std::string("a;b"), std::string("../x"), std::string("$(x)"),
                               std::string("-a"), std::string("a-"), std::string("A"), std::string("a b"),
                               std::string("a/b"), std::string("a,b"), std::string("a.b"), std::string("a\nb"),
                               std::string(64, 'x')}) {
    auto r = validateVmName("name", n);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(r.error().field, "name");
    EXPECT_EQ(r.error().value, n);
  }
}

// Hostnames are RFC 1123 labels: letters of either case, digits and inner dashes.
TEST(Hostname, AcceptsLabelsAndRefusesTheRest) {
  for (const std::string& n : {std::string("web"), std::string("Web-1"), std::string("9"), std::string(63, 'h')})
    EXPECT_TRUE(validateHostname("hostname", n).ok()) << n;
  for (const std::string& n : {std::string(""), std::string("-a"), std::string("a-"), std::string("a_b"),
                               std::string("a.b"), std::string("a b"), std::string("a\nb"), std::string(64, 'h')}) {
    auto r = validateHostname("hostname", n);
    ASSERT_FALSE(r.ok()) << n;
    EXPECT_EQ(r.error().field, "hostname");
  }
}

TEST(ImageName, AllowsDotsButNotTraversal) {
  EXPECT_TRUE(validateImageName("image", "debian-12.4").ok());
  EXPECT_TRUE(validateImageName("image", "busy_box").ok());
  for (auto n : {"..", "a..b", ".hidden", "a/b", "a;b", "x."}) EXPECT_FALSE(validateImageName("image", n).ok()) << n;
}

}  // namespace
}  // namespace corral::util
