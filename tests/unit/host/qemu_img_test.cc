// Proves QemuImg against the real qemu-img in a temporary directory: images are
// made, inspected and grown; a linked clone names its backing file; a convert
// reports progress up to 1.0, refuses to overwrite and cleans up on cancel; a
// LUKS image (qcow2 and raw) is made, reported encrypted, and re-keyed so that
// the old passphrase stops opening it and the new one does. A dry-run check
// proves no passphrase ever appears on a command line and every image opened
// has its format named (nothing is probed). Also the size parser and printer.
#include "host/qemu_img.h"

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "host/key_store.h"
#include "support/files.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::host {
namespace {

namespace fs = std::filesystem;
using corral::testing::modeOf;
using corral::testing::readAll;
constexpr int64_t kOneMiB = int64_t(1) << 20;

QemuImg fastQemuImg() {
  QemuImg q;
  q.setLuksIterTimeForTest(10);  // quick key slots: the test unlocks often
  return q;
}

// A raw file of size bytes, each MiB filled with its own byte value.
void writePattern(const fs::path& p, int64_t size) {
  std::ofstream out(p, std::ios::binary);
  for (int64_t off = 0; off < size; off += kOneMiB) out << std::string(size_t(kOneMiB), char('a' + (off / kOneMiB) % 26));
}

TEST(QemuImg, CreateInfoResize) {
  testing::TempDir dir;
  QemuImg q = fastQemuImg();
  const std::string path = (dir / "a.qcow2").string();
  ASSERT_TRUE(q.create(path, "qcow2", 64 * kOneMiB).ok());
  EXPECT_EQ(modeOf(path), 0600u);
  auto info = q.info(path, "qcow2");
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_EQ(info->format, "qcow2");
  EXPECT_EQ(info->virtualSize, 64 * kOneMiB);
  EXPECT_GT(info->actualSize, 0);
  EXPECT_EQ(info->backingFile, "");
  EXPECT_FALSE(info->encrypted);

  auto r = q.resize(path, "qcow2", 128 * kOneMiB);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(q.info(path, "qcow2")->virtualSize, 128 * kOneMiB);

  const std::string raw = (dir / "b.raw").string();
  ASSERT_TRUE(q.create(raw, "raw", 8 * kOneMiB).ok());
  EXPECT_EQ(q.info(raw, "raw")->virtualSize, 8 * kOneMiB);
  EXPECT_EQ(fs::file_size(raw), uint64_t(8 * kOneMiB));
}

TEST(QemuImg, RefusesRelativePathsAndBadFormats) {
  QemuImg q = fastQemuImg();
  auto r = q.create("rel.qcow2", "qcow2", kOneMiB);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(r.error().field, "path");
  testing::TempDir dir;
  auto f = q.create((dir / "x").string(), "vmdk", kOneMiB);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().field, "format");
  EXPECT_FALSE(q.create((dir / "y").string(), "qcow2", 0).ok());
}

TEST(QemuImg, LinkedCloneShowsBacking) {
  testing::TempDir dir;
  QemuImg q = fastQemuImg();
  const std::string base = (dir / "base.raw").string();
  writePattern(base, 4 * kOneMiB);
  const std::string overlay = (dir / "clone.qcow2").string();
  CreateOptions o;
  o.backingFile = base;
  o.backingFormat = "raw";
  auto r = q.create(overlay, "qcow2", 0, o);  // 0: the backing image's size
  ASSERT_TRUE(r.ok()) << r.error().describe();
  auto info = q.info(overlay, "qcow2");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->backingFile, base);
  EXPECT_EQ(info->virtualSize, 4 * kOneMiB);

  // A backed clone may be larger than its image.
  const std::string big = (dir / "big.qcow2").string();
  ASSERT_TRUE(q.create(big, "qcow2", 16 * kOneMiB, o).ok());
  EXPECT_EQ(q.info(big, "qcow2")->virtualSize, 16 * kOneMiB);

  // Only qcow2 can have a backing file.
  EXPECT_FALSE(q.create((dir / "no.raw").string(), "raw", 4 * kOneMiB, o).ok());
}

