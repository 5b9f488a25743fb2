// `corral admin report [-o json]`: a Guru Meditation Report of the daemon,
// fetched through the API (admins only). The daemon saves it under its state
// dir as well; the text view here is rendered from the same JSON model.
#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>

#include "cli/context.h"
#include "util/report.h"

namespace corral::cli {

void addAdminCommands(CLI::App& app, Context& ctx) {
  auto* admin = app.add_subcommand("admin", "Daemon administration (admins)");
  admin->require_subcommand(1);
  auto out = std::make_shared<std::string>();
  auto* report =
      admin->add_subcommand("report",
                            "Take a Guru Meditation Report of the daemon: package, process, threads' stacks, "
                            "configuration, VMs, operations, database, last errors");
  report->add_option("-o,--output", *out, "text (default) or json")
      ->check(CLI::IsMember({"text", "json"}))
      ->default_str("text");
  report->callback([&ctx, out] {
    ctx.action = [&ctx, out] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", "/api/v1/admin/report", std::nullopt, &resp)) return rc;
      auto j = nlohmann::json::parse(resp.body, nullptr, false);
      if (j.is_discarded()) {
        std::cerr << "corral: the daemon's report is not JSON\n";
        return kExitApiError;
      }
      if (*out == "json") {
        std::cout << j.dump(2) << '\n';
        return kExitOk;
      }
      auto parsed = util::Report::fromJson(j);
      if (!parsed.ok()) {
        std::cerr << "corral: the daemon's report does not parse: " << parsed.error().message << '\n';
        return kExitApiError;
      }
      std::cout << parsed->toText() << std::flush;
      return kExitOk;
    };
  });
}

}  // namespace corral::cli
