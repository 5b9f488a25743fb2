// Proves that util/proc reads a process's identity from /proc correctly and that
// processAlive() treats a zombie, a vanished pid and a reused pid (different start
// time) as dead, while a running process with the right start time is alive.
#include "util/proc.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(ProcStat, ParsesCommWithSpacesAndParens) {
  std::string text =
      "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 "
      "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto st = parseProcStat(text);
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_EQ(st->pid, 1234);
  EXPECT_EQ(st->comm, "a b) c)");
  EXPECT_EQ(st->state, 'S');
  EXPECT_EQ(st->ppid, 1);
  EXPECT_EQ(st->pgrp, 1234);
  EXPECT_EQ(st->session, 1234);
  EXPECT_EQ(st->startTime, 987654u);
  EXPECT_FALSE(st->finished());
}

TEST(ProcStat, ZombieAndDeadStatesAreFinished) {
  auto z = parseProcStat("5 (x) Z 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0");
  ASSERT_TRUE(z.ok()) << z.error().describe();
  EXPECT_TRUE(z->finished());
  auto x = parseProcStat("5 (x) X 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0");
  ASSERT_TRUE(x.ok());
  EXPECT_TRUE(x->finished());
}

TEST(ProcStat, RejectsGarbage) {
  EXPECT_FALSE(parseProcStat("").ok());
  EXPECT_FALSE(parseProcStat("12 (x S 1").ok());
  EXPECT_FALSE(parseProcStat("12 (x) S 1 2 3").ok());
  EXPECT_FALSE(parseProcStat("zz (x) S 1 5 5 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0").ok());
}

TEST(ProcStat, ReadsSelf) {
  auto st = readProcStat(::getpid());
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_EQ(st->pid, ::getpid());
  EXPECT_EQ(st->ppid, ::getppid());
  EXPECT_EQ(st->session, ::getsid(0));
  EXPECT_GT(st->startTime, 0u);
  EXPECT_TRUE(processAlive(::getpid(), st->startTime));
  // The same pid with another start time is someone else (a reused pid).
  EXPECT_FALSE(processAlive(::getpid(), st->startTime + 1));
}

TEST(ProcStat, ReadsCmdlineOfSelf) {
  auto argv = readProcCmdline(::getpid());
  ASSERT_TRUE(argv.ok()) << argv.error().describe();
  ASSERT_FALSE(argv->empty());
  // argv[0] names this test executable (whatever the build calls it), and the
  // executable /proc/self/exe points at is the one argv[0] names.
  const std::string exe = std::filesystem::read_symlink("/proc/self/exe").filename().string();
  EXPECT_EQ(std::filesystem::path(argv->front()).filename().string(), exe);
  EXPECT_NE(exe.find("_test"), std::string::npos) << exe;
}

TEST(ProcStat, MissingPidIsNotFound) {
  // pid_max is at most 2^22, so this pid cannot exist.
  auto st = readProcStat(1 << 23);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, ErrorCode::NotFound);
  EXPECT_FALSE(processAlive(1 << 23, 1));
  EXPECT_FALSE(processAlive(0, 0));
  EXPECT_FALSE(processAlive(-1, 0));
}

TEST(ProcStat, ZombieChildIsDead) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) ::_exit(3);
  // Until we reap it the child is a zombie: kill(pid, 0) would still succeed.
  uint64_t start = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool sawZombie = false;
  while (std::chrono::steady_clock::now() < deadline) {
    auto st = readProcStat(child);
    ASSERT_TRUE(st.ok()) << st.error().describe();
    start = st->startTime;
    if (st->state == 'Z') {
      sawZombie = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(sawZombie);
  EXPECT_EQ(::kill(child, 0), 0);
  EXPECT_FALSE(processAlive(child, start));
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(processAlive(child, start));
}

TEST(ProcStat, RunningChildIsAliveUntilKilled) {
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  auto start = processStartTime(child);
  ASSERT_TRUE(start.ok()) << start.error().describe();
  EXPECT_TRUE(processAlive(child, *start));
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_FALSE(processAlive(child, *start));
}

}  // namespace
}  // namespace corral::util
