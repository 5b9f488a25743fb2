// The image library's rules: who sees which image, who imports and deletes,
// and every import as an operation with progress (bytes done of total).
//
// An import first takes the name (a row in state "importing", so two imports of
// one name cannot both run and no VM can use a half-copied image), then copies
// on the operations pool; a failed or interrupted import removes its row and
// files. Only admins import and delete; an image is public (no owner) or
// private to a user or a group (core::canSeeImage).
#pragma once

#include <string>
#include <vector>

#include "core/operations.h"
#include "core/principal.h"
#include "core/storage.h"
#include "store/store.h"
#include "util/result.h"

namespace corral::core {

struct ImportImageRequest {
  std::string name;
  std::string kind = "direct-boot";  // direct-boot | disk | iso
  std::string path;                  // disk, iso: the source file on the daemon's host
  std::string kernel, initrd, append;  // direct-boot
  std::string owner;                 // "" public; a user or a group
  std::string description;
  std::string format;                // disk: the source's format, "" detect
  // path is a file the import owns (an HTTP upload): removed once imported or failed.
  bool ownsSource = false;
};

class Images {
 public:
  Images(store::Store& store, Storage& storage, Operations& ops) : store_(store), storage_(storage), ops_(ops) {}

  // Admins only. Validates (errors name the field), takes the name and starts
  // the import; returns its operation, whose result is the image.
  Result<store::OperationRecord> import(const Principal& who, ImportImageRequest req);
  Result<std::vector<store::ImageRecord>> list(const Principal& who);
  // NotFound for an image who may not see, worded like a missing one.
  Result<store::ImageRecord> get(const Principal& who, const std::string& name);
  // Admins only; FailedPrecondition naming the VMs that use it.
  Result<void> remove(const Principal& who, const std::string& name);
  // At daemon start: rows a previous daemon left "importing" go, with their files.
  Result<void> dropUnfinished();

 private:
  Result<std::pair<std::string, std::string>> resolveOwner(const std::string& owner);
  Result<store::ImageRecord> runImport(const ImportImageRequest& req, store::ImageRecord row,
                                       const Operations::Progress& progress);

  store::Store& store_;
  Storage& storage_;
  Operations& ops_;
};

}  // namespace corral::core
