// Secret key files, disk key wrapping and secret files; see key_store.h.
//
// Wrapped form: base64url(nonce[12] | ciphertext | tag[16]), AES-256-GCM under
// the master key with the context as additional authenticated data, so that a
// changed byte, another context or another master key all fail the tag check.
#include "host/key_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "util/crypto.h"
#include "util/unique_fd.h"

namespace corral::host {

namespace fs = std::filesystem;

namespace {

constexpr size_t kKeyBytes = 32;
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

Error sysError(std::string_view what, const fs::path& path, int err) {
  return Error::internal(fmt::format("{} {}: {}", what, path.string(), std::strerror(err)));
}

Result<void> writeAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("write", path, errno);
    data.remove_prefix(size_t(n));
  }
  return ok();
}

// Reads and checks an existing key file. ENOENT comes back as NotFound.
Result<std::string> readSecretKey(const fs::path& path, size_t size, std::string_view what) {
  util::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Error::notFound(path.string());
    if (errno == ELOOP)
      return Error::failedPrecondition(
          fmt::format("{} {} is a symbolic link; refusing it (put the file itself there)", what, path.string()));
    return sysError("open", path, errno);
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sysError("stat", path, errno);
  if (!S_ISREG(st.st_mode))
    return Error::failedPrecondition(fmt::format("{} {} is not a regular file", what, path.string()));
  if (st.st_uid != ::geteuid())
    return Error::failedPrecondition(fmt::format("{} {} is owned by uid {}, not by corral (uid {}); chown it",
                                                 what, path.string(), st.st_uid, ::geteuid()));
  if ((st.st_mode & 077) != 0)
    return Error::failedPrecondition(
        fmt::format("{} {} has mode {:04o}: group and others must have no access (chmod 600 it)", what,
                    path.string(), st.st_mode & 07777));
  if (st.st_size != off_t(size))
    return Error::failedPrecondition(fmt::format(
        "{} {} is {} bytes, not {}: restore the right file, or remove it to have a new key made (what the "
        "old key protected is then lost)",
        what, path.string(), st.st_size, size));
  std::string key(size, '\0');
  size_t got = 0;
  while (got < key.size()) {
    ssize_t n = ::read(fd.get(), key.data() + got, key.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sysError("read", path, errno);
    if (n == 0) return Error::failedPrecondition(fmt::format("{} {} is short", what, path.string()));
    got += size_t(n);
  }
  return key;
}

// Writes key to a new 0600 file beside path (O_EXCL|O_NOFOLLOW) and syncs it.
// Returns the temporary's name; the caller links or renames it, then unlinks
// it if it is still there.
Result<fs::path> writeTempKey(const fs::path& path, std::string_view key) {
  std::string suffix = util::base64UrlEncode(CORRAL_TRY(util::randomBytes(6)));
  fs::path tmp = path;
  tmp += ".tmp-" + suffix;
  util::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return sysError("create", tmp, errno);
  Result<void> w = writeAll(fd.get(), key, tmp);
  if (w.ok() && ::fchmod(fd.get(), 0600) != 0) w = sysError("chmod", tmp, errno);
  if (w.ok() && ::fsync(fd.get()) != 0) w = sysError("fsync", tmp, errno);
  if (!w.ok()) {
    ::unlink(tmp.c_str());
    return std::move(w).error();
  }
  return tmp;
}

// Makes the directory entry just linked or renamed in path's parent durable.
void syncParent(const fs::path& path) {
  util::UniqueFd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
}

// Makes a new key file: the temporary is linked to its name, which never
// replaces a file: a reader never sees a half-written key, and of two racing
// creators one wins (the loser reads the winner's key).
Result<void> createSecretKey(const fs::path& path, size_t size) {
  std::string key = CORRAL_TRY(util::randomBytes(size));
  fs::path tmp = CORRAL_TRY(writeTempKey(path, key));
  int rc = ::link(tmp.c_str(), path.c_str());
  int err = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && err != EEXIST) return sysError("link", path, err);
  syncParent(path);
  return ok();
}

struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree>;

const unsigned char* bytes(std::string_view s) { return reinterpret_cast<const unsigned char*>(s.data()); }
unsigned char* bytes(std::string& s) { return reinterpret_cast<unsigned char*>(s.data()); }

}  // namespace

Result<std::string> loadOrCreateSecretKey(const fs::path& file, size_t size, std::string_view what) {
  if (file.empty() || !file.is_absolute())
    return Error::invalidInput("key_file", file.string(), "must be an absolute path");
  if (size == 0) return Error::internal(fmt::format("{} {}: a key of 0 bytes", what, file.string()));
  const fs::path parent = file.parent_path();
  std::error_code ec;
  if (!fs::exists(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec) return Error::internal(fmt::format("create {}: {}", parent.string(), ec.message()));
    fs::permissions(parent, fs::perms::owner_all, ec);
    if (ec) return Error::internal(fmt::format("chmod {}: {}", parent.string(), ec.message()));
  }
  auto key = readSecretKey(file, size, what);
  if (!key.ok() && key.error().code == ErrorCode::NotFound) {
    CORRAL_TRY(createSecretKey(file, size));
    spdlog::info("made a new {} at {}", what, file.string());
    key = readSecretKey(file, size, what);
  }
  return key;
}

