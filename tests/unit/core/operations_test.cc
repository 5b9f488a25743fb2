// Proves Operations against a real SQLite store: a work's value or error becomes
// the row's result (internal errors and exceptions without their message),
// progress reaches the row (rate-limited), wait() returns when the operation
// ends and also at its timeout, a pool of 2 runs 2 and keeps the rest pending,
// operations of another daemon are waited for by polling, rows left unfinished
// are failed by the store at start, and the destructor leaves nothing pending.
#include "core/operations.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/temp_dir.h"

namespace corral::core {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using store::OperationRecord;

// A door the test opens; work blocks on it so that states can be observed.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).take();
  }

  OperationRecord startOk(Operations& ops, Operations::Work work, std::string kind = "vm.start",
                          std::string target = "web1", std::string requester = "alice") {
    auto op = ops.start(std::move(kind), std::move(target), std::move(requester), std::move(work));
    EXPECT_TRUE(op.ok()) << op.error().describe();
    return op.ok() ? *op : OperationRecord{};
  }

  OperationRecord waitEnded(Operations& ops, const std::string& id) {
    auto op = ops.wait(id, 20s);
    EXPECT_TRUE(op.ok()) << op.error().describe();
    return op.ok() ? *op : OperationRecord{};
  }

  // Polls the store until pred holds for the row (or 10 s pass).
  template <class Pred>
  OperationRecord pollUntil(const std::string& id, Pred pred) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    for (;;) {
      auto found = store_->findOperation(id);
      EXPECT_TRUE(found.ok() && found->has_value());
      if (!found.ok() || !found->has_value()) return {};
      if (pred(**found) || std::chrono::steady_clock::now() > deadline) return **found;
      std::this_thread::sleep_for(5ms);
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
};

TEST_F(OperationsTest, StartRecordsPendingRowWithRandomHexId) {
  Operations ops(*store_, 1);
  Gate gate;
  std::set<std::string> ids;
  std::vector<std::string> order;
  for (int i = 0; i < 20; ++i) {
    auto op = startOk(ops, [&](const Operations::Progress&) -> Result<json> {
      gate.wait();
      return json::object();
    });
    EXPECT_EQ(op.state, "pending");
    EXPECT_EQ(op.kind, "vm.start");
    EXPECT_EQ(op.target, "web1");
    EXPECT_EQ(op.requester, "alice");
    EXPECT_FALSE(op.createdAt.empty());
    ASSERT_EQ(op.id.size(), 16u);
    EXPECT_EQ(op.id.find_first_not_of("0123456789abcdef"), std::string::npos) << op.id;
    ids.insert(op.id);
    order.push_back(op.id);
    auto stored = ops.get(op.id);
    ASSERT_TRUE(stored.ok());
    EXPECT_EQ(stored->kind, "vm.start");
  }
  EXPECT_EQ(ids.size(), 20u);
  gate.open();
  for (const auto& id : order) EXPECT_EQ(waitEnded(ops, id).state, "succeeded");
}

TEST_F(OperationsTest, ValueBecomesSucceededResult) {
  Operations ops(*store_, 2);
  auto op = startOk(ops, [](const Operations::Progress&) -> Result<json> { return json{{"name", "web1"}, {"n", 3}}; });
  auto done = waitEnded(ops, op.id);
  EXPECT_EQ(done.state, "succeeded");
  EXPECT_EQ(done.progress, 100);
  EXPECT_EQ(json::parse(done.result), (json{{"name", "web1"}, {"n", 3}}));
  EXPECT_EQ(ops.inFlight(), 0u);
}

