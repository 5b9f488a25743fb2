// Storage: VM disks, image import and guest writes, each against a reference
// measured by this same process, in the same run, alternating with it.
//
//   1. clones: host::StoragePool::create on a "dir" pool (host::openPool) of a
//      linked clone (qcow2 overlay, linked=true) of two library images, a 100 MiB
//      qcow2 full of data and a sparse 20 GiB qcow2: median of N (20) each,
//      against the one qemu-img call a clone needs (`qemu-img create -f qcow2 -b
//      IMG -F qcow2`). Target: median <= 50 ms. Then full clones (linked=false)
//      of both, against `qemu-img convert -f qcow2 -O qcow2 IMG` (5 and 3 runs;
//      no target: a full copy costs what its data costs).
//   2. import: host::ImageLibrary::importDisk of a 512 MiB raw file of random
//      bytes (nothing sparse) against `qemu-img convert -f raw -O qcow2` of the
//      same file, median of M (5) each; throughput ratio corral/qemu-img. Target:
//      >= 0.90x. The source is read once before timing, so both sides read it
//      from the page cache; each output is deleted and sync(2)ed, untimed. Also
//      printed: SHA-256 of the source alone, which the import takes in a thread
//      beside qemu-img; it bounds the ratio (hash MiB/s / qemu-img MiB/s) even
//      with a core to spare, and adds to the import's time without one.
//   3. guest writes: a real corrald (--accel tcg) on a temp state dir, the test
//      guest imported through the CLI as a direct-boot image with
//      "corral.ddtest=/dev/vda" appended (scripts/guest/init: 64 MiB written with
//      dd conv=fsync, timed by the guest itself, each boot's lines told apart
//      by the boot id on its CORRAL-DD-START line), two VMs with `--disk 256M`, one
//      with `--encrypt` (LUKS), each started B (3) times, alternating; the figure
//      is read from `corral vm log`. Ratio LUKS/plain throughput; no target.
//      Also the end-to-end `POST /api/v1/vms` of a VM from the 100 MiB disk image
//      (a linked clone) against the same call for a VM without disks, median of N.
//
// How to read it: a ratio compares the two sides of one run; compare ratios
// between machines, never absolute times. Guest figures come from TCG, where
// the emulated CPU, not the disk, is usually the bottleneck.
//
// Clean-up: corrald (SIGKILL), every process whose command line names the temp
// dir (QEMUs, qemu-img) and the temp dir itself go on every exit path: normal
// end, error, SIGINT/SIGTERM/SIGHUP. Exits 1 when a part failed to run (a missed
// target is printed, never an error unless --strict).
// Paths: --bin DIR (corrald, corral; default $CORRAL_BINARY_DIR/bin), --guest DIR
// (the test guest; default $CORRAL_BINARY_DIR/guest, built by
// scripts/build-test-guest). --tmp DIR: where the temp dir goes (default /tmp;
// it needs ~1.5 GiB).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "host/image_library.h"
#include "host/qemu_img.h"
#include "host/state_dir.h"
#include "host/storage_pool.h"
#include "bench_daemon.h"
#include "bench_support.h"
#include "util/command.h"
#include "util/result.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using corral::Error;
using corral::ErrorCode;
using corral::Result;
using corral::bench::Clock;
using corral::bench::Daemon;
using corral::bench::describe;
using corral::bench::Janitor;
using corral::bench::list;
using corral::bench::median;
using corral::bench::msSince;
using corral::bench::Paths;
using corral::bench::readFile;
using corral::bench::tail;
using json = nlohmann::json;

constexpr int64_t kMiB = 1 << 20;

// ---------------------------------------------------------------------------
// The table.

struct Row {
  std::string what;
  std::string reference;
  std::string measured;
  std::string ratio;
  std::string target;
  std::optional<bool> met;  // nullopt: no target
};

void printTable(const std::vector<Row>& rows) {
  std::printf("\n%-40s %16s %16s %8s %10s\n", "benchmark", "reference", "corral", "ratio", "target");
  for (const auto& r : rows) {
    std::printf("%-40s %16s %16s %8s %10s  %s\n", r.what.c_str(), r.reference.c_str(), r.measured.c_str(),
                r.ratio.c_str(), r.target.c_str(), !r.met ? "" : *r.met ? "met" : "MISSED");
  }
}

