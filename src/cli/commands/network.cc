// `corral network create|list|show|delete` (admins create and delete; anyone
// lists and shows) and `corral vm nic list|add|remove`: a VM's NICs (nic0,
// nic1, ...) on those networks. The daemon checks every value and names the
// field at fault.
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/views.h"

namespace corral::cli {

namespace {

std::string networkPath(const std::string &name) {
  return "/api/v1/networks/" + encodePathSegment(name);
}
std::string nicsPath(const std::string &vm) {
  return "/api/v1/vms/" + encodePathSegment(vm) + "/nics";
}

std::string listCell(const nlohmann::json &obj, std::string_view key) {
  auto it = obj.is_object() ? obj.find(key) : obj.end();
  if (it == obj.end() || !it->is_array() || it->empty())
    return "-";
  std::string out;
  for (const auto &v : *it)
    out += (out.empty() ? "" : ",") + cell(v);
  return out;
}

// "10.77.0.2-10.77.0.254" or "-" for user networks.
std::string poolCell(const nlohmann::json &n) {
  std::string start = field(n, "pool_start"), end = field(n, "pool_end");
  return start == "-" ? "-" : start + "-" + end;
}

View networkListView(const nlohmann::json &body) {
  View v{{"NAME", "MODE", "BRIDGE", "SUBNET", "GATEWAY", "POOL", "DESCRIPTION"},
         {}};
  for (const auto &n : listOf(body, "networks"))
    v.rows.push_back({field(n, "name"), field(n, "mode"), field(n, "bridge"),
                      field(n, "subnet"), field(n, "gateway"), poolCell(n),
                      field(n, "description")});
  return v;
}

View nicListView(const nlohmann::json &body) {
  View v{{"NAME", "NETWORK", "MODEL", "MAC", "IP", "HOSTNAME", "FORWARDS"}, {}};
  for (const auto &n : listOf(body, "nics"))
    v.rows.push_back({field(n, "name"), field(n, "network"), field(n, "model"),
                      field(n, "mac"), field(n, "ip"), field(n, "hostname"),
                      listCell(n, "forwards")});
  return v;
}

View nicView(const nlohmann::json &n) {
  nlohmann::json shown = n;
  if (shown.is_object())
    shown["forwards"] = listCell(n, "forwards");
  return objectView(shown, {"name", "vm", "network", "model", "mac", "ip",
                            "hostname", "forwards", "created_at"});
}

// `network show`: the settings, the pool's use, then (for admins) its NICs.
View networkView(const nlohmann::json &n) {
  nlohmann::json shown = n;
  if (shown.is_object()) {
    shown["dns"] = listCell(n, "dns");
    if (n.contains("pool_size"))
      shown["pool"] = fmt::format("{} ({} of {} in use)", poolCell(n),
                                  field(n, "pool_used"), field(n, "pool_size"));
    std::string nics;
    for (const auto &nic : listOf(n, "nics"))
      nics += fmt::format("{}{}/{} {} {}", nics.empty() ? "" : "; ",
                          field(nic, "vm"), field(nic, "name"),
                          field(nic, "ip"), field(nic, "hostname"));
    shown["nics"] = nics.empty() ? "-" : nics;
  }
  return objectView(shown, {"name", "mode", "description", "bridge", "subnet",
                            "gateway", "pool", "dns", "domain", "forward_bind",
                            "nics", "created_at"});
}

struct NetworkArgs {
  std::string name, mode, bridge, subnet, gateway, poolStart, poolEnd, domain,
      forwardBind, description, output;
  std::vector<std::string> dns;
};

struct NicArgs {
  std::string vm, nic, network, model, mac, ip, hostname, output;
  std::vector<std::string> forwards;
};

} // namespace

void addNetworkCommands(CLI::App &app, Context &ctx) {
  auto *net = app.add_subcommand("network", "Manage networks (admins)");
  net->require_subcommand(1);

  // create NAME --mode user|nat|bridged ...
  auto ca = std::make_shared<NetworkArgs>();
  auto *create = net->add_subcommand("create", "Define a network");
  create->add_option("NAME", ca->name, "Network name")->required();
  create
      ->add_option("--mode", ca->mode,
                   "user (QEMU user-mode, port forwards), nat (a bridge with "
                   "DHCP, DNS and masquerade) or bridged (an existing bridge)")
      ->required()
      ->check(CLI::IsMember({"user", "nat", "bridged"}));
  create->add_option("--bridge", ca->bridge,
                     "nat: the bridge to make (default crlbrN); bridged: the "
                     "host's bridge");
  create->add_option("--subnet", ca->subnet, "nat/bridged: e.g. 10.77.0.0/24");
  create->add_option("--gateway", ca->gateway,
                     "nat: the bridge's address (default: the first host); "
                     "bridged: the LAN's router");
  create->add_option("--pool-start", ca->poolStart,
                     "First address handed to NICs");
  create->add_option("--pool-end", ca->poolEnd, "Last address handed to NICs");
  create->add_option("--dns", ca->dns,
                     "A resolver for guests (repeat; nat default: the "
                     "gateway)");
  create->add_option("--domain", ca->domain, "DNS domain of the hostnames");
  create->add_option("--forward-bind", ca->forwardBind,
                     "user: host address port forwards bind to (default "
                     "127.0.0.1)");
  create->add_option("--description", ca->description, "Free text");
  addOutputOption(*create, ca->output);
  create->callback([&ctx, ca] {
    ctx.action = [&ctx, ca] {
      nlohmann::json body{{"name", ca->name}, {"mode", ca->mode}};
      auto put = [&](const char *key, const std::string &v) {
        if (!v.empty())
          body[key] = v;
      };
      put("bridge", ca->bridge);
      put("subnet", ca->subnet);
      put("gateway", ca->gateway);
      put("pool_start", ca->poolStart);
      put("pool_end", ca->poolEnd);
      put("domain", ca->domain);
      put("forward_bind", ca->forwardBind);
      put("description", ca->description);
      if (!ca->dns.empty())
        body["dns"] = ca->dns;
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", "/api/v1/networks", body, &resp))
        return rc;
      return printChange(resp, ca->output, "created network " + ca->name,
                         networkView);
    };
  });

  // list
  auto listOut = std::make_shared<std::string>();
  auto *list = net->add_subcommand("list", "List networks");
  addOutputOption(*list, *listOut);
  list->callback([&ctx, listOut] {
    ctx.action = [&ctx, listOut] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", "/api/v1/networks", std::nullopt, &resp))
        return rc;
      return printAnswer(resp, *listOut, networkListView);
    };
  });