TEST_F(OperationsTest, ErrorBecomesFailedResultInTheApiShape) {
  Operations ops(*store_, 2);
  auto op = startOk(ops, [](const Operations::Progress& progress) -> Result<json> {
    progress(40);
    return Error::invalidInput("memory", "99999", "exceeds the host's memory");
  });
  auto done = waitEnded(ops, op.id);
  EXPECT_EQ(done.state, "failed");
  EXPECT_EQ(done.progress, 40);  // where it stopped, not 100
  auto r = json::parse(done.result);
  EXPECT_EQ(r["code"], "invalid_input");
  EXPECT_EQ(r["field"], "memory");
  EXPECT_EQ(r["value"], "99999");
  EXPECT_EQ(r["message"], "memory: exceeds the host's memory");

  auto plain = startOk(ops, [](const Operations::Progress&) -> Result<json> {
    return Error::failedPrecondition("web1 is running");
  });
  auto r2 = json::parse(waitEnded(ops, plain.id).result);
  EXPECT_EQ(r2["code"], "failed_precondition");
  EXPECT_TRUE(r2["field"].is_null());
  EXPECT_TRUE(r2["value"].is_null());
}

TEST_F(OperationsTest, InternalErrorKeepsItsMessageOutOfTheResult) {
  Operations ops(*store_, 1);
  auto op = startOk(ops, [](const Operations::Progress&) -> Result<json> {
    return Error::internal("open /var/lib/corral/secret/key: permission denied");
  });
  auto done = waitEnded(ops, op.id);
  EXPECT_EQ(done.state, "failed");
  auto r = json::parse(done.result);
  EXPECT_EQ(r["code"], "internal");
  EXPECT_EQ(r["message"], "internal error");
  EXPECT_EQ(done.result.find("secret"), std::string::npos) << done.result;
}

TEST_F(OperationsTest, ExceptionBecomesFailedInternal) {
  Operations ops(*store_, 1);
  auto op = startOk(ops, [](const Operations::Progress&) -> Result<json> {
    throw std::runtime_error("boom at /etc/shadow");
  });
  auto done = waitEnded(ops, op.id);
  EXPECT_EQ(done.state, "failed");
  auto r = json::parse(done.result);
  EXPECT_EQ(r["code"], "internal");
  EXPECT_EQ(done.result.find("shadow"), std::string::npos) << done.result;
  // The pool survives it: the next operation runs.
  auto next = startOk(ops, [](const Operations::Progress&) -> Result<json> { return json(1); });
  EXPECT_EQ(waitEnded(ops, next.id).state, "succeeded");
}

TEST_F(OperationsTest, ProgressReachesTheStoreRateLimited) {
  // The rate limit reads the test's clock: time moves only when the test says.
  std::atomic<int64_t> nowMs{0};
  Operations ops(*store_, 1,
                 [&] { return std::chrono::steady_clock::time_point(std::chrono::milliseconds(nowMs.load())); });
  Gate reported, smallChange, later, atInterval, intervalWritten, finish;
  auto op = startOk(ops, [&](const Operations::Progress& progress) -> Result<json> {
    progress(10);  // a 10-point jump: written at once
    progress(12);  // 2 points in the same instant: not written
    reported.open();
    smallChange.wait();
    progress(13);  // 249 ms after the last write: still not written
    later.open();
    atInterval.wait();
    progress(14);  // 250 ms after it: even a small change is written
    intervalWritten.open();
    finish.wait();
    return json::object();
  });
  // Progress writes happen in the worker before progress() returns: once the
  // work opened a gate, the row shows exactly what was written before it.
  auto progressNow = [&] {
    auto row = store_->findOperation(op.id);
    EXPECT_TRUE(row.ok() && row->has_value());
    return row.ok() && row->has_value() ? (*row)->progress : -1;
  };
  reported.wait();
  EXPECT_EQ(progressNow(), 10);

  nowMs = 249;
  smallChange.open();
  later.wait();
  EXPECT_EQ(progressNow(), 10);

  nowMs = 250;
  atInterval.open();
  intervalWritten.wait();
  EXPECT_EQ(progressNow(), 14);

  finish.open();
  EXPECT_EQ(waitEnded(ops, op.id).progress, 100);
}

