#include "host/state_dir.h"

#include <system_error>

#include <fmt/format.h>
#include <fmt/std.h>

namespace corral::host {
namespace fs = std::filesystem;

namespace {

Result<fs::path> child(const fs::path& parent, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    return Error::invalidInput("name", name, "not a valid file name");
  return parent / name;
}

}  // namespace

Result<void> makeDir(const fs::path& dir, fs::perms mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error::internal(fmt::format("create directory {}: {}", dir, ec.message()));
  fs::permissions(dir, mode, fs::perm_options::replace, ec);
  if (ec) return Error::internal(fmt::format("chmod {}: {}", dir, ec.message()));
  return ok();
}

Result<void> StateDir::prepare() const {
  constexpr auto kPrivate = fs::perms::owner_all;
  CORRAL_TRY(makeDir(root_, kPrivate | fs::perms::group_exec | fs::perms::others_exec));
  CORRAL_TRY(makeDir(cacheDir(), kPrivate));
  CORRAL_TRY(makeDir(imagesDir(), kPrivate));
  CORRAL_TRY(makeDir(runDir(), kPrivate));
  CORRAL_TRY(makeDir(disksDir(), kPrivate));
  CORRAL_TRY(makeDir(keysDir(), kPrivate));
  CORRAL_TRY(makeDir(uploadsDir(), kPrivate));
  CORRAL_TRY(makeDir(tmpDir(), kPrivate));
  return ok();
}

Result<fs::path> StateDir::imageDir(const std::string& name) const { return child(imagesDir(), name); }

Result<fs::path> StateDir::vmRuntimeDir(const std::string& name) const { return child(runDir(), name); }

}  // namespace corral::host
