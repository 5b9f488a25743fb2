// The image library on this host: each imported image's files copied into its
// own directory under the state dir, so that a guest never depends on a path
// outside corral's control.
//
// Direct-boot images only for now (kernel, optional initrd). The database row
// is core/'s business; this layer only places and removes files.
#pragma once

#include <cstdint>
#include <string>

#include "host/state_dir.h"
#include "util/result.h"

namespace corral::host {

struct ImportedFiles {
  std::string kernel;  // absolute path of the copy
  std::string initrd;  // empty when none was given
  int64_t sizeBytes = 0;
};

class ImageLibrary {
 public:
  explicit ImageLibrary(const StateDir& dir) : dir_(dir) {}

  // Copies kernel and initrd (both regular files, readable) into images/NAME/.
  // On any failure nothing is left behind. Errors name the field ("kernel",
  // "initrd") and the path.
  Result<ImportedFiles> importDirectBoot(const std::string& name, const std::string& kernel,
                                         const std::string& initrd) const;

  // Removes images/NAME/ and everything in it; absent is not an error.
  Result<void> remove(const std::string& name) const;

 private:
  const StateDir& dir_;
};

}  // namespace corral::host
