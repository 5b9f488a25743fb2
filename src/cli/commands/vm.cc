// `corral vm create|list|info|modify|start|stop|reboot|pause|resume|cdrom|
// delete|log|dump`. Parses
// and checks what the client can (names go into URLs encoded, --memory accepts
// M/G suffixes); every rule about VMs is the daemon's. start, stop, reboot (and
// create --start) answer 202 with an operation: the CLI waits for it and then
// shows the VM, unless --no-wait asks for the operation itself.
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

std::string vmPath(const std::string &name) {
  return "/api/v1/vms/" + encodePathSegment(name);
}

bool isOperation(const HttpResponse &resp, nlohmann::json *op) {
  if (resp.status != 202)
    return false;
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("id") ||
      !j.contains("state"))
    return false;
  *op = std::move(j);
  return true;
}

// The end of every VM write: an operation is waited for (or shown with
// --no-wait), then the VM is shown as "done (state)" or JSON/CSV.
int finishVmChange(const Context &ctx, const HttpResponse &resp,
                   std::string_view output, bool noWait,
                   const std::string &vmName, const std::string &done) {
  nlohmann::json op;
  if (!isOperation(resp, &op))
    return printChange(resp, output, done, vmInfoView);
  if (noWait)
    return printJson(op, output, operationView);
  std::string id =
      op["id"].is_string() ? op["id"].get<std::string>() : op["id"].dump();
  if (!operationExitCode(operationState(op))) {
    bool stillRunning = false;
    if (int rc = waitOperation(ctx, id, std::nullopt, &op, &stillRunning))
      return rc;
  }
  if (int rc = *operationExitCode(operationState(op)); rc != kExitOk) {
    std::cerr << "corral: " << operationFailure(op) << '\n';
    return rc;
  }
  HttpResponse vm;
  if (int rc = callApi(ctx, "GET", vmPath(vmName), std::nullopt, &vm))
    return rc;
  return printChange(vm, output, done, vmInfoView);
}

int usageError(const Error &e) {
  std::cerr << "corral: " << e.message << '\n';
  return kExitUsage;
}

struct CreateArgs {
  std::string name, image, memory, onCrash, owner, contact, description, output;
  std::string cdrom, pool;
  std::vector<std::string> disks; // sizes as given ("4G"); the daemon parses
  unsigned vcpus = 1;
  bool start = false, noWait = false, encrypt = false, fullClone = false;
  // NICs: one per --network; --hostname/--ip/--mac/--nic-model/--forward
  // shape the first.
  std::vector<std::string> networks, forwards;
  std::string hostname, ip, mac, nicModel;
  bool noNetwork = false;
};

struct ModifyArgs {
  std::string name, memory, owner, admin, contact, description, newName,
      onCrash, output;
  unsigned vcpus = 1;
  uint64_t ifVersion = 0;
};

// The storage options of `vm create`, handed to its action.
struct StorageFlags {
  CLI::Option *disks, *encrypt, *fullClone, *cdrom, *pool;
};

struct ActionArgs {
  std::string name, output, cdrom;
  bool force = false, noWait = false;
  unsigned timeout = 0;
};

} // namespace

