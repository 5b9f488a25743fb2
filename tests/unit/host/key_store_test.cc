// Proves the disk-key store: a master key file is made 0600 (its directory
// 0700) with 32 bytes and reused on reopen; a wrapped passphrase unwraps only
// under the same master key and context, and any changed byte is refused; an
// existing key file that others can read, of the wrong size or behind a symlink
// is refused; secret files are 0600, never replace a file, and a SecretFile is
// gone (its bytes zeroed first) once it is destroyed. The shared key-file pair:
// loadOrCreateSecretKey makes, reuses and refuses key files of any size the
// same way; replaceSecretKey swaps in a new 0600 key atomically.
#include "host/key_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "support/files.h"
#include "support/temp_dir.h"

namespace corral::host {
namespace {

namespace fs = std::filesystem;
using corral::testing::modeOf;
using corral::testing::readAll;

TEST(KeyStore, MakesMasterKeyFileAndReusesIt) {
  testing::TempDir dir;
  const fs::path file = dir / "keys" / "master.key";
  auto ks = KeyStore::open(file);
  ASSERT_TRUE(ks.ok()) << ks.error().describe();
  EXPECT_EQ(modeOf(file), 0600u);
  EXPECT_EQ(modeOf(file.parent_path()), 0700u);
  EXPECT_EQ(fs::file_size(file), 32u);
  const std::string key = readAll(file);
  // No temporary left beside it.
  EXPECT_EQ(std::distance(fs::directory_iterator(file.parent_path()), fs::directory_iterator()), 1);

  auto wrapped = ks->wrap("pass", "ctx");
  ASSERT_TRUE(wrapped.ok());
  auto again = KeyStore::open(file);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(readAll(file), key);
  auto un = again->unwrap(*wrapped, "ctx");
  ASSERT_TRUE(un.ok()) << un.error().describe();
  EXPECT_EQ(*un, "pass");
}

TEST(KeyStore, WrapUnwrapRoundTrip) {
  testing::TempDir dir;
  auto ks = KeyStore::open(dir / "m.key");
  ASSERT_TRUE(ks.ok());
  for (const std::string& pass : {std::string(), std::string("x"), KeyStore::newPassphrase(), std::string(1000, 'z')}) {
    auto w1 = ks->wrap(pass, "vm-uuid/disk0");
    auto w2 = ks->wrap(pass, "vm-uuid/disk0");
    ASSERT_TRUE(w1.ok() && w2.ok());
    EXPECT_NE(*w1, *w2);  // a fresh nonce each time
    EXPECT_EQ(w1->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos);
    if (pass.size() > 8) {
      EXPECT_EQ(w1->find(pass), std::string::npos);
    }
    auto u = ks->unwrap(*w1, "vm-uuid/disk0");
    ASSERT_TRUE(u.ok()) << u.error().describe();
    EXPECT_EQ(*u, pass);
  }
}

TEST(KeyStore, RefusesWrongContextTamperingAndOtherMasterKey) {
  testing::TempDir dir;
  auto ks = KeyStore::open(dir / "m.key");
  auto other = KeyStore::open(dir / "other.key");
  ASSERT_TRUE(ks.ok() && other.ok());
  const std::string wrapped = *ks->wrap("the passphrase", "vm-a/disk0");

  auto expectRefused = [](const Result<std::string>& r, const char* what) {
    ASSERT_FALSE(r.ok()) << what;
    EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition) << what;
  };
  expectRefused(ks->unwrap(wrapped, "vm-b/disk0"), "other context");
  expectRefused(other->unwrap(wrapped, "vm-a/disk0"), "other master key");
  for (size_t i = 0; i + 1 < wrapped.size(); ++i) {  // the last character has unused bits
    std::string t = wrapped;
    t[i] = t[i] == 'A' ? 'B' : 'A';
    expectRefused(ks->unwrap(t, "vm-a/disk0"), "tampered");
  }
  expectRefused(ks->unwrap(wrapped.substr(0, 20), "vm-a/disk0"), "truncated");
  expectRefused(ks->unwrap("not base64!", "vm-a/disk0"), "garbage");
  expectRefused(ks->unwrap("", "vm-a/disk0"), "empty");
}

TEST(KeyStore, RefusesBadExistingFile) {
  testing::TempDir dir;
  const fs::path open = dir / "open.key";
  std::ofstream(open) << std::string(32, 'k');
  fs::permissions(open, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  auto r = KeyStore::open(open);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find(open.string()), std::string::npos);

  const fs::path shortKey = dir / "short.key";
  std::ofstream(shortKey) << "tiny";
  fs::permissions(shortKey, fs::perms::owner_read | fs::perms::owner_write);
  auto s = KeyStore::open(shortKey);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::FailedPrecondition);
  EXPECT_EQ(readAll(shortKey), "tiny");  // never replaced

