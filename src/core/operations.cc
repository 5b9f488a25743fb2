// Operations: a store row per long action and a fixed pool of worker threads
// that runs them. The row is the truth that clients read (get, list, wait from
// any daemon); this process additionally keeps the operations it started and
// has not finished in memory, so that a wait on them is answered the moment
// they end (no thread blocks for it: waitAsync), and inFlight() needs no query.
// One thread ends waits at their deadline and polls the store for operations
// another process runs.
//
// A row moves pending -> running -> succeeded | failed, always written by the
// worker that owns it. Progress writes are rate-limited (kProgressInterval, or
// a jump of kProgressStep), because a copy loop may report thousands of times.
#include "core/operations.h"

#include "util/error_json.h"
#include "util/logging.h"
#include "util/report.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <future>
#include <list>
#include <set>
#include <exception>
#include <optional>
#include <random>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace corral::core {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kProgressInterval = std::chrono::milliseconds(250);
constexpr int kProgressStep = 5;
// How often wait() reads the store for an operation another process runs.
constexpr auto kPollInterval = std::chrono::milliseconds(200);
constexpr int kIdAttempts = 4;
constexpr auto kPruneInterval = std::chrono::hours(1);

bool ended(const store::OperationRecord& op) { return op.state == "succeeded" || op.state == "failed"; }

bool validId(const std::string& id) {
  return id.size() == 16 &&
         std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// The API's error JSON shape (util/error_json.h). Internal errors keep their
// message out of the record, which the requester sees; the log has it.
nlohmann::json errorResult(const Error& e, const std::string& opId) {
  if (e.code == ErrorCode::Internal) spdlog::error("operation failed op={}: {}", opId, e.message);
  return util::errorJson(e, "internal error");
}

}  // namespace

// One operation this process runs. mu serialises its store writes, so that a
// late progress report (from a thread the work left behind) can never land
// after the final state.
struct Tracked {
  std::mutex mu;
  store::OperationRecord record;
  bool finished = false;
  int lastWrittenProgress = 0;
  Clock::time_point lastWrite{};  // set by the first write (state "running")
};

struct Operations::Impl {
  Impl(store::Store& s, Operations::Now n) : store(s), now(n ? std::move(n) : Operations::Now(&Clock::now)) {}

  store::Store& store;
  const Operations::Now now;  // the progress rate limit's time

  // A queued operation: `key` (kind prefix + target) runs one at a time, and a
  // requester at most perRequester at once.
  struct Job {
    std::string key;
    std::string requester;
    std::function<void()> run;
  };
  // An open waitAsync.
  struct Waiter {
    std::string id;
    Clock::time_point deadline;
    std::string who;
    Operations::Done done;
  };

  mutable std::mutex mu;
  std::condition_variable workCv;    // workers: a job became eligible, or stopping
  std::condition_variable waiterCv;  // the waiter thread: a wait was added, or stopping
  std::deque<Job> queue;
  std::set<std::string> busyKeys;                  // keys of running jobs
  std::map<std::string, size_t> runningOf;         // requester -> running jobs
  size_t perRequester = 1;
  std::map<std::string, std::shared_ptr<Tracked>> live;  // pending + running, by id
  std::map<std::pair<std::string, std::string>, uint64_t> finished;  // (kind, state) -> count, for metrics
  std::list<Waiter> waiters;
  std::map<std::string, size_t> waitsOf;  // who -> open waits
  bool stopping = false;
  bool stoppingWaits = false;
  std::chrono::hours keep{0};          // ended operations older than this go; 0: kept
  Clock::time_point nextPrune = Clock::time_point::max();
  std::vector<std::thread> workers;
  std::thread waiterThread;

  std::mutex rngMu;
  std::random_device rng;  // the kernel's CSPRNG on Linux (getrandom)

  std::string newId() {
    std::lock_guard lock(rngMu);
    uint64_t v = (uint64_t(rng()) << 32) | uint64_t(rng());
    return fmt::format("{:016x}", v);
  }

  // mu held: the first queued job that may start now.
  std::deque<Job>::iterator eligible() {
    return std::find_if(queue.begin(), queue.end(), [&](const Job& j) {
      auto r = runningOf.find(j.requester);
      return !busyKeys.count(j.key) && (r == runningOf.end() || r->second < perRequester);
    });
  }