Result<std::string> replaceSecretKey(const fs::path& file, size_t size) {
  if (file.empty() || !file.is_absolute())
    return Error::invalidInput("key_file", file.string(), "must be an absolute path");
  if (size == 0) return Error::internal(fmt::format("{}: a key of 0 bytes", file.string()));
  std::string key = CORRAL_TRY(util::randomBytes(size));
  fs::path tmp = CORRAL_TRY(writeTempKey(file, key));
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return sysError("rename", file, err);
  }
  syncParent(file);
  return key;
}

Result<KeyStore> KeyStore::open(const fs::path& masterKeyFile) {
  if (masterKeyFile.empty() || !masterKeyFile.is_absolute())
    return Error::invalidInput("master_key", masterKeyFile.string(), "must be an absolute path");
  return KeyStore(CORRAL_TRY(loadOrCreateSecretKey(masterKeyFile, kKeyBytes, "disk-encryption master key")));
}

std::string KeyStore::newPassphrase() {
  auto r = util::randomBytes(kKeyBytes);
  if (!r.ok()) {
    // A disk key must never be weak; util/crypto.h: a refusing CSPRNG is fatal.
    spdlog::critical("cannot make a disk passphrase: {}", r.error().describe());
    std::abort();
  }
  return util::base64UrlEncode(r.value());
}

Result<std::string> KeyStore::wrap(const std::string& passphrase, const std::string& context) const {
  const std::string nonce = CORRAL_TRY(util::randomBytes(kNonceBytes));
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  std::string ct(passphrase.size(), '\0');
  std::string tag(kTagBytes, '\0');
  int len = 0, fin = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, int(kNonceBytes), nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key_), bytes(nonce)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(context), int(context.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), bytes(ct), &len, bytes(passphrase), int(passphrase.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), bytes(ct) + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, int(kTagBytes), tag.data()) != 1)
    return Error::internal("AES-256-GCM encryption failed");
  ct.resize(size_t(len + fin));
  return util::base64UrlEncode(nonce + ct + tag);
}

Result<std::string> KeyStore::unwrap(const std::string& wrapped, const std::string& context) const {
  auto refused = [] {
    return Error::failedPrecondition(
        "the disk's wrapped key does not open with this host's master key (wrong host key, or the key was "
        "altered or belongs to another disk)");
  };
  auto raw = util::base64UrlDecode(wrapped);
  if (!raw || raw->size() < kNonceBytes + kTagBytes) return refused();
  std::string_view all(*raw);
  std::string_view nonce = all.substr(0, kNonceBytes);
  std::string_view ct = all.substr(kNonceBytes, all.size() - kNonceBytes - kTagBytes);
  std::string tag(all.substr(all.size() - kTagBytes));
  std::string pt(ct.size(), '\0');
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, int(kNonceBytes), nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, bytes(key_), bytes(nonce)) != 1)
    return Error::internal("AES-256-GCM setup failed");
  if (EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes(context), int(context.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), bytes(pt), &len, bytes(ct), int(ct.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, int(kTagBytes), tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), bytes(pt) + len, &fin) != 1)
    return refused();
  pt.resize(size_t(len + fin));
  return pt;
}

Result<fs::path> writeSecretFile(const fs::path& dir, const std::string& name, const std::string& passphrase) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return Error::invalidInput("name", name, "must be a plain file name");
  fs::path path = dir / name;
  util::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) {
    if (errno == EEXIST) return Error::alreadyExists("name", name, fmt::format("{} already exists", path.string()));
    return sysError("create", path, errno);
  }
  Result<void> w = ::fchmod(fd.get(), 0600) == 0 ? writeAll(fd.get(), passphrase, path) : sysError("chmod", path, errno);
  if (!w.ok()) {
    ::unlink(path.c_str());
    return std::move(w).error();
  }
  return path;
}

Result<SecretFile> SecretFile::create(const fs::path& dir, const std::string& name, const std::string& passphrase) {
  return SecretFile(CORRAL_TRY(writeSecretFile(dir, name, passphrase)));
}

void removeSecretFile(const fs::path& path) {
  // Best effort: the bytes are overwritten in place before the name goes (a
  // copy-on-write file system may still keep the old blocks for a while).
  util::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (fd && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    std::string zeros(size_t(st.st_size), '\0');
    (void)writeAll(fd.get(), zeros, path);
    ::fdatasync(fd.get());
  }
  ::unlink(path.c_str());
}

SecretFile::~SecretFile() {
  if (!path_.empty()) removeSecretFile(path_);
}

}  // namespace corral::host
