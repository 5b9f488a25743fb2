// `corral node info`: the host the daemon runs on (QEMU, accelerator,
// capacity).
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"

namespace corral::cli {

void addNodeCommands(CLI::App &app, Context &ctx) {
  auto *node = app.add_subcommand("node", "Inspect the host");
  node->require_subcommand(1);
  auto out = std::make_shared<std::string>();
  auto *info = node->add_subcommand(
      "info", "Show the host's QEMU, accelerator and capacity");
  addOutputOption(*info, *out);
  info->callback([&ctx, out] {
    ctx.action = [&ctx, out] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/node", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *out, nodeInfoView);
    };
  });
}

} // namespace corral::cli
