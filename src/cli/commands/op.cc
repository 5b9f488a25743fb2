// `corral op list|show|wait`: the daemon's long actions. `op wait` exits 0 when
// the operation succeeded, 1 when it failed or is still running at --timeout.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

struct WaitArgs {
  std::string id, output;
  unsigned timeout = 0;
};

} // namespace

void addOperationCommands(CLI::App &app, Context &ctx) {
  auto *op = app.add_subcommand("op", "Follow long actions (operations)");
  op->require_subcommand(1);

  auto listOut = std::make_shared<std::string>();
  auto limit = std::make_shared<unsigned>(0);
  auto *list = op->add_subcommand("list", "List recent operations");
  auto *limitOpt = list->add_option("--limit", *limit, "At most this many")
                       ->check(CLI::Range(1u, 10000u));
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut, limit, limitOpt] {
    ctx.action = [&ctx, listOut, limit, limitOpt] {
      std::string path = "/api/v1/operations";
      if (limitOpt->count() > 0)
        path += fmt::format("?limit={}", *limit);
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", path, std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, operationListView);
    };
  });

  auto showId = std::make_shared<std::string>();
  auto showOut = std::make_shared<std::string>();
  auto *show = op->add_subcommand("show", "Show one operation");
  show->add_option("ID", *showId, "Operation id")->required();
  addOutputOption(*show, *showOut);
  show->callback([&ctx, showId, showOut] {
    ctx.action = [&ctx, showId, showOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET",
                           "/api/v1/operations/" + encodePathSegment(*showId),
                           std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *showOut, operationView);
    };
  });

  auto wa = std::make_shared<WaitArgs>();
  auto *wait = op->add_subcommand(
      "wait",
      "Wait for an operation to end; exit 0 when it succeeded, 1 otherwise");
  wait->add_option("ID", wa->id, "Operation id")->required();
  auto *timeoutOpt =
      wait->add_option("--timeout", wa->timeout,
                       "Give up after this many seconds (default: never)")
          ->check(CLI::Range(0u, 604800u));
  addOutputOption(*wait, wa->output);
  wait->callback([&ctx, wa, timeoutOpt] {
    ctx.action = [&ctx, wa, timeoutOpt] {
      nlohmann::json result;
      bool stillRunning = false;
      auto until = timeoutOpt->count() > 0
                       ? std::optional<std::chrono::seconds>(wa->timeout)
                       : std::nullopt;
      if (int rc = waitOperation(ctx, wa->id, until, &result, &stillRunning))
        return rc;
      printJson(result, wa->output, operationView);
      if (stillRunning) {
        std::cerr << fmt::format(
            "corral: operation {} is still {} after {} s (progress {})\n",
            wa->id, operationState(result), wa->timeout,
            field(result, "progress"));
        return kExitApiError;
      }
      int rc =
          operationExitCode(operationState(result)).value_or(kExitApiError);
      if (rc != kExitOk)
        std::cerr << "corral: " << operationFailure(result) << '\n';
      return rc;
    };
  });
}

} // namespace corral::cli