void addVmCommands(CLI::App &app, Context &ctx) {
  auto *vm = app.add_subcommand("vm", "Manage virtual machines");
  vm->require_subcommand(1);

  // create
  auto ca = std::make_shared<CreateArgs>();
  auto *create = vm->add_subcommand("create", "Create a VM");
  create->add_option("NAME", ca->name, "VM name")->required();
  create->add_option("--image", ca->image, "Image to boot")->required();
  create
      ->add_option("--memory", ca->memory,
                   "Memory: MiB, or with a suffix M/MiB/G/GiB (512M, 1G)")
      ->required();
  auto *vcpusOpt = create->add_option("--vcpus", ca->vcpus, "Virtual CPUs")
                       ->check(CLI::Range(1u, 1024u));
  auto *onCrashOpt =
      create
          ->add_option("--on-crash", ca->onCrash,
                       "What to do when the guest crashes")
          ->check(CLI::IsMember({"restart", "stop", "preserve"}));
  auto *ownerOpt = create->add_option("--owner", ca->owner,
                                      "Owning group or user (default: you)");
  auto *contactOpt =
      create->add_option("--contact", ca->contact, "Contact email for this VM");
  auto *descOpt =
      create->add_option("--description", ca->description, "Free text");
  auto *disksOpt = create->add_option(
      "--disk", ca->disks,
      "A disk of this size (4G, 512M, 10GiB, 1T; repeat for more). With a "
      "disk image the first grows its clone")
      ->allow_extra_args(false); // one size per --disk: `--disk 4G web1`
  auto *encryptOpt =
      create->add_flag("--encrypt", ca->encrypt, "Encrypt every disk (LUKS)");
  auto *fullCloneOpt = create->add_flag(
      "--full-clone", ca->fullClone,
      "Copy the disk image instead of a linked clone");
  auto *cdromOpt = create->add_option("--cdrom", ca->cdrom,
                                      "An ISO image to put in the CD drive");
  auto *poolOpt =
      create->add_option("--pool", ca->pool, "Storage pool for its disks");
  create
      ->add_option("--network", ca->networks,
                   "A NIC on this network (repeat for more; default: one on "
                   "the daemon's default network)")
      ->allow_extra_args(false);
  create->add_flag("--no-network", ca->noNetwork, "No NIC at all");
  create->add_option("--hostname", ca->hostname,
                     "The first NIC's hostname (default: the VM's name)");
  create->add_option("--ip", ca->ip,
                     "The first NIC's address from its network's pool");
  create->add_option("--mac", ca->mac, "The first NIC's MAC");
  create->add_option("--nic-model", ca->nicModel,
                     "The first NIC's model: virtio-net (default) or e1000");
  create
      ->add_option("--forward", ca->forwards,
                   "user networks: forward a host port to the first NIC, "
                   "PROTO:HOSTPORT:GUESTPORT (tcp:2222:22; repeat)")
      ->allow_extra_args(false);
  create->add_flag("--start", ca->start, "Start the VM once created");
  create->add_flag(
      "--no-wait", ca->noWait,
      "With --start: print the start operation instead of waiting for it");
  addOutputOption(*create, ca->output);
  StorageFlags sf{disksOpt, encryptOpt, fullCloneOpt, cdromOpt, poolOpt};
  create->callback(
      [&ctx, ca, vcpusOpt, onCrashOpt, ownerOpt, contactOpt, descOpt, sf] {
        ctx.action = [&ctx, ca, vcpusOpt, onCrashOpt, ownerOpt, contactOpt,
                      descOpt, sf] {
          auto mem = parseMemoryMib(ca->memory);
          if (!mem)
            return usageError(mem.error());
          nlohmann::json body{{"name", ca->name},
                              {"image", ca->image},
                              {"memory", *mem},
                              {"start", ca->start}};
          if (vcpusOpt->count() > 0)
            body["vcpus"] = ca->vcpus;
          if (onCrashOpt->count() > 0)
            body["on_crash"] = ca->onCrash;
          if (ownerOpt->count() > 0)
            body["owner"] = ca->owner;
          if (contactOpt->count() > 0)
            body["contact"] = ca->contact;
          if (descOpt->count() > 0)
            body["description"] = ca->description;
          if (sf.disks->count() > 0)
            body["disks"] = ca->disks;
          if (sf.encrypt->count() > 0)
            body["encrypt"] = ca->encrypt;
          if (sf.fullClone->count() > 0)
            body["full_clone"] = ca->fullClone;
          if (sf.cdrom->count() > 0)
            body["cdrom"] = ca->cdrom;
          if (sf.pool->count() > 0)
            body["pool"] = ca->pool;
          if (ca->noNetwork)
            body["no_network"] = true;
          nlohmann::json first = nlohmann::json::object();
          if (!ca->networks.empty())
            first["network"] = ca->networks.front();
          for (auto [key, value] :
               {std::pair{"hostname", &ca->hostname}, {"ip", &ca->ip},
                {"mac", &ca->mac}, {"model", &ca->nicModel}})
            if (!value->empty())
              first[key] = *value;
          if (!ca->forwards.empty())
            first["forwards"] = ca->forwards;
          if (!first.empty()) {
            nlohmann::json nics = nlohmann::json::array({first});
            for (size_t i = 1; i < ca->networks.size(); ++i)
              nics.push_back({{"network", ca->networks[i]}});
            body["nics"] = nics;
          }
          HttpResponse resp;
          if (int rc = callApi(ctx, "POST", "/api/v1/vms", body, &resp))
            return rc;
          return finishVmChange(ctx, resp, ca->output, ca->noWait, ca->name,
                                "created vm " + ca->name);
        };
      });

  addNicCommands(*vm, ctx);

  // list
  auto listOut = std::make_shared<std::string>();
  auto *list = vm->add_subcommand("list", "List VMs");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/vms", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, vmListView);
    };
  });

  // info
  auto infoName = std::make_shared<std::string>();
  auto infoOut = std::make_shared<std::string>();
  auto *info = vm->add_subcommand("info", "Show one VM");
  info->add_option("NAME", *infoName, "VM name")->required();
  addOutputOption(*info, *infoOut);
  info->callback([&ctx, infoName, infoOut] {
    ctx.action = [&ctx, infoName, infoOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", vmPath(*infoName), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *infoOut, vmInfoView);
    };
  });

  // modify: PATCH with the fields given; --if-version guards against lost
  // updates.
  auto ma = std::make_shared<ModifyArgs>();
  auto *modify =
      vm->add_subcommand("modify", "Change a VM's settings, owner or name");
  modify->add_option("NAME", ma->name, "VM name")->required();
  auto *mMemory = modify->add_option(
      "--memory", ma->memory, "Memory: MiB, or with a suffix M/MiB/G/GiB");
  auto *mVcpus =
      modify->add_option("--vcpus", ma->vcpus, "Virtual CPUs (stopped VMs)")
          ->check(CLI::Range(1u, 1024u));
  auto *mOwner =
      modify->add_option("--owner", ma->owner, "New owning group or user");
  auto *mAdmin =
      modify->add_option("--admin", ma->admin, "New administrator (a user)");
  auto *mContact =
      modify->add_option("--contact", ma->contact, "New contact email");
  auto *mDesc =
      modify->add_option("--description", ma->description, "New description");
  auto *mName = modify->add_option("--name", ma->newName,
                                   "New name (disks and history stay)");
  auto *mOnCrash = modify
                       ->add_option("--on-crash", ma->onCrash,
                                    "What to do when the guest crashes")
                       ->check(CLI::IsMember({"restart", "stop", "preserve"}));
  auto *mVersion = modify->add_option(
      "--if-version", ma->ifVersion,
      "Refuse (412) unless the VM is still at this version (see `vm info`)");
  addOutputOption(*modify, ma->output);
  modify->callback([&ctx, ma, mMemory, mVcpus, mOwner, mAdmin, mContact, mDesc,
                    mName, mOnCrash, mVersion] {
    ctx.action = [&ctx, ma, mMemory, mVcpus, mOwner, mAdmin, mContact, mDesc,
                  mName, mOnCrash, mVersion] {
      nlohmann::json body = nlohmann::json::object();
      if (mMemory->count() > 0) {
        auto mem = parseMemoryMib(ma->memory);
        if (!mem)
          return usageError(mem.error());
        body["memory"] = *mem;
      }
      if (mVcpus->count() > 0)
        body["vcpus"] = ma->vcpus;
      if (mOwner->count() > 0)
        body["owner"] = ma->owner;
      if (mAdmin->count() > 0)
        body["administrator"] = ma->admin;
      if (mContact->count() > 0)
        body["contact"] = ma->contact;
      if (mDesc->count() > 0)
        body["description"] = ma->description;
      if (mName->count() > 0)
        body["name"] = ma->newName;
      if (mOnCrash->count() > 0)
        body["on_crash"] = ma->onCrash;
      if (body.empty()) {
        std::cerr << "corral: nothing to modify: give at least one of "
                     "--memory, --vcpus, --owner, --admin, "
                     "--contact, --description, --name, --on-crash\n";
        return kExitUsage;
      }
      HttpHeaders headers;
      if (mVersion->count() > 0)
        headers.emplace_back("If-Match", fmt::format("\"{}\"", ma->ifVersion));
      HttpResponse resp;
      if (int rc = callApi(ctx, "PATCH", vmPath(ma->name), body, &resp,
                           std::chrono::seconds(300), headers))
        return rc;
      std::string shown = mName->count() > 0 ? ma->newName : ma->name;
      return printChange(resp, ma->output, "modified vm " + shown, vmInfoView);
    };
  });

  // start, reboot (operations), pause, resume (immediate): POST
  // .../actions/<verb>.
  // start and reboot take --cdrom ISO: boot that CD this time (a reboot with
  // it restarts QEMU).
  struct Verb {
    const char *name;
    const char *help;
    const char *done;
    bool operation;
  };
  for (Verb v : {Verb{"start", "Start a VM", "started", true},
                 Verb{"reboot", "Reboot a VM", "rebooted", true},
                 Verb{"pause", "Pause a VM's CPUs", "paused", false},
                 Verb{"resume", "Resume a paused VM", "resumed", false}}) {
    auto args = std::make_shared<ActionArgs>();
    auto *cmd = vm->add_subcommand(v.name, v.help);
    cmd->add_option("NAME", args->name, "VM name")->required();
    CLI::Option *bootCdOpt = nullptr;
    if (v.operation) {
      cmd->add_flag("--no-wait", args->noWait,
                    "Print the operation instead of waiting for it");
      bootCdOpt = cmd->add_option(
          "--cdrom", args->cdrom,
          "Put this ISO image in the CD drive and boot from it this time");
    }
    addOutputOption(*cmd, args->output);
    cmd->callback([&ctx, args, v, bootCdOpt] {
      ctx.action = [&ctx, args, v, bootCdOpt] {
        std::optional<nlohmann::json> body;
        if (bootCdOpt != nullptr && bootCdOpt->count() > 0)
          body = nlohmann::json{{"cdrom", args->cdrom}};
        HttpResponse resp;
        if (int rc =
                callApi(ctx, "POST", vmPath(args->name) + "/actions/" + v.name,
                        body, &resp))
          return rc;
        return finishVmChange(ctx, resp, args->output, args->noWait, args->name,
                              fmt::format("{} vm {}", v.done, args->name));
      };
    });
  }

  // stop [--force] [--timeout S] [--no-wait]
  auto sa = std::make_shared<ActionArgs>();
  auto *stop = vm->add_subcommand(
      "stop",
      "Stop a VM: ask the guest to power off, then kill it after the timeout");
  stop->add_option("NAME", sa->name, "VM name")->required();
  auto *forceOpt = stop->add_flag("--force", sa->force,
                                  "Kill the VM without asking the guest");
  auto *timeoutOpt =
      stop->add_option("--timeout", sa->timeout,
                       "Seconds to wait for the guest before killing it")
          ->check(CLI::Range(0u, 86400u));
  stop->add_flag("--no-wait", sa->noWait,
                 "Print the operation instead of waiting for it");
  addOutputOption(*stop, sa->output);
  stop->callback([&ctx, sa, forceOpt, timeoutOpt] {
    ctx.action = [&ctx, sa, forceOpt, timeoutOpt] {
      nlohmann::json body = nlohmann::json::object();
      if (forceOpt->count() > 0)
        body["force"] = sa->force;
      if (timeoutOpt->count() > 0)
        body["timeout"] = sa->timeout;
      // An older daemon stops synchronously, waiting up to the guest's timeout,
      // then kills and reaps: give it that plus a generous margin.
      auto wait =
          std::chrono::seconds(std::max<unsigned>(300, sa->timeout + 60));
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", vmPath(sa->name) + "/actions/stop",
                           body.empty() ? std::nullopt
                                        : std::optional<nlohmann::json>(body),
                           &resp, wait))
        return rc;
      return finishVmChange(ctx, resp, sa->output, sa->noWait, sa->name,
                            "stopped vm " + sa->name);
    };
  });

  // cdrom insert VM ISO | eject VM: the VM's one CD drive, now when it runs
  // and for its next start.
  auto *cdrom = vm->add_subcommand("cdrom", "Change the CD in a VM's drive");
  cdrom->require_subcommand(1);
  auto ins = std::make_shared<ActionArgs>();
  auto *insert =
      cdrom->add_subcommand("insert", "Put an ISO image in the CD drive");
  insert->add_option("VM", ins->name, "VM name")->required();
  insert->add_option("ISO", ins->cdrom, "ISO image name")->required();
  addOutputOption(*insert, ins->output);
  insert->callback([&ctx, ins] {
    ctx.action = [&ctx, ins] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "PUT", vmPath(ins->name) + "/cdrom",
                           nlohmann::json{{"image", ins->cdrom}}, &resp))
        return rc;
      return printChange(
          resp, ins->output,
          fmt::format("inserted {} into vm {}", ins->cdrom, ins->name),
          vmInfoView);
    };
  });
  auto ej = std::make_shared<ActionArgs>();
  auto *eject = cdrom->add_subcommand("eject", "Empty the CD drive");
  eject->add_option("VM", ej->name, "VM name")->required();
  addOutputOption(*eject, ej->output);
  eject->callback([&ctx, ej] {
    ctx.action = [&ctx, ej] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "DELETE", vmPath(ej->name) + "/cdrom",
                           std::nullopt, &resp))
        return rc;
      return printChange(resp, ej->output, "ejected the cd of vm " + ej->name,
                         vmInfoView);
    };
  });

  // delete
  auto delName = std::make_shared<std::string>();
  auto *del = vm->add_subcommand("delete", "Delete a VM");
  del->add_option("NAME", *delName, "VM name")->required();
  del->callback([&ctx, delName] {
    ctx.action = [&ctx, delName] {
      if (int rc =
              callApi(ctx, "DELETE", vmPath(*delName), std::nullopt, nullptr))
        return rc;
      std::cout << "deleted vm " << *delName << '\n';
      return kExitOk;
    };
  });

  // log: the console log, raw bytes
  auto logName = std::make_shared<std::string>();
  auto *log = vm->add_subcommand("log", "Print a VM's console log");
  log->add_option("NAME", *logName, "VM name")->required();
  log->callback([&ctx, logName] {
    ctx.action = [&ctx, logName] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", vmPath(*logName) + "/log", std::nullopt,
                           &resp))
        return rc;
      std::fwrite(resp.body.data(), 1, resp.body.size(), stdout);
      std::fflush(stdout);
      return kExitOk;
    };
  });

  // dump: the VM's corral.metadata/v1 and, while it runs, its runtime record
  auto dumpName = std::make_shared<std::string>();
  auto dumpOut = std::make_shared<std::string>();
  auto *dump = vm->add_subcommand(
      "dump", "Show a VM's metadata and, while it runs, its runtime record");
  dump->add_option("NAME", *dumpName, "VM name")->required();
  addOutputOption(*dump, *dumpOut);
  dump->callback([&ctx, dumpName, dumpOut] {
    ctx.action = [&ctx, dumpName, dumpOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", vmPath(*dumpName) + "/dump",
                           std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *dumpOut, vmDumpView);
    };
  });
}

} // namespace corral::cli
