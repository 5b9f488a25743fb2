// The image library on this host: each imported image's files copied into its
// own directory under the state dir (images/NAME/), so that a guest never
// depends on a path outside corral's control. Three kinds:
//   - direct-boot: kernel (+ initrd) copied as they are;
//   - disk: a qcow2 or raw source converted with qemu-img into images/NAME/disk.qcow2
//     (qcow2: linked clones are overlays backed by it), its SHA-256 taken from
//     the source's bytes while the conversion runs;
//   - iso: a CD image (ISO 9660, checked) copied to images/NAME/cd.iso, hashed on the way.
// The database row is core/'s business; this layer only places and removes files.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "host/qemu_img.h"
#include "host/state_dir.h"
#include "util/result.h"

namespace corral::host {

struct ImportedFiles {
  std::string kernel;  // absolute path of the copy
  std::string initrd;  // empty when none was given
  int64_t sizeBytes = 0;
};

struct ImportedImage {
  std::string path;         // the library's copy
  std::string format;       // "qcow2" (disk) | "raw" (iso)
  int64_t virtualSize = 0;  // guest-visible bytes
  int64_t sizeBytes = 0;    // bytes on the host
  std::string sha256;       // hex, of the source as read
  std::string sourceFormat; // disk: what the source was ("qcow2" | "raw")
};

// Bytes of the source processed so far, and the total; from the importing thread.
using ImportProgress = std::function<void(int64_t done, int64_t total)>;

struct ImportOptions {
  ImportProgress progress;
  const std::atomic<bool>* cancel = nullptr;
  // disk: the source's format ("qcow2" | "raw"); "" detects it from the first
  // bytes (a qcow2 magic, else raw) without letting qemu-img probe.
  std::string sourceFormat;
};

class ImageLibrary {
 public:
  ImageLibrary(const StateDir& dir, QemuImg qemuImg = QemuImg()) : dir_(dir), qemuImg_(std::move(qemuImg)) {}

  // Copies kernel and initrd (both regular files, readable) into images/NAME/.
  // On any failure nothing is left behind. Errors name the field ("kernel",
  // "initrd") and the path.
  Result<ImportedFiles> importDirectBoot(const std::string& name, const std::string& kernel,
                                         const std::string& initrd) const;

  // source: an absolute path to a regular file (field "path" in errors). A source
  // that is neither qcow2 nor raw, a qcow2 with a backing file, or an encrypted
  // one is InvalidInput. On failure or cancel nothing is left behind.
  Result<ImportedImage> importDisk(const std::string& name, const std::string& source,
                                   const ImportOptions& opts) const;
  Result<ImportedImage> importIso(const std::string& name, const std::string& source,
                                  const ImportOptions& opts) const;

  // Removes images/NAME/ and everything in it; absent is not an error.
  Result<void> remove(const std::string& name) const;

  const QemuImg& qemuImg() const { return qemuImg_; }

 private:
  const StateDir& dir_;
  QemuImg qemuImg_;
};

}  // namespace corral::host
