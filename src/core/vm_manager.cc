#include "core/vm_manager.h"

#include <boost/asio/post.hpp>
#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <filesystem>
#include <set>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/validate.h"
#include "core/vm_entry.h"
#include "core/vm_metadata.h"
#include "core/vm_state.h"
#include "host/host_info.h"
#include "qemu/machine.h"
#include "qemu/monitor.h"
#include "util/names.h"
#include "util/rollback.h"
#include "util/rotating_log.h"

namespace corral::core {
namespace fs = std::filesystem;

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

VmManager::VmManager(boost::asio::io_context& io, store::Store& store, const host::StateDir& dir, ManagerConfig cfg,
                     EventBus* events)
    : io_(io),
      store_(store),
      dir_(dir),
      storage_(store, dir, cfg.storage),
      cfg_(std::move(cfg)),
      networks_(store, dir, cfg_.network),
      quota_(cfg_.quotaDefaults),
      events_(events) {}

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
  if (!e) {
    e = std::make_shared<Entry>();
    e->console = std::make_shared<ConsoleHub>(io_);
  }
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

Result<store::VmRecord> VmManager::visible(const Principal& who, const std::string& name) {
  CORRAL_TRY(util::validateVmName("name", name));
  auto found = CORRAL_TRY(store_.findVm(name));
  if (!found || !canAccess(who, *found)) return Error::notFound(fmt::format("VM {} not found", name));
  return std::move(*found);
}

void VmManager::publish(std::string type, const store::VmRecord& vm, std::string reason, std::string previousName) {
  if (events_ == nullptr) return;
  events_->publish(Event{.type = std::move(type), .vm = vm, .reason = std::move(reason), .time = {},
                         .previousName = std::move(previousName)});
}

Result<std::pair<std::string, std::string>> VmManager::resolveOwner(const Principal& who, const std::string& owner) {
  CORRAL_TRY(util::validateLogin("owner", owner));
  if (owner == "root" && who.admin) return std::pair<std::string, std::string>{"user", owner};
  auto group = CORRAL_TRY(store_.findGroup(owner));
  auto user = group ? std::optional<store::UserRecord>() : CORRAL_TRY(store_.findUser(owner));
  if (!group && !user) return Error::invalidInput("owner", owner, "no user or group has that name");
  if (group && !who.admin && !who.inGroup(owner))
    return Error::invalidInput("owner", owner, "you may give a VM only to yourself or to a group you belong to");
  if (user && !who.admin && owner != who.login)
    return Error::invalidInput("owner", owner, "you may give a VM only to yourself or to a group you belong to");
  return std::pair<std::string, std::string>{group ? "group" : "user", owner};
}

Result<void> VmManager::checkAdministrator(const Principal& who, const std::string& login) {
  CORRAL_TRY(util::validateLogin("administrator", login));
  if (login == who.login || (login == "root" && who.admin)) return ok();
  auto user = CORRAL_TRY(store_.findUser(login));
  if (!user) return Error::invalidInput("administrator", login, "no user has that login");
  return ok();
}

Result<store::VmRecord> VmManager::get(const Principal& who, const std::string& name) { return visible(who, name); }

Result<std::vector<store::VmRecord>> VmManager::list(const Principal& who) {
  auto all = CORRAL_TRY(store_.listVms());
  std::erase_if(all, [&](const store::VmRecord& vm) { return !canAccess(who, vm); });
  return all;
}

Result<store::ImageRecord> VmManager::usableImage(const Principal& who, const std::string& name, std::string_view kind,
                                                 std::string_view field) {
  CORRAL_TRY(util::validateImageName(field, name));
  auto img = CORRAL_TRY(store_.findImage(name));
  if (!img || !canSeeImage(who, *img))
    return Error{ErrorCode::NotFound, fmt::format("{}: no image named {}", field, name), std::string(field), name};
  if (img->state != "ready")
    return Error::invalidInput(std::string(field), name, fmt::format("is still being imported ({})", img->state));
  if (!kind.empty() && img->kind != kind)
    return Error::invalidInput(std::string(field), name, fmt::format("is a {} image; a {} image is needed", img->kind, kind));
  return std::move(*img);
}

Result<store::VmRecord> VmManager::create(const Principal& who, const CreateVmRequest& req) {
  ValidCreate v = CORRAL_TRY(validateCreate(req, cfg_, host::readHostInfo()));
  auto [ownerKind, owner] = CORRAL_TRY(resolveOwner(who, req.owner.empty() ? who.login : req.owner));
  std::string administrator = req.administrator.empty() ? who.login : req.administrator;
  CORRAL_TRY(checkAdministrator(who, administrator));
  std::string contact = req.contact;
  if (contact.empty() && ownerKind == "user") {
    auto u = CORRAL_TRY(store_.findUser(owner));
    if (u) contact = u->email;
  }
  if (!contact.empty()) CORRAL_TRY(util::validateEmail("contact", contact));
  store::ImageRecord image = CORRAL_TRY(usableImage(who, v.image, "", "image"));
  std::string cdrom = image.kind == "iso" ? image.name : "";
  if (!req.cdrom.empty()) {
    CORRAL_TRY(usableImage(who, req.cdrom, "iso", "cdrom"));
    cdrom = req.cdrom;
  }
  std::vector<NewDisk> plan = CORRAL_TRY(planDisks(image, req));

  store::VmRecord vm;
  vm.ownerKind = ownerKind;
  vm.owner = owner;
  vm.administrator = administrator;
  vm.contact = contact;
  vm.description = req.description;
  vm.name = v.name;
  vm.uuid = boost::uuids::to_string(boost::uuids::random_generator()());
  vm.image = v.image;
  vm.memoryMib = v.memoryMib;
  vm.vcpus = v.vcpus;
  vm.onCrash = std::string(toString(v.onCrash));
  vm.createdAt = store::nowRfc3339();
  vm.creation = CreationFacts::atCreate(who, image, vm.createdAt).toJson().dump();
  vm.cdrom = cdrom;
  vm.bootCdrom = image.kind == "iso";
  for (const auto& d : plan) vm.diskGib += gibCeil(d.sizeBytes);
  // The quota holds the disks' total before a byte is written: two creates
  // racing for the last GiB cannot both make their disks.
  auto created = CORRAL_TRY(store_.insertVm(vm, quota_.check(nullptr, vm)));

  // Create is one unit: a VM whose disks (or, with start, whose start) fail is
  // not left behind, nor any disk it got.
  util::Rollback rb;
  rb.add([&] {
    (void)store_.deleteVm(vm.name);
    std::lock_guard lock(mu_);
    entries_.erase(vm.name);
  });
  CORRAL_TRY(createDisks(created, plan, rb));
  CORRAL_TRY(createNics(created, req, rb));
  spdlog::info("vm={} created image={} memory={}MiB vcpus={} disks={} ({} GiB) owner={}:{} by={}", vm.name, vm.image,
               vm.memoryMib, vm.vcpus, plan.size(), vm.diskGib, vm.ownerKind, vm.owner, who.login);
  if (!req.start) {
    rb.commit();
    publish("vm.created", created);
    return created;
  }
  auto e = entry(vm.name);
  std::lock_guard lock(e->mu);
  auto reserved = CORRAL_TRY(reserve(created, "running"));
  auto started = CORRAL_TRY(startLocked(*e, reserved));
  rb.commit();
  publish("vm.created", created);
  publish("vm.started", started);
  return started;
}

Result<store::VmRecord> VmManager::reserve(const store::VmRecord& vm, std::string desired) {
  store::VmRecord after = vm;
  after.desiredState = std::move(desired);
  return store_.updateVm(after, 0, quota_.check(&vm, after));
}

Result<qemu::VmSpec> VmManager::specFor(const store::VmRecord& vm, const fs::path& runDir) {
  auto image = CORRAL_TRY(store_.findImage(vm.image));
  if (!image) return Error::failedPrecondition(fmt::format("image {} of VM {} no longer exists", vm.image, vm.name));
  qemu::VmSpec spec;
  spec.name = vm.name;
  spec.uuid = vm.uuid;
  spec.memoryMib = vm.memoryMib;
  spec.cpus = {.count = vm.vcpus, .sockets = 1, .cores = vm.vcpus, .threads = 1};
  spec.accel = cfg_.accel;
  spec.disks = CORRAL_TRY(storage_.qemuDisks(vm, runDir));
  // One CD drive on every VM, empty or not, so a CD can go in while it runs.
  qemu::Cdrom cd{.id = Storage::kCdromId, .path = {}, .bus = qemu::CdromBus::Scsi};
  if (!vm.cdrom.empty()) {
    auto iso = CORRAL_TRY(store_.findImage(vm.cdrom));
    if (!iso) return Error::failedPrecondition(fmt::format("CD image {} of VM {} no longer exists", vm.cdrom, vm.name));
    cd.path = iso->path;
  }
  spec.cdroms.push_back(cd);
  bool bootCd = vm.bootCdrom && !cd.path.empty();
  if (image->kind == "direct-boot" && !bootCd) {
    spec.directBoot = qemu::DirectBoot{image->kernel, image->initrd, image->append};
  } else {
    spec.bootOrder = {qemu::BootDevice::Disk, qemu::BootDevice::Cdrom};
    // Booting a CD is for once: the guest's next reset boots its disk again.
    if (bootCd) spec.bootOnce = {qemu::BootDevice::Cdrom};
  }
  spec.smbios.serial = vm.uuid;
  // The OEM strings (type 11) come from the VM's metadata: startLocked.
  return spec;
}

Result<store::VmRecord> VmManager::startLocked(Entry& e, const store::VmRecord& vm) {
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if (!canTransition(state, VmState::Starting)) return wrongState(vm, "start");
  fs::path runDir = CORRAL_TRY(dir_.vmRuntimeDir(vm.name));
  // A crashed-and-preserved guest left its runtime files for inspection; a new
  // start begins clean.
  std::error_code ec;
  fs::remove_all(runDir, ec);
  CORRAL_TRY(host::makeDir(runDir, fs::perms::owner_all));
  auto specOr = specFor(vm, runDir);
  if (!specOr.ok()) {
    Storage::removeSecretFiles(runDir);
    return specOr.error();
  }
  qemu::VmSpec spec = std::move(specOr).take();
  // The taps stay open here until QEMU has them (launch returned).
  auto prepared = prepareNetwork(vm, spec);
  if (!prepared.ok()) {
    Storage::removeSecretFiles(runDir);
    return prepared.error().context(fmt::format("start {}", vm.name));
  }
  // corral.metadata/v1 as of this launch: into the guest as SMBIOS OEM strings,
  // and into the runtime record below.
  auto disks = store_.listDisks(vm.id);
  if (!disks.ok()) {
    Storage::removeSecretFiles(runDir);
    return disks.error();
  }
  VmMetadata metadata = VmMetadata::build(vm, *disks, host::readHostInfo().hostname);
  spec.smbios.oemStrings = metadata.oemStrings();
  CORRAL_TRY(setState(vm.name, toString(VmState::Starting), "", std::nullopt, "running"));

  uint64_t gen = ++e.generation;
  auto watch = std::make_unique<Watch>(*this, vm.name, gen);
  qemu::LaunchConfig lc;
  lc.qemuBinary = cfg_.qemuBinary;
  lc.spec = std::move(spec);
  lc.runtimeDir = runDir.string();
  lc.consoleLogMaxBytes = cfg_.consoleLogMaxBytes;
  lc.gid = cfg_.network.guestGid;
  auto launched = qemu::Machine::launch(io_, std::move(lc), watch.get());
  // QEMU read the disks' passphrases while it started (or failed to): they go now.
  Storage::removeSecretFiles(runDir);
  if (!launched.ok()) {
    Error err = std::move(launched).error();
    spdlog::warn("vm={} start failed: {}", vm.name, err.message);
    // The reason every viewer of the VM reads: the first line, never QEMU's argv and log.
    (void)setState(vm.name, toString(VmState::Stopped),
                   fmt::format("start failed: {}", err.message.substr(0, err.message.find('\n'))), std::nullopt,
                   "stopped");
    return err.context(fmt::format("start {}", vm.name));
  }
  e.setMachine(std::move(launched).take());
  e.watch = std::move(watch);
  e.console->machineStarted(*e.machine, qemu::Machine::runtimePaths(runDir.string()).vncSocket);
  e.bootMemoryMib = vm.memoryMib;
  // Machine wrote the runtime record; the metadata joins it (atomically
  // rewritten). A failure here costs `vm dump` the launch's view, not the guest.
  if (auto rec = qemu::RuntimeRecord::read(runDir.string()); rec.ok()) {
    rec->metadata = metadata.toJson();
    if (auto w = rec->write(runDir.string()); !w.ok())
      spdlog::warn("vm={}: cannot record metadata: {}", vm.name, w.error().message);
  } else {
    spdlog::warn("vm={}: cannot record metadata: {}", vm.name, rec.error().message);
  }
  if (vm.bootCdrom) {
    // Booted from the CD this once; the next start boots the disk.
    store::VmRecord after = vm;
    after.bootCdrom = false;
    if (auto r = store_.updateVm(after, 0); !r.ok())
      spdlog::warn("vm={}: cannot clear boot-from-CD: {}", vm.name, r.error().message);
  }
  return setState(vm.name, toString(VmState::Running), "", e.machine->pid());
}

Result<store::VmRecord> VmManager::checkAction(const Principal& who, const std::string& name, std::string_view action) {
  auto vm = CORRAL_TRY(visible(who, name));
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  bool possible = true;
  if (action == "start") possible = canTransition(state, VmState::Starting) || state == VmState::Crashed;
  if (action == "stop") possible = canTransition(state, VmState::Stopping) || state == VmState::Crashed;
  if (action == "force-stop")
    possible = canTransition(state, VmState::Stopping) || state == VmState::Crashed || state == VmState::Stopping;
  if (action == "reboot") possible = state == VmState::Running || state == VmState::Paused;
  if (!possible) return wrongState(vm, action);
  if (action == "start") {
    // A quick answer for the common refusal; the start itself checks again inside
    // its transaction, which is what makes the quota hold under races.
    auto usage = CORRAL_TRY(store_.usage(vm.ownerKind, vm.owner));
    auto overrides = CORRAL_TRY(store_.findQuota(vm.ownerKind, vm.owner));
    overrides.subjectKind = vm.ownerKind;
    overrides.subject = vm.owner;
    store::VmRecord after = vm;
    after.desiredState = "running";
    CORRAL_TRY(quota_.check(&vm, after)(usage, overrides));
  }
  return vm;
}

Result<store::VmRecord> VmManager::start(const Principal& who, const std::string& name, const BootOptions& boot) {
  auto vm = CORRAL_TRY(visible(who, name));
  if (!boot.cdrom.empty()) CORRAL_TRY(usableImage(who, boot.cdrom, "iso", "cdrom"));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  vm = CORRAL_TRY(visible(who, name));  // re-read under the VM's lock
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if (state != VmState::Crashed && !canTransition(state, VmState::Starting)) return wrongState(vm, "start");
  if (!boot.cdrom.empty()) {
    vm.cdrom = boot.cdrom;
    vm.bootCdrom = true;
  }
  vm = CORRAL_TRY(reserve(vm, "running"));
  if (state == VmState::Crashed) dropMachine(*e, name, RuntimeFiles::Remove);
  auto started = startLocked(*e, vm);
  if (started.ok()) publish("vm.started", *started);
  return started;
}

Result<void> VmManager::forceOff(const Principal& who, const std::string& name) {
  CORRAL_TRY(visible(who, name));
  if (entry(name)->killNow()) spdlog::info("vm={} forced off by={}", name, who.login);
  return ok();
}

Result<store::VmRecord> VmManager::stop(const Principal& who, const std::string& name, const StopOptions& opts) {
  if (opts.force) CORRAL_TRY(forceOff(who, name));
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  // Forced while another stop held the VM: that stop saw the kill and finished.
  if (opts.force && state == VmState::Stopped && !e->machine) return vm;
  if (state == VmState::Crashed) {
    // Stopping a crashed VM clears it: the preserved runtime files go.
    dropMachine(*e, name, RuntimeFiles::KeepConsoleLog);
    auto cleared = CORRAL_TRY(setState(name, toString(VmState::Stopped), vm.stateReason, std::nullopt, "stopped"));
    publish("vm.stopped", cleared, cleared.stateReason);
    return cleared;
  }
  if (!canTransition(state, VmState::Stopping) || !e->machine) return wrongState(vm, "stop");
  CORRAL_TRY(setState(name, toString(VmState::Stopping), "", vm.pid, "stopped"));
  qemu::Machine::ShutdownOptions so;
  so.force = opts.force;
  so.timeout = std::min(opts.timeout.value_or(cfg_.defaultStopTimeout), cfg_.maxStopTimeout);
  if (state == VmState::Paused && !opts.force) {
    // A paused guest never sees the power button: it runs again to hear it.
    if (auto resumed = e->machine->monitor().cont(); !resumed.ok())
      spdlog::warn("vm={}: cannot resume the paused guest for its graceful stop: {}", name, resumed.error().message);
  }
  auto exit = e->machine->shutdown(so);
  std::string reason;
  if (!exit.ok()) {
    reason = fmt::format("shutdown failed: {}", exit.error().message);
  } else if (exit->abnormal) {
    reason = opts.force ? "forced off" : fmt::format("guest ignored ACPI power button for {} s; killed",
                                                     std::chrono::duration_cast<std::chrono::seconds>(so.timeout).count());
  }
  dropMachine(*e, name, RuntimeFiles::KeepConsoleLog);
  auto stopped = CORRAL_TRY(setState(name, toString(VmState::Stopped), reason, std::nullopt, "stopped"));
  publish("vm.stopped", stopped, reason);
  return stopped;
}

Result<store::VmRecord> VmManager::reboot(const Principal& who, const std::string& name, const BootOptions& boot) {
  CORRAL_TRY(visible(who, name));
  if (!boot.cdrom.empty()) CORRAL_TRY(usableImage(who, boot.cdrom, "iso", "cdrom"));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  auto state = parseVmState(vm.state).value_or(VmState::Stopped);
  if ((state != VmState::Running && state != VmState::Paused) || !e->machine) return wrongState(vm, "reboot");
  if (!boot.cdrom.empty()) {
    vm.cdrom = boot.cdrom;
    vm.bootCdrom = true;
    vm = CORRAL_TRY(store_.updateVm(vm, 0));
    auto rebooted = CORRAL_TRY(coldBoot(*e, vm));
    publish("vm.rebooted", rebooted, fmt::format("from CD {}", boot.cdrom));
    return rebooted;
  }
  CORRAL_TRY(e->machine->monitor().systemReset());
  if (state == VmState::Paused) {
    CORRAL_TRY(e->machine->monitor().cont());
    vm = CORRAL_TRY(setState(name, toString(VmState::Running), "", vm.pid, "running"));
  }
  publish("vm.rebooted", vm);
  return vm;
}

// A reboot that needs a new QEMU (the boot device changes): the old one is
// powered off hard, as a reset would, and a new one starts.
Result<store::VmRecord> VmManager::coldBoot(Entry& e, store::VmRecord vm) {
  qemu::Machine::ShutdownOptions so;
  so.force = true;
  so.timeout = cfg_.defaultStopTimeout;
  auto exit = e.machine->shutdown(so);
  if (!exit.ok()) return exit.error().context(fmt::format("reboot {}", vm.name));
  dropMachine(e, vm.name, RuntimeFiles::KeepConsoleLog);
  vm = CORRAL_TRY(setState(vm.name, toString(VmState::Stopped), "rebooting", std::nullopt, "running"));
  return startLocked(e, vm);
}

Result<store::VmRecord> VmManager::pause(const Principal& who, const std::string& name) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (parseVmState(vm.state) != VmState::Running || !e->machine) return wrongState(vm, "pause");
  CORRAL_TRY(e->machine->monitor().stop());
  auto paused = CORRAL_TRY(setState(name, toString(VmState::Paused), "", vm.pid, "paused"));
  publish("vm.paused", paused);
  return paused;
}