  void workerLoop() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu);
        // Drain the queue before leaving: a queued operation has a row that
        // says "pending", and the destructor promises to leave none behind.
        workCv.wait(lock, [&] { return (stopping && queue.empty()) || eligible() != queue.end(); });
        auto it = eligible();
        if (it == queue.end()) return;
        job = std::move(*it);
        queue.erase(it);
        busyKeys.insert(job.key);
        ++runningOf[job.requester];
      }
      job.run();
      {
        std::lock_guard lock(mu);
        busyKeys.erase(job.key);
        if (--runningOf[job.requester] == 0) runningOf.erase(job.requester);
      }
      workCv.notify_all();  // a job this one held back may start now
    }
  }

  // mu held: takes out the waits on `id` (all, or only those past their deadline).
  std::vector<Waiter> takeWaiters(const std::string* id, Clock::time_point expiredBy) {
    std::vector<Waiter> out;
    for (auto it = waiters.begin(); it != waiters.end();) {
      if ((id && it->id == *id) || (!id && it->deadline <= expiredBy)) {
        if (!it->who.empty() && --waitsOf[it->who] == 0) waitsOf.erase(it->who);
        out.push_back(std::move(*it));
        it = waiters.erase(it);
      } else {
        ++it;
      }
    }
    return out;
  }

  // Without mu: answers each wait with the operation as it is now.
  void answer(std::vector<Waiter>& ws, const std::optional<store::OperationRecord>& known = std::nullopt) {
    for (auto& w : ws) {
      Result<store::OperationRecord> r = known ? Result<store::OperationRecord>(*known) : getRow(w.id);
      w.done(std::move(r));
    }
  }

  Result<store::OperationRecord> getRow(const std::string& id) {
    if (!validId(id)) return Error::notFound(fmt::format("operation {} not found", id));
    auto found = store.findOperation(id);
    if (!found.ok()) return found.error();
    if (!found->has_value()) return Error::notFound(fmt::format("operation {} not found", id));
    return std::move(**found);
  }

  // Without mu: deletes the ended operations older than keep.
  Result<int64_t> prune() {
    std::chrono::hours k;
    {
      std::lock_guard lock(mu);
      k = keep;
    }
    const auto cutoff = std::chrono::system_clock::now() - k;
    auto n = store.deleteOperationsEndedBefore(util::formatRfc3339(std::chrono::system_clock::to_time_t(cutoff)));
    if (n.ok() && *n > 0) spdlog::info("operations: pruned {} ended more than {} h ago", *n, k.count());
    if (!n.ok()) spdlog::warn("operations: cannot prune: {}", n.error().describe());
    return n;
  }

  // Ends waits at their deadline, polls the store for those on operations
  // another process runs (they end without this process hearing of it), and
  // prunes old operations hourly.
  void waiterLoop() {
    std::unique_lock lock(mu);
    while (!stoppingWaits) {
      if (keep.count() > 0 && Clock::now() >= nextPrune) {
        nextPrune = Clock::now() + kPruneInterval;
        lock.unlock();
        (void)prune();
        lock.lock();
        continue;
      }
      Clock::time_point wake = keep.count() > 0 ? nextPrune : Clock::time_point::max();
      bool foreign = false;
      for (const auto& w : waiters) {
        wake = std::min(wake, w.deadline);
        foreign |= !live.count(w.id);
      }
      if (foreign) wake = std::min(wake, Clock::now() + kPollInterval);
      if (wake == Clock::time_point::max()) {
        waiterCv.wait(lock);
      } else {
        waiterCv.wait_until(lock, wake);
      }
      if (stoppingWaits) break;
      std::vector<Waiter> due = takeWaiters(nullptr, Clock::now());
      std::set<std::string> foreignIds;
      for (const auto& w : waiters)
        if (!live.count(w.id)) foreignIds.insert(w.id);
      lock.unlock();
      answer(due);
      std::vector<std::pair<std::string, store::OperationRecord>> endedRows;
      for (const auto& id : foreignIds) {
        auto row = getRow(id);
        if (row.ok() && ended(*row)) endedRows.emplace_back(id, *row);
      }
      lock.lock();
      for (auto& [id, row] : endedRows) {
        std::vector<Waiter> ws = takeWaiters(&id, {});
        lock.unlock();
        answer(ws, row);
        lock.lock();
      }
    }
  }

  // Writes t's record (caller holds t.mu); a failed write is logged, not fatal:
  // the work itself has happened, and the row is failed on the next start.
  void write(Tracked& t) {
    t.record.updatedAt = store::nowRfc3339();
    auto r = store.updateOperation(t.record);
    if (!r.ok()) spdlog::warn("operation op={}: cannot record state {}: {}", t.record.id, t.record.state, r.error().describe());
    t.lastWrittenProgress = t.record.progress;
    t.lastWrite = now();
  }

  void progress(Tracked& t, int percent, std::optional<std::pair<int64_t, int64_t>> bytes = std::nullopt) {
    percent = std::clamp(percent, 0, 100);
    std::lock_guard lock(t.mu);
    if (t.finished) return;
    if (bytes) std::tie(t.record.bytesDone, t.record.bytesTotal) = *bytes;
    if (percent == t.record.progress && !bytes) return;
    t.record.progress = percent;
    if (std::abs(percent - t.lastWrittenProgress) >= kProgressStep || now() - t.lastWrite >= kProgressInterval)
      write(t);
  }

  void run(const std::shared_ptr<Tracked>& t, const Work& work) {
    {
      std::lock_guard lock(t->mu);
      t->record.state = "running";
      write(*t);
    }
    const std::string id = t->record.id;
    Result<nlohmann::json> result = Error::internal("the operation did not run");
    Progress report([this, t](int percent) { progress(*t, percent); },
                    [this, t](int64_t done, int64_t total) {
                      int percent = total > 0 ? static_cast<int>(std::clamp<int64_t>(done, 0, total) * 100 / total) : 0;
                      progress(*t, percent, std::pair{done, total});
                    });
    try {
      result = work(report);
    } catch (const std::exception& e) {
      result = Error::internal(fmt::format("operation {} threw: {}", id, e.what()));
    } catch (...) {
      result = Error::internal(fmt::format("operation {} threw an unknown exception", id));
    }
    {
      std::lock_guard lock(t->mu);
      if (result.ok()) {
        t->record.state = "succeeded";
        t->record.progress = 100;
        t->record.result = result->dump();
      } else {
        t->record.state = "failed";
        t->record.result = errorResult(result.error(), id).dump();
      }
      t->finished = true;
      write(*t);
    }
    spdlog::info("operation {} op={} target={}: {}", t->record.kind, id, t->record.target, t->record.state);
    store::OperationRecord final;
    {
      std::lock_guard lock(t->mu);
      final = t->record;
    }
    std::vector<Waiter> ws;
    {
      std::lock_guard lock(mu);
      live.erase(id);
      ++finished[{final.kind, final.state}];
      ws = takeWaiters(&id, {});
    }
    answer(ws, final);
  }
};