// ---------------------------------------------------------------------------
// Fixtures.

// size bytes of pseudo-random data (splitmix64: incompressible, nothing sparse).
Result<void> writeRandomFile(const fs::path& path, int64_t size) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  std::vector<uint64_t> chunk(kMiB / sizeof(uint64_t));
  uint64_t x = 0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(::getpid());
  for (int64_t done = 0; done < size && out; done += kMiB) {
    for (auto& w : chunk) {
      uint64_t z = (x += 0x9e3779b97f4a7c15ull);
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      w = z ^ (z >> 31);
    }
    out.write(reinterpret_cast<const char*>(chunk.data()),
              static_cast<std::streamsize>(std::min<int64_t>(kMiB, size - done)));
  }
  out.close();
  if (!out) return corral::errorf(ErrorCode::Internal, "write {}: {}", path.string(), strerror(errno));
  return corral::ok();
}

// Reads the whole file, so that the page cache holds it.
void readThrough(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(kMiB);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
  }
}

Result<void> run(corral::util::Command cmd, const std::string& what) {
  cmd.keepEnv({"PATH"}).stdoutToBuffer().stderrToBuffer().timeout(600000ms);
  if (auto r = cmd.run(); !r.ok()) return r.error().context(what);
  return corral::ok();
}

Result<void> qemuImg(const std::vector<std::string>& args) {
  corral::util::Command c("qemu-img");
  c.args(args);
  return run(std::move(c), "qemu-img " + (args.empty() ? "" : args[0]));
}

void removeFile(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
}

struct Options {
  int clones = 20;     // linked clone samples per image
  int fullSmall = 5;   // full clones of the 100 MiB image
  int fullLarge = 3;   // full clones of the 20 GiB image
  int imports = 5;     // import samples per side
  int boots = 3;       // boots per VM
  int creates = 20;    // API creates per side
  bool strict = false;
  std::string keepLog;
};

struct Images {
  fs::path small;  // 100 MiB of data, qcow2
  fs::path large;  // 20 GiB virtual, sparse, qcow2
  int64_t smallSize = 100 * kMiB;
  int64_t largeSize = 20 * 1024 * kMiB;
};

Result<Images> makeImages(const fs::path& root) {
  Images im;
  const fs::path dir = root / "library";
  fs::create_directories(dir);
  const fs::path raw = root / "small.raw";
  CORRAL_TRY(writeRandomFile(raw, im.smallSize));
  im.small = dir / "small.qcow2";
  im.large = dir / "large.qcow2";
  CORRAL_TRY(qemuImg({"convert", "-f", "raw", "-O", "qcow2", raw.string(), im.small.string()}));
  removeFile(raw);
  CORRAL_TRY(qemuImg({"create", "-q", "-f", "qcow2", im.large.string(), std::to_string(im.largeSize)}));
  return im;
}

// ---------------------------------------------------------------------------
// 1. Clones on a dir pool.

struct CloneCase {
  std::string label;  // "100 MiB" ...
  std::string tag;    // volume name part
  fs::path image;
  int64_t size;
};

