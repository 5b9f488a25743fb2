// VmManager: the one owner of this host's VMs. It applies the rules (validation,
// access, quotas, state transitions, on_crash policy), keeps the store's record
// of each VM in step with its QEMU process, publishes every change as an event,
// and reconciles the two when the daemon starts.
//
// Access: every public VM method takes the caller's Principal. A VM the caller
// may not see (core::canAccess) is NotFound, exactly as one that does not exist.
// Quotas are checked inside the store's transaction (store::QuotaCheck) on
// create, start, resume and modify.
//
// Threading: public methods are called from API worker threads and may block
// for as long as the action takes (a stop waits for the guest). Actions on one
// VM are serialised by that VM's mutex, so nothing else writes its state while
// an action runs; actions on different VMs run in parallel. Machine callbacks
// arrive on the io_context thread and are handed to a worker, never handled there.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include "core/console_hub.h"
#include "core/events.h"
#include "core/networks.h"
#include "core/principal.h"
#include "core/quota.h"
#include "core/storage.h"
#include "host/state_dir.h"
#include "qemu/vm_spec.h"
#include "store/store.h"
#include "util/result.h"

namespace corral::qemu {
class Machine;
class QmpTransport;
struct ExitInfo;
}  // namespace corral::qemu

namespace corral::util::metrics {
class Emitter;
}  // namespace corral::util::metrics

namespace corral::core {

struct ManagerConfig {
  std::string qemuBinary = "qemu-system-x86_64";
  qemu::Accel accel = qemu::Accel::Tcg;
  uint64_t minMemoryMib = 72;  // this kernel does not boot below 72 MiB
  uint64_t maxMemoryMib = 0;   // 0: the host's total memory
  unsigned maxVcpus = 0;       // 0: the host's CPUs
  std::chrono::milliseconds defaultStopTimeout{60000};
  std::chrono::milliseconds maxStopTimeout{300000};  // what a stop may ask for at most
  size_t consoleLogMaxBytes = 1 << 20;
  // on_crash=restart gives up after this many restarts within restartWindow.
  unsigned maxRestarts = 3;
  std::chrono::seconds restartWindow{60};
  QuotaLimits quotaDefaults;
  StorageConfig storage;
  NetworkConfig network;
};

struct CreateVmRequest {
  std::string name;
  std::string image;
  std::optional<int64_t> memoryMib;
  std::optional<int64_t> vcpus;
  std::string onCrash = "restart";
  bool start = false;
  std::string owner;          // "": the caller
  std::string administrator;  // "": the caller
  std::string contact;        // "": the owning user's email when it has one
  std::string description;
  // Storage. With a disk image disks[0] sizes its clone ("" keeps the image's
  // size); every other disk is blank. With an iso image it goes into the CD
  // drive and the first boot is from it.
  std::vector<DiskRequest> disks;
  bool encrypt = false;    // every disk (a disk may say otherwise)
  bool fullClone = false;  // a full copy of a disk image instead of an overlay
  std::string cdrom;       // an iso image for the CD drive
  std::string pool;        // the disks' pool ("": the default)
  // Networking. No NIC asked for: one on the default network (when it exists)
  // unless noNetwork.
  std::vector<NicRequest> nics;
  bool noNetwork = false;
};

// start / reboot: with cdrom, that CD goes into the drive and this boot is from it.
struct BootOptions {
  std::string cdrom;
};

// The settable fields of a VM; nullopt leaves one as it is. expectedVersion is
// the If-Match of the API (0: no check).
struct ModifyVmRequest {
  std::optional<std::string> name;
  std::optional<std::string> owner;
  std::optional<std::string> administrator;
  std::optional<std::string> contact;
  std::optional<std::string> description;
  std::optional<int64_t> memoryMib;
  std::optional<int64_t> vcpus;
  std::optional<std::string> onCrash;
  int64_t expectedVersion = 0;
};

struct StopOptions {
  // Off at once, whatever else holds the VM (a graceful stop, a hung QMP
  // command): the administrator's last resort, as libvirt's destroy.
  bool force = false;
  // For the guest to power off after the ACPI button; capped by
  // ManagerConfig::maxStopTimeout. nullopt: defaultStopTimeout.
  std::optional<std::chrono::milliseconds> timeout;
};


class VmManager {
 public:
  // events may be null (no one listens).
  VmManager(boost::asio::io_context& io, store::Store& store, const host::StateDir& dir, ManagerConfig cfg,
            EventBus* events = nullptr);
  // Detaches from every guest without stopping it: a daemon restart never stops a guest.
  ~VmManager();
  VmManager(const VmManager&) = delete;
  VmManager& operator=(const VmManager&) = delete;

