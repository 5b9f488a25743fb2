// VmManager::collectMetrics: the per-VM series of GET /metrics. See vm_manager.h.
//
// Sources: the store (state, configured memory: every VM), /proc/PID/stat of
// the QEMU process (CPU seconds) and QMP (query-balloon, query-blockstats) for
// VMs with a live machine. QMP is asked asynchronously, every guest at once,
// each command with the scrape's timeout: a wedged guest costs the scrape that
// timeout once and shows as corral_vm_qmp_up 0, never more.
//
// Network I/O: a NIC on a tap (nat and bridged networks) is counted from the
// tap's kernel counters (host/net linkStats, netlink), turned round to the
// guest's view (what the tap receives, the guest transmitted). User-mode NICs
// have none: QMP has no byte or packet counters for a netdev.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>

#include "core/vm_entry.h"
#include "core/vm_manager.h"
#include "core/vm_state.h"
#include "qemu/machine.h"
#include "qemu/monitor.h"
#include "util/metrics.h"
#include "util/proc.h"

namespace corral::core {

namespace m = util::metrics;
using Json = nlohmann::json;

std::shared_ptr<VmManager::StatsCache> VmManager::newStatsCache() { return std::make_shared<StatsCache>(); }

std::optional<VmManager::LiveTarget> VmManager::liveTarget(const std::string& name) {
  std::shared_ptr<Entry> e;
  {
    std::lock_guard lock(mu_);
    auto it = entries_.find(name);
    if (it != entries_.end()) e = it->second;
  }
  if (!e) return std::nullopt;
  std::optional<LiveTarget> target;
  std::unique_lock lock(e->mu, std::try_to_lock);
  std::lock_guard cacheLock(statsCache_->mu);
  if (!lock.owns_lock()) {
    if (auto it = statsCache_->targets.find(name); it != statsCache_->targets.end()) target = it->second;
    return target;
  }
  if (e->machine && e->machine->alive())
    target =
        LiveTarget{e->machine->monitor().transport().shared_from_this(), e->machine->pid(), e->machine->startTime()};
  if (target)
    statsCache_->targets[name] = *target;
  else
    statsCache_->targets.erase(name);
  return target;
}

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// Replies of one scrape's QMP commands, filled on the transports' strands.
struct Replies {
  std::mutex mu;
  std::condition_variable cv;
  size_t pending = 0;
  std::map<std::pair<std::string, std::string>, qemu::QmpResult<Json>> byVmCommand;
};

// The device a query-blockstats entry is about: its qdev id ("disk0", or the
// id in "/machine/peripheral/disk0/virtio-backend"), else its node name.
std::string diskLabel(const Json& entry) {
  std::string qdev = entry.value("qdev", "");
  constexpr std::string_view kPeripheral = "/machine/peripheral/";
  if (qdev.rfind(kPeripheral, 0) == 0) {
    qdev = qdev.substr(kPeripheral.size());
    qdev = qdev.substr(0, qdev.find('/'));
  }
  if (!qdev.empty()) return qdev;
  std::string device = entry.value("device", "");
  return device.empty() ? entry.value("node-name", "") : device;
}

double number(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number() ? it->get<double>() : 0;
}

}  // namespace

