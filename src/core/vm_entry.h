// VmManager's per-VM runtime state, shared by its translation units
// (vm_manager.cc, vm_disks.cc). Internal to core/.
#pragma once

#include <boost/asio/post.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "core/vm_manager.h"
#include "core/vm_state.h"
#include "qemu/machine.h"

namespace corral::core {

// Hears one machine's callbacks on the io thread and hands them to a worker;
// the generation lets a late callback of a replaced machine be ignored.
class VmManager::Watch final : public qemu::MachineListener {
 public:
  Watch(VmManager& m, std::string name, uint64_t generation) : m_(m), name_(std::move(name)), gen_(generation) {}
  void onMachineEvent(const nlohmann::json& event) override {
    std::string name = event.value("event", "");
    if (name == "STOP" || name == "RESUME")
      boost::asio::post(m_.workers_, [m = &m_, vm = name_, gen = gen_, name] { m->onEvent(vm, gen, name); });
  }
  void onMachineExit(const qemu::ExitInfo& info) override {
    boost::asio::post(m_.workers_, [m = &m_, vm = name_, gen = gen_, info] { m->onExit(vm, gen, info); });
  }

 private:
  VmManager& m_;
  std::string name_;
  uint64_t gen_;
};

// Per-VM runtime state. `mu` serialises actions on the VM; machine and the
// fields below it are only touched with mu held.
struct VmManager::Entry {
  std::mutex mu;
  std::unique_ptr<Watch> watch;  // outlives machine: declared first, destroyed last
  std::unique_ptr<qemu::Machine> machine;
  uint64_t generation = 0;  // bumped per launched or reattached machine
  std::vector<std::chrono::steady_clock::time_point> restarts;
  uint64_t bootMemoryMib = 0;  // what the running machine was started with: the balloon's ceiling
  // The interactive consoles; told when a machine comes and goes. Made with the entry.
  std::shared_ptr<ConsoleHub> console;

  // Kills the current machine's QEMU without mu (Machine::killer): a forced
  // stop never waits behind whoever holds mu. Empty when no machine runs.
  std::mutex killMu;
  std::function<void()> kill;

  // mu held: machine and kill together.
  void setMachine(std::unique_ptr<qemu::Machine> m) {
    std::lock_guard lock(killMu);
    machine = std::move(m);
    kill = machine ? machine->killer() : std::function<void()>();
  }
  // Any thread, no other lock needed: false when no machine runs.
  bool killNow() {
    std::function<void()> k;
    {
      std::lock_guard lock(killMu);
      k = kill;
    }
    if (k) k();
    return static_cast<bool>(k);
  }
};

// Actions that change a VM's hardware (disks, NICs) need it stopped.
inline bool isStopped(const store::VmRecord& vm) {
  return parseVmState(vm.state).value_or(VmState::Stopped) == VmState::Stopped;
}
inline Error needsStopped(const store::VmRecord& vm, std::string_view what) {
  return Error::failedPrecondition(fmt::format("{} needs VM {} stopped; it is {}", what, vm.name, vm.state));
}

// The last machine seen for each VM (VmManager::liveTarget): what a metrics
// scrape or a report uses while the VM's action lock is held. The transport is
// held weakly: a machine that went is not kept alive by it.
struct VmManager::StatsCache {
  std::mutex mu;
  std::map<std::string, LiveTarget> targets;
};

}  // namespace corral::core