  // At daemon start, before anything else: opens the storage pools and the key store.
  Result<void> openStorage() { return storage_.open(); }
  Storage& storage() { return storage_; }
  Networks& networks() { return networks_; }

  // At daemon start: reattach live guests; mark guests recorded running but dead
  // as crashed and apply their on_crash policy.
  Result<void> reconcile();

  Result<store::VmRecord> create(const Principal& who, const CreateVmRequest& req);
  Result<store::VmRecord> get(const Principal& who, const std::string& name);
  Result<std::vector<store::VmRecord>> list(const Principal& who);
  // Changes whenever any VM record may have changed (store::vmsChangeMark):
  // a rendered list stays valid while the mark does.
  Result<std::string> listMark() { return store_.vmsChangeMark(); }
  // Access and state checks only, for an action about to be queued as an
  // operation: a caller gets 404/409 at once rather than from the operation.
  // "force-stop" is also possible while the VM is stopping.
  Result<store::VmRecord> checkAction(const Principal& who, const std::string& name, std::string_view action);
  // SIGKILLs the VM's QEMU now, without waiting for the VM's lock (a forced
  // stop's first step, taken before it queues behind anything). Access is
  // checked as for stop; ok whether or not a QEMU ran.
  Result<void> forceOff(const Principal& who, const std::string& name);
  Result<store::VmRecord> start(const Principal& who, const std::string& name, const BootOptions& boot = {});
  // A graceful stop of a paused guest resumes it first (ACPI cannot reach a
  // stopped CPU). A forced one kills at once (forceOff) and then succeeds even
  // when a stop already in progress finished the job.
  Result<store::VmRecord> stop(const Principal& who, const std::string& name, const StopOptions& opts);
  // Without a CD: a reset of the running guest. With one: a cold reboot (QEMU
  // restarted) that boots that CD once.
  Result<store::VmRecord> reboot(const Principal& who, const std::string& name, const BootOptions& boot = {});
  Result<store::VmRecord> pause(const Principal& who, const std::string& name);
  Result<store::VmRecord> resume(const Principal& who, const std::string& name);
  Result<store::VmRecord> modify(const Principal& who, const std::string& name, const ModifyVmRequest& req);
  Result<void> remove(const Principal& who, const std::string& name);
  // The guest's serial output so far (the tail, at most maxBytes).
  Result<std::string> consoleLog(const Principal& who, const std::string& name, size_t maxBytes);
  // `corral vm dump` (vm_dump.cc): {"metadata": corral.metadata/v1, "runtime": the
  // runtime record or null}. Metadata is the running guest's (as launched) or,
  // when it is not running, built from the store now. NotFound when who may not see it.
  Result<nlohmann::json> dump(const Principal& who, const std::string& name);
  // Interactive consoles (console_hub.h) of a running guest the caller may see:
  // the serial console (the newest historyBytes of its log, then live output)
  // or a stream to its VNC server. FailedPrecondition when it is not running.
  Result<std::unique_ptr<ConsoleSession>> attachSerial(const Principal& who, const std::string& name,
                                                       std::shared_ptr<ConsoleViewer> viewer, size_t historyBytes);
  Result<std::unique_ptr<ConsoleSession>> openVnc(const Principal& who, const std::string& name,
                                                  std::shared_ptr<ConsoleViewer> viewer);

