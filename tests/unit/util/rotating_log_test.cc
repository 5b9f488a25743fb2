// Proves that RotatingLog keeps every byte until it rotates, rotates at maxBytes
// into NAME.1 (replacing the old one), never takes more than 2×maxBytes on disk,
// and that readTail() returns the newest bytes across NAME.1 and NAME in order.
#include "util/rotating_log.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "support/temp_dir.h"

namespace corral::util {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

uintmax_t sizeOr0(const fs::path& p) {
  std::error_code ec;
  auto s = fs::file_size(p, ec);
  return ec ? 0 : s;
}

TEST(RotatingLog, AppendsBelowTheBound) {
  testing::TempDir dir;
  auto path = (dir / "console.log").string();
  auto log = RotatingLog::open(path, 100);
  ASSERT_TRUE(log.ok()) << log.error().describe();
  ASSERT_TRUE((*log)->append("hello ").ok());
  ASSERT_TRUE((*log)->append("world").ok());
  EXPECT_EQ(slurp(path), "hello world");
  EXPECT_FALSE(fs::exists(path + ".1"));
  EXPECT_EQ((*log)->readTail(1000), "hello world");
  EXPECT_EQ((*log)->readTail(5), "world");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(RotatingLog, RotatesAtTheBoundAndKeepsOrder) {
  testing::TempDir dir;
  auto path = (dir / "c.log").string();
  auto log = RotatingLog::open(path, 10);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->append("0123456789abcde").ok());  // 15 bytes: 10 rotated, 5 current
  EXPECT_EQ(slurp(path + ".1"), "0123456789");
  EXPECT_EQ(slurp(path), "abcde");
  EXPECT_EQ((*log)->readTail(100), "0123456789abcde");
  EXPECT_EQ((*log)->readTail(7), "89abcde");
  ASSERT_TRUE((*log)->append("fghijKLMNO").ok());  // current fills and rotates again
  EXPECT_EQ(slurp(path + ".1"), "abcdefghij");
  EXPECT_EQ(slurp(path), "KLMNO");
  EXPECT_EQ((*log)->readTail(100), "abcdefghijKLMNO");
}

TEST(RotatingLog, DiskStaysBoundedUnderFlood) {
  testing::TempDir dir;
  auto path = (dir / "flood.log").string();
  const size_t max = 4096;
  auto log = RotatingLog::open(path, max);
  ASSERT_TRUE(log.ok());
  std::string chunk(777, 'x');
  std::string last;
  for (int i = 0; i < 2000; ++i) {
    chunk.back() = static_cast<char>('a' + i % 26);
    ASSERT_TRUE((*log)->append(chunk).ok());
    EXPECT_LE(sizeOr0(path), max);
    EXPECT_LE(sizeOr0(path) + sizeOr0(path + ".1"), 2 * max);
  }
  // The newest byte written is the last one read back.
  auto tail = (*log)->readTail(1);
  EXPECT_EQ(tail, std::string(1, static_cast<char>('a' + 1999 % 26)));
  EXPECT_EQ((*log)->readTail(3 * max).size(), sizeOr0(path) + sizeOr0(path + ".1"));
}

TEST(RotatingLog, ReopenContinuesAndRotatesOversizedFile) {
  testing::TempDir dir;
  auto path = (dir / "r.log").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(50, 'o');
  }
  auto log = RotatingLog::open(path, 20);
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(sizeOr0(path), 0u);  // the oversized file moved to .1 at once
  ASSERT_TRUE((*log)->append("new").ok());
  EXPECT_EQ(slurp(path), "new");
  EXPECT_EQ(RotatingLog::readTail(path, 5), "o" "onew");
}

TEST(RotatingLog, StaticTailOfMissingLogIsEmpty) {
  testing::TempDir dir;
  EXPECT_EQ(RotatingLog::readTail((dir / "none.log").string(), 10), "");
}

TEST(RotatingLog, ZeroMaxIsRefused) {
  testing::TempDir dir;
  EXPECT_FALSE(RotatingLog::open((dir / "z.log").string(), 0).ok());
}

}  // namespace
}  // namespace corral::util