// One kind of clone of one image: pool.create against its qemu-img reference,
// alternating, n times each. Returns {reference ms, corral ms} samples.
Result<std::pair<std::vector<double>, std::vector<double>>> timeClones(corral::host::StoragePool& pool,
                                                                       const fs::path& refDir,
                                                                       const CloneCase& c, bool linked, int n) {
  std::vector<double> ref, ours;
  for (int i = 0; i < n; ++i) {
    auto runRef = [&]() -> Result<void> {
      const fs::path dst = refDir / fmt::format("{}-{}.qcow2", c.tag, i);
      std::vector<std::string> args =
          linked ? std::vector<std::string>{"create", "-q", "-f", "qcow2", "-b", c.image.string(), "-F", "qcow2",
                                            dst.string()}
                 : std::vector<std::string>{"convert", "-f", "qcow2", "-O", "qcow2", c.image.string(), dst.string()};
      const auto t0 = Clock::now();
      CORRAL_TRY(qemuImg(args));
      ref.push_back(msSince(t0));
      removeFile(dst);
      return corral::ok();
    };
    auto runOurs = [&]() -> Result<void> {
      corral::host::NewVolume v;
      v.name = fmt::format("{}-{}-{}", linked ? "linked" : "full", c.tag, i);
      v.cloneFrom = c.image.string();
      v.cloneFromFormat = "qcow2";
      v.cloneFromSize = c.size;
      v.linked = linked;
      const auto t0 = Clock::now();
      auto vol = pool.create(v);
      const double ms = msSince(t0);
      if (!vol.ok()) return vol.error().context("StoragePool::create " + v.name);
      if (vol->sizeBytes != c.size)
        return Error::internal(fmt::format("{}: size {} instead of {}", v.name, vol->sizeBytes, c.size));
      ours.push_back(ms);
      CORRAL_TRY(pool.remove(v.name));
      return corral::ok();
    };
    if (i % 2 == 0) {
      CORRAL_TRY(runRef());
      CORRAL_TRY(runOurs());
    } else {
      CORRAL_TRY(runOurs());
      CORRAL_TRY(runRef());
    }
    ::sync();  // a full copy's dirty pages weigh on neither side's next run
  }
  return std::pair{ref, ours};
}

Result<std::vector<Row>> benchClones(const fs::path& root, const Images& im, const Options& o,
                                     double* linkedSmallMedian) {
  corral::host::PoolConfig cfg;
  cfg.name = "bench";
  cfg.kind = "dir";
  cfg.path = (root / "pool").string();
  auto pool = CORRAL_TRY(corral::host::openPool(cfg, corral::host::QemuImg()));
  const fs::path refDir = root / "ref";
  fs::create_directories(refDir);
  const std::vector<CloneCase> cases{{"100 MiB", "small", im.small, im.smallSize},
                                     {"20 GiB sparse", "large", im.large, im.largeSize}};
  // Warm-up: qemu-img's binary and libraries, the images' headers.
  for (const auto& c : cases) CORRAL_TRY(timeClones(*pool, refDir, c, true, 1));

  std::vector<Row> rows;
  std::printf("  clones on a dir pool (reference: the bare qemu-img call; corral: StoragePool::create)\n");
  for (const auto& c : cases) {
    auto [ref, ours] = CORRAL_TRY(timeClones(*pool, refDir, c, true, o.clones));
    std::printf("    linked clone of %s, %d samples each\n      qemu-img create -b  %s\n      corral              %s\n",
                c.label.c_str(), o.clones, describe(ref, "ms").c_str(), describe(ours, "ms").c_str());
    const double m = median(ours);
    if (c.tag == "small" && linkedSmallMedian) *linkedSmallMedian = m;
    rows.push_back(Row{fmt::format("linked clone {}, median of {}", c.label, o.clones),
                       fmt::format("{:.1f} ms", median(ref)), fmt::format("{:.1f} ms", m),
                       fmt::format("{:.2f}x", m / median(ref)), "<= 50 ms", m <= 50});
  }
  for (const auto& c : cases) {
    const int n = c.tag == "small" ? o.fullSmall : o.fullLarge;
    auto [ref, ours] = CORRAL_TRY(timeClones(*pool, refDir, c, false, n));
    std::printf("    full clone of %s, %d samples each\n      qemu-img convert    %s\n      corral              %s\n",
                c.label.c_str(), n, describe(ref, "ms").c_str(), describe(ours, "ms").c_str());
    rows.push_back(Row{fmt::format("full clone {}, median of {}", c.label, n), fmt::format("{:.1f} ms", median(ref)),
                       fmt::format("{:.1f} ms", median(ours)), fmt::format("{:.2f}x", median(ours) / median(ref)),
                       "-", std::nullopt});
  }
  return rows;
}

// ---------------------------------------------------------------------------
// 2. Import throughput.

