// Proves the image library's imports against the real qemu-img: a raw source and
// a qcow2 source each become images/NAME/disk.qcow2 (checked with qemu-img info
// and qemu-img compare, not through the code under test), the SHA-256 is the
// source's own (hashed here from its bytes), progress never goes backwards and
// ends at the source's size; an ISO is copied byte for byte (0644); refused
// sources (not an ISO, a qcow2 with a backing file, an encrypted qcow2, a missing
// or relative path, an unknown format) name the field, and a refused or
// cancelled import leaves no directory behind.
#include "host/image_library.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "support/temp_dir.h"
#include "util/command.h"
#include "util/crypto.h"

namespace corral::host {
namespace {

namespace fs = std::filesystem;

std::string readFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeFile(const fs::path& p, const std::string& data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// n bytes of a pattern that differs in every 1 MiB chunk (so a shifted copy shows).
std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + i / 1048576) % 251);
  return s;
}

util::CommandResult qemuImg(const std::vector<std::string>& args) {
  util::Command cmd("qemu-img");
  cmd.args(args).keepEnv({"PATH"}).stdoutToBuffer().stderrToBuffer();
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().describe());
  return r.ok() ? std::move(r).take() : util::CommandResult{};
}

nlohmann::json infoOf(const std::string& path, const std::string& format) {
  auto out = qemuImg({"info", "--output=json", "-f", format, path}).out;
  return out.empty() ? nlohmann::json::object() : nlohmann::json::parse(out);
}

class ImageLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(state.prepare().ok()); }

  fs::path imageDir(const std::string& name) const { return state.imagesDir() / name; }

  testing::TempDir tmp;
  StateDir state{tmp / "state"};
  ImageLibrary lib{state};
};

struct Recorder {
  std::vector<std::pair<int64_t, int64_t>> calls;
  ImportProgress fn() {
    return [this](int64_t done, int64_t total) { calls.emplace_back(done, total); };
  }
  void expectMonotoneTo(int64_t total) const {
    ASSERT_FALSE(calls.empty());
    int64_t last = -1;
    for (auto [done, t] : calls) {
      EXPECT_EQ(t, total);
      EXPECT_GE(done, last);
      EXPECT_LE(done, total);
      last = done;
    }
    EXPECT_EQ(calls.back().first, total);
  }
};

TEST_F(ImageLibraryTest, ImportsRawDiskAsQcow2) {
  const fs::path src = tmp / "src.raw";
  const std::string bytes = pattern(5 * 1048576 + 4096);
  writeFile(src, bytes);
  Recorder rec;
  ImportOptions opts;
  opts.progress = rec.fn();

  auto r = lib.importDisk("deb", src.string(), opts);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->path, (imageDir("deb") / "disk.qcow2").string());
  EXPECT_EQ(r->format, "qcow2");
  EXPECT_EQ(r->sourceFormat, "raw");
  EXPECT_EQ(r->virtualSize, static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(r->sizeBytes, static_cast<int64_t>(fs::file_size(r->path)));
  EXPECT_EQ(r->sha256, util::sha256Hex(bytes));

  auto info = infoOf(r->path, "qcow2");
  EXPECT_EQ(info.value("format", ""), "qcow2");
  EXPECT_EQ(info.value("virtual-size", int64_t{0}), static_cast<int64_t>(bytes.size()));
  EXPECT_FALSE(info.contains("backing-filename"));
  // Same guest-visible bytes as the source.
  EXPECT_EQ(qemuImg({"compare", "-f", "raw", "-F", "qcow2", src.string(), r->path}).status.exitCode, 0);
  EXPECT_EQ(fs::status(r->path).permissions(), fs::perms(0644));
  // Only the final file is left in the image's directory.
  EXPECT_EQ(std::distance(fs::directory_iterator(imageDir("deb")), fs::directory_iterator()), 1);
  rec.expectMonotoneTo(static_cast<int64_t>(bytes.size()));
}