  // Quotas: limits against usage of a subject ("user"/"group"). Visible to
  // admins, the user themselves and a group's members; others get NotFound.
  Result<nlohmann::json> quota(const Principal& who, const std::string& kind, const std::string& subject);
  // Admins only. Fields of q left nullopt clear the override.
  Result<nlohmann::json> setQuota(const Principal& who, const store::QuotaRecord& q);
  // Admins only. Changes just the limits named in `changes` (by their JSON key,
  // quotaKeys(); nullopt clears one back to the default) and keeps every other,
  // in one store transaction. InvalidInput names an unknown key or a bad value.
  Result<nlohmann::json> patchQuota(const Principal& who, const std::string& kind, const std::string& subject,
                                    const std::map<std::string, std::optional<int64_t>>& changes);
  const QuotaPolicy& quotaPolicy() const { return quota_; }

  // Disks (vm_disks.cc). Add, remove and rekey need the VM stopped; resize
  // grows a running guest's disk online (block_resize) or a stopped one offline.
  // Sizes count against the owner's disk quotas.
  Result<std::vector<store::DiskRecord>> disks(const Principal& who, const std::string& vm);
  Result<store::DiskRecord> addDisk(const Principal& who, const std::string& vm, const DiskRequest& req);
  Result<store::DiskRecord> resizeDisk(const Principal& who, const std::string& vm, const std::string& disk,
                                       const std::string& size);
  Result<void> removeDisk(const Principal& who, const std::string& vm, const std::string& disk);
  Result<store::DiskRecord> rekeyDisk(const Principal& who, const std::string& vm, const std::string& disk);
  // The CD drive: insert (an iso image the caller may see) or eject; at once
  // when the guest runs, and kept for its next start.
  Result<store::VmRecord> insertCdrom(const Principal& who, const std::string& vm, const std::string& image);
  Result<store::VmRecord> ejectCdrom(const Principal& who, const std::string& vm);

  // NICs (vm_nics.cc). Add and remove need the VM stopped; an address and
  // hostname on a nat or bridged network are the NIC's until it goes.
  Result<std::vector<store::NicRecord>> nics(const Principal& who, const std::string& vm);
  Result<store::NicRecord> addNic(const Principal& who, const std::string& vm, const NicRequest& req);
  Result<void> removeNic(const Principal& who, const std::string& vm, const std::string& nic);

  const ManagerConfig& config() const { return cfg_; }

  // Every VM for a Guru Meditation Report (vm_report.cc): its recorded state and
  // pid, its process state and a short QMP health probe. Never waits on a VM's
  // action lock, so it answers while actions hang.
  nlohmann::json report();

  // Metrics (vm_stats.cc): every VM's state and configured memory; for each VM
  // with a live machine its CPU seconds, balloon size, block I/O and whether
  // QMP answered within qmpTimeout. Every guest is asked at once, so a scrape
  // takes about qmpTimeout at most however many guests are wedged; and it never
  // waits on a VM's action lock (a VM busy in an action is measured through
  // what an earlier scrape learnt of its machine). Plus the guest memory
  // committed on this node. Any thread but the io_context's.
  void collectMetrics(util::metrics::Emitter& out, std::chrono::milliseconds qmpTimeout);

 private:
  struct Entry;
  class Watch;

