// Proves util::Command with real processes (coreutils only): argv and quoting,
// the environment allow-list, stdio to buffers/files/fds without deadlock, umask,
// working directory, rlimits, uid and capability changes, fd passing and closing,
// signal reset, clear child errors (missing program, chdir, preExec), exit-status
// policy, timeout, start/wait/abort, the pre-exec handshake, daemonize with a
// pidfile, and the dry-run hook that starts nothing.
#include "util/command.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "support/temp_dir.h"
#include "util/unique_fd.h"

namespace corral::util {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The "Name:\tvalue" line of a /proc/<pid>/status-like text.
std::string field(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(name + ":", 0) == 0) {
      auto v = line.substr(name.size() + 1);
      return v.substr(v.find_first_not_of(" \t"));
    }
  return {};
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

// Polls cond until it holds or 10 s pass (no sleep-and-hope: a deadline).
template <class F>
bool eventually(F cond) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return cond();
}

TEST(Command, PassesArgvVerbatim) {
  Command cmd("printf");
  cmd.arg("%s|\n").args({"a b", "it's", "\"q\"", ""}).argPair("--k", "v w");
  auto r = cmd.stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out, "a b|\nit's|\n\"q\"|\n|\n--k|\nv w|\n");
  EXPECT_TRUE(r->status.success());
}

TEST(Command, ArgFormatAndToStringQuoting) {
  Command cmd("qemu-img");
  cmd.setEnv("LANG", "C").arg("create").argFormat("{}M", 512).arg("a b").arg("it's").arg("");
  EXPECT_EQ(cmd.toString(), "LANG=C qemu-img create 512M 'a b' 'it'\\''s' ''");
}

TEST(Command, EnvironmentIsClearedByDefault) {
  auto r = Command("env").stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out, "");
}

TEST(Command, EnvironmentKeepsAndSets) {
  ASSERT_EQ(::setenv("CORRAL_TEST_KEPT", "kept value", 1), 0);
  ASSERT_EQ(::setenv("CORRAL_TEST_DROPPED", "x", 1), 0);
  auto r = Command("env")
               .keepEnv({"CORRAL_TEST_KEPT", "CORRAL_TEST_UNSET_IN_PARENT"})
               .setEnv("FOO", "bar=baz")
               .stdoutToBuffer()
               .run();
  ::unsetenv("CORRAL_TEST_KEPT");
  ::unsetenv("CORRAL_TEST_DROPPED");
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_THAT(r->out, HasSubstr("CORRAL_TEST_KEPT=kept value\n"));
  EXPECT_THAT(r->out, HasSubstr("FOO=bar=baz\n"));
  EXPECT_EQ(r->out.find("CORRAL_TEST_DROPPED"), std::string::npos);
  EXPECT_EQ(r->out.find("CORRAL_TEST_UNSET_IN_PARENT"), std::string::npos);
}

TEST(Command, StdinBufferThroughCatWithoutDeadlock) {
  std::string in;
  in.reserve(1 << 20);
  for (int i = 0; in.size() < (1u << 20); ++i) in += std::to_string(i) + '\n';
  auto r = Command("cat").stdinBuffer(in).stdoutToBuffer().stderrToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out.size(), in.size());
  EXPECT_TRUE(r->out == in);
  EXPECT_EQ(r->err, "");
}

TEST(Command, ProgramThatIgnoresStdinIsFine) {
  // true never reads: the parent's writes meet EPIPE, which is not an error.
  auto r = Command("true").stdinBuffer(std::string(1 << 20, 'x')).run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
}

