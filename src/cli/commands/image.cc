// `corral image import|list|info|delete`: the image library. An image is a
// disk (qcow2 that VMs clone), an iso (a CD) or a direct-boot kernel (+ initrd,
// append line). Importing is an operation on the daemon: the CLI waits for it
// with a progress line on stderr and then shows the image.
//
// How the file gets there: to the local daemon (its unix socket) the CLI sends
// the path, made absolute because the daemon's working directory is not the
// user's, and the daemon reads the file itself; to a remote daemon (TLS), or
// with --upload, the CLI streams the file's bytes (PUT /images/{name}/file). A
// kernel and initrd always go by path: they are the daemon host's files.
#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/image_import.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/progress.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

std::string absolutePath(const std::string &p) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(p, ec);
  return ec ? p : abs.lexically_normal().string();
}

std::string imagePath(const std::string &name) {
  return "/api/v1/images/" + encodePathSegment(name);
}

// The image an import operation made: its result, else (an older daemon, a
// result without the image) GET /images/{name}.
int printImported(const Context &ctx, const nlohmann::json &op,
                  const ImportRequest &r) {
  if (op.contains("result") && op["result"].is_object() &&
      op["result"].contains("name"))
    return printJson(op["result"], r.output, imageInfoView);
  HttpResponse resp;
  if (int rc = callApi(ctx, "GET", imagePath(r.name), std::nullopt, &resp))
    return rc;
  return printAnswer(resp, r.output, imageInfoView);
}

int runImport(const Context &ctx, const ImportRequest &r) {
  int code = kExitOk;
  auto where = ctx.resolveTarget(&code);
  if (!where)
    return code;
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  HttpResponse resp;
  if (importUploads(r, where->isUnix())) {
    ProgressReporter sending(std::cerr, tty, "uploading", r.name);
    code = callUpload(ctx, importUploadTarget(r), absolutePath(r.file), &resp,
                      [&sending](uint64_t done, uint64_t total) {
                        sending.update(done, total);
                      });
    sending.finish();
  } else {
    ImportRequest abs = r;
    abs.file = absolutePath(r.file);
    if (!abs.initrd.empty())
      abs.initrd = absolutePath(r.initrd);
    code = callApi(ctx, "POST", "/api/v1/images", importBody(abs), &resp);
  }
  if (code != kExitOk)
    return code;

  auto op = nlohmann::json::parse(resp.body, nullptr, false);
  if (op.is_discarded() || !op.is_object() || !op.contains("id") ||
      !op.contains("state")) {
    // Not an operation (an older daemon imported at once): show the answer.
    return printChange(resp, r.output, "imported image " + r.name,
                       imageInfoView);
  }
  if (r.noWait)
    return printJson(op, r.output, operationView);
  if (!operationExitCode(operationState(op))) {
    std::string id =
        op["id"].is_string() ? op["id"].get<std::string>() : op["id"].dump();
    ProgressReporter importing(std::cerr, tty, "importing", r.name);
    auto show = [&importing](const nlohmann::json &o) {
      auto p = operationProgress(o);
      importing.update(p.done, p.total, p.percent);
    };
    show(op);
    bool stillRunning = false;
    int rc = waitOperation(ctx, id, std::nullopt, &op, &stillRunning,
                           std::chrono::seconds(1), show);
    importing.finish();
    if (rc != kExitOk)
      return rc;
  }
  if (int rc = *operationExitCode(operationState(op)); rc != kExitOk) {
    std::cerr << "corral: " << operationFailure(op) << '\n';
    return rc;
  }
  return printImported(ctx, op, r);
}

} // namespace

void addImageCommands(CLI::App &app, Context &ctx) {
  auto *image = app.add_subcommand("image", "Manage the image library");
  image->require_subcommand(1);

  auto ia = std::make_shared<ImportRequest>();
  auto *imp = image->add_subcommand(
      "import", "Import a disk image, an ISO or a kernel (+ initrd) as an "
                "image (admins)");
  imp->add_option("NAME", ia->name, "Image name")->required();
  auto *diskOpt =
      imp->add_option("--disk", ia->file, "Disk image file (qcow2 or raw)")
          ->check(CLI::ExistingFile);
  auto *isoOpt =
      imp->add_option("--iso", ia->file, "ISO file")->check(CLI::ExistingFile);
  // Not checked here: a kernel and initrd are files of the daemon's host,
  // which for a remote is not this one; the daemon says when one is missing.
  auto *kernelOpt = imp->add_option("--kernel", ia->file, "Kernel file");
  imp->add_option("--initrd", ia->initrd, "Initrd file (with --kernel)")
      ->needs(kernelOpt);
  auto *appendOpt =
      imp->add_option("--append", ia->append,
                      "Kernel command line (with --kernel)")
          ->needs(kernelOpt);
  auto *ownerOpt = imp->add_option(
      "--owner", ia->owner,
      "The user or group who may see and use it (default: everyone)");
  auto *descOpt =
      imp->add_option("--description", ia->description, "Free text");
  auto *formatOpt =
      imp->add_option("--format", ia->format,
                      "Format of the --disk file (default: detected)")
          ->check(CLI::IsMember({"qcow2", "raw"}))
          ->needs(diskOpt);
  imp->add_flag("--upload", ia->upload,
                "Send the file's bytes even to the local daemon (a remote "
                "daemon always gets them)")
      ->excludes(kernelOpt);
  imp->add_flag("--no-wait", ia->noWait,
                "Print the import operation instead of waiting for it");
  addOutputOption(*imp, ia->output);
  imp->callback([&ctx, ia, diskOpt, isoOpt, kernelOpt, appendOpt, ownerOpt,
                 descOpt, formatOpt] {
    int sources = int(diskOpt->count() + isoOpt->count() + kernelOpt->count());
    if (sources != 1)
      throw CLI::ValidationError(
          "image import",
          "give exactly one of --disk FILE, --iso FILE or --kernel FILE");
    ia->kind = diskOpt->count() > 0  ? "disk"
               : isoOpt->count() > 0 ? "iso"
                                     : "direct-boot";
    ia->appendGiven = appendOpt->count() > 0;
    ia->ownerGiven = ownerOpt->count() > 0;
    ia->descriptionGiven = descOpt->count() > 0;
    ia->formatGiven = formatOpt->count() > 0;
    ctx.action = [&ctx, ia] { return runImport(ctx, *ia); };
  });

  auto listOut = std::make_shared<std::string>();
  auto *list = image->add_subcommand("list", "List the images you may use");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/images", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, imageListView);
    };
  });

  auto infoName = std::make_shared<std::string>();
  auto infoOut = std::make_shared<std::string>();
  auto *info = image->add_subcommand("info", "Show one image");
  info->add_option("NAME", *infoName, "Image name")->required();
  addOutputOption(*info, *infoOut);
  info->callback([&ctx, infoName, infoOut] {
    ctx.action = [&ctx, infoName, infoOut] {
      HttpResponse resp;
      if (int rc =
              callApi(ctx, "GET", imagePath(*infoName), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *infoOut, imageInfoView);
    };
  });

  auto delName = std::make_shared<std::string>();
  auto *del = image->add_subcommand("delete", "Delete an image (admins)");
  del->add_option("NAME", *delName, "Image name")->required();
  del->callback([&ctx, delName] {
    ctx.action = [&ctx, delName] {
      if (int rc =
              callApi(ctx, "DELETE", imagePath(*delName), std::nullopt, nullptr))
        return rc;
      std::cout << "deleted image " << *delName << '\n';
      return kExitOk;
    };
  });
}

} // namespace corral::cli
