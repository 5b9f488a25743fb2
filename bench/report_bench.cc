// Cost of a Guru Meditation Report (util/report.h), against a reference
// measured in the same run: reading /proc/self/status once (one small /proc
// file, what the cheapest "how is the process doing" probe costs).
//
// Figures:
//   - build a report with the generic sections (package, process, threads)
//     in this process (the benchmark's own threads: main only);
//   - threadsSection alone with 8 and with 32 extra idle threads (parked on a
//     condition variable), which is where the cost grows: one signal, one
//     unwind and one semaphore round trip per thread, then symbolizing;
//   - the sampling alone (no symbolizing) with 8 and 32 idle threads;
//   - processSection alone and the text view of a built report.
// Each is printed as a ratio to the reference at the end.
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <benchmark/benchmark.h>

#include "util/report.h"
#include "util/stacks.h"

namespace {

using corral::util::Report;
using corral::util::Reporter;

std::map<std::string, double> gNsPerOp;  // benchmark name -> ns per iteration, for the ratios

void record(benchmark::State& state, const std::string& name, std::chrono::steady_clock::time_point t0) {
  double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  gNsPerOp[name] = ns / static_cast<double>(state.iterations());
}

// N threads parked until the object goes away.
class IdleThreads {
 public:
  explicit IdleThreads(int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stop_; });
      });
    }
  }
  ~IdleThreads() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

void BM_ReferenceReadProcStatus(benchmark::State& state) {
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::ifstream in("/proc/self/status");
    std::ostringstream ss;
    ss << in.rdbuf();
    benchmark::DoNotOptimize(ss.str());
  }
  record(state, "reference: read /proc/self/status", t0);
}
BENCHMARK(BM_ReferenceReadProcStatus)->Unit(benchmark::kMicrosecond);

void BM_BuildReport(benchmark::State& state) {
  Reporter r;
  corral::util::addGenericSections(r);
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    Report rep = r.build("bench");
    benchmark::DoNotOptimize(rep.sections.size());
  }
  record(state, "build report (package, process, threads)", t0);
}
BENCHMARK(BM_BuildReport)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_ThreadsSection(benchmark::State& state) {
  IdleThreads idle(static_cast<int>(state.range(0)));
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto j = corral::util::threadsSection();
    benchmark::DoNotOptimize(j.size());
  }
  record(state, "threadsSection, " + std::to_string(state.range(0)) + " idle threads", t0);
}
BENCHMARK(BM_ThreadsSection)->Arg(8)->Arg(32)->Unit(benchmark::kMillisecond)->UseRealTime();

// The sampling alone (signals, unwinds, semaphores; no symbolizing), to split threadsSection's cost.
void BM_SampleThreadStacks(benchmark::State& state) {
  IdleThreads idle(static_cast<int>(state.range(0)));
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto stacks = corral::util::sampleThreadStacks(std::chrono::milliseconds(500));
    benchmark::DoNotOptimize(stacks.ok());
  }
  record(state, "sampling only, " + std::to_string(state.range(0)) + " idle threads", t0);
}
BENCHMARK(BM_SampleThreadStacks)->Arg(8)->Arg(32)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_ProcessSection(benchmark::State& state) {
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto j = corral::util::processSection();
    benchmark::DoNotOptimize(j.size());
  }
  record(state, "processSection", t0);
}
BENCHMARK(BM_ProcessSection)->Unit(benchmark::kMicrosecond);

void BM_TextView(benchmark::State& state) {
  Reporter r;
  corral::util::addGenericSections(r);
  Report rep = r.build("bench");
  auto t0 = std::chrono::steady_clock::now();
  for (auto _ : state) {
    std::string text = rep.toText();
    benchmark::DoNotOptimize(text.size());
  }
  record(state, "toText of a built report", t0);
}
BENCHMARK(BM_TextView)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  const std::string ref = "reference: read /proc/self/status";
  auto it = gNsPerOp.find(ref);
  if (it == gNsPerOp.end() || it->second <= 0) return 0;
  std::printf("\nratios against the reference (%.1f us per read of /proc/self/status):\n", it->second / 1000);
  for (const auto& [name, ns] : gNsPerOp) {
    if (name == ref) continue;
    std::printf("  %-45s %10.1f us  %8.1fx\n", name.c_str(), ns / 1000, ns / it->second);
  }
  return 0;
}
