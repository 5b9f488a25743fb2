// Operations: a store row per long action and a fixed pool of worker threads
// that runs them. The row is the truth that clients read (get, list, wait from
// any daemon); this process additionally keeps the operations it started and
// has not finished in memory, so that wait() on them sleeps on a condition
// variable instead of polling, and inFlight() needs no query.
//
// A row moves pending -> running -> succeeded | failed, always written by the
// worker that owns it. Progress writes are rate-limited (kProgressInterval, or
// a jump of kProgressStep), because a copy loop may report thousands of times.
#include "core/operations.h"

#include "util/error_json.h"
#include "util/logging.h"

#include <algorithm>
#include <cstdlib>
#include <deque>
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

  mutable std::mutex mu;
  std::condition_variable workCv;  // workers: queue not empty or stopping
  std::condition_variable doneCv;  // waiters: an operation ended
  std::deque<std::function<void()>> queue;
  std::map<std::string, std::shared_ptr<Tracked>> live;  // pending + running, by id
  std::map<std::pair<std::string, std::string>, uint64_t> finished;  // (kind, state) -> count, for metrics
  bool stopping = false;
  std::vector<std::thread> workers;

  std::mutex rngMu;
  std::random_device rng;  // the kernel's CSPRNG on Linux (getrandom)

  std::string newId() {
    std::lock_guard lock(rngMu);
    uint64_t v = (uint64_t(rng()) << 32) | uint64_t(rng());
    return fmt::format("{:016x}", v);
  }

  void workerLoop() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu);
        workCv.wait(lock, [&] { return stopping || !queue.empty(); });
        // Drain the queue before leaving: a queued operation has a row that
        // says "pending", and the destructor promises to leave none behind.
        if (queue.empty()) return;
        job = std::move(queue.front());
        queue.pop_front();
      }
      job();
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
    std::pair<std::string, std::string> outcome;
    {
      std::lock_guard lock(t->mu);
      outcome = {t->record.kind, t->record.state};
    }
    {
      std::lock_guard lock(mu);
      live.erase(id);
      ++finished[outcome];
    }
    doneCv.notify_all();
  }
};

Operations::Operations(store::Store& store, size_t threads, Now now)
    : impl_(std::make_unique<Impl>(store, std::move(now))) {
  threads = std::max<size_t>(threads, 1);
  impl_->workers.reserve(threads);
  for (size_t i = 0; i < threads; ++i) impl_->workers.emplace_back([impl = impl_.get()] { impl->workerLoop(); });
}

Operations::~Operations() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->workCv.notify_all();
  for (auto& w : impl_->workers) w.join();
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
    impl_->queue.emplace_back([impl = impl_.get(), t, work = std::move(work), rid = std::string(util::log::requestId()),
                               what = std::string(util::log::requestWhat())] {
      util::log::RequestScope scope(rid, what);
      impl->run(t, work);
    });
  }
  impl_->workCv.notify_one();
  return out;
}

Result<store::OperationRecord> Operations::get(const std::string& id) {
  if (!validId(id)) return Error::notFound(fmt::format("operation {} not found", id));
  auto found = impl_->store.findOperation(id);
  if (!found.ok()) return found.error();
  if (!found->has_value()) return Error::notFound(fmt::format("operation {} not found", id));
  return std::move(**found);
}

Result<store::OperationRecord> Operations::wait(const std::string& id, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + std::max(timeout, std::chrono::milliseconds(0));
  {
    std::unique_lock lock(impl_->mu);
    if (impl_->live.count(id)) {
      impl_->doneCv.wait_until(lock, deadline, [&] { return !impl_->live.count(id); });
      lock.unlock();
      return get(id);
    }
  }
  // Not running here: ended already, or another daemon (sharing the store) runs it.
  for (;;) {
    auto op = get(id);
    if (!op.ok() || ended(*op)) return op;
    auto now = Clock::now();
    if (now >= deadline) return op;
    std::this_thread::sleep_for(std::min<Clock::duration>(kPollInterval, deadline - now));
  }
}

Result<std::vector<store::OperationRecord>> Operations::list(size_t limit) { return impl_->store.listOperations(limit); }

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
