// The daemon's state directory and where each thing lives inside it:
//
//   DIR/corral.db        SQLite database
//   DIR/corral.sock      the API's unix socket
//   DIR/images/NAME/     an imported image's own copies of its files
//   DIR/run/NAME/        one guest's runtime dir: QMP, serial, VNC sockets, pidfile,
//                        runtime record, qemu.log, console.log
//   DIR/cache/           probe results
//   DIR/disks/           the default "dir" storage pool: VM disk files
//   DIR/keys/            master.key, wrapping every disk's LUKS passphrase (0700/0600);
//                        console.key, signing console tokens (0600, rotatable)
//   DIR/uploads/         image uploads being received over HTTP (0700)
//   DIR/tmp/             short-lived private files: secrets handed to qemu-img (0700)
//
// Names reaching here were validated by core/ (util/names.h); this layer still
// refuses a name that would leave its directory, as a second line of defence.
#pragma once

#include <filesystem>
#include <string>

#include "util/result.h"

namespace corral::host {

class StateDir {
 public:
  explicit StateDir(std::filesystem::path root) : root_(std::move(root)) {}

  // Creates the layout (0700 for private parts) when absent.
  Result<void> prepare() const;

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path database() const { return root_ / "corral.db"; }
  std::filesystem::path socket() const { return root_ / "corral.sock"; }
  std::filesystem::path cacheDir() const { return root_ / "cache"; }
  std::filesystem::path imagesDir() const { return root_ / "images"; }
  std::filesystem::path runDir() const { return root_ / "run"; }
  std::filesystem::path disksDir() const { return root_ / "disks"; }
  std::filesystem::path keysDir() const { return root_ / "keys"; }
  std::filesystem::path masterKey() const { return keysDir() / "master.key"; }
  std::filesystem::path consoleKey() const { return keysDir() / "console.key"; }
  std::filesystem::path uploadsDir() const { return root_ / "uploads"; }
  std::filesystem::path tmpDir() const { return root_ / "tmp"; }

  Result<std::filesystem::path> imageDir(const std::string& name) const;
  Result<std::filesystem::path> vmRuntimeDir(const std::string& name) const;

 private:
  std::filesystem::path root_;
};

// Creates dir (and parents) and sets its mode; an existing dir gets the mode too.
Result<void> makeDir(const std::filesystem::path& dir, std::filesystem::perms mode);

}  // namespace corral::host