TEST(Command, StdinFromFdAndStdoutToFd) {
  testing::TempDir dir;
  {
    std::ofstream(dir / "in") << "from a file\n";
  }
  UniqueFd in(::open((dir / "in").c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd out(::open((dir / "out").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(in && out);
  auto r = Command("cat").stdinFd(in.get()).stdoutToFd(out.get()).run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(readFile(dir / "out"), "from a file\n");
}

TEST(Command, StderrToFileAndStdoutToFileAppend) {
  testing::TempDir dir;
  auto err = (dir / "err").string();
  auto r = Command("ls").arg("/nonexistent-corral").stderrToFile(err).allowFailureStatus().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_NE(r->status.exitCode, 0);
  EXPECT_THAT(readFile(err), HasSubstr("nonexistent-corral"));
  struct stat st;
  ASSERT_EQ(::stat(err.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  auto out = (dir / "out").string();
  ASSERT_TRUE(Command("printf").arg("one\n").stdoutToFile(out).run().ok());
  ASSERT_TRUE(Command("printf").arg("two\n").stdoutToFile(out, /*append=*/true).run().ok());
  EXPECT_EQ(readFile(out), "one\ntwo\n");
  ASSERT_TRUE(Command("printf").arg("three\n").stdoutToFile(out).run().ok());
  EXPECT_EQ(readFile(out), "three\n");
}

TEST(Command, StderrToStdoutMergesIntoTheBuffer) {
  auto r = Command("ls").arg("/nonexistent-corral").stdoutToBuffer().stderrToStdout().allowFailureStatus().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_THAT(r->out, HasSubstr("nonexistent-corral"));
}

TEST(Command, UmaskAppliesInTheChild) {
  testing::TempDir dir;
  for (auto [mask, mode] : {std::pair{0077u, 0600u}, std::pair{0022u, 0644u}}) {
    auto path = (dir / fmt::format("f{:o}", mask)).string();
    auto r = Command("touch").arg(path).umask(mask).run();
    ASSERT_TRUE(r.ok()) << r.error().describe();
    struct stat st;
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, mode) << std::oct << mask;
  }
}

TEST(Command, WorkDirAppliesInTheChild) {
  testing::TempDir dir;
  auto r = Command("pwd").workDir(dir.str()).stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out, dir.str() + "\n");
}

TEST(Command, ChdirFailureIsReportedClearly) {
  auto r = Command("true").workDir("/nonexistent-corral").run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "chdir /nonexistent-corral: No such file or directory");
}

TEST(Command, NonZeroExitIsAnErrorWithStatusAndStderrTail) {
  auto r = Command("false").run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "false exited with status 1");

  auto l = Command("ls").arg("/nonexistent-corral").stderrToBuffer().run();
  ASSERT_FALSE(l.ok());
  EXPECT_THAT(l.error().message, HasSubstr("ls exited with status 2: "));
  EXPECT_THAT(l.error().message, HasSubstr("nonexistent-corral"));

  auto a = Command("false").allowFailureStatus().run();
  ASSERT_TRUE(a.ok()) << a.error().describe();
  EXPECT_EQ(a->status, (ExitStatus{1, 0, false}));
}

TEST(Command, MissingProgramGivesAClearError) {
  auto r = Command("corral-no-such-program").run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "exec corral-no-such-program: No such file or directory");
  EXPECT_EQ(r.error().code, ErrorCode::NotFound);

  // With a path the lookup is skipped and the error comes from the child's exec.
  auto p = Command("/nonexistent-corral/qemu-system-x86_64").run();
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().message, "exec /nonexistent-corral/qemu-system-x86_64: No such file or directory");
}

TEST(Command, PreExecFailureSurfacesAsTheRunError) {
  auto r = Command("true").preExec([]() -> Result<void> { return Error::failedPrecondition("no cgroup"); }).run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "preExec hook: no cgroup");
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);

  bool ranInParent = false;
  auto ok = Command("true").preExec([&]() -> Result<void> {
    ranInParent = true;  // written in the child's copy of memory only
    return {};
  }).run();
  ASSERT_TRUE(ok.ok()) << ok.error().describe();
  EXPECT_FALSE(ranInParent);
}