TEST(QemuImg, ConvertReportsProgressUpToOne) {
  testing::TempDir dir;
  QemuImg q = fastQemuImg();
  const std::string src = (dir / "src.raw").string();
  writePattern(src, 24 * kOneMiB);
  const std::string dst = (dir / "dst.qcow2").string();
  std::vector<double> seen;
  QemuImg::ConvertOptions co;
  co.progress = [&](double f) { seen.push_back(f); };
  auto r = q.convert(src, "raw", dst, "qcow2", co);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  ASSERT_FALSE(seen.empty());
  EXPECT_DOUBLE_EQ(seen.back(), 1.0);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(modeOf(dst), 0600u);
  EXPECT_EQ(q.info(dst, "qcow2")->virtualSize, 24 * kOneMiB);

  // Back to raw into an existing file (-n): same bytes as the source.
  const std::string back = (dir / "back.raw").string();
  ASSERT_TRUE(q.create(back, "raw", 24 * kOneMiB).ok());
  QemuImg::ConvertOptions inPlace;
  inPlace.dstExists = true;
  ASSERT_TRUE(q.convert(dst, "qcow2", back, "raw", inPlace).ok());
  EXPECT_EQ(readAll(back), readAll(src));
}

TEST(QemuImg, ConvertNeverOverwritesAndCleansUpOnCancel) {
  testing::TempDir dir;
  QemuImg q = fastQemuImg();
  const std::string src = (dir / "src.raw").string();
  writePattern(src, 8 * kOneMiB);
  const std::string dst = (dir / "dst.qcow2").string();
  std::ofstream(dst) << "precious";
  auto exists = q.convert(src, "raw", dst, "qcow2", {});
  ASSERT_FALSE(exists.ok());
  EXPECT_EQ(exists.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(readAll(dst), "precious");
  fs::remove(dst);

  // Cancelled at the first progress report: the run stops and dst is gone.
  std::atomic<bool> cancel{false};
  QemuImg::ConvertOptions co;
  co.cancel = &cancel;
  co.progress = [&](double) { cancel = true; };
  auto r = q.convert(src, "raw", dst, "qcow2", co);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Unavailable);
  EXPECT_FALSE(fs::exists(dst));

  // A failed run (the source is not qcow2) leaves no dst either.
  auto bad = q.convert(src, "qcow2", dst, "qcow2", {});
  ASSERT_FALSE(bad.ok());
  EXPECT_FALSE(fs::exists(dst));
}

// Whether the image opens with key: a full read (convert to raw) needs it.
bool opensWith(const QemuImg& q, const fs::path& dir, const std::string& image, const std::string& format,
               const Encryption& key) {
  const std::string out = (dir / "probe.raw").string();
  fs::remove(out);
  QemuImg::ConvertOptions co;
  co.srcEncryption = key;
  bool ok = q.convert(image, format, out, "raw", co).ok();
  fs::remove(out);
  return ok;
}

void checkEncryptedRekey(const std::string& format, const std::string& expectFormat) {
  testing::TempDir dir;
  QemuImg q = fastQemuImg();
  auto oldFile = SecretFile::create(dir.path(), "old.key", KeyStore::newPassphrase());
  auto newFile = SecretFile::create(dir.path(), "new.key", KeyStore::newPassphrase());
  ASSERT_TRUE(oldFile.ok() && newFile.ok());
  const Encryption oldKey{oldFile->path().string()};
  const Encryption newKey{newFile->path().string()};
  const std::string image = (dir / ("disk." + format)).string();
  CreateOptions o;
  o.encryption = oldKey;
  auto c = q.create(image, format, 16 * kOneMiB, o);
  ASSERT_TRUE(c.ok()) << c.error().describe();

  // No key is needed to inspect; a raw image holding LUKS is read as "luks"
  // (read as "raw", it would just be its bytes).
  const std::string inspectAs = format == "raw" ? "luks" : format;
  auto info = q.info(image, inspectAs);
  ASSERT_TRUE(info.ok()) << info.error().describe();
  EXPECT_TRUE(info->encrypted);
  EXPECT_EQ(info->format, expectFormat);
  EXPECT_EQ(info->virtualSize, 16 * kOneMiB);
  auto keyed = q.info(image, format, oldKey);
  ASSERT_TRUE(keyed.ok()) << keyed.error().describe();
  EXPECT_TRUE(keyed->encrypted);
  EXPECT_EQ(keyed->virtualSize, 16 * kOneMiB);

  EXPECT_TRUE(opensWith(q, dir.path(), image, format, oldKey));
  EXPECT_FALSE(opensWith(q, dir.path(), image, format, newKey));
  auto r = q.rekey(image, format, oldKey, newKey);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_FALSE(opensWith(q, dir.path(), image, format, oldKey));
  EXPECT_TRUE(opensWith(q, dir.path(), image, format, newKey));

  // Growing an encrypted image takes its key.
  ASSERT_TRUE(q.resize(image, format, 32 * kOneMiB, newKey).ok());
  EXPECT_EQ(q.info(image, inspectAs)->virtualSize, 32 * kOneMiB);
}

