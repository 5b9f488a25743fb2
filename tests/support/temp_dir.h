// A directory under /tmp removed with everything in it when the test ends, also
// when it fails. Paths stay short so unix sockets inside fit in sun_path.
#pragma once

#include <filesystem>
#include <string>

namespace corral::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Where scripts/build-test-guest put the test guest (kernel + initramfs); the
// build writes it to <build>/guest. Fails the calling test when it is missing.
std::filesystem::path testGuestDir();

}  // namespace corral::testing