Result<store::VmRecord> VmManager::resume(const Principal& who, const std::string& name) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  auto vm = CORRAL_TRY(record(name));
  if (parseVmState(vm.state) != VmState::Paused || !e->machine) return wrongState(vm, "resume");
  vm = CORRAL_TRY(reserve(vm, "running"));
  if (auto r = e->machine->monitor().cont(); !r.ok()) {
    (void)setState(name, vm.state, vm.stateReason, vm.pid, "paused");
    return r.error();
  }
  auto resumed = CORRAL_TRY(setState(name, toString(VmState::Running), "", vm.pid, "running"));
  publish("vm.resumed", resumed);
  return resumed;
}

Result<void> VmManager::remove(const Principal& who, const std::string& name) {
  if (!ownsVm(who, CORRAL_TRY(visible(who, name))))
    return Error::forbidden(fmt::format("only VM {}'s owner or an admin may delete it; its administrator operates it",
                                        name));
  auto e = entry(name);
  {
    std::lock_guard lock(e->mu);
    auto vm = CORRAL_TRY(record(name));
    auto state = parseVmState(vm.state).value_or(VmState::Stopped);
    if (state != VmState::Stopped && state != VmState::Crashed)
      return Error::failedPrecondition(fmt::format("cannot delete VM {}: it is {}; stop it first", name, vm.state));
    // The disks go first: a disk that cannot be removed keeps its VM (and its
    // row), so nothing is ever left without an owner to delete it again.
    auto disks = CORRAL_TRY(store_.listDisks(vm.id));
    for (const auto& d : disks) {
      if (auto r = storage_.removeDisk(d); !r.ok()) return r.error().context(fmt::format("delete VM {}", name));
    }
    dropMachine(*e, name, RuntimeFiles::Remove);
    auto nics = CORRAL_TRY(store_.listNics(vm.id));
    CORRAL_TRY(store_.deleteVm(name));
    // Its NICs went with the row: their addresses and hostnames are free, and
    // dnsmasq forgets them.
    networks_.forget(nics);
    removeSeed(vm);
    publish("vm.deleted", vm);
  }
  std::lock_guard lock(mu_);
  entries_.erase(name);
  spdlog::info("vm={} deleted by={}", name, who.login);
  return ok();
}