TEST(QemuImg, EncryptedQcow2RekeyRetiresOldKey) { checkEncryptedRekey("qcow2", "qcow2"); }
TEST(QemuImg, EncryptedRawIsLuksAndRekeys) { checkEncryptedRekey("raw", "luks"); }

TEST(QemuImg, EncryptedConvertOutput) {
  testing::TempDir dir;
  QemuImg q = fastQemuImg();
  auto key = SecretFile::create(dir.path(), "k", KeyStore::newPassphrase());
  ASSERT_TRUE(key.ok());
  const Encryption enc{key->path().string()};
  const std::string src = (dir / "src.raw").string();
  writePattern(src, 4 * kOneMiB);
  const std::string dst = (dir / "dst.qcow2").string();
  QemuImg::ConvertOptions co;
  co.dstEncryption = enc;
  ASSERT_TRUE(q.convert(src, "raw", dst, "qcow2", co).ok());
  EXPECT_TRUE(q.info(dst, "qcow2")->encrypted);
  // Read back through the key: the source's bytes.
  const std::string plain = (dir / "plain.raw").string();
  QemuImg::ConvertOptions back;
  back.srcEncryption = enc;
  ASSERT_TRUE(q.convert(dst, "qcow2", plain, "raw", back).ok());
  EXPECT_EQ(readAll(plain), readAll(src));
}