TEST_F(OperationsTest, WaitReturnsWhenTheOperationEnds) {
  Operations ops(*store_, 1);
  Gate gate;
  auto op = startOk(ops, [&](const Operations::Progress&) -> Result<json> {
    gate.wait();
    return json("done");
  });
  auto t0 = std::chrono::steady_clock::now();
  std::thread opener([&] {
    std::this_thread::sleep_for(100ms);
    gate.open();
  });
  auto done = ops.wait(op.id, 60s);
  auto took = std::chrono::steady_clock::now() - t0;
  opener.join();
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, "succeeded");
  EXPECT_EQ(json::parse(done->result), "done");
  EXPECT_LT(took, 30s);  // woken by the end, not by the timeout
}

TEST_F(OperationsTest, WaitReturnsTheRunningOperationAtTheTimeout) {
  Operations ops(*store_, 1);
  Gate gate;
  auto op = startOk(ops, [&](const Operations::Progress&) -> Result<json> {
    gate.wait();
    return json::object();
  });
  pollUntil(op.id, [](const OperationRecord& r) { return r.state == "running"; });
  auto t0 = std::chrono::steady_clock::now();
  auto still = ops.wait(op.id, 150ms);
  auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->state, "running");
  EXPECT_GE(took, 150ms);
  EXPECT_EQ(ops.inFlight(), 1u);
  gate.open();
  EXPECT_EQ(waitEnded(ops, op.id).state, "succeeded");
  // An ended operation answers at once, whatever the timeout.
  auto again = ops.wait(op.id, 0ms);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->state, "succeeded");
}

TEST_F(OperationsTest, UnknownIdIsNotFound) {
  Operations ops(*store_, 1);
  for (std::string id : {"0123456789abcdef", "nope", "", "../../etc"}) {
    auto g = ops.get(id);
    ASSERT_FALSE(g.ok()) << id;
    EXPECT_EQ(g.error().code, ErrorCode::NotFound);
    auto w = ops.wait(id, 10ms);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error().code, ErrorCode::NotFound);
  }
}

TEST_F(OperationsTest, PoolOfTwoRunsTwoAndKeepsTheRestPending) {
  Operations ops(*store_, 2);
  Gate gate;
  std::mutex mu;
  std::condition_variable cv;
  int started = 0;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(startOk(
                      ops,
                      [&](const Operations::Progress&) -> Result<json> {
                        {
                          std::lock_guard lock(mu);
                          ++started;
                        }
                        cv.notify_all();
                        gate.wait();
                        return json::object();
                      },
                      "vm.start", fmt::format("web{}", i), fmt::format("user{}", i))
                      .id);
  }
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return started == 2; }));
  }
  EXPECT_EQ(ops.inFlight(), 5u);
  auto rows = store_->listOperations(10);
  ASSERT_TRUE(rows.ok());
  int running = 0, pending = 0;
  for (const auto& r : *rows) {
    running += r.state == "running";
    pending += r.state == "pending";
  }
  EXPECT_EQ(running, 2);
  EXPECT_EQ(pending, 3);
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(started, 2);
  }
  gate.open();
  for (const auto& id : ids) EXPECT_EQ(waitEnded(ops, id).state, "succeeded");
  EXPECT_EQ(ops.inFlight(), 0u);
  auto list = ops.list(3);
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 3u);
}

