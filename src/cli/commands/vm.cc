// `corral vm create|list|info|start|stop|reboot|pause|resume|delete|log`.
// Parses and checks what the client can (names go into URLs encoded, --memory
// accepts M/G suffixes); every rule about VMs is the daemon's.
#include <cstdio>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"

namespace corral::cli {

namespace {

std::string vmPath(const std::string& name) { return "/api/v1/vms/" + encodePathSegment(name); }

// Write commands answer with the VM (or nothing, or an operation): show the
// state when there is one, the JSON when asked, a plain line otherwise.
int printChange(const HttpResponse& resp, std::string_view output, const std::string& done) {
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (resp.body.find_first_not_of(" \r\n\t") == std::string::npos || j.is_discarded()) {
    std::cout << done << '\n';
    return kExitOk;
  }
  return printAnswer(resp, output, [&](const nlohmann::json& v) {
    if (v.is_object() && v.contains("state"))
      return fmt::format("{} ({})\n", done, field(v, "state"));
    return done + "\n";
  });
}

struct CreateArgs {
  std::string name, image, memory, onCrash, output;
  unsigned vcpus = 1;
  bool start = false;
};

struct StopArgs {
  std::string name, output;
  bool force = false;
  unsigned timeout = 0;
};

}  // namespace

void addVmCommands(CLI::App& app, Context& ctx) {
  auto* vm = app.add_subcommand("vm", "Manage virtual machines");
  vm->require_subcommand(1);

  // create
  auto ca = std::make_shared<CreateArgs>();
  auto* create = vm->add_subcommand("create", "Create a VM");
  create->add_option("NAME", ca->name, "VM name")->required();
  create->add_option("--image", ca->image, "Image to boot")->required();
  create->add_option("--memory", ca->memory, "Memory: MiB, or with a suffix M/MiB/G/GiB (512M, 1G)")->required();
  auto* vcpusOpt = create->add_option("--vcpus", ca->vcpus, "Virtual CPUs")->check(CLI::Range(1u, 1024u));
  auto* onCrashOpt = create->add_option("--on-crash", ca->onCrash, "What to do when the guest crashes")
                         ->check(CLI::IsMember({"restart", "stop", "preserve"}));
  create->add_flag("--start", ca->start, "Start the VM once created");
  addOutputOption(*create, ca->output);
  create->callback([&ctx, ca, vcpusOpt, onCrashOpt] {
    ctx.action = [&ctx, ca, vcpusOpt, onCrashOpt] {
      auto mem = parseMemoryMib(ca->memory);
      if (!mem) {
        std::cerr << "corral: " << mem.error().message << '\n';
        return kExitUsage;
      }
      nlohmann::json body{{"name", ca->name}, {"image", ca->image}, {"memory", *mem}, {"start", ca->start}};
      if (vcpusOpt->count() > 0) body["vcpus"] = ca->vcpus;
      if (onCrashOpt->count() > 0) body["on_crash"] = ca->onCrash;
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", "/api/v1/vms", body, &resp)) return rc;
      return printChange(resp, ca->output, "created vm " + ca->name);
    };
  });

  // list
  auto listOut = std::make_shared<std::string>();
  auto* list = vm->add_subcommand("list", "List VMs");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/vms", std::nullopt, &resp)) return rc;
      return printAnswer(resp, *listOut, formatVmList);
    };
  });

  // info
  auto infoName = std::make_shared<std::string>();
  auto infoOut = std::make_shared<std::string>();
  auto* info = vm->add_subcommand("info", "Show one VM");
  info->add_option("NAME", *infoName, "VM name")->required();
  addOutputOption(*info, *infoOut);
  info->callback([&ctx, infoName, infoOut] {
    ctx.action = [&ctx, infoName, infoOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", vmPath(*infoName), std::nullopt, &resp)) return rc;
      return printAnswer(resp, *infoOut, formatVmInfo);
    };
  });

  // start, reboot, pause, resume: POST .../actions/<verb> with no body.
  struct Verb {
    const char* name;
    const char* help;
    const char* done;
  };
  for (Verb v : {Verb{"start", "Start a VM", "started"}, Verb{"reboot", "Reboot a VM", "rebooted"},
                 Verb{"pause", "Pause a VM's CPUs", "paused"}, Verb{"resume", "Resume a paused VM", "resumed"}}) {
    auto args = std::make_shared<StopArgs>();
    auto* cmd = vm->add_subcommand(v.name, v.help);
    cmd->add_option("NAME", args->name, "VM name")->required();
    addOutputOption(*cmd, args->output);
    cmd->callback([&ctx, args, v] {
      ctx.action = [&ctx, args, v] {
        HttpResponse resp;
        if (int rc = callApi(ctx, "POST", vmPath(args->name) + "/actions/" + v.name, std::nullopt, &resp)) return rc;
        return printChange(resp, args->output, fmt::format("{} vm {}", v.done, args->name));
      };
    });
  }

  // stop [--force] [--timeout S]
  auto sa = std::make_shared<StopArgs>();
  auto* stop = vm->add_subcommand("stop", "Stop a VM: ask the guest to power off, then kill it after the timeout");
  stop->add_option("NAME", sa->name, "VM name")->required();
  auto* forceOpt = stop->add_flag("--force", sa->force, "Kill the VM without asking the guest");
  auto* timeoutOpt =
      stop->add_option("--timeout", sa->timeout, "Seconds to wait for the guest before killing it")
          ->check(CLI::Range(0u, 86400u));
  addOutputOption(*stop, sa->output);
  stop->callback([&ctx, sa, forceOpt, timeoutOpt] {
    ctx.action = [&ctx, sa, forceOpt, timeoutOpt] {
      nlohmann::json body = nlohmann::json::object();
      if (forceOpt->count() > 0) body["force"] = sa->force;
      if (timeoutOpt->count() > 0) body["timeout"] = sa->timeout;
      // The daemon waits up to the guest's timeout, then kills and reaps:
      // give it that plus a generous margin.
      auto wait = std::chrono::seconds(std::max<unsigned>(300, sa->timeout + 60));
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", vmPath(sa->name) + "/actions/stop",
                           body.empty() ? std::nullopt : std::optional<nlohmann::json>(body), &resp, wait))
        return rc;
      return printChange(resp, sa->output, "stopped vm " + sa->name);
    };
  });

  // delete
  auto delName = std::make_shared<std::string>();
  auto* del = vm->add_subcommand("delete", "Delete a VM");
  del->add_option("NAME", *delName, "VM name")->required();
  del->callback([&ctx, delName] {
    ctx.action = [&ctx, delName] {
      if (int rc = callApi(ctx, "DELETE", vmPath(*delName), std::nullopt, nullptr)) return rc;
      std::cout << "deleted vm " << *delName << '\n';
      return kExitOk;
    };
  });

  // log: the console log, raw bytes
  auto logName = std::make_shared<std::string>();
  auto* log = vm->add_subcommand("log", "Print a VM's console log");
  log->add_option("NAME", *logName, "VM name")->required();
  log->callback([&ctx, logName] {
    ctx.action = [&ctx, logName] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", vmPath(*logName) + "/log", std::nullopt, &resp)) return rc;
      std::fwrite(resp.body.data(), 1, resp.body.size(), stdout);
      std::fflush(stdout);
      return kExitOk;
    };
  });
}

}  // namespace corral::cli
