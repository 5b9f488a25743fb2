// `corral quota show [--user U|--group G]` (limits against usage: the numbers a
// create form needs) and `corral quota set --user U|--group G --max-... N`
// (admins; "default" clears an override). Memory in MiB, disk in GiB. A set
// changes the limits it names and no other (PATCH): setting --max-running
// after --max-vms keeps max_vms.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

struct ShowArgs {
  std::string user, group, output;
};

// One `quota set` flag: its API key, unit and the value given.
struct LimitFlag {
  const char *flag;
  const char *key;
  QuotaUnit unit;
  const char *help;
  std::string value;
  CLI::Option *opt = nullptr;
};

struct SetArgs {
  std::string user, group, output;
  std::vector<LimitFlag> limits{
      {"--max-vms", "max_vms", QuotaUnit::Count, "VMs in total", {}},
      {"--max-running",
       "max_running",
       QuotaUnit::Count,
       "VMs running at once",
       {}},
      {"--max-memory-total",
       "max_memory_total",
       QuotaUnit::Mib,
       "Memory of running VMs in total, MiB",
       {}},
      {"--max-memory-vm",
       "max_memory_vm",
       QuotaUnit::Mib,
       "Memory of one VM at most, MiB",
       {}},
      {"--min-memory-vm",
       "min_memory_vm",
       QuotaUnit::Mib,
       "Memory of one VM at least, MiB",
       {}},
      {"--max-disk-total",
       "max_disk_total",
       QuotaUnit::Gib,
       "Disk in total, GiB",
       {}},
      {"--max-disk-vm",
       "max_disk_vm",
       QuotaUnit::Gib,
       "Disk of one VM, GiB",
       {}},
  };
};

std::string subjectPath(const std::string &user, const std::string &group) {
  if (!user.empty())
    return "/api/v1/quotas/users/" + encodePathSegment(user);
  return "/api/v1/quotas/groups/" + encodePathSegment(group);
}

} // namespace

void addQuotaCommands(CLI::App &app, Context &ctx) {
  auto *quota = app.add_subcommand("quota", "Show or set quotas");
  quota->require_subcommand(1);

  auto sa = std::make_shared<ShowArgs>();
  auto *show =
      quota->add_subcommand("show", "Limits against usage (yours by default)");
  auto *showUser = show->add_option("--user", sa->user, "A user's quota");
  show->add_option("--group", sa->group, "A group's quota")->excludes(showUser);
  addOutputOption(*show, sa->output);
  show->callback([&ctx, sa] {
    ctx.action = [&ctx, sa] {
      std::string path = sa->user.empty() && sa->group.empty()
                             ? "/api/v1/quota"
                             : subjectPath(sa->user, sa->group);
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", path, std::nullopt, &resp))
        return rc;
      return printAnswer(resp, sa->output, quotaView);
    };
  });

  auto ta = std::make_shared<SetArgs>();
  auto *set = quota->add_subcommand(
      "set", "Override limits of a user or group (\"default\" clears one)");
  auto *setUser = set->add_option("--user", ta->user, "The user");
  auto *setGroup =
      set->add_option("--group", ta->group, "The group")->excludes(setUser);
  for (auto &l : ta->limits)
    l.opt = set->add_option(l.flag, l.value, l.help);
  addOutputOption(*set, ta->output);
  set->callback([&ctx, ta, setUser, setGroup] {
    ctx.action = [&ctx, ta, setUser, setGroup] {
      if (setUser->count() == 0 && setGroup->count() == 0) {
        std::cerr << "corral: quota set: give --user U or --group G\n";
        return kExitUsage;
      }
      nlohmann::json body = nlohmann::json::object();
      for (const auto &l : ta->limits) {
        if (l.opt->count() == 0)
          continue;
        auto v = parseQuotaValue(l.flag, l.value, l.unit);
        if (!v) {
          std::cerr << "corral: " << v.error().message << '\n';
          return kExitUsage;
        }
        body[l.key] = *v ? nlohmann::json(**v) : nlohmann::json(nullptr);
      }
      if (body.empty()) {
        std::cerr << "corral: quota set: give at least one limit (--max-vms, "
                     "--max-running, --max-memory-total, "
                     "--max-memory-vm, --min-memory-vm, --max-disk-total, "
                     "--max-disk-vm)\n";
        return kExitUsage;
      }
      HttpResponse resp;
      if (int rc = callApi(ctx, "PATCH", subjectPath(ta->user, ta->group), body,
                           &resp))
        return rc;
      return printAnswer(resp, ta->output, quotaView);
    };
  });
}

} // namespace corral::cli
