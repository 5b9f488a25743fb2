// Proves ConsoleDrain against a stand-in for QEMU's serial chardev (a unix socket
// the test listens on, plain blocking I/O, no QEMU): the guest's bytes reach the
// log and the tap; keystrokes from write() reach the guest whole and in order; a
// guest that never reads makes write() refuse at the cap instead of blocking or
// growing, drops whole writes only, and recovers when the guest reads again; write()
// after close() is refused; a write error ends the drain; quiet() lets a viewer take
// the log's tail and register for live bytes and then see every byte of a flooding
// guest exactly once; close() with writes queued and in flight is clean (the
// sanitizer build runs this test too).
#include "qemu/console_drain.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/temp_dir.h"
#include "util/unique_fd.h"

namespace corral::qemu {
namespace {

using namespace std::chrono_literals;
using util::UniqueFd;

constexpr auto kLong = std::chrono::milliseconds(30s);  // only so that a broken drain cannot hang the test

bool pollUntil(const std::function<bool()>& done, std::chrono::milliseconds limit = kLong) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// "000000000\n000000001\n...": every position says where it is, so a gap or a
// repeated span anywhere shows up as a mismatch against the same offsets.
std::string countingPattern(size_t bytes) {
  std::string s;
  s.reserve(bytes + 16);
  for (size_t i = 0; s.size() < bytes; ++i) s += fmt::format("{:09}\n", i);
  s.resize(bytes);
  return s;
}

// QEMU's `-chardev socket,server=on` as far as the drain can tell: one listening
// unix socket, one accepted connection.
class FakeChardev {
 public:
  explicit FakeChardev(const std::string& path) : listen_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    EXPECT_TRUE(listen_) << std::strerror(errno);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
    EXPECT_EQ(::listen(listen_.get(), 1), 0) << std::strerror(errno);
  }

  // After ConsoleDrain::start (its connect completes against the backlog).
  void accept() {
    conn_.reset(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn_) << std::strerror(errno);
  }

  int fd() const { return conn_.get(); }

  // Blocking; the drain reads concurrently on the io threads.
  void sendAll(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(conn_.get(), data.data(), data.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      ASSERT_GT(n, 0) << std::strerror(errno);
      data.remove_prefix(static_cast<size_t>(n));
    }
  }