Result<store::VmRecord> VmManager::modify(const Principal& who, const std::string& name,
                                          const ModifyVmRequest& req) {
  CORRAL_TRY(visible(who, name));
  auto e = entry(name);
  std::lock_guard lock(e->mu);
  const store::VmRecord before = CORRAL_TRY(visible(who, name));
  if (req.expectedVersion != 0 && req.expectedVersion != before.version)
    return Error::versionMismatch(req.expectedVersion, before.version);
  auto state = parseVmState(before.state).value_or(VmState::Stopped);
  bool stopped = state == VmState::Stopped;
  auto needsStopped = [&](const char* field, const std::string& value, const char* what) -> Error {
    return Error::invalidInput(field, value, fmt::format("{} needs the VM stopped; it is {}", what, before.state));
  };
  host::HostInfo host = host::readHostInfo();

  store::VmRecord after = before;
  if (req.name && *req.name != before.name) {
    CORRAL_TRY(util::validateVmName("name", *req.name));
    if (!stopped) return needsStopped("name", *req.name, "a rename");
    after.name = *req.name;
  }
  const bool givesAway = (req.owner && *req.owner != before.owner) ||
                         (req.administrator && *req.administrator != before.administrator);
  if (givesAway && !ownsVm(who, before)) {
    Error refused = Error::forbidden(fmt::format(
        "{}: only VM {}'s owner or an admin may change who owns or administers it", req.owner ? "owner" : "administrator",
        before.name));
    refused.field = req.owner ? "owner" : "administrator";
    return refused;
  }
  if (req.owner) std::tie(after.ownerKind, after.owner) = CORRAL_TRY(resolveOwner(who, *req.owner));
  if (req.administrator) {
    if (!req.administrator->empty()) CORRAL_TRY(checkAdministrator(who, *req.administrator));
    after.administrator = *req.administrator;
  }
  if (req.contact) {
    if (!req.contact->empty()) CORRAL_TRY(util::validateEmail("contact", *req.contact));
    after.contact = *req.contact;
  }
  if (req.description) {
    CORRAL_TRY(validateDescription(*req.description));
    after.description = *req.description;
  }
  if (req.onCrash) after.onCrash = std::string(toString(CORRAL_TRY(validateOnCrash(*req.onCrash))));
  if (req.vcpus) {
    after.vcpus = CORRAL_TRY(validateVcpus(*req.vcpus, cfg_, host));
    if (after.vcpus != before.vcpus && !stopped) return needsStopped("vcpus", std::to_string(*req.vcpus), "a CPU change");
  }
  bool balloon = false;
  if (req.memoryMib) {
    after.memoryMib = CORRAL_TRY(validateMemory(*req.memoryMib, cfg_, host));
    if (after.memoryMib != before.memoryMib && !stopped) {
      // A running guest changes size only through its balloon, up to what it booted with.
      if (!e->machine || after.memoryMib > e->bootMemoryMib)
        return Error::invalidInput("memory", std::to_string(*req.memoryMib),
                                   fmt::format("a running VM's memory can change only within its balloon range, {} "
                                               "to {} MiB; stop it to grow further",
                                               cfg_.minMemoryMib, e->bootMemoryMib));
      balloon = true;
    }
  }

  bool renamed = after.name != before.name;
  fs::path oldDir, newDir;
  if (renamed) {
    oldDir = CORRAL_TRY(dir_.vmRuntimeDir(before.name));
    newDir = CORRAL_TRY(dir_.vmRuntimeDir(after.name));
  }
  util::Rollback rb;
  std::error_code ec;
  if (renamed && fs::exists(oldDir) && !fs::exists(newDir)) {
    // Keeps the console log (the VM's history) under its new name.
    fs::rename(oldDir, newDir, ec);
    if (ec) return Error::internal(fmt::format("rename {} to {}: {}", oldDir.string(), newDir.string(), ec.message()));
    rb.add([&] { fs::rename(newDir, oldDir, ec); });
  }
  if (renamed) CORRAL_TRY(storage_.renameVolumes(after.name, before.id, rb));
  auto updated = CORRAL_TRY(store_.updateVm(after, req.expectedVersion, quota_.check(&before, after)));
  if (balloon) {
    auto r = e->machine->monitor().balloon(static_cast<int64_t>(after.memoryMib) << 20);
    if (!r.ok()) {
      (void)store_.updateVm(before, 0);
      return Error::unavailable(fmt::format("memory: the balloon refused: {}", r.error().message));
    }
  }
  rb.commit();
  if (renamed) {
    std::lock_guard mapLock(mu_);
    entries_[after.name] = e;
    entries_.erase(before.name);
  }
  spdlog::info("vm={} modified by={} version={}{}", updated.name, who.login, updated.version,
               renamed ? fmt::format(" renamed_from={}", before.name) : "");
  publish("vm.modified", updated, "", renamed ? before.name : "");
  return updated;
}

