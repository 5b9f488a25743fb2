// corral: the command-line client of corrald. Parses the command line with
// CLI11, then runs the chosen command, which talks HTTP to the daemon's unix
// socket (context.h). Exit codes (output.h): 0 ok, 1 API error, 2 usage,
// 3 daemon unreachable.
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "util/build_info.h"

int main(int argc, char** argv) {
  using namespace corral::cli;
  Context ctx;
  CLI::App app{"corral: self-service virtual machines on QEMU", "corral"};
  app.set_version_flag("--version", std::string(corral::util::build::kVersion) + " (" +
                                        corral::util::build::kCommit + ")");
  // Global options may follow a subcommand ("corral vm list --socket X").
  app.fallthrough();
  app.require_subcommand(1);
  app.add_option("--socket", ctx.socketPath, "corrald's unix socket")
      ->envname("CORRAL_SOCKET")
      ->capture_default_str();

  addImageCommands(app, ctx);
  addVmCommands(app, ctx);
  addNodeCommands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help/--version exit 0; every other parse error is a usage error.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (!ctx.action) {
    std::cerr << app.help();
    return kExitUsage;
  }
  return ctx.action();
}