TEST_F(ImageLibraryTest, ImportsQcow2DiskDetectedByMagic) {
  const fs::path raw = tmp / "data.raw";
  const fs::path src = tmp / "src.qcow2";
  writeFile(raw, pattern(3 * 1048576));
  qemuImg({"convert", "-f", "raw", "-O", "qcow2", raw.string(), src.string()});
  qemuImg({"resize", "-f", "qcow2", src.string(), "16M"});  // virtual size beyond the data
  const std::string srcBytes = readFile(src);
  Recorder rec;
  ImportOptions opts;
  opts.progress = rec.fn();

  auto r = lib.importDisk("q", src.string(), opts);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->sourceFormat, "qcow2");
  EXPECT_EQ(r->virtualSize, 16 * 1048576);
  EXPECT_EQ(r->sha256, util::sha256Hex(srcBytes));
  auto info = infoOf(r->path, "qcow2");
  EXPECT_EQ(info.value("format", ""), "qcow2");
  EXPECT_EQ(info.value("virtual-size", int64_t{0}), 16 * 1048576);
  EXPECT_EQ(qemuImg({"compare", "-f", "qcow2", "-F", "qcow2", src.string(), r->path}).status.exitCode, 0);
  rec.expectMonotoneTo(static_cast<int64_t>(srcBytes.size()));
}

TEST_F(ImageLibraryTest, ExplicitRawFormatKeepsAQcow2FileAsBytes) {
  const fs::path src = tmp / "src.qcow2";
  qemuImg({"create", "-f", "qcow2", src.string(), "8M"});
  ImportOptions opts;
  opts.sourceFormat = "raw";
  auto r = lib.importDisk("asraw", src.string(), opts);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->sourceFormat, "raw");
  // The qcow2 file's bytes are the disk; qcow2 sizes round up to 512-byte sectors.
  const auto size = static_cast<int64_t>(fs::file_size(src));
  EXPECT_EQ(r->virtualSize, (size + 511) / 512 * 512);
  EXPECT_EQ(r->sha256, util::sha256Hex(readFile(src)));
}

