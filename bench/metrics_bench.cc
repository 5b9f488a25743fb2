// The cost of a GET /metrics scrape with 20 running guests (TCG, 128 MiB each),
// next to GET /api/v1/vms of the same daemon in the same run.
//
// Figures:
//   1. one scrape, wall time at the client, median of N (30); the reference is
//      GET /api/v1/vms (the 20 VMs' JSON, from its list cache), the two taking
//      turns so that a noisy neighbour weighs on both. The ratio is what
//      asking 20 QEMUs over QMP (two commands each, all at once), reading
//      /proc and formatting costs next to a cheap API call.
//   2. the scrape's size and number of samples, how many guests answered QMP,
//      and a few of corrald's own counters read from the last scrape (its
//      resident memory, the requests it counted, the QMP commands it timed).
//
// It starts its own corrald (--accel tcg) on a temp state dir and kills and
// reaps every process it made, and removes the temp dir, on every exit path.
// Paths: --bin DIR (default $CORRAL_BINARY_DIR/bin), --guest DIR (default
// <build>/guest). --vms V (20), --samples N (30), --keep-log FILE.
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "bench_daemon.h"
#include "bench_support.h"
#include "support/api_client.h"
#include "util/result.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using corral::Error;
using corral::Result;
using corral::bench::Clock;
using corral::bench::Daemon;
using corral::bench::describe;
using corral::bench::Janitor;
using corral::bench::median;
using corral::bench::msSince;
using corral::bench::Paths;
using corral::testing::ApiClient;
using json = nlohmann::json;

constexpr const char* kReady = "CORRAL-GUEST-READY";

struct Options {
  int bootSeconds = 300;
  int vms = 20;
  int samples = 30;
  std::string keepLog;
};

// Sum of the values of every sample line starting with prefix; count in *n.
double sumOf(const std::string& text, const std::string& prefix, int* n = nullptr) {
  double sum = 0;
  int count = 0;
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + at, end - at);
    if (line.substr(0, prefix.size()) == prefix) {
      size_t sp = line.rfind(' ');
      sum += std::strtod(std::string(line.substr(sp + 1)).c_str(), nullptr);
      ++count;
    }
    at = end + 1;
  }
  if (n != nullptr) *n = count;
  return sum;
}