// Drops the file's pages from the page cache (it must be synced): the next
// reader reads the disk, as an import of a file just copied in or uploaded
// long ago does.
void dropFromCache(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// cold: the source is dropped from the page cache before every timed run (both
// sides read the disk); else both read it from the cache.
Result<Row> benchImport(const fs::path& root, const Options& o, bool cold) {
  constexpr int64_t kSize = 512 * kMiB;
  const fs::path src = root / "import.raw";
  CORRAL_TRY(writeRandomFile(src, kSize));
  ::sync();
  readThrough(src);  // warm: both sides read it from the page cache from here on
  auto prepare = [&] {
    ::sync();
    if (cold) dropFromCache(src);
  };
  corral::host::StateDir state(root / "lib");
  CORRAL_TRY(state.prepare());
  corral::host::ImageLibrary library(state);
  const fs::path refDst = root / "ref-import.qcow2";

  std::vector<double> ref, ours, hash;  // MiB/s
  // Not a side of the ratio: what the import's SHA-256 (taken in a thread beside
  // qemu-img) costs alone, to read the ratio by: with a core to spare it is free.
  auto runHash = [&]() -> Result<void> {
    const auto t0 = Clock::now();
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return Error::internal("sha256 init");
    std::ifstream in(src, std::ios::binary);
    std::vector<char> buf(kMiB);
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx.get(), md, &len);
    hash.push_back(static_cast<double>(kSize / kMiB) / (msSince(t0) / 1000));
    return corral::ok();
  };
  auto runRef = [&]() -> Result<void> {
    const auto t0 = Clock::now();
    CORRAL_TRY(qemuImg({"convert", "-f", "raw", "-O", "qcow2", src.string(), refDst.string()}));
    ref.push_back(static_cast<double>(kSize / kMiB) / (msSince(t0) / 1000));
    removeFile(refDst);
    return corral::ok();
  };
  auto runOurs = [&](int i) -> Result<void> {
    const std::string name = fmt::format("import{}", i);
    const auto t0 = Clock::now();
    auto img = library.importDisk(name, src.string(), corral::host::ImportOptions{});
    const double ms = msSince(t0);
    if (!img.ok()) return img.error().context("ImageLibrary::importDisk");
    if (img->virtualSize != kSize || img->sourceFormat != "raw" || img->sha256.size() != 64)
      return Error::internal(fmt::format("import: unexpected result: {} bytes, {}, sha256 {:?}", img->virtualSize,
                                         img->sourceFormat, img->sha256));
    ours.push_back(static_cast<double>(kSize / kMiB) / (ms / 1000));
    CORRAL_TRY(library.remove(name));
    return corral::ok();
  };
  // Warm-up: one of each (qemu-img, the hash's code paths).
  CORRAL_TRY(runRef());
  CORRAL_TRY(runOurs(0));
  ref.clear();
  ours.clear();
  ::sync();
  for (int i = 1; i <= o.imports; ++i) {
    if (i % 2 == 0) {
      prepare();
      CORRAL_TRY(runRef());
      prepare();
      CORRAL_TRY(runOurs(i));
    } else {
      prepare();
      CORRAL_TRY(runOurs(i));
      prepare();
      CORRAL_TRY(runRef());
    }
    prepare();
    CORRAL_TRY(runHash());
  }
  removeFile(src);
  std::printf("  import of a 512 MiB raw file (random bytes, %s), %d samples each\n"
              "    qemu-img convert -f raw -O qcow2   %s  [%s]\n    ImageLibrary::importDisk           %s  [%s]\n"
              "    (SHA-256 of the source alone       %s)\n",
              cold ? "read from disk" : "from the page cache", o.imports, describe(ref, "MiB/s").c_str(),
              list(ref).c_str(), describe(ours, "MiB/s").c_str(),
              list(ours).c_str(), describe(hash, "MiB/s").c_str());
  const double ratio = median(ours) / median(ref);
  return Row{fmt::format("import 512 MiB raw, {}, median of {}", cold ? "cold cache" : "warm cache", o.imports), fmt::format("{:.0f} MiB/s", median(ref)),
             fmt::format("{:.0f} MiB/s", median(ours)), fmt::format("{:.2f}x", ratio), ">= 0.90x", ratio >= 0.9};
}