TEST(QemuImg, SecretsNeverOnArgvAndFormatsAlwaysNamed) {
  const std::string passphrase = "S3cr3t-passphrase-value";
  std::vector<util::DryRunCall> calls;
  util::ScopedDryRunForTest dry([&](const util::DryRunCall& c) {
    calls.push_back(c);
    util::DryRunReply r;
    if (c.argv.size() > 1 && c.argv[1] == "info") r.out = R"({"format":"qcow2","virtual-size":1048576})";
    return r;
  });
  testing::TempDir dir;
  auto fa = SecretFile::create(dir.path(), "a", passphrase);
  auto fb = SecretFile::create(dir.path(), "b", passphrase + "2");
  ASSERT_TRUE(fa.ok() && fb.ok());
  QemuImg q;
  const Encryption a{fa->path().string()};
  const Encryption b{fb->path().string()};
  CreateOptions o;
  o.encryption = a;
  ASSERT_TRUE(q.create("/p/d.qcow2", "qcow2", kOneMiB, o).ok());
  ASSERT_TRUE(q.create("/p/d.raw", "raw", kOneMiB, o).ok());
  ASSERT_TRUE(q.info("/p/d.qcow2", "qcow2", a).ok());
  ASSERT_TRUE(q.resize("/p/d.qcow2", "qcow2", 2 * kOneMiB, a).ok());
  QemuImg::ConvertOptions co;
  co.srcEncryption = a;
  co.dstEncryption = b;
  ASSERT_TRUE(q.convert("/p/s,x.qcow2", "qcow2", "/p/new.qcow2", "qcow2", co).ok());
  co.dstExists = true;
  ASSERT_TRUE(q.convert("/p/s.raw", "raw", "/dev/vg/lv", "raw", co).ok());
  ASSERT_TRUE(q.rekey("/p/d.qcow2", "qcow2", a, b).ok());
  ASSERT_EQ(calls.size(), 8u);

  for (const auto& c : calls) {
    bool secretObject = false, formatNamed = false;
    for (size_t i = 1; i < c.argv.size(); ++i) {
      EXPECT_EQ(c.argv[i].find(passphrase), std::string::npos) << c.line;
      if (c.argv[i - 1] == "--object") {
        EXPECT_TRUE(c.argv[i].starts_with("secret,id=")) << c.line;
        EXPECT_TRUE(c.argv[i].ends_with(",format=raw")) << c.line;
        EXPECT_NE(c.argv[i].find(",file=" + dir.str() + "/"), std::string::npos) << c.line;
        secretObject = true;
      }
      if (c.argv[i] == "-f" || c.argv[i] == "--image-opts") formatNamed = true;
    }
    EXPECT_TRUE(secretObject) << c.line;
    EXPECT_TRUE(formatNamed) << c.line;
    EXPECT_TRUE(c.env.empty()) << c.line;
  }
  // A comma in a path is doubled inside an option string.
  EXPECT_NE(calls[4].line.find("file.filename=/p/s,,x.qcow2"), std::string::npos) << calls[4].line;
  // In-place LUKS output is opened with its key, not re-created.
  EXPECT_NE(calls[5].line.find("--target-image-opts"), std::string::npos) << calls[5].line;
  EXPECT_NE(calls[5].line.find("driver=luks,key-secret=dst,file.filename=/dev/vg/lv"), std::string::npos);
  // Rekey: add with the old key open, then retire the old with the new key open.
  EXPECT_NE(calls[6].line.find("encrypt.state=active,encrypt.new-secret=new"), std::string::npos) << calls[6].line;
  EXPECT_NE(calls[6].line.find("encrypt.key-secret=old"), std::string::npos);
  EXPECT_NE(calls[7].line.find("encrypt.state=inactive,encrypt.old-secret=old"), std::string::npos);
  EXPECT_NE(calls[7].line.find("encrypt.key-secret=new"), std::string::npos);
}

TEST(Sizes, ParseSize) {
  struct Case {
    const char* text;
    int64_t bytes;
  };
  const Case good[] = {{"4G", 4LL << 30},        {"512M", 512LL << 20},   {"10GiB", 10LL << 30},
                       {"1T", 1LL << 40},        {"1048576", 1LL << 20},  {"4g", 4LL << 30},
                       {"2048K", 2LL << 20},     {"1.5G", 1536LL << 20},  {"4 GiB", 4LL << 30},
                       {"3MiB", 3LL << 20},      {"0.5M", -1}};
  for (const Case& c : good) {
    auto r = parseSize("size", c.text);
    if (c.bytes < 0) {
      EXPECT_FALSE(r.ok()) << c.text;  // half a MiB is not a multiple of 1 MiB
      continue;
    }
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.error().describe();
    EXPECT_EQ(*r, c.bytes) << c.text;
  }
  for (const char* bad : {"", "G", "0", "0G", "-1G", "4X", "4GB ", " 4G", "1000", "1.5", "4.G", "1e9",
                          "99999999999999999999", "9000000000000000P", "9223372036854775807.999999P", "1.0000001G", "4  G"}) {
    auto r = parseSize("size", bad);
    ASSERT_FALSE(r.ok()) << "'" << bad << "'";
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput);
    EXPECT_EQ(r.error().field, "size");
    EXPECT_EQ(r.error().value, bad);
  }
}

TEST(Sizes, FormatSize) {
  EXPECT_EQ(formatSize(4294967296), "4 GiB");
  EXPECT_EQ(formatSize(1572864), "1.5 MiB");
  EXPECT_EQ(formatSize(512), "512 B");
  EXPECT_EQ(formatSize(1LL << 40), "1 TiB");
  EXPECT_EQ(formatSize((5LL << 30) / 4), "1.25 GiB");
  for (int64_t n : {int64_t(1) << 20, int64_t(3) << 30, int64_t(1536) << 20})
    EXPECT_EQ(*parseSize("size", formatSize(n)), n) << formatSize(n);
}

}  // namespace
}  // namespace corral::host