Result<nlohmann::json> VmManager::quota(const Principal& who, const std::string& kind, const std::string& subject) {
  if (kind != "user" && kind != "group") return Error::invalidInput("kind", kind, "must be user or group");
  CORRAL_TRY(util::validateLogin(kind, subject));
  bool mayRead = who.admin || (kind == "user" ? subject == who.login : who.inGroup(subject));
  if (!mayRead) return Error::notFound(fmt::format("{} {} not found", kind, subject));
  bool exists = kind == "user" ? (subject == "root" || CORRAL_TRY(store_.findUser(subject)).has_value())
                               : CORRAL_TRY(store_.findGroup(subject)).has_value();
  if (!exists) return Error::notFound(fmt::format("{} {} not found", kind, subject));
  auto overrides = CORRAL_TRY(store_.findQuota(kind, subject));
  overrides.subjectKind = kind;
  overrides.subject = subject;
  auto usage = CORRAL_TRY(store_.usage(kind, subject));
  return quota_.describe(overrides, usage);
}

namespace {

Result<void> checkQuotaValue(const QuotaKey& k, const std::optional<int64_t>& v) {
  if (v && *v < -1) return Error::invalidInput(k.key, std::to_string(*v), "must be -1 (unlimited) or more");
  return ok();
}

}  // namespace