TEST(Command, TimeoutKillsTheProgram) {
  auto r = Command("sleep").arg("100").timeout(100ms).run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::Timeout);
  EXPECT_THAT(r.error().message, HasSubstr("sleep timed out after 100 ms"));
}

TEST(Command, StartWaitAbort) {
  Command done("true");
  ASSERT_TRUE(done.start().ok());
  auto st = done.wait();
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_TRUE(st->success());
  EXPECT_EQ(done.pid(), -1);

  Command cmd("sleep");
  cmd.arg("100");
  ASSERT_TRUE(cmd.start().ok());
  pid_t pid = cmd.pid();
  ASSERT_GT(pid, 0);
  auto w = cmd.wait(20ms);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().code, ErrorCode::Timeout);
  EXPECT_TRUE(alive(pid));
  auto a = cmd.abort(5s);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  EXPECT_EQ(a->signal, SIGTERM);
  EXPECT_EQ(a->describe(), "killed by signal 15 (Terminated)");
  EXPECT_FALSE(alive(pid));
  EXPECT_EQ(cmd.abort().error().code, ErrorCode::FailedPrecondition);
}

TEST(Command, ChildDoesNotInheritIgnoredTerm) {
  // The parent ignores TERM; the child must not inherit that (dispositions reset).
  struct sigaction ign = {}, old = {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGTERM, &ign, &old), 0);
  Command cmd("sleep");
  cmd.arg("100");
  auto started = cmd.start();
  ::sigaction(SIGTERM, &old, nullptr);
  ASSERT_TRUE(started.ok()) << started.error().describe();
  auto a = cmd.abort(5s);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  EXPECT_EQ(a->signal, SIGTERM);
}

TEST(Command, AbortKillsAProgramThatIgnoresTerm) {
  Command cmd("env");
  cmd.args({"--ignore-signal=TERM", "sleep", "100"});
  ASSERT_TRUE(cmd.start().ok());
  pid_t pid = cmd.pid();
  // Only once env has exec'd sleep is TERM surely ignored.
  ASSERT_TRUE(eventually([&] { return readFile(fmt::format("/proc/{}/comm", pid)) == "sleep\n"; }));
  auto a = cmd.abort(50ms);
  ASSERT_TRUE(a.ok()) << a.error().describe();
  EXPECT_EQ(a->signal, SIGKILL);
}

TEST(Command, ChildSignalsAreResetAndUnblocked) {
  struct sigaction ign = {}, old = {};
  ign.sa_handler = SIG_IGN;
  ASSERT_EQ(::sigaction(SIGUSR1, &ign, &old), 0);
  sigset_t usr2, oldMask;
  sigemptyset(&usr2);
  sigaddset(&usr2, SIGUSR2);
  ::pthread_sigmask(SIG_BLOCK, &usr2, &oldMask);
  // Signal 32 is glibc's own (sigaction refuses it), yet a parent may inherit
  // it ignored, as CI's did: the child must still start with it at default.
  struct KernelAction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    unsigned long mask;
  } ignore32 = {SIG_IGN, 0, nullptr, 0}, old32 = {};
  ASSERT_EQ(::syscall(SYS_rt_sigaction, 32, &ignore32, &old32, sizeof(unsigned long)), 0);
  auto r = Command("cat").arg("/proc/self/status").stdoutToBuffer().run();
  ::syscall(SYS_rt_sigaction, 32, &old32, nullptr, sizeof(unsigned long));
  ::pthread_sigmask(SIG_SETMASK, &oldMask, nullptr);
  ::sigaction(SIGUSR1, &old, nullptr);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(field(r->out, "SigIgn"), "0000000000000000");
  EXPECT_EQ(field(r->out, "SigBlk"), "0000000000000000");
}

TEST(Command, WaitCollectsBuffers) {
  Command cmd("cat");
  cmd.stdinBuffer("hello\n").stdoutToBuffer();
  ASSERT_TRUE(cmd.start().ok());
  auto st = cmd.wait(10s);
  ASSERT_TRUE(st.ok()) << st.error().describe();
  EXPECT_EQ(cmd.out(), "hello\n");
}