  const fs::path good = dir / "good.key";
  ASSERT_TRUE(KeyStore::open(good).ok());
  const fs::path link = dir / "link.key";
  fs::create_symlink(good, link);
  auto l = KeyStore::open(link);
  ASSERT_FALSE(l.ok());
  EXPECT_EQ(l.error().code, ErrorCode::FailedPrecondition);

  EXPECT_FALSE(KeyStore::open("relative.key").ok());
}

TEST(KeyStore, NewPassphrasesAreLongAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) {
    std::string p = KeyStore::newPassphrase();
    EXPECT_EQ(p.size(), 43u);
    EXPECT_TRUE(seen.insert(p).second);
  }
}

TEST(SecretFiles, WrittenPrivatelyAndNeverReplaced) {
  testing::TempDir dir;
  ::umask(0);  // the file is 0600 whatever the umask
  auto p = writeSecretFile(dir.path(), "s1", "passphrase");
  ::umask(022);
  ASSERT_TRUE(p.ok()) << p.error().describe();
  EXPECT_EQ(*p, dir / "s1");
  EXPECT_EQ(modeOf(*p), 0600u);
  EXPECT_EQ(readAll(*p), "passphrase");  // exactly, no newline
  auto again = writeSecretFile(dir.path(), "s1", "other");
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, ErrorCode::AlreadyExists);
  EXPECT_EQ(readAll(*p), "passphrase");
  EXPECT_FALSE(writeSecretFile(dir.path(), "../escape", "x").ok());
  EXPECT_FALSE(writeSecretFile(dir.path(), "", "x").ok());
  // A symlink planted at the name is not followed.
  fs::create_symlink(dir / "target", dir / "planted");
  EXPECT_FALSE(writeSecretFile(dir.path(), "planted", "x").ok());
  EXPECT_FALSE(fs::exists(dir / "target"));
}

TEST(SecretFiles, SecretFileGoesWithItsHolder) {
  testing::TempDir dir;
  fs::path path;
  {
    auto f = SecretFile::create(dir.path(), "k", "secret");
    ASSERT_TRUE(f.ok());
    path = f->path();
    EXPECT_EQ(readAll(path), "secret");
    SecretFile moved(std::move(f).take());  // the move hands the file over: still there
    EXPECT_TRUE(fs::exists(path));
    EXPECT_EQ(moved.path(), path);
  }
  EXPECT_FALSE(fs::exists(path));

  // A hard link made meanwhile shows the bytes were overwritten before the unlink.
  const fs::path keep = dir / "keep";
  {
    auto f = SecretFile::create(dir.path(), "k2", "secret");
    ASSERT_TRUE(f.ok());
    fs::create_hard_link(f->path(), keep);
  }
  EXPECT_FALSE(fs::exists(dir / "k2"));
  EXPECT_EQ(readAll(keep), std::string(6, '\0'));
}

