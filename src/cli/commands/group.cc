// `corral group add|list|show|delete` and `corral group member add|remove GROUP
// USER`.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

std::string groupPath(const std::string &name) {
  return "/api/v1/groups/" + encodePathSegment(name);
}

struct AddArgs {
  std::string name, description, output;
};

struct MemberArgs {
  std::string group, user;
};

} // namespace

void addGroupCommands(CLI::App &app, Context &ctx) {
  auto *group = app.add_subcommand("group", "Manage groups and their members");
  group->require_subcommand(1);

  auto aa = std::make_shared<AddArgs>();
  auto *add = group->add_subcommand("add", "Create a group");
  add->add_option("NAME", aa->name, "Group name")->required();
  auto *descOpt = add->add_option("--description", aa->description,
                                  "What the group is for");
  addOutputOption(*add, aa->output);
  add->callback([&ctx, aa, descOpt] {
    ctx.action = [&ctx, aa, descOpt] {
      nlohmann::json body{{"name", aa->name}};
      if (descOpt->count() > 0)
        body["description"] = aa->description;
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", "/api/v1/groups", body, &resp))
        return rc;
      return printChange(resp, aa->output, "created group " + aa->name,
                         groupView);
    };
  });

  auto listOut = std::make_shared<std::string>();
  auto *list = group->add_subcommand("list", "List groups");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/groups", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, groupListView);
    };
  });

  auto showName = std::make_shared<std::string>();
  auto showOut = std::make_shared<std::string>();
  auto *show = group->add_subcommand("show", "Show a group and its members");
  show->add_option("NAME", *showName, "Group name")->required();
  addOutputOption(*show, *showOut);
  show->callback([&ctx, showName, showOut] {
    ctx.action = [&ctx, showName, showOut] {
      HttpResponse resp;
      if (int rc =
              callApi(ctx, "GET", groupPath(*showName), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *showOut, groupView);
    };
  });

  auto delName = std::make_shared<std::string>();
  auto *del = group->add_subcommand("delete", "Delete a group");
  del->add_option("NAME", *delName, "Group name")->required();
  del->callback([&ctx, delName] {
    ctx.action = [&ctx, delName] {
      if (int rc = callApi(ctx, "DELETE", groupPath(*delName), std::nullopt,
                           nullptr))
        return rc;
      std::cout << "deleted group " << *delName << '\n';
      return kExitOk;
    };
  });

  auto *member =
      group->add_subcommand("member", "Add users to groups or remove them");
  member->require_subcommand(1);
  struct Verb {
    const char *name;
    const char *help;
    const char *method;
    const char *done;
  };
  for (Verb v :
       {Verb{"add", "Add a user to a group", "PUT", "added {} to group {}"},
        Verb{"remove", "Remove a user from a group", "DELETE",
             "removed {} from group {}"}}) {
    auto ma = std::make_shared<MemberArgs>();
    auto *cmd = member->add_subcommand(v.name, v.help);
    cmd->add_option("GROUP", ma->group, "Group name")->required();
    cmd->add_option("USER", ma->user, "Login name")->required();
    cmd->callback([&ctx, ma, v] {
      ctx.action = [&ctx, ma, v] {
        std::string path =
            groupPath(ma->group) + "/members/" + encodePathSegment(ma->user);
        if (int rc = callApi(ctx, v.method, path, std::nullopt, nullptr))
          return rc;
        std::cout << fmt::format(fmt::runtime(v.done), ma->user, ma->group)
                  << '\n';
        return kExitOk;
      };
    });
  }
}

} // namespace corral::cli