// ---------------------------------------------------------------------------
// 3. A real corrald: guest writes, plain vs LUKS; API create from a disk image.

// This boot's part of a console log: from the first "CORRAL-DD-START boot=ID"
// line whose ID (the guest kernel's boot_id) `before` does not hold. Content
// alone cannot tell boots apart: two boots' output may be byte for byte the
// same (the same centis), and `corral vm log` shows only the latest run's log.
std::optional<std::string> thisBoot(const std::string& before, const std::string& now) {
  static const std::string kStart = "CORRAL-DD-START boot=";
  for (size_t p = now.find(kStart); p != std::string::npos; p = now.find(kStart, p + 1)) {
    const size_t eol = now.find('\n', p);
    if (eol == std::string::npos) break;
    if (before.find(now.substr(p, eol - p)) == std::string::npos) return now.substr(p);
  }
  return std::nullopt;
}

// Starts the VM, waits for its guest's dd figure in the console log, stops it.
// Returns MiB/s as the guest measured it.
Result<double> bootAndMeasure(Daemon& d, const std::string& vm) {
  std::string before;
  if (auto log = d.cli({"vm", "log", vm}); log.ok()) before = std::move(log).take();
  CORRAL_TRY(d.api("POST", fmt::format("/api/v1/vms/{}/actions/start", vm), json::object()));
  const auto deadline = Clock::now() + 180s;
  const std::string doneMark = "CORRAL-DD-DONE bytes=67108864 centis=";
  std::string now;
  std::optional<double> mibs;
  std::optional<Error> failed;
  while (!mibs && !failed) {
    std::this_thread::sleep_for(1s);  // the guest times itself: polling slowly only spares its CPU
    now = CORRAL_TRY(d.cli({"vm", "log", vm}));
    const std::string fresh = thisBoot(before, now).value_or("");
    if (auto p = fresh.find(doneMark); p != std::string::npos && fresh.find('\n', p) != std::string::npos) {
      const long centis = std::strtol(fresh.c_str() + p + doneMark.size(), nullptr, 10);
      if (centis <= 0) {
        failed = Error::internal(fmt::format("{}: bad timing line: {}", vm, fresh.substr(p, 80)));
      } else {
        mibs = 64.0 / (static_cast<double>(centis) / 100);
      }
    } else if (auto e = fresh.find("CORRAL-DD-ERROR"); e != std::string::npos) {
      failed = Error::internal(fmt::format("{}: the guest says: {}", vm, fresh.substr(e, fresh.find('\n', e) - e)));
    } else if (Clock::now() > deadline) {
      auto info = d.api("GET", "/api/v1/vms/" + vm);
      failed = Error::timeout(fmt::format(
          "{}: no CORRAL-DD-DONE of a new boot in 180 s; state {}; console:\n{}\nqemu.log ends:\n{}\n"
          "corrald log ends:\n{}",
          vm, info.ok() ? info->value("state", "?") : info.error().message, tail(now, 2000),
          tail(readFile(d.stateDir() / "run" / vm / "qemu.log"), 1500), d.logTail()));
    }
  }
  auto stopped = d.api("POST", fmt::format("/api/v1/vms/{}/actions/stop", vm), json{{"force", true}});
  if (failed) return *failed;
  if (!stopped.ok()) return stopped.error();
  return *mibs;
}