Operations::Operations(store::Store& store, size_t threads, Now now)
    : impl_(std::make_unique<Impl>(store, std::move(now))) {
  threads = std::max<size_t>(threads, 1);
  impl_->perRequester = std::max<size_t>(1, threads / 2);
  impl_->workers.reserve(threads);
  for (size_t i = 0; i < threads; ++i) impl_->workers.emplace_back([impl = impl_.get()] { impl->workerLoop(); });
  impl_->waiterThread = std::thread([impl = impl_.get()] { impl->waiterLoop(); });
}

Operations::~Operations() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->workCv.notify_all();
  for (auto& w : impl_->workers) w.join();
  // Every operation has ended: the waits still open hear how it is now.
  std::vector<Impl::Waiter> left;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stoppingWaits = true;
    left = impl_->takeWaiters(nullptr, Clock::time_point::max());
  }
  impl_->waiterCv.notify_all();
  impl_->waiterThread.join();
  impl_->answer(left);
}

Result<store::OperationRecord> Operations::start(std::string kind, std::string target, std::string requester,
                                                 Work work) {
  auto t = std::make_shared<Tracked>();
  t->record.kind = std::move(kind);
  t->record.target = std::move(target);
  t->record.requester = std::move(requester);
  t->record.state = "pending";
  t->record.progress = 0;
  t->record.createdAt = t->record.updatedAt = store::nowRfc3339();
  // 64 random bits make a collision unlikely, not impossible: the store's
  // UNIQUE id says so, and another draw settles it.
  for (int attempt = 1;; ++attempt) {
    t->record.id = impl_->newId();
    auto r = impl_->store.insertOperation(t->record);
    if (r.ok()) break;
    if (r.error().code != ErrorCode::AlreadyExists || attempt == kIdAttempts)
      return r.error().context(fmt::format("recording operation {}", t->record.kind));
  }
  store::OperationRecord out = t->record;
  {
    std::lock_guard lock(impl_->mu);
    impl_->live.emplace(out.id, t);
    // The worker serves the request that started the operation: its log lines carry that request's id.
    std::string key = out.kind.substr(0, out.kind.find('.')) + ":" + out.target;
    impl_->queue.push_back(
        {std::move(key), out.requester,
         [impl = impl_.get(), t, work = std::move(work), rid = std::string(util::log::requestId()),
          what = std::string(util::log::requestWhat())] {
           util::log::RequestScope scope(rid, what);
           impl->run(t, work);
         }});
  }
  impl_->workCv.notify_all();
  return out;
}