TEST_F(OperationsTest, WaitPollsForAnOperationAnotherDaemonRuns) {
  Operations ops(*store_, 1);
  OperationRecord foreign{.id = "00000000000000aa", .kind = "vm.stop", .target = "web2", .requester = "bob",
                          .state = "running", .createdAt = store::nowRfc3339(), .updatedAt = store::nowRfc3339()};
  ASSERT_TRUE(store_->insertOperation(foreign).ok());
  std::thread other([&] {
    std::this_thread::sleep_for(300ms);
    auto done = foreign;
    done.state = "succeeded";
    done.progress = 100;
    done.result = R"({"ok":true})";
    ASSERT_TRUE(store_->updateOperation(done).ok());
  });
  auto t0 = std::chrono::steady_clock::now();
  auto r = ops.wait(foreign.id, 20s);
  auto took = std::chrono::steady_clock::now() - t0;
  other.join();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state, "succeeded");
  EXPECT_LT(took, 10s);
  // And times out on one that does not end.
  foreign.id = "00000000000000bb";
  ASSERT_TRUE(store_->insertOperation(foreign).ok());
  auto still = ops.wait(foreign.id, 250ms);
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->state, "running");
}

TEST_F(OperationsTest, UnfinishedRowsOfADeadDaemonFailAndFinishedOnesStay) {
  {
    Operations ops(*store_, 1);
    auto op = startOk(ops, [](const Operations::Progress&) -> Result<json> { return json::object(); });
    EXPECT_EQ(waitEnded(ops, op.id).state, "succeeded");
  }
  // What a daemon killed mid-operation leaves behind.
  for (auto [id, state] : {std::pair{"00000000000000c1", "pending"}, std::pair{"00000000000000c2", "running"}}) {
    OperationRecord left{.id = id, .kind = "vm.start", .target = "web1", .requester = "alice", .state = state,
                         .progress = 30, .createdAt = store::nowRfc3339(), .updatedAt = store::nowRfc3339()};
    ASSERT_TRUE(store_->insertOperation(left).ok());
  }
  auto failed = store_->failUnfinishedOperations("the daemon stopped while the operation ran");
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(*failed, 2);

  Operations ops(*store_, 1);
  for (auto id : {"00000000000000c1", "00000000000000c2"}) {
    auto r = ops.wait(id, 5s);  // ended: answers at once
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->state, "failed");
  }
  auto all = ops.list(10);
  ASSERT_TRUE(all.ok());
  int succeeded = 0;
  for (const auto& r : *all) succeeded += r.state == "succeeded";
  EXPECT_EQ(succeeded, 1);
  // Nothing in flight to fail any more.
  EXPECT_EQ(*store_->failUnfinishedOperations("again"), 0);
}

// Proves the queue's fairness: one target runs one operation at a time, and one
// requester at most half the pool, while another requester's work still starts.
TEST_F(OperationsTest, OneTargetOrOneRequesterNeverHoldsEveryWorker) {
  Operations ops(*store_, 4);  // at most 2 per requester
  Gate gate;
  std::mutex mu;
  std::condition_variable cv;
  std::multiset<std::string> started;
  auto blocked = [&](std::string target) {
    return [&, target](const Operations::Progress&) -> Result<json> {
      {
        std::lock_guard lock(mu);
        started.insert(target);
      }
      cv.notify_all();
      gate.wait();
      return json::object();
    };
  };
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(startOk(ops, blocked("a"), "vm.stop", "a", "alice").id);
  for (const char* t : {"b", "c"}) ids.push_back(startOk(ops, blocked(t), "vm.start", t, "alice").id);
  ids.push_back(startOk(ops, blocked("e"), "vm.start", "e", "bob").id);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return started.size() == 3; }));
    EXPECT_EQ(started, (std::multiset<std::string>{"a", "b", "e"}))
        << "one of VM a's three stops; alice's second target; bob's despite alice's queue";
  }
  gate.open();
  for (const auto& id : ids) EXPECT_EQ(waitEnded(ops, id).state, "succeeded");
  std::lock_guard lock(mu);
  EXPECT_EQ(started.count("a"), 3u) << "the queued stops of VM a ran, one after another";
}

