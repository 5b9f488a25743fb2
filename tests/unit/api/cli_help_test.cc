// Proves that the real `corral` binary guides a person who stops short or
// misspells a subcommand: `corral`, `corral vm` and `corral vm lst` exit 2
// (usage) and print what went wrong (a misspelt subcommand is named, with the
// nearest real one), then the subcommands of the command they reached with a
// line each; no daemon is needed for that.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "util/command.h"

namespace corral::cli {
namespace {

util::CommandResult runCorral(const std::vector<std::string>& args) {
  util::Command cmd(std::string(CORRAL_BINARY_DIR) + "/bin/corral");
  cmd.args(args).keepEnv({"PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS"}).stdoutToBuffer().stderrToBuffer()
      .allowFailureStatus().timeout(std::chrono::milliseconds(20000));
  auto r = cmd.run();
  EXPECT_TRUE(r.ok()) << r.error().message;
  return r.ok() ? std::move(r).take() : util::CommandResult{};
}

TEST(CliHelp, NoSubcommandListsTheCommands) {
  auto r = runCorral({});
  EXPECT_EQ(r.status.exitCode, 2);
  EXPECT_EQ(r.err.rfind("corral: ", 0), 0u) << r.err;
  for (const char* noun : {"vm", "image", "network", "quota", "token"})
    EXPECT_NE(r.err.find(std::string("\n  ") + noun), std::string::npos) << noun << " in:\n" << r.err;
}

TEST(CliHelp, ANounAloneListsItsVerbs) {
  auto r = runCorral({"vm"});
  EXPECT_EQ(r.status.exitCode, 2);
  EXPECT_NE(r.err.find("corral: A subcommand is required"), std::string::npos) << r.err;
  for (const char* verb : {"list", "create", "start", "stop"})
    EXPECT_NE(r.err.find(std::string("\n  ") + verb), std::string::npos) << verb << " in:\n" << r.err;
}

TEST(CliHelp, AMisspeltVerbNamesItAndListsTheVerbs) {
  auto r = runCorral({"vm", "lst"});
  EXPECT_EQ(r.status.exitCode, 2);
  EXPECT_NE(r.err.find("corral: vm has no subcommand 'lst'; did you mean 'list'?"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("\n  list"), std::string::npos) << r.err;
  auto noun = runCorral({"vmm", "list"});
  EXPECT_EQ(noun.status.exitCode, 2);
  EXPECT_NE(noun.err.find("did you mean 'vm'?"), std::string::npos) << noun.err;
  auto far = runCorral({"vm", "frobnicate"});
  EXPECT_NE(far.err.find("no subcommand 'frobnicate'"), std::string::npos) << far.err;
  EXPECT_EQ(far.err.find("did you mean"), std::string::npos) << "nothing is near: " << far.err;
}

TEST(CliHelp, HelpStillExitsZero) {
  auto r = runCorral({"vm", "--help"});
  EXPECT_EQ(r.status.exitCode, 0) << r.err;
  EXPECT_NE(r.out.find("list"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace corral::cli
