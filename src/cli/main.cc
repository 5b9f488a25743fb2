// corral: the command-line client of corrald. Parses the command line with
// CLI11, then runs the chosen command, which talks HTTP to the daemon: over its
// unix socket, or over TLS to a remote added with `corral remote add`
// (context.h). Exit codes (output.h): 0 ok, 1 API error, 2 usage,
// 3 daemon unreachable.
#include <cstdlib>
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "util/build_info.h"

int main(int argc, char **argv) {
  using namespace corral::cli;
  Context ctx;
  CLI::App app{"corral: self-service virtual machines on QEMU", "corral"};
  app.set_version_flag("--version", std::string(corral::util::build::kVersion) +
                                        " (" + corral::util::build::kCommit +
                                        ")");
  // Global options may follow a subcommand ("corral vm list --socket X").
  app.fallthrough();
  app.require_subcommand(1);
  // The environment variables are read by hand below: a flag must beat either
  // variable, and CLI11 would count a variable as if the flag had been given.
  auto *socketOpt =
      app.add_option("--socket", ctx.socketPath,
                     "corrald's unix socket (also $CORRAL_SOCKET)")
          ->capture_default_str();
  auto *remoteOpt = app.add_option(
      "--remote", ctx.remoteName,
      "Talk to this remote instead of the current one (also $CORRAL_REMOTE)");

  addImageCommands(app, ctx);
  addVmCommands(app, ctx);
  addDiskCommands(app, ctx);
  addNetworkCommands(app, ctx);
  addNodeCommands(app, ctx);
  addRemoteCommands(app, ctx);
  addUserCommands(app, ctx);
  addGroupCommands(app, ctx);
  addTokenCommands(app, ctx);
  addQuotaCommands(app, ctx);
  addOperationCommands(app, ctx);
  addEventCommands(app, ctx);
  addConsoleCommands(app, ctx);
  addAdminCommands(app, ctx);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError &e) {
    // --help/--version exit 0; every other parse error is a usage error.
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }
  if (!ctx.action) {
    std::cerr << app.help();
    return kExitUsage;
  }
  auto env = [](const char *name) {
    const char *v = std::getenv(name);
    return v != nullptr ? std::string(v) : std::string();
  };
  ctx.socketGiven = socketOpt->count() > 0;
  if (!ctx.socketGiven && remoteOpt->count() == 0) {
    if (auto s = env("CORRAL_SOCKET"); !s.empty()) {
      ctx.socketPath = s;
      ctx.socketGiven = true;
    } else if (auto r = env("CORRAL_REMOTE"); !r.empty()) {
      ctx.remoteName = r;
    }
  }
  return ctx.action();
}