Result<nlohmann::json> VmManager::setQuota(const Principal& who, const store::QuotaRecord& q) {
  if (!who.admin) return Error::forbidden("only admins set quotas");
  CORRAL_TRY(quota(who, q.subjectKind, q.subject));  // validates and checks that the subject exists
  for (const auto& k : quotaKeys()) CORRAL_TRY(checkQuotaValue(k, q.*(k.field)));
  CORRAL_TRY(store_.setQuota(q));
  spdlog::info("quota {} {} set by={}", q.subjectKind, q.subject, who.login);
  return quota(who, q.subjectKind, q.subject);
}

Result<nlohmann::json> VmManager::patchQuota(const Principal& who, const std::string& kind, const std::string& subject,
                                             const std::map<std::string, std::optional<int64_t>>& changes) {
  if (!who.admin) return Error::forbidden("only admins set quotas");
  CORRAL_TRY(quota(who, kind, subject));  // validates and checks that the subject exists
  std::vector<std::pair<const QuotaKey*, std::optional<int64_t>>> fields;
  for (const auto& [key, value] : changes) {
    const QuotaKey* k = findQuotaKey(key);
    if (k == nullptr) return Error::invalidInput(key, value ? std::to_string(*value) : "null", "unknown field");
    CORRAL_TRY(checkQuotaValue(*k, value));
    fields.emplace_back(k, value);
  }
  CORRAL_TRY(store_.patchQuota(kind, subject, [&](store::QuotaRecord& q) {
    for (const auto& [k, value] : fields) q.*(k->field) = value;
  }));
  spdlog::info("quota {} {} changed ({} limits) by={}", kind, subject, fields.size(), who.login);
  return quota(who, kind, subject);
}