  // Reads until `want` bytes came (or the connection ended, or kLong passed).
  std::string receive(size_t want) {
    std::string got;
    char buf[16384];
    auto until = std::chrono::steady_clock::now() + kLong;
    while (got.size() < want && std::chrono::steady_clock::now() < until) {
      pollfd p{conn_.get(), POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      ssize_t n = ::recv(conn_.get(), buf, std::min(sizeof(buf), want - got.size()), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    return got;
  }

 private:
  UniqueFd listen_;
  UniqueFd conn_;
};

class ConsoleDrainSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Two io threads: the drain must be correct whatever number runs the io_context.
    for (int i = 0; i < 2; ++i) ioThreads_.emplace_back([this] { io_.run(); });
  }

  void TearDown() override {
    if (drain_) drain_->close();
    drain_.reset();
    work_.reset();
    for (auto& t : ioThreads_) t.join();
  }

  // Starts the drain on a fresh log of `logMax` bytes and accepts its connection.
  void start(size_t logMax = 1 << 20) {
    auto log = util::RotatingLog::open((dir_ / "console.log").string(), logMax);
    ASSERT_TRUE(log.ok()) << log.error().describe();
    log_ = std::shared_ptr<util::RotatingLog>(std::move(log).take());
    auto d = ConsoleDrain::start(io_, (dir_ / "serial.sock").string(), log_);
    ASSERT_TRUE(d.ok()) << d.error().describe();
    drain_ = std::move(d).take();
    guest_.accept();
  }

  // Writes numbered 1 KiB chunks to a guest that does not read until write()
  // has refused `refusalsWanted` of them. Returns what was accepted, in order.
  std::string fillUntilRefused(int refusalsWanted) {
    std::string accepted;
    int refusals = 0;
    // 64 MiB of attempts: far more than the cap plus any socket buffer.
    for (size_t i = 0; i < 65536 && refusals < refusalsWanted; ++i) {
      std::string chunk = fmt::format("{:09}\n", i);
      chunk.resize(1024, static_cast<char>('a' + i % 26));
      if (drain_->write(chunk)) {
        accepted += chunk;
      } else {
        ++refusals;
      }
      EXPECT_LE(drain_->pendingInputBytes(), ConsoleDrain::kMaxPendingInputBytes);
    }
    EXPECT_EQ(refusals, refusalsWanted) << "write() never refused a guest that does not read";
    return accepted;
  }

  corral::testing::TempDir dir_;
  FakeChardev guest_{(dir_ / "serial.sock").string()};
  boost::asio::io_context io_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(io_);
  std::vector<std::thread> ioThreads_;
  std::shared_ptr<util::RotatingLog> log_;
  std::shared_ptr<ConsoleDrain> drain_;
};

TEST_F(ConsoleDrainSocketTest, GuestOutputReachesLogAndTap) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::mutex mu;
  std::string tapped;
  drain_->setTap([&](std::string_view chunk) {
    std::lock_guard lock(mu);
    tapped += chunk;
  });
  const std::string out = countingPattern(300 * 1024);
  guest_.sendAll(out);
  ASSERT_TRUE(pollUntil([&] { return drain_->bytesDrained() == out.size(); }));
  EXPECT_EQ(log_->readTail(out.size() + 1), out);
  std::lock_guard lock(mu);
  EXPECT_EQ(tapped, out);
}

TEST_F(ConsoleDrainSocketTest, KeystrokesArriveWholeAndInOrder) {
  ASSERT_NO_FATAL_FAILURE(start());
  std::string expected;
  for (int i = 0; i < 5000; ++i) {
    std::string key = fmt::format("k{:05},", i);
    expected += key;
    ASSERT_TRUE(drain_->write(key)) << i;  // 35 KB in all: never near the cap
  }
  EXPECT_TRUE(drain_->write(""));
  EXPECT_EQ(guest_.receive(expected.size()), expected);
  EXPECT_TRUE(pollUntil([&] { return drain_->pendingInputBytes() == 0; }));
  EXPECT_FALSE(drain_->finished());
}

TEST_F(ConsoleDrainSocketTest, GuestThatDoesNotReadMakesWriteRefuseNotBlock) {
  ASSERT_NO_FATAL_FAILURE(start());
  // Reaching here at all proves write() never blocked; the bound proves the
  // daemon did not queue without limit (the rest sits in the kernel's buffer).
  const std::string accepted = fillUntilRefused(2000);
  EXPECT_LT(accepted.size(), 8u << 20);
  EXPECT_FALSE(drain_->finished());
  // A refusal drops a write whole: the guest gets exactly the accepted writes, in order.
  EXPECT_EQ(guest_.receive(accepted.size()), accepted);
  // Once the guest reads again, so does the drain.
  ASSERT_TRUE(pollUntil([&] { return drain_->pendingInputBytes() == 0; }));
  EXPECT_TRUE(drain_->write("after\n"));
  EXPECT_EQ(guest_.receive(6), "after\n");
}

TEST_F(ConsoleDrainSocketTest, WriteAfterCloseIsRefused) {
  ASSERT_NO_FATAL_FAILURE(start());
  drain_->close();
  EXPECT_TRUE(drain_->finished());
  EXPECT_FALSE(drain_->write("x"));
  EXPECT_FALSE(drain_->write(""));
  EXPECT_EQ(drain_->pendingInputBytes(), 0u);
  bool ran = false;
  drain_->quiet([&] { ran = true; });  // still runs fn: nothing is draining
  EXPECT_TRUE(ran);
}

TEST_F(ConsoleDrainSocketTest, WriteErrorEndsTheDrain) {
  ASSERT_NO_FATAL_FAILURE(start());
  // The guest side stops reading for good: the drain's next send fails with
  // EPIPE while its read side stays open, so only the write can end it.
  ASSERT_EQ(::shutdown(guest_.fd(), SHUT_RD), 0);
  EXPECT_TRUE(drain_->write("lost"));
  EXPECT_TRUE(pollUntil([&] { return drain_->finished(); }));
  EXPECT_FALSE(drain_->write("more"));
  EXPECT_TRUE(pollUntil([&] { return drain_->pendingInputBytes() == 0; }));
}

// What core/'s multiplexer does: inside quiet(), the log's tail is a viewer's
// history and the viewer joins the tap's fan-out. Each viewer checks its bytes
// against the guest's stream as they come, by position.
TEST_F(ConsoleDrainSocketTest, QuietGivesHistoryPlusLiveExactlyOnce) {
  ASSERT_NO_FATAL_FAILURE(start(256 * 1024));  // rotates many times under the flood
  const std::string out = countingPattern(4 << 20);
  constexpr size_t kTail = 64 * 1024;

  struct Viewer {
    uint64_t joinedAt = 0;  // bytes in the stream before its first live byte
    uint64_t next = 0;      // offset of the next live byte it expects
    bool historyOk = false;
    size_t mismatches = 0;
  };
  std::mutex fanMu;  // the fan-out's own lock: taken under the drain's, as in core/
  std::vector<std::unique_ptr<Viewer>> viewers;
  drain_->setTap([&](std::string_view chunk) {
    std::lock_guard lock(fanMu);
    for (auto& v : viewers) {
      if (v->next + chunk.size() > out.size() || out.compare(v->next, chunk.size(), chunk) != 0) ++v->mismatches;
      v->next += chunk.size();
    }
  });

  std::thread flood([&] {
    // Uneven sends so that chunk boundaries fall everywhere.
    size_t at = 0;
    for (size_t i = 0; at < out.size(); ++i) {
      size_t n = std::min(out.size() - at, 1 + (i * 7919) % 20000);
      guest_.sendAll(std::string_view(out).substr(at, n));
      at += n;
    }
  });
  ASSERT_TRUE(pollUntil([&] { return drain_->bytesDrained() > 0; }));
  while (viewers.size() < 64 && drain_->bytesDrained() < out.size()) {
    auto v = std::make_unique<Viewer>();
    drain_->quiet([&] {
      std::string history = log_->readTail(kTail);
      v->joinedAt = v->next = drain_->bytesDrained();
      v->historyOk = v->joinedAt <= out.size() && history.size() == std::min<uint64_t>(v->joinedAt, kTail) &&
                     out.compare(v->joinedAt - history.size(), history.size(), history) == 0;
      std::lock_guard lock(fanMu);
      viewers.push_back(std::move(v));
    });
    std::this_thread::sleep_for(1ms);
  }
  flood.join();
  ASSERT_TRUE(pollUntil([&] { return drain_->bytesDrained() == out.size(); }));
  drain_->setTap(nullptr);

  std::lock_guard lock(fanMu);
  ASSERT_FALSE(viewers.empty());
  for (size_t i = 0; i < viewers.size(); ++i) {
    const Viewer& v = *viewers[i];
    EXPECT_TRUE(v.historyOk) << "viewer " << i << " joined at " << v.joinedAt;
    EXPECT_EQ(v.mismatches, 0u) << "viewer " << i << " joined at " << v.joinedAt;
    EXPECT_EQ(v.next, out.size()) << "viewer " << i << " joined at " << v.joinedAt;
  }
}

TEST_F(ConsoleDrainSocketTest, CloseWithWritesPendingIsClean) {
  ASSERT_NO_FATAL_FAILURE(start());
  // One write in flight (the kernel buffer is full) and the queue at the cap.
  fillUntilRefused(10);
  EXPECT_GT(drain_->pendingInputBytes(), 0u);
  drain_->close();
  EXPECT_TRUE(drain_->finished());
  EXPECT_FALSE(drain_->write("x"));
  // The queue is dropped on the io side once the aborted write comes back.
  EXPECT_TRUE(pollUntil([&] { return drain_->pendingInputBytes() == 0; }));
  drain_.reset();  // handlers may still hold it; nothing may touch freed buffers
}

TEST_F(ConsoleDrainSocketTest, DroppedRightAfterCloseWithWritesQueued) {
  ASSERT_NO_FATAL_FAILURE(start());
  for (int i = 0; i < 64; ++i) drain_->write(std::string(1000, 'q'));
  drain_->close();
  drain_.reset();  // queued writeMore()/async_write handlers keep it alive until they run
}

}  // namespace
}  // namespace corral::qemu