TEST(Command, DestructorAbortsAndReaps) {
  pid_t pid;
  {
    Command cmd("sleep");
    cmd.arg("100");
    ASSERT_TRUE(cmd.start().ok());
    pid = cmd.pid();
  }
  int st;
  EXPECT_EQ(::waitpid(pid, &st, WNOHANG), -1);  // already reaped: no zombie left
  EXPECT_EQ(errno, ECHILD);
}

TEST(Command, OnlyPassedFdsReachTheChild) {
  testing::TempDir dir;
  UniqueFd a(::open((dir / "a").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  UniqueFd b(::open((dir / "b").c_str(), O_RDWR | O_CREAT, 0600));  // no CLOEXEC on purpose
  ASSERT_TRUE(a && b);
  UniqueFd kept(::fcntl(a.get(), F_DUPFD_CLOEXEC, 40));
  UniqueFd leaked(::fcntl(b.get(), F_DUPFD, 50));  // inheritable, yet must be closed
  ASSERT_TRUE(kept && leaked);
  auto r = Command("ls").arg("/proc/self/fd").passFd(kept.get()).stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  std::istringstream in(r->out);
  std::set<int> fds;
  for (std::string line; std::getline(in, line);) fds.insert(std::stoi(line));
  EXPECT_TRUE(fds.count(0) && fds.count(1) && fds.count(2));
  EXPECT_TRUE(fds.count(kept.get())) << r->out;
  EXPECT_FALSE(fds.count(leaked.get())) << r->out;
  EXPECT_FALSE(fds.count(b.get())) << r->out;
  // ls itself holds one more (the directory it lists); nothing else.
  EXPECT_LE(fds.size(), 5u) << r->out;
}

TEST(Command, PassFdCloseInParent) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  UniqueFd readEnd(fds[0]);
  int writeEnd = fds[1];
  ASSERT_TRUE(Command("true").passFd(writeEnd, /*closeInParent=*/true).run().ok());
  EXPECT_EQ(::fcntl(writeEnd, F_GETFD), -1);  // closed by the Command
  char c;
  EXPECT_EQ(::read(readEnd.get(), &c, 1), 0);  // every write end gone: EOF
}

TEST(Command, PassFdRefusesStdio) {
  auto r = Command("true").passFd(1).run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().field, "passFd");
}

TEST(Command, MaxFilesShowsInProcLimits) {
  auto r = Command("cat").arg("/proc/self/limits").maxFiles(123).maxCore(0).stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_THAT(r->out, ::testing::ContainsRegex("Max open files +123 +123 +files"));
  EXPECT_THAT(r->out, ::testing::ContainsRegex("Max core file size +0 +0 +bytes"));
}

TEST(Command, UidSwitch) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto r = Command("id").uid(65534).gid(65534).stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out, "uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)\n");
  auto u = Command("id").arg("-u").uid(65534).stdoutToBuffer().run();
  ASSERT_TRUE(u.ok()) << u.error().describe();
  EXPECT_EQ(u->out, "65534\n");
}

TEST(Command, ClearCapsLeavesNoCapabilities) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto r = Command("cat").arg("/proc/self/status").clearCaps().stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(field(r->out, "CapEff"), "0000000000000000");
  EXPECT_EQ(field(r->out, "CapPrm"), "0000000000000000");
  EXPECT_EQ(field(r->out, "CapBnd"), "0000000000000000");
}

