// Long actions as operations (DESIGN.md, State and truth): each gets an id and a
// store row, runs on the operations pool, reports progress, and ends succeeded
// (result: the final object) or failed (result: the error JSON). Listable and
// waitable, so that an API call returns 202 at once and a client waits as long
// as it likes (`corral op wait ID`).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/store.h"
#include "util/result.h"

namespace corral::core {

class Operations {
 public:
  // Reports progress 0..100, or bytes done of a total (progress follows);
  // cheap, any thread, rate-limited store writes.
  class Progress {
   public:
    using Percent = std::function<void(int percent)>;
    using Bytes = std::function<void(int64_t done, int64_t total)>;
    Progress(Percent p, Bytes b = {}) : percent_(std::move(p)), bytes_(std::move(b)) {}
    void operator()(int percent) const {
      if (percent_) percent_(percent);
    }
    void bytes(int64_t done, int64_t total) const {
      if (bytes_) bytes_(done, total);
      else if (total > 0 && percent_) percent_(static_cast<int>(done * 100 / total));
    }

   private:
    Percent percent_;
    Bytes bytes_;
  };
  // The work: its value becomes the operation's result (state succeeded), its
  // Error the failure (state failed, result = the API's error JSON shape:
  // {"code", "message", "field", "value"}).
  using Work = std::function<Result<nlohmann::json>(const Progress& progress)>;

  // What the progress rate limit reads the time from; tests inject one.
  using Now = std::function<std::chrono::steady_clock::time_point()>;

  // threads: how many operations run at once; more wait as "pending". Queued
  // operations start in order, except that one target (a VM, an image: the
  // kind's prefix and the target) runs one operation at a time, and one
  // requester at most half the threads: 16 long stops of one VM, or one user's
  // flood, never occupy every worker. now: null = std::chrono::steady_clock::now.
  Operations(store::Store& store, size_t threads, Now now = {});
  // Waits for running operations to finish (a daemon stopping mid-operation
  // leaves no half-done work behind it; unfinished ones are failed on next start).
  ~Operations();
  Operations(const Operations&) = delete;
  Operations& operator=(const Operations&) = delete;

  // Records the operation (state "pending") and queues work; returns the record.
  Result<store::OperationRecord> start(std::string kind, std::string target, std::string requester, Work work);
  Result<store::OperationRecord> get(const std::string& id);  // NotFound when unknown
  // Calls done exactly once, never while the caller waits: when the operation
  // ends, or when timeout passes (with the operation as it then is), or at once
  // when it has ended already or is unknown (NotFound). The caller's thread is
  // never blocked. One that another process runs (a shared store) is polled.
  // `waiter` names whose wait it is ("" = corral's own, unlimited): each may
  // have kMaxWaitsPerWaiter open, and a further one is RateLimited.
  using Done = std::function<void(Result<store::OperationRecord>)>;
  static constexpr size_t kMaxWaitsPerWaiter = 16;
  Result<void> waitAsync(const std::string& id, std::chrono::milliseconds timeout, const std::string& waiter,
                         Done done);
  // Blocks until the operation has ended or timeout passed (then still running).
  // For corral's own callers and tests; the API uses waitAsync.
  Result<store::OperationRecord> wait(const std::string& id, std::chrono::milliseconds timeout);
  Result<std::vector<store::OperationRecord>> list(size_t limit);
  // One caller's operations: requested by them, or vm.* ones on vmTargets.
  Result<std::vector<store::OperationRecord>> listFor(const std::string& requester,
                                                      const std::vector<std::string>& vmTargets, size_t limit);
  // Ended operations last updated more than keep ago go (from this call on, also
  // hourly, on the waiter thread); 0 keeps them forever. Returns how many went now.
  Result<int64_t> keepEndedFor(std::chrono::hours keep);
  size_t inFlight() const;  // pending + running, for reports and metrics
  // For metrics: this process's operations now pending or running, by (kind,
  // state); and those ended since it started, by (kind, state "succeeded" or
  // "failed"). Any thread.
  struct Counts {
    std::map<std::pair<std::string, std::string>, uint64_t> inFlight;
    std::map<std::pair<std::string, std::string>, uint64_t> finished;
  };
  Counts counts() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace corral::core