Result<std::vector<Row>> benchDaemon(const Paths& paths, const fs::path& root, const Images* im, const Options& o,
                                     double linkedSmallMedian) {
  CORRAL_TRY(corral::bench::checkGuest(paths.guest));
  Daemon d("storage_bench", paths, root, o.keepLog);
  CORRAL_TRY(d.start());
  std::printf("  corrald %s, accel tcg\n", d.node().value("qemu_version", std::string("?")).c_str());
  const std::string cmdline = corral::bench::guestCmdline(paths.guest);
  CORRAL_TRY(d.cli({"image", "import", "ddguest", "--kernel", (paths.guest / "vmlinuz").string(), "--initrd",
                    (paths.guest / "initramfs.cpio.gz").string(), "--append", cmdline + " corral.ddtest=/dev/vda"}));
  const std::vector<std::string> vms{"ddplain", "ddluks"};
  CORRAL_TRY(d.cli({"vm", "create", "ddplain", "--image", "ddguest", "--memory", "256M", "--disk", "256M"}));
  CORRAL_TRY(d.cli({"vm", "create", "ddluks", "--image", "ddguest", "--memory", "256M", "--disk", "256M", "--encrypt"}));
  const json disks = CORRAL_TRY(d.api("GET", "/api/v1/vms/ddluks/disks"));
  if (!disks.contains("disks") || disks["disks"].empty() || !disks["disks"][0].value("encrypted", false))
    return Error::internal("ddluks: its disk is not encrypted: " + disks.dump());

  std::vector<double> plain, luks;
  for (int b = 0; b < o.boots; ++b) {
    for (int k = 0; k < 2; ++k) {
      const int which = (b + k) % 2;  // plain first, then LUKS first, ...
      const double mibs = CORRAL_TRY(bootAndMeasure(d, vms[which]));
      (which == 0 ? plain : luks).push_back(mibs);
      std::fprintf(stderr, "storage_bench: boot %d of %s: %.1f MiB/s\n", b + 1, vms[which].c_str(), mibs);
    }
  }
  std::printf("  guest sequential write, 64 MiB dd conv=fsync to /dev/vda (a 256 MiB qcow2 disk), %d boots each\n"
              "    plain  %s  [%s]\n    LUKS   %s  [%s]\n",
              o.boots, describe(plain, "MiB/s").c_str(), list(plain).c_str(), describe(luks, "MiB/s").c_str(),
              list(luks).c_str());
  std::vector<Row> rows;
  rows.push_back(Row{fmt::format("guest write LUKS vs plain, median of {}", o.boots),
                     fmt::format("{:.1f} MiB/s", median(plain)), fmt::format("{:.1f} MiB/s", median(luks)),
                     fmt::format("{:.2f}x", median(luks) / median(plain)), "-", std::nullopt});

  // End to end: POST /api/v1/vms of a VM from a disk image (a linked clone)
  // against the same call for a VM with no disk, alternating; each VM deleted after.
  if (im != nullptr) {
    CORRAL_TRY(d.cli({"image", "import", "disk100", "--disk", im->small.string()}));
    std::vector<double> bare, cloned;
    auto create = [&](const std::string& name, const std::string& image, std::vector<double>& into) -> Result<void> {
      const auto t0 = Clock::now();
      CORRAL_TRY(d.api("POST", "/api/v1/vms", json{{"name", name}, {"image", image}, {"memory", 128}}));
      into.push_back(msSince(t0));
      const json got = CORRAL_TRY(d.api("GET", fmt::format("/api/v1/vms/{}/disks", name))).value("disks", json());
      const bool clone = got.size() == 1 && got[0].value("backing_image", "") == "disk100";
      if (image == "disk100" && !clone) return Error::internal(name + ": not a linked clone: " + got.dump());
      CORRAL_TRY(d.api("DELETE", "/api/v1/vms/" + name));
      return corral::ok();
    };
    CORRAL_TRY(create("warm-a", "ddguest", bare));
    CORRAL_TRY(create("warm-b", "disk100", cloned));
    bare.clear();
    cloned.clear();
    for (int i = 0; i < o.creates; ++i) {
      if (i % 2 == 0) {
        CORRAL_TRY(create(fmt::format("bare{}", i), "ddguest", bare));
        CORRAL_TRY(create(fmt::format("clone{}", i), "disk100", cloned));
      } else {
        CORRAL_TRY(create(fmt::format("clone{}", i), "disk100", cloned));
        CORRAL_TRY(create(fmt::format("bare{}", i), "ddguest", bare));
      }
    }
    std::printf("  POST /api/v1/vms, %d samples each\n    no disk (direct-boot)     %s\n"
                "    from the 100 MiB image    %s\n",
                o.creates, describe(bare, "ms").c_str(), describe(cloned, "ms").c_str());
    const double m = median(cloned);
    rows.push_back(Row{fmt::format("API create from disk image, median of {}", o.creates),
                       fmt::format("{:.1f} ms", median(bare)), fmt::format("{:.1f} ms", m),
                       fmt::format("{:.2f}x", m / median(bare)), "-", std::nullopt});
    if (linkedSmallMedian > 0)
      std::printf("    (StoragePool::create of the same linked clone, part 1: %.1f ms)\n", linkedSmallMedian);
  }
  return rows;
}

