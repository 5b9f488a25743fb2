// qemu-img, driven through util::Command: create, inspect, convert (with
// progress), resize and re-key disk images. Every LUKS passphrase reaches
// qemu-img as a `secret` object read from a 0600 file (never argv, never the
// environment): callers pass the file's path, made by host::KeyStore.
//
// All paths reaching here were chosen by host/ itself (pool and library paths),
// never taken from a user, except the source of an admin's import, which is
// only ever read, always with an explicit format ("-f", never probed), and
// must be an absolute path, so a file name can never be taken for an option.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "util/result.h"

namespace corral::host {

struct ImageInfo {
  std::string format;          // "qcow2", "raw", "luks", ...
  int64_t virtualSize = 0;     // bytes the guest sees
  int64_t actualSize = 0;      // bytes used on the host
  std::string backingFile;     // "" when none
  bool encrypted = false;      // qcow2 with encrypt.format=luks, or a luks image
};

// A disk's LUKS encryption as qemu-img needs it.
struct Encryption {
  std::string secretFile;  // 0600 file holding the passphrase (exactly, no newline)
};

struct CreateOptions {
  std::string backingFile;    // linked clone: backing image path (qcow2 only)
  std::string backingFormat;  // its format ("qcow2", "raw"), required with backingFile
  std::optional<Encryption> encryption;  // qcow2: encrypt.format=luks; raw: the luks format
  bool preallocateMetadata = false;
};

// Progress of a long qemu-img run: fraction 0..1, called from the caller's thread.
using ProgressFn = std::function<void(double fraction)>;

class QemuImg {
 public:
  explicit QemuImg(std::string binary = "qemu-img") : binary_(std::move(binary)) {}

  // format "qcow2" | "raw"; sizeBytes > 0 (a linked clone may pass 0 for the
  // backing image's size). With encryption and format "raw" the image is made
  // in the "luks" format (raw LUKS: what LVM volumes hold).
  Result<void> create(const std::string& path, const std::string& format, int64_t sizeBytes,
                      const CreateOptions& opts = {}) const;

  // `qemu-img info --output=json`. format: "" lets qemu-img probe (only for files
  // corral made or an admin imports; never for a guest-writable disk). A raw
  // LUKS image is inspected as "luks" (no key needed), or as "raw" with enc;
  // as "raw" without enc it is only bytes. -U: works on a disk a guest holds.
  Result<ImageInfo> info(const std::string& path, const std::string& format = "",
                         const std::optional<Encryption>& enc = std::nullopt) const;

  // `qemu-img convert -p`: src (format srcFormat, never probed) into dst (format
  // dstFormat; created, or written in place when dstExists, e.g. an LV). Reports
  // progress; cancel (when set and true) kills the run, removes a dst it
  // created and returns ErrorCode::Unavailable ("cancelled"). dstEncryption: the output is LUKS-encrypted with that passphrase.
  struct ConvertOptions {
    bool dstExists = false;
    std::optional<Encryption> dstEncryption;
    std::optional<Encryption> srcEncryption;
    ProgressFn progress;
    const std::atomic<bool>* cancel = nullptr;
    bool compress = false;
  };
  Result<void> convert(const std::string& src, const std::string& srcFormat, const std::string& dst,
                       const std::string& dstFormat, const ConvertOptions& opts) const;

  // Grows to newSize bytes (shrinking is refused by the caller before this).
  Result<void> resize(const std::string& path, const std::string& format, int64_t newSize,
                      const std::optional<Encryption>& enc = std::nullopt) const;

  // Replaces the passphrase of a LUKS image (qcow2+luks or luks): adds newKey in
  // a free key slot with `qemu-img amend`, then retires every slot oldKey opens.
  // The data is not re-encrypted (the LUKS master key stays).
  Result<void> rekey(const std::string& path, const std::string& format, const Encryption& oldKey,
                     const Encryption& newKey) const;

  const std::string& binary() const { return binary_; }

  // LUKS key slots that create, convert and rekey make are given this much
  // PBKDF time (QEMU's iter-time; unlocking later costs about as long). 0 is
  // QEMU's default of 2 s. corral's default is kLuksIterTimeMs: key stretching
  // protects a guessable human passphrase, and every corral passphrase is 256
  // random bits (host::KeyStore), which no iteration count makes any stronger;
  // 2 s per key slot would only slow every start, resize and rekey.
  static constexpr int kLuksIterTimeMs = 10;
  void setLuksIterTimeForTest(int ms) { luksIterTimeMs_ = ms; }

 private:
  std::string binary_;
  int luksIterTimeMs_ = kLuksIterTimeMs;
};

// Why corral never makes or takes qcow2's legacy AES encryption: the one
// wording of every refusal of it.
inline constexpr const char* kLegacyAesRefusal =
    "qcow2's legacy AES encryption is refused: it has no integrity, predictable IVs (CBC with the sector number) "
    "and uses the passphrase itself as the key; QEMU deprecates it. corral encrypts with LUKS only";

// "4G", "512M", "10GiB", "1T", "1048576" (bytes) -> bytes. Units are powers of
// 1024; the result must be a positive multiple of 1 MiB. InvalidInput names field.
Result<int64_t> parseSize(std::string_view field, std::string_view text);
// 4294967296 -> "4 GiB", 1572864 -> "1.5 MiB".
std::string formatSize(int64_t bytes);

}  // namespace corral::host
