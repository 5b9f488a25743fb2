// RuntimeRecord: the JSON file (`machine.json`) in a guest's runtime directory that
// says what was launched there: argv, pid and the process's start time, the socket
// and pid file paths, the accelerator, a summary of the spec and the launch time.
//
// Machine writes it after a successful launch and reads it back to reattach after a
// daemon restart; the start time is what tells the guest from a process that got
// its pid later. Written 0600 and atomically (temp file + rename), so a reader
// never sees half a record. The format is add-only: readers ignore unknown keys,
// and `metadata` is free for upper layers (corral.metadata/v1).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "qemu/vm_spec.h"
#include "util/result.h"

namespace corral::qemu {

struct RuntimeRecord {
  static constexpr int kVersion = 1;
  static constexpr const char* kFileName = "machine.json";

  std::vector<std::string> argv;
  pid_t pid = 0;
  uint64_t startTime = 0;  // /proc/PID/stat field 22, ticks since boot
  RuntimePaths paths;
  std::string consoleLog;  // RotatingLog path of the serial console
  size_t consoleLogMaxBytes = 0;  // its bound; 0: unknown (readers pick a default)
  std::string qemuLog;     // QEMU's stderr
  std::string accel;       // "kvm" | "tcg"
  std::string name;        // spec summary, for operators reading the file
  std::string uuid;
  uint64_t memoryMib = 0;
  unsigned cpus = 0;
  std::string machineType;
  int64_t launchTimeUnix = 0;  // seconds since the epoch
  nlohmann::json metadata = nlohmann::json::object();

  nlohmann::json toJson() const;
  static Result<RuntimeRecord> fromJson(const nlohmann::json& j);

  // Fills the spec summary fields from `spec`.
  void summarize(const VmSpec& spec);

  // <dir>/machine.json
  static std::string pathIn(const std::string& runtimeDir);

  // Writes <dir>/machine.json, mode 0600, atomically.
  Result<void> write(const std::string& runtimeDir) const;
  // NotFound when there is no record; InvalidInput when it does not parse.
  static Result<RuntimeRecord> read(const std::string& runtimeDir);
};

}  // namespace corral::qemu
