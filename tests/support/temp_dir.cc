#include "support/temp_dir.h"

#include <stdlib.h>

#include <system_error>

#include <gtest/gtest.h>

namespace corral::testing {

TempDir::TempDir() {
  char tmpl[] = "/tmp/crl.XXXXXX";
  char* made = ::mkdtemp(tmpl);
  if (made == nullptr) throw std::system_error(errno, std::generic_category(), "mkdtemp");
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path testGuestDir() {
  const char* env = ::getenv("CORRAL_TEST_GUEST");
  std::filesystem::path dir = env ? env : std::filesystem::path(CORRAL_BINARY_DIR) / "guest";
  EXPECT_TRUE(std::filesystem::exists(dir / "vmlinuz")) << "test guest missing in " << dir
                                                        << ": run scripts/build-test-guest";
  return dir;
}

}  // namespace corral::testing
