// `corral token create|list|revoke`: API tokens for remotes and scripts. The
// secret exists only in the create answer: printed once here, never again.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

struct CreateArgs {
  std::string user, name, output;
  unsigned days = 0;
};

struct ListArgs {
  std::string user, output;
  bool all = false;
};

} // namespace

void addTokenCommands(CLI::App &app, Context &ctx) {
  auto *token = app.add_subcommand("token", "Manage API tokens");
  token->require_subcommand(1);

  auto ca = std::make_shared<CreateArgs>();
  auto *create = token->add_subcommand(
      "create", "Create an API token and print its secret (once)");
  auto *userOpt = create->add_option("--user", ca->user,
                                     "For this user (admins; default: you)");
  auto *nameOpt =
      create->add_option("--name", ca->name, "A label to recognise it by");
  auto *daysOpt =
      create
          ->add_option("--expires", ca->days,
                       "Expire after this many days (default: never)")
          ->check(CLI::Range(1u, 36500u));
  addOutputOption(*create, ca->output);
  create->callback([&ctx, ca, userOpt, nameOpt, daysOpt] {
    ctx.action = [&ctx, ca, userOpt, nameOpt, daysOpt] {
      nlohmann::json body = nlohmann::json::object();
      if (userOpt->count() > 0)
        body["user"] = ca->user;
      if (nameOpt->count() > 0)
        body["name"] = ca->name;
      if (daysOpt->count() > 0)
        body["expires"] = ca->days;
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", "/api/v1/tokens", body, &resp))
        return rc;
      int rc = printAnswer(resp, ca->output, createdTokenView);
      if (rc == kExitOk && ca->output == "table")
        std::cerr << "Store the token now: it cannot be shown again.\n";
      return rc;
    };
  });

  auto la = std::make_shared<ListArgs>();
  auto *list =
      token->add_subcommand("list", "List tokens (never their secrets)");
  auto *listUser =
      list->add_option("--user", la->user, "Another user's tokens (admins)");
  list->add_flag("--all", la->all, "Everyone's tokens (admins)")
      ->excludes(listUser);
  addOutputOption(*list, la->output);
  list->callback([&ctx, la, listUser] {
    ctx.action = [&ctx, la, listUser] {
      std::string path = "/api/v1/tokens";
      if (listUser->count() > 0)
        path += "?user=" + encodePathSegment(la->user);
      if (la->all)
        path += "?all=true";
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", path, std::nullopt, &resp))
        return rc;
      const std::string now = nowRfc3339Utc();
      return printAnswer(resp, la->output, [&now](const nlohmann::json &b) {
        return tokenListView(b, now);
      });
    };
  });

  auto revokeId = std::make_shared<std::string>();
  auto *revoke = token->add_subcommand(
      "revoke", "Revoke a token: it stops working at once");
  revoke->add_option("ID", *revokeId, "Token id (from `corral token list`)")
      ->required();
  revoke->callback([&ctx, revokeId] {
    ctx.action = [&ctx, revokeId] {
      if (int rc = callApi(ctx, "DELETE",
                           "/api/v1/tokens/" + encodePathSegment(*revokeId),
                           std::nullopt, nullptr))
        return rc;
      std::cout << "revoked token " << *revokeId << '\n';
      return kExitOk;
    };
  });
}

} // namespace corral::cli