TEST(Command, AllowCapsKeepsOnlyThoseAcrossAUidSwitch) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  auto want = fmt::format("{:016x}", 1ULL << CAP_NET_ADMIN);
  auto root = Command("cat").arg("/proc/self/status").allowCaps({CAP_NET_ADMIN}).stdoutToBuffer().run();
  ASSERT_TRUE(root.ok()) << root.error().describe();
  EXPECT_EQ(field(root->out, "CapEff"), want);
  EXPECT_EQ(field(root->out, "CapBnd"), want);

  auto user = Command("cat").arg("/proc/self/status").uid(65534).gid(65534).allowCaps({CAP_NET_ADMIN})
                  .stdoutToBuffer().run();
  ASSERT_TRUE(user.ok()) << user.error().describe();
  EXPECT_EQ(field(user->out, "Uid"), "65534\t65534\t65534\t65534");
  EXPECT_EQ(field(user->out, "CapEff"), want);
}

TEST(Command, HandshakeHoldsTheChildBeforeExec) {
  Command cmd("sleep");
  cmd.arg("100").handshake();
  ASSERT_TRUE(cmd.start().ok());
  ASSERT_TRUE(cmd.waitForChildReady().ok());
  pid_t pid = cmd.pid();
  ASSERT_GT(pid, 0);
  auto comm = [&] { return readFile(fmt::format("/proc/{}/comm", pid)); };
  EXPECT_NE(comm(), "sleep\n");  // still our own image, held before exec
  auto n = cmd.notifyChild();
  ASSERT_TRUE(n.ok()) << n.error().describe();
  EXPECT_TRUE(eventually([&] { return comm() == "sleep\n"; }));
  ASSERT_TRUE(cmd.abort(5s).ok());
}

TEST(Command, HandshakeReportsExecErrorsFromNotify) {
  Command cmd("/nonexistent-corral/prog");
  cmd.handshake();
  ASSERT_TRUE(cmd.start().ok());
  ASSERT_TRUE(cmd.waitForChildReady().ok());
  auto n = cmd.notifyChild();
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.error().message, "exec /nonexistent-corral/prog: No such file or directory");
  EXPECT_EQ(cmd.pid(), -1);  // reaped
}

TEST(Command, AbortWhileHeldAtHandshake) {
  Command cmd("true");
  cmd.handshake();
  ASSERT_TRUE(cmd.start().ok());
  ASSERT_TRUE(cmd.waitForChildReady().ok());
  EXPECT_EQ(cmd.wait().error().code, ErrorCode::FailedPrecondition);
  EXPECT_TRUE(cmd.abort(5s).ok());
}

// Makes this process the subreaper of its orphaned descendants for the test's
// lifetime, so that a daemon can be reaped here instead of by init.
class SubreaperScope {
 public:
  SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
  ~SubreaperScope() { ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0); }
};

