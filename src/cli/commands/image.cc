// `corral image import|list|delete`: images are kernels (+ initrd, append line)
// the daemon copies into its store. Paths are made absolute here because the
// daemon's working directory is not the user's.
#include <filesystem>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"

namespace corral::cli {

namespace {

struct ImportArgs {
  std::string name, kernel, initrd, append, output;
};

std::string absolutePath(const std::string &p) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(p, ec);
  return ec ? p : abs.lexically_normal().string();
}

} // namespace

void addImageCommands(CLI::App &app, Context &ctx) {
  auto *image = app.add_subcommand("image", "Manage boot images");
  image->require_subcommand(1);

  auto ia = std::make_shared<ImportArgs>();
  auto *imp = image->add_subcommand(
      "import", "Import a kernel (and initrd) as a direct-boot image");
  imp->add_option("NAME", ia->name, "Image name")->required();
  imp->add_option("--kernel", ia->kernel, "Kernel file")
      ->required()
      ->check(CLI::ExistingFile);
  auto *initrdOpt = imp->add_option("--initrd", ia->initrd, "Initrd file")
                        ->check(CLI::ExistingFile);
  auto *appendOpt =
      imp->add_option("--append", ia->append, "Kernel command line");
  addOutputOption(*imp, ia->output);
  imp->callback([&ctx, ia, initrdOpt, appendOpt] {
    ctx.action = [&ctx, ia, initrdOpt, appendOpt] {
      nlohmann::json body{{"name", ia->name},
                          {"kernel", absolutePath(ia->kernel)}};
      if (initrdOpt->count() > 0)
        body["initrd"] = absolutePath(ia->initrd);
      if (appendOpt->count() > 0)
        body["append"] = ia->append;
      HttpResponse resp;
      // Copying a large kernel/initrd takes a while on a slow disk.
      if (int rc = callApi(ctx, "POST", "/api/v1/images", body, &resp,
                           std::chrono::seconds(600)))
        return rc;
      return printChange(resp, ia->output, "imported image " + ia->name,
                         imageInfoView);
    };
  });

  auto listOut = std::make_shared<std::string>();
  auto *list = image->add_subcommand("list", "List images");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/images", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, imageListView);
    };
  });

  auto delName = std::make_shared<std::string>();
  auto *del = image->add_subcommand("delete", "Delete an image");
  del->add_option("NAME", *delName, "Image name")->required();
  del->callback([&ctx, delName] {
    ctx.action = [&ctx, delName] {
      if (int rc = callApi(ctx, "DELETE",
                           "/api/v1/images/" + encodePathSegment(*delName),
                           std::nullopt, nullptr))
        return rc;
      std::cout << "deleted image " << *delName << '\n';
      return kExitOk;
    };
  });
}

} // namespace corral::cli
