#include "core/vm_manager.h"

#include <boost/asio/post.hpp>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/validate.h"
#include "core/vm_state.h"
#include "host/host_info.h"
#include "qemu/machine.h"
#include "qemu/monitor.h"
#include "util/names.h"
#include "util/rollback.h"
#include "util/rotating_log.h"

namespace corral::core {
namespace fs = std::filesystem;

// Per-VM runtime state. `mu` serialises actions on the VM; machine and the
// fields below it are only touched with mu held.
struct VmManager::Entry {
  std::mutex mu;
  std::unique_ptr<Watch> watch;  // outlives machine: declared first, destroyed last
  std::unique_ptr<qemu::Machine> machine;
  uint64_t generation = 0;  // bumped per launched or reattached machine
  std::vector<std::chrono::steady_clock::time_point> restarts;
};

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

namespace {

std::string exitReason(const qemu::ExitInfo& info) {
  switch (info.cause) {
    case qemu::ExitCause::GuestPoweroff: return "guest powered off";
    case qemu::ExitCause::HostRequested: return "stopped by corral";
    case qemu::ExitCause::HostSignal: return fmt::format("QEMU killed from outside ({})", info.detail);
    case qemu::ExitCause::CrashSignal: return fmt::format("QEMU crashed ({})", info.detail);
    case qemu::ExitCause::Unknown: return fmt::format("QEMU exited unexpectedly ({})", info.detail);
  }
  return info.detail;
}

Error wrongState(const store::VmRecord& vm, std::string_view action) {
  return Error::failedPrecondition(fmt::format("cannot {} VM {}: it is {}", action, vm.name, vm.state));
}

}  // namespace

VmManager::VmManager(boost::asio::io_context& io, store::Store& store, const host::StateDir& dir, ManagerConfig cfg)
    : io_(io), store_(store), dir_(dir), images_(dir), cfg_(std::move(cfg)) {}

VmManager::~VmManager() {
  // Let queued callbacks finish before the entries (and machines) go away; the
  // machines are detached, not stopped.
  workers_.join();
  std::lock_guard lock(mu_);
  entries_.clear();
}

std::shared_ptr<VmManager::Entry> VmManager::entry(const std::string& name) {
  std::lock_guard lock(mu_);
  auto& e = entries_[name];
  if (!e) e = std::make_shared<Entry>();
  return e;
}

Result<store::VmRecord> VmManager::record(const std::string& name) {
  CORRAL_TRY(util::validateVmName("name", name));
  auto found = CORRAL_TRY(store_.findVm(name));
  if (!found) return Error::notFound(fmt::format("VM {} not found", name));
  return std::move(*found);
}

Result<store::VmRecord> VmManager::setState(const std::string& name, std::string_view state, std::string reason,
                                            std::optional<int64_t> pid, std::optional<std::string> desired) {
  store::VmStateUpdate u{.state = std::string(state),
                         .stateReason = std::move(reason),
                         .pid = pid,
                         .accel = pid ? (cfg_.accel == qemu::Accel::Kvm ? "kvm" : "tcg") : "",
                         .desiredState = std::move(desired)};
  auto r = store_.updateVmState(name, u);
  if (r.ok()) spdlog::info("vm={} state={}{}{}", name, state, u.stateReason.empty() ? "" : " reason=", u.stateReason);
  return r;
}

Result<store::VmRecord> VmManager::get(const std::string& name) { return record(name); }

Result<std::vector<store::VmRecord>> VmManager::list() { return store_.listVms(); }

Result<store::VmRecord> VmManager::create(const CreateVmRequest& req) {
  ValidCreate v = CORRAL_TRY(validateCreate(req, cfg_, host::readHostInfo()));
  store::VmRecord vm;
  vm.name = v.name;
  vm.uuid = boost::uuids::to_string(boost::uuids::random_generator()());
  vm.image = v.image;
  vm.memoryMib = v.memoryMib;
  vm.vcpus = v.vcpus;
  vm.onCrash = std::string(toString(v.onCrash));
  vm.createdAt = store::nowRfc3339();
  auto created = CORRAL_TRY(store_.insertVm(vm));
  spdlog::info("vm={} created image={} memory={}MiB vcpus={}", vm.name, vm.image, vm.memoryMib, vm.vcpus);
  if (!req.start) return created;

  // create --start is one unit: a VM that cannot start is not left behind.
  util::Rollback rb;
  rb.add([&] {
    (void)store_.deleteVm(vm.name);
    std::lock_guard lock(mu_);
    entries_.erase(vm.name);
  });
  auto e = entry(vm.name);
  std::lock_guard lock(e->mu);
  auto started = CORRAL_TRY(startLocked(*e, created));
  rb.commit();
  return started;
}

Result<qemu::VmSpec> VmManager::specFor(const store::VmRecord& vm) {
  auto image = CORRAL_TRY(store_.findImage(vm.image));
  if (!image) return Error::failedPrecondition(fmt::format("image {} of VM {} no longer exists", vm.image, vm.name));
  qemu::VmSpec spec;
  spec.name = vm.name;
  spec.uuid = vm.uuid;
  spec.memoryMib = vm.memoryMib;
  spec.cpus = {.count = vm.vcpus, .sockets = 1, .cores = vm.vcpus, .threads = 1};
  spec.accel = cfg_.accel;
  spec.directBoot = qemu::DirectBoot{image->kernel, image->initrd, image->append};
  spec.smbios.serial = vm.uuid;
  spec.smbios.oemStrings = {fmt::format("corral.vm={}", vm.name), fmt::format("corral.image={}", vm.image)};
  return spec;
}

Result<store::VmRecord> VmManager::startLocked(Entry& e, const store::VmRecord& vm) {
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if (!canTransition(state, VmState::Starting)) return wrongState(vm, "start");
  qemu::VmSpec spec = CORRAL_TRY(specFor(vm));
  fs::path runDir = CORRAL_TRY(dir_.vmRuntimeDir(vm.name));
  // A crashed-and-preserved guest left its runtime files for inspection; a new
  // start begins clean.
  std::error_code ec;
  fs::remove_all(runDir, ec);
  CORRAL_TRY(host::makeDir(runDir, fs::perms::owner_all));
  CORRAL_TRY(setState(vm.name, toString(VmState::Starting), "", std::nullopt, "running"));

  uint64_t gen = ++e.generation;
  auto watch = std::make_unique<Watch>(*this, vm.name, gen);
  qemu::LaunchConfig lc;
  lc.qemuBinary = cfg_.qemuBinary;
  lc.spec = std::move(spec);
  lc.runtimeDir = runDir.string();
  lc.consoleLogMaxBytes = cfg_.consoleLogMaxBytes;
  auto launched = qemu::Machine::launch(io_, std::move(lc), watch.get());
  if (!launched.ok()) {
    Error err = std::move(launched).error();
    spdlog::warn("vm={} start failed: {}", vm.name, err.message);
    (void)setState(vm.name, toString(VmState::Stopped), fmt::format("start failed: {}", err.message), std::nullopt,
                   "stopped");
    return err.context(fmt::format("start {}", vm.name));
  }
  e.machine = std::move(launched).take();
  e.watch = std::move(watch);
  return setState(vm.name, toString(VmState::Running), "", e.machine->pid());
}

Result<store::VmRecord> VmManager::start(const std::string& name) {
  auto vm = CORRAL_TRY(record(name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  vm = CORRAL_TRY(record(name));  // re-read under the VM's lock
  if (parseVmState(vm.state) == VmState::Crashed) dropMachine(*e, name, RuntimeFiles::Remove);
  return startLocked(*e, vm);
}

Result<store::VmRecord> VmManager::stop(const std::string& name, const StopOptions& opts) {
  CORRAL_TRY(record(name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if (state == VmState::Crashed) {
    // Stopping a crashed VM clears it: the preserved runtime files go.
    dropMachine(*e, name, RuntimeFiles::KeepConsoleLog);
    return setState(name, toString(VmState::Stopped), vm.stateReason, std::nullopt, "stopped");
  }
  if (!canTransition(state, VmState::Stopping) || !e->machine) return wrongState(vm, "stop");
  CORRAL_TRY(setState(name, toString(VmState::Stopping), "", vm.pid, "stopped"));
  qemu::Machine::ShutdownOptions so;
  so.force = opts.force;
  so.timeout = opts.timeout.value_or(cfg_.defaultStopTimeout);
  auto exit = e->machine->shutdown(so);
  std::string reason;
  if (!exit.ok()) {
    reason = fmt::format("shutdown failed: {}", exit.error().message);
  } else if (exit->abnormal) {
    reason = opts.force ? "forced off" : fmt::format("guest ignored ACPI power button for {} s; killed",
                                                     std::chrono::duration_cast<std::chrono::seconds>(so.timeout).count());
  }
  dropMachine(*e, name, RuntimeFiles::KeepConsoleLog);
  return setState(name, toString(VmState::Stopped), reason, std::nullopt, "stopped");
}

Result<store::VmRecord> VmManager::reboot(const std::string& name) {
  CORRAL_TRY(record(name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if ((state != VmState::Running && state != VmState::Paused) || !e->machine) return wrongState(vm, "reboot");
  CORRAL_TRY(e->machine->monitor().systemReset());
  if (state == VmState::Paused) {
    CORRAL_TRY(e->machine->monitor().cont());
    return setState(name, toString(VmState::Running), "", vm.pid, "running");
  }
  return vm;
}

Result<store::VmRecord> VmManager::pause(const std::string& name) {
  CORRAL_TRY(record(name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (parseVmState(vm.state) != VmState::Running || !e->machine) return wrongState(vm, "pause");
  CORRAL_TRY(e->machine->monitor().stop());
  return setState(name, toString(VmState::Paused), "", vm.pid, "paused");
}

Result<store::VmRecord> VmManager::resume(const std::string& name) {
  CORRAL_TRY(record(name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (parseVmState(vm.state) != VmState::Paused || !e->machine) return wrongState(vm, "resume");
  CORRAL_TRY(e->machine->monitor().cont());
  return setState(name, toString(VmState::Running), "", vm.pid, "running");
}

Result<void> VmManager::remove(const std::string& name) {
  CORRAL_TRY(record(name));
  auto e = entry(name);
  {
    std::lock_guard lock(e->mu);
    auto vm = CORRAL_TRY(record(name));
    auto state = parseVmState(vm.state).value_or(VmState::Stopped);
    if (state != VmState::Stopped && state != VmState::Crashed)
      return Error::failedPrecondition(fmt::format("cannot delete VM {}: it is {}; stop it first", name, vm.state));
    dropMachine(*e, name, RuntimeFiles::Remove);
    CORRAL_TRY(store_.deleteVm(name));
  }
  std::lock_guard lock(mu_);
  entries_.erase(name);
  spdlog::info("vm={} deleted", name);
  return ok();
}

Result<std::string> VmManager::consoleLog(const std::string& name, size_t maxBytes) {
  CORRAL_TRY(record(name));
  fs::path runDir = CORRAL_TRY(dir_.vmRuntimeDir(name));
  return util::RotatingLog::readTail((runDir / qemu::Machine::kConsoleLog).string(), maxBytes);
}

void VmManager::dropMachine(Entry& e, const std::string& name, RuntimeFiles files) {
  e.machine.reset();
  e.watch.reset();
  ++e.generation;
  auto runDir = dir_.vmRuntimeDir(name);
  if (!runDir.ok()) return;
  std::error_code ec;
  switch (files) {
    case RuntimeFiles::Keep: return;
    case RuntimeFiles::KeepConsoleLog: qemu::Machine::cleanupRuntimeDir(runDir->string()); return;
    case RuntimeFiles::Remove: fs::remove_all(*runDir, ec); return;
  }
}

void VmManager::onEvent(const std::string& name, uint64_t generation, const std::string& event) {
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  if (e->generation != generation || !e->machine) return;
  auto vm = record(name);
  if (!vm.ok()) return;
  auto state = parseVmState(vm->state);
  // Pauses and resumes not made through corral (a guest panic policy, an admin
  // at the QMP socket) still show as they are.
  if (event == "STOP" && state == VmState::Running)
    (void)setState(name, toString(VmState::Paused), "paused by QEMU", vm->pid);
  else if (event == "RESUME" && state == VmState::Paused)
    (void)setState(name, toString(VmState::Running), "", vm->pid);
}

void VmManager::onExit(const std::string& name, uint64_t generation, const qemu::ExitInfo& info) {
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  if (e->generation != generation || !e->machine) return;  // an action already handled this exit
  handleExit(*e, name, info);
}

void VmManager::handleExit(Entry& e, const std::string& name, const qemu::ExitInfo& info) {
  std::string reason = exitReason(info);
  auto vm = record(name);
  if (!vm.ok()) return;
  if (info.cause == qemu::ExitCause::GuestPoweroff) {
    dropMachine(e, name, RuntimeFiles::KeepConsoleLog);
    (void)setState(name, toString(VmState::Stopped), reason, std::nullopt, "stopped");
    return;
  }
  spdlog::warn("vm={} crashed: {} on_crash={}", name, reason, vm->onCrash);
  // Keep the runtime files (console log, qemu.log) until the policy decides.
  dropMachine(e, name, RuntimeFiles::Keep);
  (void)setState(name, toString(VmState::Crashed), reason, std::nullopt);
  switch (parseOnCrash(vm->onCrash).value_or(OnCrash::Preserve)) {
    case OnCrash::Preserve:
      return;
    case OnCrash::Stop:
      dropMachine(e, name, RuntimeFiles::KeepConsoleLog);
      (void)setState(name, toString(VmState::Stopped), reason + " (on_crash=stop)", std::nullopt, "stopped");
      return;
    case OnCrash::Restart: {
      auto now = std::chrono::steady_clock::now();
      std::erase_if(e.restarts, [&](auto t) { return now - t > cfg_.restartWindow; });
      if (e.restarts.size() >= cfg_.maxRestarts) {
        (void)setState(name, toString(VmState::Crashed),
                       fmt::format("{}; not restarted: {} restarts within {} s", reason, e.restarts.size(),
                                   cfg_.restartWindow.count()),
                       std::nullopt);
        return;
      }
      e.restarts.push_back(now);
      auto crashed = record(name);
      if (!crashed.ok()) return;
      auto restarted = startLocked(e, *crashed);
      if (!restarted.ok())
        spdlog::error("vm={} restart after crash failed: {}", name, restarted.error().message);
      else
        (void)setState(name, toString(VmState::Running), fmt::format("restarted after: {}", reason), restarted->pid);
      return;
    }
  }
}

Result<void> VmManager::reconcile() {
  auto vms = CORRAL_TRY(store_.listVms());
  for (const auto& vm : vms) {
    auto state = parseVmState(vm.state).value_or(VmState::Stopped);
    fs::path runDir = CORRAL_TRY(dir_.vmRuntimeDir(vm.name));
    bool hasRecord = fs::exists(qemu::RuntimeRecord::pathIn(runDir.string()));
    if (!hasProcess(state) && !hasRecord) continue;
    if (state == VmState::Crashed) continue;  // preserved for inspection
    auto e = entry(vm.name);
    std::lock_guard lock(e->mu);
    uint64_t gen = ++e->generation;
    auto watch = std::make_unique<Watch>(*this, vm.name, gen);
    auto machine = hasRecord ? qemu::Machine::reattach(io_, runDir.string(), watch.get())
                             : Result<std::unique_ptr<qemu::Machine>>(Error::notFound("no runtime record"));
    if (machine.ok()) {
      e->machine = std::move(machine).take();
      e->watch = std::move(watch);
      auto status = e->machine->monitor().queryStatus();
      bool running = status.ok() && status->running;
      spdlog::info("vm={} reattached pid={} running={}", vm.name, e->machine->pid(), running);
      std::optional<std::string> desired;
      if (!hasProcess(state)) desired = running ? "running" : "paused";
      (void)setState(vm.name, toString(running ? VmState::Running : VmState::Paused), "", e->machine->pid(),
                     desired);
      continue;
    }
    if (!hasProcess(state)) {
      qemu::Machine::cleanupRuntimeDir(runDir.string());
      continue;
    }
    spdlog::warn("vm={} recorded {} but its QEMU is gone: {}", vm.name, vm.state, machine.error().message);
    // Give the handler a machine-less entry: the exit is ours to handle now.
    qemu::ExitInfo info;
    info.cause = qemu::ExitCause::Unknown;
    info.detail = "QEMU died while corrald was not watching";
    handleExit(*e, vm.name, info);
  }
  return ok();
}

Result<store::ImageRecord> VmManager::importImage(const ImportImageRequest& req) {
  CORRAL_TRY(util::validateImageName("name", req.name));
  CORRAL_TRY(validateAppend(req.append));
  if (req.kernel.empty()) return Error::invalidInput("kernel", "", "is required");
  auto existing = CORRAL_TRY(store_.findImage(req.name));
  if (existing)
    return Error::alreadyExists("name", req.name, fmt::format("name: an image named {} already exists", req.name));
  auto files = CORRAL_TRY(images_.importDirectBoot(req.name, req.kernel, req.initrd));
  util::Rollback rb;
  rb.add([&] { (void)images_.remove(req.name); });
  store::ImageRecord img{.name = req.name,
                         .kind = "direct-boot",
                         .kernel = files.kernel,
                         .initrd = files.initrd,
                         .append = req.append,
                         .sizeBytes = files.sizeBytes,
                         .createdAt = store::nowRfc3339()};
  auto inserted = CORRAL_TRY(store_.insertImage(img));
  rb.commit();
  spdlog::info("image={} imported kernel={} initrd={}", req.name, req.kernel, req.initrd);
  return inserted;
}

Result<std::vector<store::ImageRecord>> VmManager::listImages() { return store_.listImages(); }

Result<store::ImageRecord> VmManager::getImage(const std::string& name) {
  CORRAL_TRY(util::validateImageName("name", name));
  auto img = CORRAL_TRY(store_.findImage(name));
  if (!img) return Error::notFound(fmt::format("image {} not found", name));
  return std::move(*img);
}

Result<void> VmManager::removeImage(const std::string& name) {
  CORRAL_TRY(util::validateImageName("name", name));
  CORRAL_TRY(store_.deleteImage(name));
  CORRAL_TRY(images_.remove(name));
  spdlog::info("image={} deleted", name);
  return ok();
}

}  // namespace corral::core
