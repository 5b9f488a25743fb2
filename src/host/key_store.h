// Disk encryption keys. Each encrypted disk has its own random LUKS passphrase;
// the database keeps it only wrapped (AES-256-GCM) by the host master key, a
// 32-byte random file (0600, made on first use) under the state dir. Unwrapped
// passphrases live in memory only as long as a qemu-img run or a QEMU start
// needs them, and reach those programs as 0600 files (writeSecretFile) that the
// caller removes once the program has read them.
//
// Destroying a wrapped key (deleting the disk's row) is the crypto-erase of the
// disk: without it the LUKS volume's master key cannot be recovered.
//
// loadOrCreateSecretKey / replaceSecretKey are the one way a key file is made,
// checked and replaced; other keys (the console token key) use them too.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::host {

// Loads a secret key file of exactly `bytes` bytes, making it when absent: the
// parent directory is created 0700 when missing, and the file 0600 with random
// bytes (written under a temporary name, synced, then linked to its name, so a
// reader never sees half a key and of two racing creators one wins). An
// existing file must be a regular file (not a symlink), owned by us, with no
// access for group or others, and of the right size: FailedPrecondition naming
// the file and what to do otherwise (it is never replaced). file must be
// absolute (InvalidInput "key_file"). `what` names the key in messages and in
// the log line written when it is made ("console token key"); the key itself
// never appears in either. Thread-safe; the caller keeps the returned bytes.
Result<std::string> loadOrCreateSecretKey(const std::filesystem::path& file, size_t bytes, std::string_view what);

// Replaces the key file with a new random key of `bytes` bytes: written to a
// 0600 temporary file in the same directory, synced, renamed over the old one
// (atomic: a reader sees the old key or the new one), then the directory is
// synced. Returns the new key. The old bytes are gone from the file system's
// name space at once; the caller drops its in-memory copy. Callers serialise
// their own rotations (two racing calls each succeed; the last rename wins).
Result<std::string> replaceSecretKey(const std::filesystem::path& file, size_t bytes);

class KeyStore {
 public:
  // masterKeyFile: created (0600, parent dir 0700) with 32 random bytes when
  // absent; an existing file must be 32 bytes, owned by us, not readable by
  // group or others (FailedPrecondition naming the file otherwise).
  static Result<KeyStore> open(const std::filesystem::path& masterKeyFile);

  // A fresh passphrase: 32 random bytes, base64url (43 characters, no padding).
  static std::string newPassphrase();

  // context binds the wrapped key to its disk (e.g. the VM uuid + disk name):
  // a wrapped key copied to another disk's row does not unwrap there.
  // The result is text (base64url of nonce | ciphertext | tag), safe in any column.
  Result<std::string> wrap(const std::string& passphrase, const std::string& context) const;
  // FailedPrecondition when the master key or context do not match (tampered,
  // another host's key).
  Result<std::string> unwrap(const std::string& wrapped, const std::string& context) const;

 private:
  explicit KeyStore(std::string key) : key_(std::move(key)) {}
  std::string key_;  // 32 bytes
};

// Writes passphrase to dir/name with mode 0600 (O_EXCL: an existing file is an
// error), fsync-free (it is short-lived). Returns the path.
Result<std::filesystem::path> writeSecretFile(const std::filesystem::path& dir, const std::string& name,
                                              const std::string& passphrase);

// Overwrites a secret file with zeros, then unlinks it (best effort; absent is fine).
void removeSecretFile(const std::filesystem::path& path);

// A 0600 secret file that is removed (best effort: overwritten, then unlinked)
// when the holder goes. For qemu-img runs.
class SecretFile {
 public:
  static Result<SecretFile> create(const std::filesystem::path& dir, const std::string& name,
                                   const std::string& passphrase);
  SecretFile(SecretFile&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  SecretFile& operator=(SecretFile&&) = delete;
  SecretFile(const SecretFile&) = delete;
  ~SecretFile();
  const std::filesystem::path& path() const { return path_; }

 private:
  explicit SecretFile(std::filesystem::path p) : path_(std::move(p)) {}
  std::filesystem::path path_;
};

}  // namespace corral::host