Result<std::string> VmManager::consoleLog(const Principal& who, const std::string& name, size_t maxBytes) {
  CORRAL_TRY(visible(who, name));
  fs::path runDir = CORRAL_TRY(dir_.vmRuntimeDir(name));
  return util::RotatingLog::readTail((runDir / qemu::Machine::kConsoleLog).string(), maxBytes);
}

Result<std::unique_ptr<ConsoleSession>> VmManager::attachSerial(const Principal& who, const std::string& name,
                                                                std::shared_ptr<ConsoleViewer> viewer,
                                                                size_t historyBytes) {
  CORRAL_TRY(visible(who, name));
  auto s = entry(name)->console->attachSerial(std::move(viewer), historyBytes);
  if (!s.ok()) return s.error().context(fmt::format("serial console of VM {}", name));
  return s;
}

Result<std::unique_ptr<ConsoleSession>> VmManager::openVnc(const Principal& who, const std::string& name,
                                                           std::shared_ptr<ConsoleViewer> viewer) {
  CORRAL_TRY(visible(who, name));
  auto s = entry(name)->console->openVnc(std::move(viewer));
  if (!s.ok()) return s.error().context(fmt::format("graphical console of VM {}", name));
  return s;
}

void VmManager::dropMachine(Entry& e, const std::string& name, RuntimeFiles files) {
  switch (files) {
    case RuntimeFiles::Keep: e.console->machineGone("the guest crashed"); break;
    case RuntimeFiles::KeepConsoleLog: e.console->machineGone("the guest stopped"); break;
    case RuntimeFiles::Remove: e.console->machineGone("the VM was deleted"); break;
  }
  e.setMachine(nullptr);
  e.watch.reset();
  ++e.generation;
  // Taps die with their QEMU; one that did not (or a hook's leftovers) goes now.
  if (auto vm = record(name); vm.ok()) networks_.removeTaps(vm->id);
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
  if (event == "STOP" && state == VmState::Running) {
    auto r = setState(name, toString(VmState::Paused), "paused by QEMU", vm->pid);
    if (r.ok()) publish("vm.paused", *r, r->stateReason);
  } else if (event == "RESUME" && state == VmState::Paused) {
    auto r = setState(name, toString(VmState::Running), "", vm->pid);
    if (r.ok()) publish("vm.resumed", *r);
  }
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
    auto r = setState(name, toString(VmState::Stopped), reason, std::nullopt, "stopped");
    if (r.ok()) publish("vm.shutdown", *r, reason);
    return;
  }
  spdlog::warn("vm={} crashed: {} on_crash={}", name, reason, vm->onCrash);
  // Keep the runtime files (console log, qemu.log) until the policy decides.
  dropMachine(e, name, RuntimeFiles::Keep);
  if (auto r = setState(name, toString(VmState::Crashed), reason, std::nullopt); r.ok())
    publish("vm.crashed", *r, reason);
  switch (parseOnCrash(vm->onCrash).value_or(OnCrash::Preserve)) {
    case OnCrash::Preserve:
      return;
    case OnCrash::Stop:
      dropMachine(e, name, RuntimeFiles::KeepConsoleLog);
      if (auto r = setState(name, toString(VmState::Stopped), reason + " (on_crash=stop)", std::nullopt, "stopped");
          r.ok())
        publish("vm.stopped", *r, r->stateReason);
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
      else if (auto r = setState(name, toString(VmState::Running), fmt::format("restarted after: {}", reason),
                                 restarted->pid);
               r.ok())
        publish("vm.started", *r, r->stateReason);
      return;
    }
  }
}

Result<void> VmManager::reconcile() {
  // Passphrase files a start left when the daemon died mid-launch: a running
  // QEMU read its keys long ago, and no start runs yet, so none is needed.
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(dir_.runDir(), ec))
    if (d.is_directory(ec)) Storage::removeSecretFiles(d.path());
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
      e->setMachine(std::move(machine).take());
      e->watch = std::move(watch);
      e->console->machineStarted(*e->machine, qemu::Machine::runtimePaths(runDir.string()).vncSocket);
      e->bootMemoryMib = vm.memoryMib;
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
  // Taps of guests that died while corrald was away (or of VMs since deleted).
  std::set<int64_t> live;
  for (const auto& vm : vms) {
    auto e = entry(vm.name);
    std::lock_guard lock(e->mu);
    if (e->machine) live.insert(vm.id);
  }
  networks_.removeStaleTaps(live);
  return ok();
}

}  // namespace corral::core
