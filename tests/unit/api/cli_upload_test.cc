// Proves HttpClient::upload, the streamed body of `corral image import`,
// against a stand-in daemon on a unix socket: the file arrives byte for byte
// with Content-Length = its size, application/octet-stream and "Expect:
// 100-continue"; it goes out in chunks (progress reported after each, rising to
// the total); a refusal sent before "100 Continue" is returned as the answer
// and no body byte follows it; a server that ignores Expect still gets the
// body; an empty file is an empty body; a missing file is an error on field
// "file" before any connection.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli/http_client.h"
#include "cli_fake_daemon.h"
#include "support/temp_dir.h"

namespace corral::cli {
namespace {

using testutil::FakeDaemon;
using testutil::Reply;
using testutil::SeenRequest;

// A file of `n` bytes that are not all the same (a dropped or repeated chunk
// would show).
std::string writeFile(const std::filesystem::path &p, size_t n) {
  std::string data(n, '\0');
  uint32_t x = 2463534242u;
  for (auto &c : data) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = char(x & 0xff);
  }
  std::ofstream(p, std::ios::binary).write(data.data(), std::streamsize(n));
  return data;
}

Reply accepted(const SeenRequest &r) {
  return {202, R"({"id":"op-1","state":"running","bytes_received":)" +
                   std::to_string(r.body.size()) + "}"};
}

TEST(CliUpload, StreamsTheFileInChunksAfter100Continue) {
  corral::testing::TempDir dir;
  // Three and a bit chunks of 64 KiB.
  const size_t size = 3 * 65536 + 1234;
  std::string data = writeFile(dir / "disk.qcow2", size);
  FakeDaemon daemon(accepted, [](const SeenRequest &) {
    return std::optional<Reply>();
  });
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  UploadOptions opts;
  opts.chunkBytes = 65536;
  auto r = HttpClient(daemon.socketPath())
               .upload("PUT", "/api/v1/images/deb/file?kind=disk",
                       (dir / "disk.qcow2").string(), {},
                       [&](uint64_t done, uint64_t total) {
                         progress.emplace_back(done, total);
                       },
                       opts);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 202);
  auto seen = daemon.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "PUT");
  EXPECT_EQ(seen[0].target, "/api/v1/images/deb/file?kind=disk");
  EXPECT_EQ(seen[0].contentType, "application/octet-stream");
  EXPECT_EQ(seen[0].expect, "100-continue");
  EXPECT_TRUE(seen[0].got100);
  ASSERT_TRUE(seen[0].contentLength.has_value());
  EXPECT_EQ(*seen[0].contentLength, size);
  EXPECT_TRUE(seen[0].body == data) << "the bytes differ";
  // One report per chunk, each at most a chunk further, ending at the total.
  ASSERT_EQ(progress.size(), 4u);
  uint64_t last = 0;
  for (auto [done, total] : progress) {
    EXPECT_EQ(total, size);
    EXPECT_GT(done, last);
    EXPECT_LE(done - last, 65536u);
    last = done;
  }
  EXPECT_EQ(last, size);
}

TEST(CliUpload, RefusalBeforeContinueIsTheAnswerAndNoBodyFollows) {
  corral::testing::TempDir dir;
  writeFile(dir / "big.iso", 1 << 20);
  FakeDaemon daemon(accepted, [](const SeenRequest &) {
    return std::optional<Reply>(
        Reply{403, R"({"error":{"code":"forbidden","message":"admins only"}})"});
  });
  UploadOptions opts;
  // Longer than any test run: the body may only start after a 100.
  opts.continueWait = std::chrono::hours(1);
  auto r = HttpClient(daemon.socketPath())
               .upload("PUT", "/api/v1/images/x/file?kind=iso",
                       (dir / "big.iso").string(), {}, nullptr, opts);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(r->body.find("admins only"), std::string::npos);
  auto seen = daemon.requests(1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].got100);
  EXPECT_EQ(seen[0].bytesAfterRefusal, 0u);
}

TEST(CliUpload, ServerThatIgnoresExpectStillGetsTheBody) {
  corral::testing::TempDir dir;
  std::string data = writeFile(dir / "d.raw", 100000);
  FakeDaemon daemon(accepted, nullptr, /*ignoreExpect=*/true);
  UploadOptions opts;
  opts.continueWait = std::chrono::milliseconds(1);
  auto r = HttpClient(daemon.socketPath())
               .upload("PUT", "/u", (dir / "d.raw").string(), {}, nullptr,
                       opts);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 202);
  auto seen = daemon.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_FALSE(seen[0].got100);
  EXPECT_TRUE(seen[0].body == data);
}

TEST(CliUpload, EmptyFileIsAnEmptyBody) {
  corral::testing::TempDir dir;
  writeFile(dir / "empty", 0);
  FakeDaemon daemon(accepted);
  auto r = HttpClient(daemon.socketPath())
               .upload("PUT", "/u", (dir / "empty").string());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->status, 202);
  auto seen = daemon.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].contentLength.value_or(99), 0u);
  EXPECT_TRUE(seen[0].body.empty());
}

TEST(CliUpload, MissingFileFailsOnFieldFileWithoutConnecting) {
  corral::testing::TempDir dir;
  FakeDaemon daemon(accepted);
  auto r = HttpClient(daemon.socketPath())
               .upload("PUT", "/u", (dir / "nope").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "file");
  EXPECT_NE(r.error().message.find("nope"), std::string::npos);
  EXPECT_TRUE(daemon.requests().empty());
}

TEST(CliUpload, NoDaemonIsAConnectError) {
  corral::testing::TempDir dir;
  writeFile(dir / "f", 10);
  auto r = HttpClient((dir / "no.sock").string())
               .upload("PUT", "/u", (dir / "f").string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "connect");
}

} // namespace
} // namespace corral::cli
