#include "support/private_netns.h"

#include <sched.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "util/command.h"

namespace corral::testing {
namespace {

std::string& problem() {
  static std::string p = "runTestsInPrivateNetns() did not run";
  return p;
}

}  // namespace

const std::string& privateNetnsProblem() { return problem(); }

int runTestsInPrivateNetns(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (::unshare(CLONE_NEWNET) != 0) {
    problem() = fmt::format("needs root for a private network namespace: unshare: {}", std::strerror(errno));
  } else {
    util::Command lo("ip");
    auto up = lo.args({"link", "set", "lo", "up"}).keepEnv({"PATH"}).stderrToBuffer().run();
    problem() = up.ok() ? "" : "ip link set lo up: " + up.error().message;
  }
  return RUN_ALL_TESTS();
}

}  // namespace corral::testing