TEST(Command, DaemonizeWritesPidfileAndDetaches) {
  testing::TempDir dir;
  SubreaperScope subreaper;
  auto pidfile = (dir / "sleep.pid").string();
  auto r = Command("sleep").arg("100").daemonize(pidfile).run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  pid_t pid = r->daemonPid;
  ASSERT_GT(pid, 0);
  struct Reap {
    pid_t pid;
    ~Reap() {
      ::kill(pid, SIGKILL);
      int st;
      ::waitpid(pid, &st, 0);
    }
  } reap{pid};

  EXPECT_EQ(readFile(pidfile), fmt::format("{}\n", pid));
  struct stat st;
  ASSERT_EQ(::stat(pidfile.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  EXPECT_FALSE(std::filesystem::exists(pidfile + ".new"));
  EXPECT_TRUE(alive(pid));
  // Field 6 of /proc/PID/stat (after "pid (comm) state ppid pgrp") is the session.
  EXPECT_TRUE(eventually([&] { return readFile(fmt::format("/proc/{}/comm", pid)) == "sleep\n"; }));
  auto stat = readFile(fmt::format("/proc/{}/stat", pid));
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string state;
  pid_t ppid, pgrp, session;
  rest >> state >> ppid >> pgrp >> session;
  EXPECT_EQ(session, pid);
  EXPECT_EQ(ppid, ::getpid());  // reparented to us, the subreaper: not our direct child before
}

TEST(Command, DaemonizeExecErrorSurfaces) {
  testing::TempDir dir;
  SubreaperScope subreaper;
  auto pidfile = (dir / "x.pid").string();
  auto r = Command("/nonexistent-corral/qemu").daemonize(pidfile).run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "exec /nonexistent-corral/qemu: No such file or directory");
  EXPECT_FALSE(std::filesystem::exists(pidfile));
  int st;
  ::waitpid(-1, &st, 0);  // the failed daemon, reparented to us
}

TEST(Command, DaemonizeRefusesBuffers) {
  auto r = Command("true").daemonize("").stdoutToBuffer().run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
}

TEST(Command, DryRunSeesTheCallAndStartsNothing) {
  testing::TempDir dir;
  std::vector<DryRunCall> calls;
  ScopedDryRunForTest guard([&](const DryRunCall& c) {
    calls.push_back(c);
    return DryRunReply{ExitStatus{0, 0, false}, "fake out", "fake err", 0};
  });
  auto marker = (dir / "marker").string();
  auto r = Command("touch")
               .arg(marker)
               .setEnv("A", "b")
               .stdinBuffer("input")
               .stdoutToBuffer()
               .stderrToBuffer()
               .run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out, "fake out");
  EXPECT_EQ(r->err, "fake err");
  EXPECT_FALSE(std::filesystem::exists(marker));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].program, "touch");
  EXPECT_EQ(calls[0].argv, (std::vector<std::string>{"touch", marker}));
  EXPECT_EQ(calls[0].env, (std::map<std::string, std::string>{{"A", "b"}}));
  EXPECT_EQ(calls[0].stdinData, "input");
  EXPECT_EQ(calls[0].line, "A=b touch " + marker);
}

TEST(Command, DryRunFailureAndDaemonPid) {
  testing::TempDir dir;
  ScopedDryRunForTest guard([](const DryRunCall& c) {
    if (c.daemonize) return DryRunReply{ExitStatus{}, "", "", 4242};
    return DryRunReply{ExitStatus{3, 0, false}, "", "boom", 0};
  });
  auto f = Command("qemu-img").run();
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.error().message, "qemu-img exited with status 3: boom");

  auto pidfile = (dir / "vm.pid").string();
  auto d = Command("qemu-system-x86_64").daemonize(pidfile).run();
  ASSERT_TRUE(d.ok()) << d.error().describe();
  EXPECT_EQ(d->daemonPid, 4242);
  EXPECT_EQ(readFile(pidfile), "4242\n");
}

TEST(Command, ConcurrentRunsFromManyThreads) {
  // fork() while other threads allocate and start their own children: each run
  // must get exactly its own output (no fd of another run leaks into a child and
  // holds a pipe open).
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &failures] {
      for (int i = 0; i < 20; ++i) {
        std::string in = fmt::format("thread {} run {}\n", t, i) + std::string(10000, char('a' + t));
        auto r = Command("cat").stdinBuffer(in).stdoutToBuffer().timeout(30s).run();
        if (!r.ok() || r->out != in) ++failures;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(ExitStatus, Describes) {
  EXPECT_EQ((ExitStatus{1, 0, false}).describe(), "exited with status 1");
  EXPECT_EQ((ExitStatus{-1, 9, false}).describe(), "killed by signal 9 (Killed)");
  EXPECT_EQ((ExitStatus{-1, 11, true}).describe(), "killed by signal 11 (Segmentation fault) (core dumped)");
}

TEST(Command, IsMovable) {
  Command a("printf");
  a.arg("moved");
  Command b = std::move(a);
  auto r = b.stdoutToBuffer().run();
  ASSERT_TRUE(r.ok()) << r.error().describe();
  EXPECT_EQ(r->out, "moved");
  EXPECT_EQ(b.run().error().code, ErrorCode::FailedPrecondition);  // once per Command
}

}  // namespace
}  // namespace corral::util
