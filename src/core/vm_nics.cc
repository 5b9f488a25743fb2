// VmManager's NICs and each VM's cloud-init seed CD: a VM's NICs at create,
// `vm nic add|remove`, the taps of a start and the NoCloud seed made from the
// NICs, the owner's SSH keys and the VM's identity.
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/vm_entry.h"
#include "host/cloud_init.h"
#include "util/ipv4.h"
#include "util/rollback.h"
#include "util/strings.h"

namespace corral::core {
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxNics = 8;
constexpr const char* kSeedCdromId = "seed";

}  // namespace

Result<void> VmManager::createNics(const store::VmRecord& vm, const CreateVmRequest& req, util::Rollback& rb) {
  // A create that starts the VM and fails there leaves no seed CD either.
  rb.add([this, vm] { removeSeed(vm); });
  std::vector<NicRequest> wanted = req.nics;
  if (wanted.empty() && !req.noNetwork && !networks_.config().defaultNetwork.empty()) {
    auto def = CORRAL_TRY(store_.findNetwork(networks_.config().defaultNetwork));
    if (def) wanted.push_back(NicRequest{});
  }
  if (wanted.size() > kMaxNics)
    return Error::invalidInput("nics", std::to_string(wanted.size()), fmt::format("at most {} NICs", kMaxNics));
  std::vector<store::NicRecord> made;
  for (const auto& r : wanted) {
    auto nic = networks_.attach(vm, r, Networks::nextNicName(made));
    if (!nic.ok()) return nic.error();
    made.push_back(*nic);
    rb.add([this, rec = *nic, name = vm.name] {
      if (auto d = networks_.detach(rec); !d.ok())
        spdlog::error("vm={}: NIC {} left after a failed create: {}", name, rec.name, d.error().message);
    });
  }
  return ok();
}

Result<std::vector<store::NicRecord>> VmManager::nics(const Principal& who, const std::string& name) {
  auto vm = CORRAL_TRY(visible(who, name));
  return store_.listNics(vm.id);
}

Result<store::NicRecord> VmManager::addNic(const Principal& who, const std::string& name, const NicRequest& req) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (!isStopped(vm)) return needsStopped(vm, "adding a NIC");
  auto existing = CORRAL_TRY(store_.listNics(vm.id));
  if (existing.size() >= kMaxNics)
    return Error::invalidInput("nic", name, fmt::format("VM {} has {} NICs, the most it may have", name, kMaxNics));
  auto nic = CORRAL_TRY(networks_.attach(vm, req, Networks::nextNicName(existing)));
  spdlog::info("vm={} nic={} added on network={} by={}", name, nic.name, nic.network, who.login);
  publish("vm.modified", vm);
  return nic;
}

Result<void> VmManager::removeNic(const Principal& who, const std::string& name, const std::string& nicName) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto all = CORRAL_TRY(store_.listNics(vm.id));
  auto it = std::find_if(all.begin(), all.end(), [&](const auto& n) { return n.name == nicName; });
  if (it == all.end()) return Error::notFound(fmt::format("VM {} has no NIC {}", name, nicName));
  if (!isStopped(vm)) return needsStopped(vm, "removing a NIC");
  CORRAL_TRY(networks_.detach(*it));
  spdlog::info("vm={} nic={} removed (network={} ip={}) by={}", name, nicName, it->network, it->ip, who.login);
  publish("vm.modified", vm);
  return ok();
}

fs::path VmManager::seedPath(const store::VmRecord& vm) const { return dir_.root() / "seeds" / (vm.uuid + ".iso"); }

void VmManager::removeSeed(const store::VmRecord& vm) {
  std::error_code ec;
  fs::remove(seedPath(vm), ec);
  fs::remove(seedPath(vm).string() + ".digest", ec);
}

Result<std::string> VmManager::writeSeed(const store::VmRecord& vm, const std::vector<store::NicRecord>& nics) {
  host::SeedConfig seed;
  seed.instanceId = vm.uuid;
  seed.hostname = vm.name;
  for (const auto& n : nics) {
    auto net = CORRAL_TRY(networks_.find(n.network));
    host::SeedNic s;
    s.name = n.name;
    s.mac = n.mac;
    if (!n.ip.empty()) {
      auto subnet = CORRAL_TRY(util::parseIpv4Subnet("subnet", net.subnet));
      s.address = fmt::format("{}/{}", n.ip, subnet.prefix);
      s.gateway = net.gateway;
      s.dns = util::splitList(net.dns);
      if (!net.domain.empty()) s.search = {net.domain};
      if (seed.fqdn.empty() && !n.hostname.empty()) {
        seed.hostname = n.hostname;
        seed.fqdn = net.domain.empty() ? "" : n.hostname + "." + net.domain;
      }
    }
    seed.nics.push_back(std::move(s));
  }
  // The owner's keys; a group's are every member's.
  std::vector<std::string> logins;
  if (vm.ownerKind == "group") {
    auto g = CORRAL_TRY(store_.findGroup(vm.owner));
    if (g) logins = g->members;
  } else if (!vm.owner.empty()) {
    logins.push_back(vm.owner);
  }
  for (const auto& login : logins) {
    for (const auto& k : CORRAL_TRY(store_.listSshKeys(login))) {
      if (std::find(seed.sshKeys.begin(), seed.sshKeys.end(), k.key) == seed.sshKeys.end())
        seed.sshKeys.push_back(k.key);
    }
  }
  fs::path path = seedPath(vm);
  CORRAL_TRY(host::makeDir(path.parent_path(), fs::perms::owner_all));
  bool rewrote = CORRAL_TRY(host::writeSeedIso(seed, path.string()));
  if (rewrote)
    spdlog::info("vm={}: cloud-init seed written ({} keys, {} NICs)", vm.name, seed.sshKeys.size(), seed.nics.size());
  return path.string();
}

Result<std::vector<PreparedNic>> VmManager::prepareNetwork(const store::VmRecord& vm, qemu::VmSpec& spec) {
  auto recs = CORRAL_TRY(store_.listNics(vm.id));
  std::string seed = CORRAL_TRY(writeSeed(vm, recs));
  spec.cdroms.push_back({.id = kSeedCdromId, .path = seed, .bus = qemu::CdromBus::Scsi});
  auto prepared = CORRAL_TRY(networks_.prepare(vm, recs));
  for (const auto& p : prepared) spec.nics.push_back(p.nic);
  return prepared;
}

}  // namespace corral::core
