// corral: the command-line client of corrald. Parses the command line with
// CLI11, then runs the chosen command, which talks HTTP to the daemon: over its
// unix socket, or over TLS to a remote added with `corral remote add`
// (context.h). Exit codes (output.h): 0 ok, 1 API error, 2 usage,
// 3 daemon unreachable.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "util/build_info.h"

namespace {

// The word typed after the command that was reached, when it is not an
// option: the subcommand that does not exist ("lst" in `corral vm lst`).
std::string typedSubcommand(const CLI::App &reached, const CLI::App &app,
                            int argc, char **argv) {
  int from = 1;
  if (&reached != &app)
    for (int i = argc - 1; i >= 1; --i)
      if (reached.get_name() == argv[i]) {
        from = i + 1;
        break;
      }
  return from < argc && argv[from][0] != '-' ? argv[from] : "";
}

// The subcommand of `cmd` nearest to `typed` by edit distance, when it is
// near enough to be a slip (at most 2 edits); "" otherwise.
std::string nearestSubcommand(const CLI::App &cmd, const std::string &typed) {
  auto distance = [](const std::string &a, const std::string &b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j)
      row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diag = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                           diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diag = up;
      }
    }
    return row[b.size()];
  };
  std::string best;
  size_t bestDistance = 3;
  for (const CLI::App *sub : cmd.get_subcommands({}))
    if (size_t d = distance(typed, sub->get_name()); d < bestDistance) {
      best = sub->get_name();
      bestDistance = d;
    }
  return best;
}

} // namespace

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
    if (e.get_exit_code() == 0)
      return app.exit(e) == 0 ? kExitOk : kExitUsage;
    // A missing or unknown subcommand ("corral", "corral vm", "corral vm
    // lst") shows what the command that was reached offers, one line each,
    // not only CLI11's one sentence.
    const CLI::App *reached = &app;
    while (!reached->get_subcommands().empty())
      reached = reached->get_subcommands().front();
    const std::string typed = typedSubcommand(*reached, app, argc, argv);
    if (!typed.empty() && !reached->get_subcommands({}).empty()) {
      std::cerr << "corral: " << (reached == &app ? "corral" : reached->get_name()) << " has no subcommand '"
                << typed << "'";
      if (auto near = nearestSubcommand(*reached, typed); !near.empty())
        std::cerr << "; did you mean '" << near << "'?";
      std::cerr << "\n";
    } else {
      std::cerr << "corral: " << e.what() << "\n";
    }
    if (!reached->get_subcommands({}).empty())
      std::cerr << "\n" << reached->help();
    return kExitUsage;
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