int usage() {
  std::fprintf(stderr,
               "usage: storage_bench [--bin DIR] [--guest DIR] [--tmp DIR] [--only clone|import|guest]\n"
               "                     [--clones N] [--imports N] [--boots N] [--creates N] [--strict]\n"
               "                     [--keep-log FILE]\n"
               "  --bin: where corrald and corral are (default $CORRAL_BINARY_DIR/bin)\n"
               "  --guest: the test guest (default $CORRAL_BINARY_DIR/guest)\n"
               "  --strict: exit 1 when a target is missed\n"
               "  --keep-log: copy corrald's log to FILE before cleaning up\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string build = corral::bench::envOr("CORRAL_BINARY_DIR", CORRAL_BINARY_DIR);
  Paths paths{fs::path(build) / "bin", fs::path(build) / "guest"};
  Options o;
  std::string only, tmp = "/tmp";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--strict") {
      o.strict = true;
    } else if (a == "--help" || a == "-h") {
      return usage();
    } else if ((v = value()) == nullptr) {
      return usage();
    } else if (a == "--bin") {
      paths.bin = v;
    } else if (a == "--guest") {
      paths.guest = v;
    } else if (a == "--tmp") {
      tmp = v;
    } else if (a == "--only") {
      only = v;
    } else if (a == "--clones") {
      o.clones = std::max(1, std::atoi(v));
    } else if (a == "--imports") {
      o.imports = std::max(1, std::atoi(v));
    } else if (a == "--boots") {
      o.boots = std::max(1, std::atoi(v));
    } else if (a == "--creates") {
      o.creates = std::max(1, std::atoi(v));
    } else if (a == "--keep-log") {
      o.keepLog = v;
    } else {
      return usage();
    }
  }
  if (!only.empty() && only != "clone" && only != "import" && only != "guest") return usage();

  // Signals end the run here too: corrald, every QEMU and qemu-img, the temp dir.
  auto made = corral::bench::beginDaemonBench("storage_bench", tmp, "crsb");
  if (!made.ok()) {
    std::fprintf(stderr, "storage_bench: %s\n", made.error().message.c_str());
    return 1;
  }
  const fs::path root = *made;
  int rc = 0;
  std::vector<Row> rows;
  {
    auto parts = [&]() -> Result<void> {
      std::optional<Images> im;
      if (only.empty() || only == "clone" || only == "guest") im = CORRAL_TRY(makeImages(root));
      double linkedSmall = 0;
      if (only.empty() || only == "clone") {
        auto r = CORRAL_TRY(benchClones(root, *im, o, &linkedSmall));
        rows.insert(rows.end(), r.begin(), r.end());
        std::fflush(stdout);
      }
      if (only.empty() || only == "import") {
        rows.push_back(CORRAL_TRY(benchImport(root, o, false)));
        rows.push_back(CORRAL_TRY(benchImport(root, o, true)));
        std::fflush(stdout);
      }
      if (only.empty() || only == "guest") {
        auto r = CORRAL_TRY(benchDaemon(paths, root, im ? &*im : nullptr, o, linkedSmall));
        rows.insert(rows.end(), r.begin(), r.end());
      }
      return corral::ok();
    };
    try {  // a malformed reply (nlohmann throws) still ends in the cleanup below
      if (auto r = parts(); !r.ok()) {
        std::fprintf(stderr, "storage_bench: %s\n", r.error().describe().c_str());
        rc = 1;
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "storage_bench: %s\n", e.what());
      rc = 1;
    }
  }
  Janitor::get().cleanup();  // corrald, every QEMU and qemu-img, the temp dir
  if (!rows.empty()) printTable(rows);
  if (rc == 0 && o.strict && std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.met == false; }))
    rc = 1;
  return rc;
}