  std::shared_ptr<Entry> entry(const std::string& name);
  Result<store::VmRecord> record(const std::string& name);
  // record(name) when who may see it, else NotFound worded like a missing VM.
  Result<store::VmRecord> visible(const Principal& who, const std::string& name);
  // Resolves an owner name to (kind, name) and checks who may give a VM to it.
  Result<std::pair<std::string, std::string>> resolveOwner(const Principal& who, const std::string& owner);
  Result<void> checkAdministrator(const Principal& who, const std::string& login);
  void publish(std::string type, const store::VmRecord& vm, std::string reason = {}, std::string previousName = {});
  // The quota-checked desired-state change of start and resume.
  Result<store::VmRecord> reserve(const store::VmRecord& vm, std::string desired);
  Result<store::VmRecord> startLocked(Entry& e, const store::VmRecord& vm);
  Result<store::VmRecord> setState(const std::string& name, std::string_view state, std::string reason,
                                   std::optional<int64_t> pid, std::optional<std::string> desired = std::nullopt);
  Result<qemu::VmSpec> specFor(const store::VmRecord& vm, const std::filesystem::path& runDir);
  // A ready image of `kind` ("" any) that who may use; errors name field.
  Result<store::ImageRecord> usableImage(const Principal& who, const std::string& name, std::string_view kind,
                                         std::string_view field);
  // Makes the disks of a new VM (vm_disks.cc); rb undoes them.
  Result<void> createDisks(const store::VmRecord& vm, const std::vector<NewDisk>& plan, util::Rollback& rb);
  Result<std::vector<NewDisk>> planDisks(const store::ImageRecord& image, const CreateVmRequest& req);
  Result<store::DiskRecord> findDisk(const store::VmRecord& vm, const std::string& disk);
  // Under the VM's lock, once the caller may see it, it has that disk and it is
  // stopped (else FailedPrecondition "<stoppedFor> needs VM ... stopped"):
  // f(vm, disk). Only vm_disks.cc instantiates it.
  template <class F>
  auto onStoppedVmDisk(const Principal& who, const std::string& vm, const std::string& disk,
                       std::string_view stoppedFor, F f) -> decltype(f(store::VmRecord{}, store::DiskRecord{}));
  Result<store::VmRecord> coldBoot(Entry& e, store::VmRecord vm);
  // The NICs of a new VM (vm_nics.cc); rb detaches them again.
  Result<void> createNics(const store::VmRecord& vm, const CreateVmRequest& req, util::Rollback& rb);
  // The cloud-init NoCloud seed CD of a VM as of now (vm_nics.cc): rewritten
  // only when its content changed; its path.
  Result<std::string> writeSeed(const store::VmRecord& vm, const std::vector<store::NicRecord>& nics);
  std::filesystem::path seedPath(const store::VmRecord& vm) const;
  void removeSeed(const store::VmRecord& vm);  // the CD and its digest
  // For a start: the VM's NICs made ready (taps open) and put in spec, with its
  // seed CD. The fds in the result must outlive the launch.
  Result<std::vector<PreparedNic>> prepareNetwork(const store::VmRecord& vm, qemu::VmSpec& spec);
  void onExit(const std::string& name, uint64_t generation, const qemu::ExitInfo& info);
  void onEvent(const std::string& name, uint64_t generation, const std::string& event);
  void handleExit(Entry& e, const std::string& name, const qemu::ExitInfo& info);
  // What happens to a VM's runtime dir when its machine goes: a crashed VM keeps
  // all for inspection, a stopped one keeps its console log, a deleted one nothing.
  enum class RuntimeFiles { Keep, KeepConsoleLog, Remove };
  void dropMachine(Entry& e, const std::string& name, RuntimeFiles files);

  boost::asio::io_context& io_;
  store::Store& store_;
  const host::StateDir& dir_;
  Storage storage_;
  ManagerConfig cfg_;
  Networks networks_;
  QuotaPolicy quota_;
  EventBus* events_;
  boost::asio::thread_pool workers_{2};

  std::mutex mu_;  // guards entries_
  std::map<std::string, std::shared_ptr<Entry>> entries_;

  // What collectMetrics last learnt of each live machine (vm_stats.cc).
  // A VM's live QEMU for metrics and reports (vm_stats.cc): from its entry when
  // its action lock is free, else the one seen last; never waits on the lock.
  struct LiveTarget {
    std::weak_ptr<qemu::QmpTransport> qmp;
    pid_t pid = 0;
    uint64_t startTime = 0;
  };
  std::optional<LiveTarget> liveTarget(const std::string& name);
  struct StatsCache;
  static std::shared_ptr<StatsCache> newStatsCache();
  std::shared_ptr<StatsCache> statsCache_ = newStatsCache();
};

}  // namespace corral::core
