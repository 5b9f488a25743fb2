// Monitor: one typed method per QMP command corral uses, over a QmpTransport
// (STYLE.md §3). It builds the arguments, sends, and turns the reply into a struct;
// nothing more. It is synchronous and meant for worker threads (never the thread
// running the transport's io_context). Connecting, framing and events are the
// transport's; deciding what a result means for a VM is core/'s.
//
// Every method returns QmpResult, which says which of the four QMP failures
// happened and converts into Result<T>. A reply of the wrong shape is a Protocol
// error naming the command.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qemu/monitor_events.h"
#include "qemu/qmp_transport.h"

namespace corral::qemu {

struct QemuStatus {
  bool running = false;
  std::string status;  // RunState: "running", "paused", "prelaunch", "shutdown", ...
};

struct QemuVersion {
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string package;
};

struct MachineType {
  std::string name;   // "pc-q35-7.2"
  std::string alias;  // "q35", empty when none
  bool isDefault = false;
  bool deprecated = false;
  int cpuMax = 0;
};

struct KvmInfo {
  bool present = false;  // /dev/kvm usable by this QEMU
  bool enabled = false;  // this QEMU runs with KVM
};

class Monitor {
 public:
  using Millis = std::chrono::milliseconds;
  static constexpr Millis kDefaultTimeout{10000};

  // Shares the transport (already connected, or connected later by the caller).
  explicit Monitor(std::shared_ptr<QmpTransport> transport, Millis timeout = kDefaultTimeout);

  QmpTransport& transport() { return *transport_; }

  QmpResult<QemuStatus> queryStatus();
  QmpResult<void> cont();
  QmpResult<void> stop();
  QmpResult<void> systemPowerdown();  // asks the guest (ACPI); it may ignore it
  QmpResult<void> systemReset();
  // Asks QEMU to exit. A connection lost before the reply counts as success:
  // QEMU may close the socket as it goes.
  QmpResult<void> quit();

  QmpResult<QemuVersion> queryVersion();
  QmpResult<std::vector<MachineType>> queryMachines();
  QmpResult<std::vector<std::string>> queryCpuDefinitions();  // CPU model names
  // Names of the non-abstract QOM types implementing `implements` ("device", ...).
  QmpResult<std::vector<std::string>> qomListTypes(const std::string& implements);
  QmpResult<KvmInfo> queryKvm();
  // Accelerators this binary has: "kvm", "tcg", ... QEMU 7.2 has no query-accels,
  // so this lists the QOM types implementing "accel" ("kvm-accel" -> "kvm").
  QmpResult<std::vector<std::string>> queryAccels();

  // Sets the balloon target (the guest's memory size as QEMU sees it), in bytes.
  QmpResult<void> balloon(std::int64_t bytes);
  // The guest's current memory size in bytes (query-balloon's "actual").
  QmpResult<std::int64_t> queryBalloon();
  // Grows (or shrinks) the block node `node` to `bytes`.
  QmpResult<void> blockResize(const std::string& node, std::int64_t bytes);
  // Puts the raw image at path into the removable drive with qdev id `device`
  // (blockdev-change-medium, read-only), replacing whatever medium was there.
  QmpResult<void> changeMedium(const std::string& device, const std::string& path);
  // Empties the drive (eject with force: a guest lock does not keep the medium in).
  QmpResult<void> ejectMedium(const std::string& device);

  // QmpTransport::waitEventSync, with the same semantics.
  QmpResult<nlohmann::json> waitEvent(std::string name, nlohmann::json match, Millis timeout);

  // Makes `events` hear SHUTDOWN/STOP/RESUME/RESET and the connection's end, for as
  // long as it lives (held weakly: it may go away before the transport).
  void attachEvents(std::weak_ptr<MonitorEvents> events);

  // Hears every command any Monitor sends: its name, how long the reply took
  // (seconds) and its error (null on success), on the calling thread. For
  // metrics. Process-wide (null: none); a command in flight keeps the observer
  // it started with alive, so it may be replaced or removed at any time.
  using CommandObserver = std::function<void(std::string_view command, double seconds, const QmpError* error)>;
  static void setCommandObserver(std::shared_ptr<const CommandObserver> observer);
  // Tells the observer (if any) of a command sent past a Monitor, straight
  // through QmpTransport::execute (the metrics scrape's asynchronous queries).
  static void observeCommand(std::string_view command, double seconds, const QmpError* error);

 private:
  QmpResult<nlohmann::json> run(std::string command, nlohmann::json arguments = nullptr);
  QmpResult<void> runVoid(std::string command, nlohmann::json arguments = nullptr);

  std::shared_ptr<QmpTransport> transport_;
  Millis timeout_;
};

}  // namespace corral::qemu