  // show NAME
  auto sa = std::make_shared<NetworkArgs>();
  auto *show = net->add_subcommand(
      "show", "Show a network, how full its pool is and (admins) its NICs");
  show->add_option("NAME", sa->name, "Network name")->required();
  addOutputOption(*show, sa->output);
  show->callback([&ctx, sa] {
    ctx.action = [&ctx, sa] {
      HttpResponse resp;
      if (int rc =
              callApi(ctx, "GET", networkPath(sa->name), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, sa->output, networkView);
    };
  });

  // delete NAME
  auto da = std::make_shared<NetworkArgs>();
  auto *del =
      net->add_subcommand("delete", "Delete a network no VM has a NIC on");
  del->add_option("NAME", da->name, "Network name")->required();
  del->callback([&ctx, da] {
    ctx.action = [&ctx, da] {
      if (int rc = callApi(ctx, "DELETE", networkPath(da->name), std::nullopt,
                           nullptr))
        return rc;
      std::cout << "deleted network " << da->name << '\n';
      return kExitOk;
    };
  });
}

void addNicCommands(CLI::App &vm, Context &ctx) {
  auto *nic = vm.add_subcommand("nic", "Manage a VM's NICs");
  nic->require_subcommand(1);

  auto la = std::make_shared<NicArgs>();
  auto *list = nic->add_subcommand("list", "List a VM's NICs");
  list->add_option("VM", la->vm, "VM name")->required();
  addOutputOption(*list, la->output);
  list->callback([&ctx, la] {
    ctx.action = [&ctx, la] {
      HttpResponse resp;
      if (int rc = callApi(ctx, "GET", nicsPath(la->vm), std::nullopt, &resp))
        return rc;
      return printAnswer(resp, la->output, nicListView);
    };
  });

  auto aa = std::make_shared<NicArgs>();
  auto *add = nic->add_subcommand("add", "Add a NIC to a stopped VM");
  add->add_option("VM", aa->vm, "VM name")->required();
  add->add_option("--network", aa->network,
                  "Network (default: the daemon's default network)");
  add->add_option("--model", aa->model, "virtio-net (default) or e1000")
      ->check(CLI::IsMember({"virtio-net", "e1000"}));
  add->add_option("--mac", aa->mac,
                  "MAC (default: generated, 52:54:00:xx:xx:xx)");
  add->add_option("--ip", aa->ip,
                  "Address from the pool (default: the "
                  "lowest free one)");
  add->add_option("--hostname", aa->hostname,
                  "Hostname on the network (default: the VM's name, or "
                  "VM-nicN)");
  add->add_option("--forward", aa->forwards,
                  "user networks: PROTO:HOSTPORT:GUESTPORT, e.g. tcp:2222:22 "
                  "(repeat)")
      ->allow_extra_args(false);
  addOutputOption(*add, aa->output);
  add->callback([&ctx, aa] {
    ctx.action = [&ctx, aa] {
      nlohmann::json body = nlohmann::json::object();
      auto put = [&](const char *key, const std::string &v) {
        if (!v.empty())
          body[key] = v;
      };
      put("network", aa->network);
      put("model", aa->model);
      put("mac", aa->mac);
      put("ip", aa->ip);
      put("hostname", aa->hostname);
      if (!aa->forwards.empty())
        body["forwards"] = aa->forwards;
      HttpResponse resp;
      if (int rc = callApi(ctx, "POST", nicsPath(aa->vm), body, &resp))
        return rc;
      auto j = nlohmann::json::parse(resp.body, nullptr, false);
      std::string done =
          fmt::format("added {} to vm {} on network {}", field(j, "name"),
                      aa->vm, field(j, "network"));
      if (std::string ip = field(j, "ip"); ip != "-")
        done += fmt::format(" ({} {})", ip, field(j, "hostname"));
      return printChange(resp, aa->output, done, nicView);
    };
  });

  auto ra = std::make_shared<NicArgs>();
  auto *remove = nic->add_subcommand(
      "remove", "Remove a NIC from a stopped VM (its address goes back to "
                "the pool)");
  remove->add_option("VM", ra->vm, "VM name")->required();
  remove->add_option("NIC", ra->nic, "NIC name (nic0, nic1, ...)")->required();
  remove->callback([&ctx, ra] {
    ctx.action = [&ctx, ra] {
      if (int rc = callApi(ctx, "DELETE",
                           nicsPath(ra->vm) + "/" + encodePathSegment(ra->nic),
                           std::nullopt, nullptr))
        return rc;
      std::cout << fmt::format("removed {} from vm {}\n", ra->nic, ra->vm);
      return kExitOk;
    };
  });
}

} // namespace corral::cli