// Proves loadOrCreateSecretKey makes a 0600 file of the asked size (parent 0700)
// and returns the same bytes on every later call.
TEST(SecretKeyFile, MadeOnceThenReused) {
  testing::TempDir dir;
  const fs::path file = dir / "sub" / "token.key";
  auto k = loadOrCreateSecretKey(file, 48, "test key");
  ASSERT_TRUE(k.ok()) << k.error().describe();
  EXPECT_EQ(k->size(), 48u);
  EXPECT_EQ(modeOf(file), 0600u);
  EXPECT_EQ(modeOf(file.parent_path()), 0700u);
  EXPECT_EQ(readAll(file), *k);
  EXPECT_EQ(std::distance(fs::directory_iterator(file.parent_path()), fs::directory_iterator()), 1);
  auto again = loadOrCreateSecretKey(file, 48, "test key");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, *k);
  EXPECT_FALSE(loadOrCreateSecretKey("relative.key", 32, "test key").ok());
}

// Proves an existing key file that group or others may read, or of the wrong
// size, is refused (FailedPrecondition naming the key, the file and the fix)
// and left as it was.
TEST(SecretKeyFile, RefusesOpenModeAndWrongSize) {
  testing::TempDir dir;
  const fs::path open = dir / "open.key";
  std::ofstream(open) << std::string(32, 'k');
  fs::permissions(open, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                            fs::perms::others_read);
  auto r = loadOrCreateSecretKey(open, 32, "console token key");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find(open.string()), std::string::npos);
  EXPECT_NE(r.error().message.find("console token key"), std::string::npos);
  EXPECT_NE(r.error().message.find("chmod 600"), std::string::npos);
  EXPECT_EQ(r.error().message.find(std::string(32, 'k')), std::string::npos);  // never the key
  EXPECT_EQ(modeOf(open), 0644u);

  const fs::path sized = dir / "sized.key";
  std::ofstream(sized) << std::string(16, 's');
  fs::permissions(sized, fs::perms::owner_read | fs::perms::owner_write);
  auto s = loadOrCreateSecretKey(sized, 32, "console token key");
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(s.error().message.find(sized.string()), std::string::npos);
  EXPECT_NE(s.error().message.find("16 bytes, not 32"), std::string::npos) << s.error().message;
  EXPECT_EQ(readAll(sized), std::string(16, 's'));
}

// Proves replaceSecretKey writes a new random 0600 key of the asked size over
// the old one, returns it, leaves no temporary behind, and that the next load
// reads the new key.
TEST(SecretKeyFile, ReplaceSwapsInNewKey) {
  testing::TempDir dir;
  const fs::path file = dir / "k" / "token.key";
  const std::string old = *loadOrCreateSecretKey(file, 32, "test key");
  ::umask(0);  // the new file is 0600 whatever the umask
  auto fresh = replaceSecretKey(file, 32);
  ::umask(022);
  ASSERT_TRUE(fresh.ok()) << fresh.error().describe();
  EXPECT_EQ(fresh->size(), 32u);
  EXPECT_NE(*fresh, old);
  EXPECT_EQ(readAll(file), *fresh);
  EXPECT_EQ(modeOf(file), 0600u);
  EXPECT_EQ(std::distance(fs::directory_iterator(file.parent_path()), fs::directory_iterator()), 1);
  auto loaded = loadOrCreateSecretKey(file, 32, "test key");
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(*loaded, *fresh);
  auto second = replaceSecretKey(file, 32);
  ASSERT_TRUE(second.ok());
  EXPECT_NE(*second, *fresh);
  // A missing directory is an error, not a half-made key.
  EXPECT_FALSE(replaceSecretKey(dir / "nowhere" / "x.key", 32).ok());
  EXPECT_FALSE(replaceSecretKey("relative.key", 32).ok());
}

// Proves KeyStore::open, now on loadOrCreateSecretKey, still refuses a master
// key that others may read, naming the file.
TEST(SecretKeyFile, KeyStoreUsesTheSameChecks) {
  testing::TempDir dir;
  const fs::path file = dir / "m.key";
  ASSERT_TRUE(KeyStore::open(file).ok());
  fs::permissions(file, fs::perms::others_read, fs::perm_options::add);
  auto r = KeyStore::open(file);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
  EXPECT_NE(r.error().message.find(file.string()), std::string::npos);
}

}  // namespace
}  // namespace corral::host