// Proves waitAsync never blocks its caller, answers every wait when the
// operation ends, answers at once when it has ended, and bounds one waiter's
// open waits while another waiter is unaffected.
TEST_F(OperationsTest, WaitAsyncAnswersLaterAndBoundsOpenWaitsPerWaiter) {
  Operations ops(*store_, 1);
  Gate gate;
  auto op = startOk(ops, [&](const Operations::Progress&) -> Result<json> {
    gate.wait();
    return json{{"done", true}};
  });
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> answers;
  auto record = [&](Result<OperationRecord> r) {
    {
      std::lock_guard lock(mu);
      answers.push_back(r.ok() ? r->state : r.error().message);
    }
    cv.notify_all();
  };
  for (size_t i = 0; i < Operations::kMaxWaitsPerWaiter; ++i) ASSERT_TRUE(ops.waitAsync(op.id, 60s, "alice", record).ok());
  {
    std::lock_guard lock(mu);
    EXPECT_TRUE(answers.empty()) << "nothing answered while the operation runs";
  }
  auto refused = ops.waitAsync(op.id, 60s, "alice", record);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, ErrorCode::RateLimited);
  ASSERT_TRUE(ops.waitAsync(op.id, 60s, "bob", record).ok()) << "another waiter is not refused";
  gate.open();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return answers.size() == Operations::kMaxWaitsPerWaiter + 1; }));
    for (const auto& a : answers) EXPECT_EQ(a, "succeeded");
    answers.clear();
  }
  // Ended: answered on the caller's thread, before waitAsync returns; alice's
  // waits were given back when they were answered.
  ASSERT_TRUE(ops.waitAsync(op.id, 60s, "alice", record).ok());
  std::lock_guard lock(mu);
  EXPECT_EQ(answers, std::vector<std::string>{"succeeded"});
}

// Proves the retention: ended operations older than the kept days go at once
// (and hourly after), recent and unfinished ones stay; 0 keeps everything.
TEST_F(OperationsTest, EndedOperationsOlderThanTheRetentionArePruned) {
  Operations ops(*store_, 1);
  auto row = [](std::string id, std::string state, std::string updated) {
    return OperationRecord{.id = id, .kind = "vm.start", .target = "web1", .requester = "alice", .state = state,
                           .createdAt = updated, .updatedAt = updated};
  };
  ASSERT_TRUE(store_->insertOperation(row("00000000000000d1", "succeeded", "2020-01-01T00:00:00Z")).ok());
  ASSERT_TRUE(store_->insertOperation(row("00000000000000d2", "running", "2020-01-01T00:00:00Z")).ok());
  ASSERT_TRUE(store_->insertOperation(row("00000000000000d3", "failed", store::nowRfc3339())).ok());
  auto none = ops.keepEndedFor(std::chrono::hours(0));
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0);
  auto pruned = ops.keepEndedFor(std::chrono::hours(24 * 30));
  ASSERT_TRUE(pruned.ok()) << pruned.error().describe();
  EXPECT_EQ(*pruned, 1);
  EXPECT_EQ(ops.get("00000000000000d1").error().code, ErrorCode::NotFound);
  EXPECT_TRUE(ops.get("00000000000000d2").ok());
  EXPECT_TRUE(ops.get("00000000000000d3").ok());
}

TEST_F(OperationsTest, DestructorFinishesQueuedAndRunningWork) {
  std::vector<std::string> ids;
  std::atomic<int> ran{0};
  {
    Operations ops(*store_, 2);
    for (int i = 0; i < 6; ++i)
      ids.push_back(startOk(ops, [&](const Operations::Progress&) -> Result<json> {
                      std::this_thread::sleep_for(20ms);
                      ++ran;
                      return json::object();
                    }).id);
  }
  EXPECT_EQ(ran.load(), 6);
  for (const auto& id : ids) {
    auto r = store_->findOperation(id);
    ASSERT_TRUE(r.ok() && r->has_value());
    EXPECT_EQ((*r)->state, "succeeded");
  }
  EXPECT_EQ(*store_->failUnfinishedOperations("x"), 0);
}

}  // namespace
}  // namespace corral::core