Result<store::OperationRecord> Operations::get(const std::string& id) { return impl_->getRow(id); }

Result<void> Operations::waitAsync(const std::string& id, std::chrono::milliseconds timeout, const std::string& waiter,
                                   Done done) {
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  {
    std::lock_guard lock(impl_->mu);
    if (!waiter.empty() && impl_->waitsOf[waiter] >= kMaxWaitsPerWaiter) {
      if (impl_->waitsOf[waiter] == 0) impl_->waitsOf.erase(waiter);
      return Error::rateLimited(
          fmt::format("{} has {} waits open already; wait for one of them to end", waiter, kMaxWaitsPerWaiter), 5);
    }
    if (impl_->live.count(id) && timeout.count() > 0) {
      impl_->waiters.push_back({id, deadline, waiter, std::move(done)});
      if (!waiter.empty()) ++impl_->waitsOf[waiter];
      impl_->waiterCv.notify_one();
      return ok();
    }
  }
  // Not running here (ended already, unknown, or another process runs it), or
  // no time to wait: the store says how it is.
  auto row = get(id);
  if (!row.ok() || ended(*row) || timeout.count() <= 0) {
    done(std::move(row));
    return ok();
  }
  {
    std::lock_guard lock(impl_->mu);
    impl_->waiters.push_back({id, deadline, waiter, std::move(done)});
    if (!waiter.empty()) ++impl_->waitsOf[waiter];
  }
  impl_->waiterCv.notify_one();
  return ok();
}

Result<store::OperationRecord> Operations::wait(const std::string& id, std::chrono::milliseconds timeout) {
  auto answer = std::make_shared<std::promise<Result<store::OperationRecord>>>();
  auto future = answer->get_future();
  CORRAL_TRY(waitAsync(id, timeout, "", [answer](Result<store::OperationRecord> r) { answer->set_value(std::move(r)); }));
  return future.get();
}

Result<std::vector<store::OperationRecord>> Operations::list(size_t limit) { return impl_->store.listOperations(limit); }

Result<std::vector<store::OperationRecord>> Operations::listFor(const std::string& requester,
                                                                const std::vector<std::string>& vmTargets,
                                                                size_t limit) {
  return impl_->store.listOperationsFor(requester, vmTargets, limit);
}

Result<int64_t> Operations::keepEndedFor(std::chrono::hours keep) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->keep = keep;
    impl_->nextPrune = Clock::now() + kPruneInterval;
  }
  impl_->waiterCv.notify_one();
  return keep.count() > 0 ? impl_->prune() : Result<int64_t>(int64_t{0});
}

size_t Operations::inFlight() const {
  std::lock_guard lock(impl_->mu);
  return impl_->live.size();
}

Operations::Counts Operations::counts() const {
  Counts c;
  std::vector<std::shared_ptr<Tracked>> live;
  {
    std::lock_guard lock(impl_->mu);
    c.finished = impl_->finished;
    for (const auto& [id, t] : impl_->live) live.push_back(t);
  }
  // Each record's state under its own lock, never while holding impl_->mu.
  for (const auto& t : live) {
    std::lock_guard lock(t->mu);
    ++c.inFlight[{t->record.kind, t->record.state}];
  }
  return c;
}

}  // namespace corral::core
