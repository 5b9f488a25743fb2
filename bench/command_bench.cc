// util::Command::run() of /bin/true against a bare posix_spawn() + waitpid() of
// the same program, in the same run.
//
// How to read it: divide BM_CommandRunTrue's time by BM_PosixSpawnTrue's. The
// ratio is what Command's safety costs on top of starting a process at all: the
// CLOEXEC status pipe and its read until exec, /dev/null opens, the mass close of
// fds, resetting every signal disposition, building argv/envp, the pidfd wait.
// posix_spawn uses vfork-style cloning while Command uses fork(), so the ratio
// grows with the parent's memory size; in a small process expect well under 2x.
// Both numbers are dominated by exec of the program: compare ratios between
// machines, never absolute times.
#include <spawn.h>
#include <sys/wait.h>

#include <benchmark/benchmark.h>

#include "util/command.h"

extern char** environ;

namespace {

void BM_CommandRunTrue(benchmark::State& state) {
  for (auto _ : state) {
    auto r = corral::util::Command("/bin/true").run();
    if (!r.ok()) {
      state.SkipWithError(r.error().message.c_str());
      break;
    }
  }
}
BENCHMARK(BM_CommandRunTrue)->Unit(benchmark::kMicrosecond);

void BM_PosixSpawnTrue(benchmark::State& state) {
  char arg0[] = "/bin/true";
  char* argv[] = {arg0, nullptr};
  char* envp[] = {nullptr};
  for (auto _ : state) {
    pid_t pid;
    if (::posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, envp) != 0) {
      state.SkipWithError("posix_spawn failed");
      break;
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    benchmark::DoNotOptimize(status);
  }
}
BENCHMARK(BM_PosixSpawnTrue)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