TEST_F(ImageLibraryTest, RefusesQcow2WithBackingFile) {
  const fs::path base = tmp / "base.qcow2";
  const fs::path overlay = tmp / "overlay.qcow2";
  qemuImg({"create", "-f", "qcow2", base.string(), "8M"});
  qemuImg({"create", "-f", "qcow2", "-b", base.string(), "-F", "qcow2", overlay.string()});
  auto r = lib.importDisk("ov", overlay.string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(r.error().field, "path");
  EXPECT_NE(r.error().message.find("backing file"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(imageDir("ov")));
}

// A qcow2 whose header says legacy AES (crypt_method 1) is refused before
// qemu-img reads it, with the reason.
TEST_F(ImageLibraryTest, RefusesLegacyAesQcow2SayingWhy) {
  const fs::path src = tmp / "aes.qcow2";
  qemuImg({"create", "-f", "qcow2", src.string(), "8M"});
  {
    std::fstream f(src, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(35);
    f.put(1);  // crypt_method = 1 (AES), big-endian uint32 at offset 32
  }
  auto r = lib.importDisk("aes", src.string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "path");
  EXPECT_NE(r.error().message.find("legacy AES"), std::string::npos) << r.error().message;
  EXPECT_FALSE(fs::exists(imageDir("aes")));
}

TEST_F(ImageLibraryTest, RefusesEncryptedQcow2) {
  const fs::path secret = tmp / "key";
  writeFile(secret, "passphrase");
  ::chmod(secret.c_str(), 0600);
  const fs::path src = tmp / "enc.qcow2";
  // Retried: this qemu-img's PBKDF2 benchmark sometimes fails with "Unable to get
  // accurate CPU usage" (a known QEMU bug when getrusage lags), worse on a busy host.
  bool made = false;
  for (int attempt = 0; attempt < 5 && !made; ++attempt) {
    util::Command cmd("qemu-img");
    cmd.args({"create", "--object", "secret,id=sec0,file=" + secret.string(), "-f", "qcow2", "-o",
              "encrypt.format=luks,encrypt.key-secret=sec0", src.string(), "8M"});
    cmd.keepEnv({"PATH"}).stdoutToNull().stderrToNull();
    made = cmd.run().ok();
  }
  ASSERT_TRUE(made) << "qemu-img could not make an encrypted qcow2";
  auto r = lib.importDisk("enc", src.string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(r.error().field, "path");
  EXPECT_FALSE(fs::exists(imageDir("enc")));
}

TEST_F(ImageLibraryTest, RefusesMissingRelativeAndNonRegularSources) {
  for (auto [path, why] : std::vector<std::pair<std::string, std::string>>{
           {(tmp / "nope.img").string(), "no such file"},
           {"relative.img", "absolute"},
           {tmp.str(), "not a regular file"}}) {
    auto d = lib.importDisk("x", path, {});
    ASSERT_FALSE(d.ok()) << path;
    EXPECT_EQ(d.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(d.error().field, "path");
    EXPECT_NE(d.error().message.find(why), std::string::npos) << d.error().message;
    auto i = lib.importIso("x", path, {});
    ASSERT_FALSE(i.ok()) << path;
    EXPECT_EQ(i.error().field, "path");
  }
  EXPECT_FALSE(fs::exists(imageDir("x")));
}

TEST_F(ImageLibraryTest, RefusesUnknownFormatAndExistingName) {
  const fs::path src = tmp / "src.raw";
  writeFile(src, pattern(1048576));
  ImportOptions opts;
  opts.sourceFormat = "vmdk";
  auto r = lib.importDisk("f", src.string(), opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "format");

  ASSERT_TRUE(lib.importDisk("f", src.string(), {}).ok());
  auto again = lib.importDisk("f", src.string(), {});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::AlreadyExists);
  EXPECT_TRUE(fs::exists(imageDir("f") / "disk.qcow2"));  // the first import is untouched
}

TEST_F(ImageLibraryTest, CancelledDiskImportLeavesNothing) {
  const fs::path src = tmp / "big.raw";
  writeFile(src, pattern(32 * 1048576));
  std::atomic<bool> cancel{false};
  ImportOptions opts;
  opts.cancel = &cancel;
  opts.progress = [&](int64_t, int64_t) { cancel = true; };
  auto r = lib.importDisk("c", src.string(), opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable) << r.error().describe();
  EXPECT_FALSE(fs::exists(imageDir("c")));
}

TEST_F(ImageLibraryTest, ImportsIsoByteForByte) {
  // The smallest thing that passes for ISO 9660: a primary volume descriptor at sector 16.
  std::string bytes = pattern(3 * 1048576 + 2048);
  bytes.replace(16 * 2048, 6, "\x01" "CD001");
  const fs::path src = tmp / "cd.iso";
  writeFile(src, bytes);
  Recorder rec;
  ImportOptions opts;
  opts.progress = rec.fn();

  auto r = lib.importIso("cd", src.string(), opts);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->path, (imageDir("cd") / "cd.iso").string());
  EXPECT_EQ(r->format, "raw");
  EXPECT_EQ(r->virtualSize, static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(r->sizeBytes, static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(r->sha256, util::sha256Hex(bytes));
  EXPECT_EQ(readFile(r->path), bytes);
  EXPECT_EQ(fs::status(r->path).permissions(), fs::perms(0644));
  rec.expectMonotoneTo(static_cast<int64_t>(bytes.size()));
}

TEST_F(ImageLibraryTest, RefusesNonIso) {
  const fs::path src = tmp / "not.iso";
  writeFile(src, pattern(64 * 1024));
  auto r = lib.importIso("n", src.string(), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(r.error().field, "path");
  EXPECT_FALSE(fs::exists(imageDir("n")));

  writeFile(src, "tiny");  // shorter than the volume descriptor's offset
  auto tiny = lib.importIso("n", src.string(), {});
  ASSERT_FALSE(tiny.ok());
  EXPECT_EQ(tiny.error().field, "path");
}

TEST_F(ImageLibraryTest, CancelledIsoImportLeavesNothing) {
  std::string bytes = pattern(4 * 1048576);
  bytes.replace(16 * 2048, 6, "\x01" "CD001");
  const fs::path src = tmp / "cd.iso";
  writeFile(src, bytes);
  std::atomic<bool> cancel{false};
  ImportOptions opts;
  opts.cancel = &cancel;
  opts.progress = [&](int64_t done, int64_t) {
    if (done > 0) cancel = true;  // after the first chunk
  };
  auto r = lib.importIso("c", src.string(), opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable);
  EXPECT_FALSE(fs::exists(imageDir("c")));
}

TEST_F(ImageLibraryTest, RemoveDeletesTheDirectory) {
  const fs::path src = tmp / "src.raw";
  writeFile(src, pattern(1048576));
  ASSERT_TRUE(lib.importDisk("gone", src.string(), {}).ok());
  ASSERT_TRUE(lib.remove("gone").ok());
  EXPECT_FALSE(fs::exists(imageDir("gone")));
  EXPECT_TRUE(lib.remove("gone").ok());  // absent is not an error
}

}  // namespace
}  // namespace corral::host
