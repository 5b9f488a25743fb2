#include "host/image_library.h"

#include <system_error>

#include <fmt/format.h>
#include <fmt/std.h>

namespace corral::host {
namespace fs = std::filesystem;

namespace {

Result<void> checkSource(const std::string& field, const std::string& path) {
  if (path.empty() || path.front() != '/')
    return Error::invalidInput(field, path, "must be an absolute path on the daemon's host");
  std::error_code ec;
  auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return Error::invalidInput(field, path, "no such file");
  if (!fs::is_regular_file(st)) return Error::invalidInput(field, path, "not a regular file");
  return ok();
}

}  // namespace

Result<ImportedFiles> ImageLibrary::importDirectBoot(const std::string& name, const std::string& kernel,
                                                     const std::string& initrd) const {
  CORRAL_TRY(checkSource("kernel", kernel));
  if (!initrd.empty()) CORRAL_TRY(checkSource("initrd", initrd));
  fs::path dir = CORRAL_TRY(dir_.imageDir(name));
  std::error_code ec;
  if (fs::exists(dir, ec))
    return Error::alreadyExists("name", name, fmt::format("name: image files for {} already exist in {}", name, dir));
  CORRAL_TRY(makeDir(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec));

  ImportedFiles out;
  auto copy = [&](const std::string& field, const std::string& from, const char* to) -> Result<std::string> {
    fs::path dest = dir / to;
    std::error_code cec;
    fs::copy_file(from, dest, fs::copy_options::none, cec);
    if (cec) return Error::invalidInput(field, from, fmt::format("cannot copy: {}", cec.message()));
    fs::permissions(dest, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read, cec);
    out.sizeBytes += static_cast<int64_t>(fs::file_size(dest, cec));
    return dest.string();
  };
  auto k = copy("kernel", kernel, "vmlinuz");
  if (!k.ok()) {
    fs::remove_all(dir, ec);
    return std::move(k).error();
  }
  out.kernel = std::move(k).take();
  if (!initrd.empty()) {
    auto i = copy("initrd", initrd, "initrd");
    if (!i.ok()) {
      fs::remove_all(dir, ec);
      return std::move(i).error();
    }
    out.initrd = std::move(i).take();
  }
  return out;
}

Result<void> ImageLibrary::remove(const std::string& name) const {
  fs::path dir = CORRAL_TRY(dir_.imageDir(name));
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return Error::internal(fmt::format("remove {}: {}", dir, ec.message()));
  return ok();
}

}  // namespace corral::host
