// The Store interface: the desired and last observed state of this host's images
// and VMs. SQLite now (store/sqlite_store), PostgreSQL for fleets later.
//
// Records are plain values; the rules about them (validation, state transitions)
// live in core/. Every method is thread-safe. Uniqueness is enforced by the
// database itself, so two concurrent creates of one name give one row and one
// AlreadyExists.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace corral::store {

struct ImageRecord {
  int64_t id = 0;
  std::string name;
  std::string kind = "direct-boot";
  std::string kernel;  // absolute path of the image's own copy
  std::string initrd;  // empty: none
  std::string append;
  int64_t sizeBytes = 0;
  std::string createdAt;  // RFC 3339, UTC
};

struct VmRecord {
  int64_t id = 0;
  std::string name;
  std::string uuid;
  std::string image;  // image name (joined)
  int64_t imageId = 0;
  uint64_t memoryMib = 0;
  unsigned vcpus = 1;
  std::string onCrash = "restart";    // restart | stop | preserve
  std::string desiredState = "stopped";  // running | paused | stopped
  std::string state = "stopped";      // see core/vm_state.h
  std::string stateReason;
  std::optional<int64_t> pid;
  std::string accel;
  std::string createdAt;
  std::string updatedAt;
  int64_t version = 1;
};

// What changes when a VM's observed state changes.
struct VmStateUpdate {
  std::string state;
  std::string stateReason;
  std::optional<int64_t> pid;
  std::string accel;
  std::optional<std::string> desiredState;  // unchanged when empty
};

class Store {
 public:
  virtual ~Store() = default;

  virtual Result<ImageRecord> insertImage(const ImageRecord& image) = 0;
  virtual Result<std::optional<ImageRecord>> findImage(const std::string& name) = 0;
  virtual Result<std::vector<ImageRecord>> listImages() = 0;
  // NotFound when absent; FailedPrecondition naming the VMs when in use.
  virtual Result<void> deleteImage(const std::string& name) = 0;

  // AlreadyExists (field "name") when the name is taken; NotFound for an unknown image.
  virtual Result<VmRecord> insertVm(const VmRecord& vm) = 0;
  virtual Result<std::optional<VmRecord>> findVm(const std::string& name) = 0;
  virtual Result<std::vector<VmRecord>> listVms() = 0;
  virtual Result<VmRecord> updateVmState(const std::string& name, const VmStateUpdate& update) = 0;
  virtual Result<void> deleteVm(const std::string& name) = 0;

  // The schema version after migrations, for node verification and tests.
  virtual Result<int> schemaVersion() = 0;
};

// Opens (creating when absent) the SQLite database at path and applies every
// pending migration, each in its own transaction.
Result<std::unique_ptr<Store>> openSqliteStore(const std::string& path);

// Now in UTC as RFC 3339 with seconds ("2026-11-23T10:00:00Z").
std::string nowRfc3339();

}  // namespace corral::store
