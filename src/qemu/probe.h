// Probe: what one QEMU binary can do, asked of QEMU itself over QMP.
//
// It starts the binary with `-machine none -S` (no guest, nothing runs), reads
// its version, machine types (and the default one), CPU models, device types and
// accelerators, and asks it to quit. The answer is cached as JSON in a cache
// directory, keyed by the binary's resolved path, size and mtime, so that a
// daemon start costs one stat when QEMU has not changed. Whether KVM actually
// works on this host is host/kvm_probe's question, not this one: a binary can
// have KVM support on a host where KVM guests crawl.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "qemu/monitor.h"
#include "util/result.h"

namespace corral::qemu {

// Which file a program name stands for, and which version of that file.
struct BinaryIdentity {
  std::string path;     // absolute, after the PATH lookup (symlinks kept)
  uint64_t size = 0;    // of the file the path resolves to
  int64_t mtimeNs = 0;  // idem, nanoseconds since the epoch

  friend bool operator==(const BinaryIdentity&, const BinaryIdentity&) = default;
};

// Resolves `program` (a name looked up in $PATH, or a path with a '/') to an
// executable file. NotFound when there is none.
Result<BinaryIdentity> identifyBinary(const std::string& program);

struct QemuCaps {
  BinaryIdentity binary;
  QemuVersion version;
  std::vector<MachineType> machines;
  std::string defaultMachine;          // name of the machine type marked default, empty if none
  std::vector<std::string> cpuModels;  // sorted
  std::vector<std::string> devices;    // sorted, non-abstract types implementing "device"
  std::vector<std::string> accels;     // sorted: "kvm", "tcg", ...
  bool fromCache = false;

  bool hasMachine(std::string_view nameOrAlias) const;
  bool hasCpuModel(std::string_view name) const;
  bool hasDevice(std::string_view name) const;
  bool hasAccel(std::string_view name) const;
};

nlohmann::json capsToJson(const QemuCaps& caps);
// InvalidInput when `j` is not what capsToJson writes.
Result<QemuCaps> capsFromJson(const nlohmann::json& j);

struct ProbeOptions {
  std::string cacheDir;  // where qemu-caps-*.json live; empty: never cached
  std::chrono::milliseconds timeout{30000};  // for QEMU to start and answer everything
};

class Probe {
 public:
  explicit Probe(ProbeOptions options) : options_(std::move(options)) {}

  // The capabilities of `binary`, from the cache when the binary has not changed
  // since, otherwise by running it. Blocks (seconds at most); call it from a
  // worker thread. Not thread-safe for the same cache directory: one Probe per
  // daemon.
  Result<QemuCaps> capabilities(const std::string& binary);

 private:
  Result<QemuCaps> run(const BinaryIdentity& binary);
  std::string cachePath(const BinaryIdentity& binary) const;

  ProbeOptions options_;
};

}  // namespace corral::qemu
