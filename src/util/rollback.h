// Rollback: undo steps of a multi-step change unless the whole change succeeded
// (STYLE.md §6, after Incus' reverter).
//
//   Rollback rb;
//   auto disk = CORRAL_TRY(pool.create(spec.disk));  rb.add([&] { pool.remove(disk); });
//   CORRAL_TRY(store.insertVm(tx, vm));
//   rb.commit();  // not reached -> the undos run in reverse order
//
// Undo functions must be safe to run from a destructor: an exception thrown by one
// is caught and logged, and the remaining undos still run. What each undo does,
// and whether it can fail quietly, is the caller's business.
#pragma once

#include <functional>
#include <vector>

namespace corral::util {

class Rollback {
 public:
  Rollback() = default;
  // Runs the pending undos (newest first) unless commit() was called.
  ~Rollback();

  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  // Moving hands the pending undos over; the moved-from Rollback is empty.
  Rollback(Rollback&& other) noexcept;
  Rollback& operator=(Rollback&& other) noexcept;

  // Registers an undo for a step that just succeeded.
  void add(std::function<void()> undo);

  // The change succeeded: forget every undo.
  void commit() noexcept;

  // Runs the pending undos now, newest first, and forgets them.
  void rollbackNow() noexcept;

  // How many undos are pending.
  size_t size() const noexcept { return undos_.size(); }

 private:
  std::vector<std::function<void()>> undos_;
};

}  // namespace corral::util
