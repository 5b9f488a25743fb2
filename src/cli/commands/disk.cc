// `corral disk list|add|resize|remove|rekey`: a VM's disks (disk0, disk1, ...).
// Sizes go to the daemon as given ("10G", "512M", "1T", or bytes): the daemon
// parses them and says what is wrong (field "size"), shrinking included. Add,
// remove and rekey need the VM stopped; resize works on a running VM too.
#include <functional>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

std::string disksPath(const std::string &vm) {
  return "/api/v1/vms/" + encodePathSegment(vm) + "/disks";
}
std::string diskPath(const std::string &vm, const std::string &disk) {
  return disksPath(vm) + "/" + encodePathSegment(disk);
}

struct DiskArgs {
  std::string vm, disk, size, pool, output;
  bool encrypt = false;
};

// The end of a disk write: the disk (or, should the daemon answer with an
// operation, the operation's result once it ended) as "done" or JSON/CSV.
// `done` gets the disk's JSON to word the line.
int finishDiskChange(
    const Context &ctx, const HttpResponse &resp, std::string_view output,
    const std::function<std::string(const nlohmann::json &)> &done) {
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (resp.status == 202 && j.is_object() && j.contains("id") &&
      j.contains("state")) {
    nlohmann::json op = j;
    if (!operationExitCode(operationState(op))) {
      std::string id =
          op["id"].is_string() ? op["id"].get<std::string>() : op["id"].dump();
      bool stillRunning = false;
      if (int rc = waitOperation(ctx, id, std::nullopt, &op, &stillRunning))
        return rc;
    }
    if (int rc = *operationExitCode(operationState(op)); rc != kExitOk) {
      std::cerr << "corral: " << operationFailure(op) << '\n';
      return rc;
    }
    j = op.contains("result") ? op["result"] : nlohmann::json::object();
  }
  if (j.is_discarded())
    j = nlohmann::json::object();
  if (output == "table") {
    std::cout << done(j) << '\n';
    std::cout.flush();
    return kExitOk;
  }
  return printJson(j, output, diskView);
}

} // namespace

void addDiskCommands(CLI::App &app, Context &ctx) {
  auto *disk = app.add_subcommand("disk", "Manage a VM's disks");
  disk->require_subcommand(1);

  // list VM
  auto la = std::make_shared<DiskArgs>();
  auto *list = disk->add_subcommand("list", "List a VM's disks");
  list->add_option("VM", la->vm, "VM name")->required();
  addOutputOption(*list, la->output);
  list->callback([&ctx, la] {
    ctx.action = [&ctx, la] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", disksPath(la->vm), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, la->output, diskListView);
    };
  });

  // add VM SIZE [--encrypt] [--pool POOL]
  auto aa = std::make_shared<DiskArgs>();
  auto *add =
      disk->add_subcommand("add", "Add a blank disk to a stopped VM");
  add->add_option("VM", aa->vm, "VM name")->required();
  add->add_option("SIZE", aa->size, "Size: 10G, 512M, 10GiB, 1T or bytes")
      ->required();
  auto *encryptOpt =
      add->add_flag("--encrypt", aa->encrypt, "Encrypt the disk (LUKS)");
  auto *poolOpt =
      add->add_option("--pool", aa->pool, "Storage pool (default: the VM's)");
  addOutputOption(*add, aa->output);
  add->callback([&ctx, aa, encryptOpt, poolOpt] {
    ctx.action = [&ctx, aa, encryptOpt, poolOpt] {
      nlohmann::json body{{"size", aa->size}};
      if (encryptOpt->count() > 0)
        body["encrypt"] = aa->encrypt;
      if (poolOpt->count() > 0)
        body["pool"] = aa->pool;
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", disksPath(aa->vm), body, &resp))
        return rc;
      return finishDiskChange(ctx, resp, aa->output,
                              [aa](const nlohmann::json &d) {
                                return fmt::format(
                                    "added {} ({}) to vm {}", field(d, "name"),
                                    sizeCell(d, "size_bytes"), aa->vm);
                              });
    };
  });

  // resize VM DISK SIZE
  auto ra = std::make_shared<DiskArgs>();
  auto *resize = disk->add_subcommand(
      "resize", "Grow a disk (shrinking is refused); works while it runs");
  resize->add_option("VM", ra->vm, "VM name")->required();
  resize->add_option("DISK", ra->disk, "Disk name (disk0, disk1, ...)")
      ->required();
  resize->add_option("SIZE", ra->size, "New size: 20G, 10GiB, 1T or bytes")
      ->required();
  addOutputOption(*resize, ra->output);
  resize->callback([&ctx, ra] {
    ctx.action = [&ctx, ra] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "PATCH", diskPath(ra->vm, ra->disk),
                           nlohmann::json{{"size", ra->size}}, &resp))
        return rc;
      return finishDiskChange(
          ctx, resp, ra->output, [ra](const nlohmann::json &d) {
            return fmt::format("resized {} of vm {} to {}", ra->disk, ra->vm,
                               sizeCell(d, "size_bytes"));
          });
    };
  });

  // remove VM DISK
  auto xa = std::make_shared<DiskArgs>();
  auto *remove =
      disk->add_subcommand("remove", "Remove a disk from a stopped VM "
                                     "(its data is gone)");
  remove->add_option("VM", xa->vm, "VM name")->required();
  remove->add_option("DISK", xa->disk, "Disk name")->required();
  remove->callback([&ctx, xa] {
    ctx.action = [&ctx, xa] {
      if (int rc = callApi(ctx, "DELETE", diskPath(xa->vm, xa->disk),
                           std::nullopt, nullptr))
        return rc;
      std::cout << fmt::format("removed {} from vm {}\n", xa->disk, xa->vm);
      return kExitOk;
    };
  });

  // rekey VM DISK
  auto ka = std::make_shared<DiskArgs>();
  auto *rekey = disk->add_subcommand(
      "rekey", "Give an encrypted disk of a stopped VM a new key");
  rekey->add_option("VM", ka->vm, "VM name")->required();
  rekey->add_option("DISK", ka->disk, "Disk name")->required();
  addOutputOption(*rekey, ka->output);
  rekey->callback([&ctx, ka] {
    ctx.action = [&ctx, ka] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", diskPath(ka->vm, ka->disk) + "/rekey",
                           std::nullopt, &resp))
        return rc;
      return finishDiskChange(ctx, resp, ka->output,
                              [ka](const nlohmann::json &) {
                                return fmt::format("rekeyed {} of vm {}",
                                                   ka->disk, ka->vm);
                              });
    };
  });
}

} // namespace corral::cli
