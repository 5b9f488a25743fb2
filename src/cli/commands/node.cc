// `corral node info`: the host the daemon runs on (QEMU, accelerator,
// capacity, memory committed to guests). `corral node verify`: the daemon's
// checks of its host (admins only); every check printed, then the problems
// named again, and exit status 1 when there is any.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/views.h"

namespace corral::cli {

// `node verify` found a problem (the same status as an API error: scripts test
// for non-zero; the output says which).
constexpr int kExitProblems = 1;

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

  auto verifyOut = std::make_shared<std::string>();
  auto *verify = node->add_subcommand(
      "verify", "Check the host: QEMU, accelerator, networking, state dir, "
                "database, pools, clock (admins)");
  addOutputOption(*verify, *verifyOut);
  verify->callback([&ctx, verifyOut] {
    ctx.action = [&ctx, verifyOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/node/verify", std::nullopt,
                           &resp))
        return rc;
      if (int rc = printAnswer(resp, *verifyOut, nodeVerifyView))
        return rc;
      auto body = nlohmann::json::parse(resp.body, nullptr, false);
      if (*verifyOut == "table")
        std::cout << nodeVerifySummary(body) << std::flush;
      int64_t problems = body.is_object() && body.contains("problems") &&
                                 body["problems"].is_number_integer()
                             ? body["problems"].get<int64_t>()
                             : 0;
      return problems > 0 ? kExitProblems : kExitOk;
    };
  });
}

} // namespace corral::cli