void VmManager::collectMetrics(m::Emitter& out, std::chrono::milliseconds qmpTimeout) {
  // Declared up front so that every family appears even on a node with no VMs.
  auto& state = out.family("corral_vm_state", m::Type::Gauge, "1 for the state each VM is in, 0 for the others.");
  auto& memory = out.family("corral_vm_memory_bytes", m::Type::Gauge, "Configured memory of each VM.");
  auto& up = out.family("corral_vm_qmp_up", m::Type::Gauge,
                        "1 when the VM's QEMU answered QMP within the scrape's timeout, else 0 (live VMs only).");
  auto& cpu = out.family("corral_vm_cpu_seconds_total", m::Type::Counter,
                         "User and system CPU time of the VM's QEMU process (all vCPUs and QEMU's own threads).");
  auto& balloon = out.family("corral_vm_balloon_actual_bytes", m::Type::Gauge,
                             "The guest's memory as the balloon reports it (query-balloon actual).");
  auto& rdBytes = out.family("corral_vm_disk_read_bytes_total", m::Type::Counter, "Bytes read by the guest per disk.");
  auto& wrBytes =
      out.family("corral_vm_disk_written_bytes_total", m::Type::Counter, "Bytes written by the guest per disk.");
  auto& rdOps = out.family("corral_vm_disk_read_ops_total", m::Type::Counter, "Read operations per disk.");
  auto& wrOps = out.family("corral_vm_disk_write_ops_total", m::Type::Counter, "Write operations per disk.");
  auto& flOps = out.family("corral_vm_disk_flush_ops_total", m::Type::Counter, "Flush operations per disk.");
  auto& committed = out.family("corral_node_committed_guest_memory_bytes", m::Type::Gauge,
                               "Configured memory of the VMs that have a QEMU process on this node.");

  struct NicFamily {
    m::FamilySnapshot& family;
    uint64_t host::net::LinkStats::*field;
  };
  const std::vector<NicFamily> nicFamilies = {
      {out.family("corral_vm_nic_transmit_bytes_total", m::Type::Counter, "Bytes the guest sent per tap NIC."),
       &host::net::LinkStats::rxBytes},
      {out.family("corral_vm_nic_receive_bytes_total", m::Type::Counter, "Bytes the guest received per tap NIC."),
       &host::net::LinkStats::txBytes},
      {out.family("corral_vm_nic_transmit_packets_total", m::Type::Counter, "Packets the guest sent per tap NIC."),
       &host::net::LinkStats::rxPackets},
      {out.family("corral_vm_nic_receive_packets_total", m::Type::Counter, "Packets the guest received per tap NIC."),
       &host::net::LinkStats::txPackets},
      {out.family("corral_vm_nic_receive_drops_total", m::Type::Counter,
                  "Packets for the guest dropped on the host per tap NIC."),
       &host::net::LinkStats::txDropped},
      {out.family("corral_vm_nic_transmit_errors_total", m::Type::Counter,
                  "Packets from the guest the host received in error per tap NIC."),
       &host::net::LinkStats::rxErrors},
  };

  auto vms = store_.listVms();
  if (!vms.ok()) return;  // the store's own trouble shows elsewhere; no half-true series
  if (auto nics = store_.listAllNics(); nics.ok()) {
    for (const auto& nic : *nics) {
      if (nic.ip.empty()) continue;  // user-mode: no tap
      auto stats = host::net::linkStats(Networks::tapName(nic.vmId, nic.name));
      if (!stats.ok()) continue;  // not running: no tap
      for (const auto& f : nicFamilies)
        f.family.samples.push_back(
            {"", {{"vm", nic.vm}, {"nic", nic.name}, {"network", nic.network}}, double((*stats).*(f.field))});
    }
  }
  double committedBytes = 0;
  std::vector<std::pair<std::string, LiveTarget>> live;
  for (const auto& vm : *vms) {
    auto current = parseVmState(vm.state);
    for (VmState s : kAllVmStates)
      state.samples.push_back({"", {{"vm", vm.name}, {"state", std::string(toString(s))}}, current == s ? 1.0 : 0.0});
    memory.samples.push_back({"", {{"vm", vm.name}}, double(vm.memoryMib) * kMiB});
    if (current && hasProcess(*current)) committedBytes += double(vm.memoryMib) * kMiB;

    auto target = liveTarget(vm.name);
    if (target && util::processAlive(target->pid, target->startTime)) live.emplace_back(vm.name, *target);
  }
  committed.samples.push_back({"", {}, committedBytes});
  {
    // Names of VMs gone since (deleted, renamed) leave the cache.
    std::lock_guard cacheLock(statsCache_->mu);
    std::erase_if(statsCache_->targets, [&](const auto& kv) {
      return std::none_of(vms->begin(), vms->end(), [&](const auto& vm) { return vm.name == kv.first; });
    });
  }

  auto replies = std::make_shared<Replies>();
  static const char* kCommands[] = {"query-balloon", "query-blockstats"};
  for (const auto& [name, target] : live) {
    auto qmp = target.qmp.lock();
    for (const char* command : kCommands) {
      std::pair<std::string, std::string> key{name, command};
      if (!qmp) continue;  // the machine went: no reply, so not up
      {
        std::lock_guard lock(replies->mu);
        ++replies->pending;
      }
      auto sent = std::chrono::steady_clock::now();
      qmp->execute(command, nullptr, qmpTimeout, [replies, key, sent](qemu::QmpResult<Json> r) {
        std::chrono::duration<double> took = std::chrono::steady_clock::now() - sent;
        qemu::Monitor::observeCommand(key.second, took.count(), r.ok() ? nullptr : &r.error());
        std::lock_guard lock(replies->mu);
        replies->byVmCommand.insert_or_assign(key, std::move(r));
        if (--replies->pending == 0) replies->cv.notify_all();
      });
    }
  }
  {
    // Each command times out by itself; the extra second only guards against a
    // transport that never calls back.
    std::unique_lock lock(replies->mu);
    replies->cv.wait_for(lock, qmpTimeout + std::chrono::seconds(1), [&] { return replies->pending == 0; });
  }

  std::lock_guard lock(replies->mu);
  for (const auto& [name, target] : live) {
    m::Labels vmLabel{{"vm", name}};
    if (auto secs = m::processCpuSeconds(target.pid); secs.ok()) cpu.samples.push_back({"", vmLabel, *secs});
    auto find = [&](const char* command) -> const qemu::QmpResult<Json>* {
      auto it = replies->byVmCommand.find({name, command});
      return it == replies->byVmCommand.end() ? nullptr : &it->second;
    };
    const auto* bal = find("query-balloon");
    const auto* blk = find("query-blockstats");
    // Up when QEMU answered at all: a guest without a balloon device refuses
    // query-balloon, and that is still an answer.
    auto answered = [](const qemu::QmpResult<Json>* r) {
      return r != nullptr && (r->ok() || r->error().kind == qemu::QmpError::Kind::Refused);
    };
    up.samples.push_back({"", vmLabel, answered(bal) && answered(blk) ? 1.0 : 0.0});
    if (bal != nullptr && bal->ok() && (*bal)->is_object() && (*bal)->contains("actual"))
      balloon.samples.push_back({"", vmLabel, number(**bal, "actual")});
    if (blk != nullptr && blk->ok() && (*blk)->is_array()) {
      for (const auto& entry : **blk) {
        if (!entry.is_object() || !entry.contains("stats") || !entry["stats"].is_object()) continue;
        std::string disk = diskLabel(entry);
        if (disk.empty()) continue;
        const Json& st = entry["stats"];
        m::Labels l{{"vm", name}, {"disk", disk}};
        rdBytes.samples.push_back({"", l, number(st, "rd_bytes")});
        wrBytes.samples.push_back({"", l, number(st, "wr_bytes")});
        rdOps.samples.push_back({"", l, number(st, "rd_operations")});
        wrOps.samples.push_back({"", l, number(st, "wr_operations")});
        flOps.samples.push_back({"", std::move(l), number(st, "flush_operations")});
      }
    }
  }
}

}  // namespace corral::core