Result<void> run(const Paths& paths, const fs::path& root, const Options& o) {
  Daemon d("metrics_bench", paths, root, o.keepLog);
  CORRAL_TRY(d.start());
  CORRAL_TRY(d.importGuest("guest"));
  std::printf("  corrald %s, accel tcg, %d guests of 128 MiB\n",
              d.node().value("qemu_version", std::string("?")).c_str(), o.vms);
  for (int i = 0; i < o.vms; ++i)
    CORRAL_TRY(d.cli({"vm", "create", fmt::format("mb{}", i), "--image", "guest", "--memory", "128", "--start"}));
  // Every guest running (the CLI's --start waits for the operation).
  const json list = CORRAL_TRY(d.api("GET", "/api/v1/vms"));
  int running = 0;
  for (const auto& vm : list.value("vms", json::array()))
    if (vm.value("state", "") == "running") ++running;
  if (running != o.vms) return Error::internal(fmt::format("{} of {} guests running: {}", running, o.vms, list.dump()));

  const ApiClient api = ApiClient::unixSocket(d.socket());
  // Measured once every guest has booted to its shell: a booting guest keeps
  // QEMU's main loop (and so its QMP replies) busy under TCG.
  const auto deadline = Clock::now() + std::chrono::seconds(o.bootSeconds);
  for (int i = 0; i < o.vms; ++i) {
    const std::string target = fmt::format("/api/v1/vms/mb{}/log", i);
    while (api.get(target).body.find(kReady) == std::string::npos) {
      if (Clock::now() > deadline) return Error::timeout(fmt::format("mb{} did not boot in {} s", i, o.bootSeconds));
      std::this_thread::sleep_for(200ms);
    }
  }
  std::vector<double> scrapes, lists;
  std::string last;
  auto once = [&](const char* target, std::vector<double>& into, std::string* body) -> Result<void> {
    auto t0 = Clock::now();
    auto r = api.get(target);
    double ms = msSince(t0);
    if (r.status != 200) return Error::internal(fmt::format("GET {}: {} {}", target, r.status, r.body));
    into.push_back(ms);
    if (body != nullptr) *body = std::move(r.body);
    return corral::ok();
  };
  // One warm-up each, not counted.
  std::vector<double> ignored;
  CORRAL_TRY(once("/metrics", ignored, nullptr));
  CORRAL_TRY(once("/api/v1/vms", ignored, nullptr));
  for (int i = 0; i < o.samples; ++i) {
    if (i % 2 == 0) {
      CORRAL_TRY(once("/metrics", scrapes, &last));
      CORRAL_TRY(once("/api/v1/vms", lists, nullptr));
    } else {
      CORRAL_TRY(once("/api/v1/vms", lists, nullptr));
      CORRAL_TRY(once("/metrics", scrapes, &last));
    }
  }
  int samples = 0, upCount = 0;
  for (size_t at = 0; at < last.size();) {
    size_t end = last.find('\n', at);
    if (last[at] != '#') ++samples;
    at = end == std::string::npos ? last.size() : end + 1;
  }
  double up = sumOf(last, "corral_vm_qmp_up{", &upCount);
  std::printf("  GET /api/v1/vms  %s\n  GET /metrics     %s\n", describe(lists, "ms").c_str(),
              describe(scrapes, "ms").c_str());
  std::printf("  ratio (medians)  %.1fx\n", median(scrapes) / median(lists));
  std::printf("  scrape: %zu bytes, %d samples, QMP up %.0f of %d guests\n", last.size(), samples, up, upCount);
  std::printf(
      "  corrald: resident %.1f MiB, %.0f /metrics requests counted, %.0f QMP commands timed, "
      "guests' CPU %.1f s in all\n",
      sumOf(last, "process_resident_memory_bytes") / (1 << 20),
      sumOf(last, "corral_api_requests_total{method=\"GET\",route=\"/metrics\""),
      sumOf(last, "corral_qmp_command_duration_seconds_count"), sumOf(last, "corral_vm_cpu_seconds_total{"));
  for (const char* command : {"query-balloon", "query-blockstats"}) {
    const std::string labels = fmt::format("{{command=\"{}\"}}", command);
    const double n = sumOf(last, "corral_qmp_command_duration_seconds_count" + labels);
    const double sum = sumOf(last, "corral_qmp_command_duration_seconds_sum" + labels);
    if (n > 0)
      std::printf("  %s: mean %.1f ms over %.0f (a scrape sends it to every guest at once)\n", command, 1000 * sum / n,
                  n);
  }
  return corral::ok();
}

int usage() {
  std::fprintf(stderr,
               "usage: metrics_bench [--bin DIR] [--guest DIR] [--tmp DIR] [--vms V] [--samples N]\n"
               "                     [--keep-log FILE]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string build = corral::bench::envOr("CORRAL_BINARY_DIR", CORRAL_BINARY_DIR);
  Paths paths{fs::path(build) / "bin", fs::path(build) / "guest"};
  Options o;
  std::string tmp = "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[++i] : nullptr;
    if (v == nullptr) return usage();
    if (a == "--bin")
      paths.bin = v;
    else if (a == "--guest")
      paths.guest = v;
    else if (a == "--tmp")
      tmp = v;
    else if (a == "--vms")
      o.vms = std::max(1, std::atoi(v));
    else if (a == "--samples")
      o.samples = std::max(2, std::atoi(v));
    else if (a == "--keep-log")
      o.keepLog = v;
    else
      return usage();
  }
  auto made = corral::bench::beginDaemonBench("metrics_bench", tmp, "crmb");
  if (!made.ok()) {
    std::fprintf(stderr, "metrics_bench: %s\n", made.error().message.c_str());
    return 1;
  }
  int rc = 0;
  try {  // a malformed reply (nlohmann throws) still ends in the cleanup below
    if (auto r = run(paths, *made, o); !r.ok()) {
      std::fprintf(stderr, "metrics_bench: %s\n", r.error().describe().c_str());
      rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "metrics_bench: %s\n", e.what());
    rc = 1;
  }
  Janitor::get().cleanup();  // corrald, every QEMU, the temp dir
  return rc;
}
