// The SIGUSR1 reporter and report files; see guru.h.
#include "util/guru.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include <spdlog/spdlog.h>

#include "util/stacks.h"

namespace corral::util {
namespace {

// The globals the SIGUSR1 handler needs, and nothing else: where to write its
// byte (-1 when no reporter is started) and how many handlers are between
// loading that fd and writing to it (so that ~GuruMeditation does not close
// the pipe under a running handler, or let its number be reused).
std::atomic<int> gWakeFd{-1};
std::atomic<int> gHandlersRunning{0};

constexpr char kWakeReport = 'U';
constexpr char kWakeQuit = 'Q';

void onSigusr1(int) {
  int savedErrno = errno;
  gHandlersRunning.fetch_add(1, std::memory_order_acq_rel);
  int fd = gWakeFd.load(std::memory_order_acquire);
  if (fd >= 0) {
    // Non-blocking: when the pipe is full a report is already pending.
    ssize_t n = ::write(fd, &kWakeReport, 1);
    (void)n;
  }
  gHandlersRunning.fetch_sub(1, std::memory_order_acq_rel);
  errno = savedErrno;
}

Result<void> writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errorf(ErrorCode::Internal, "write: {}", std::strerror(errno));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return ok();
}

bool isReportFile(const std::string& name) {
  return name.size() > 5 && name[0] != '.' && name.compare(name.size() - 5, 5, ".json") == 0;
}

}  // namespace

GuruMeditation::GuruMeditation(const Reporter& reporter, Options opts) : reporter_(reporter), opts_(std::move(opts)) {}

GuruMeditation::~GuruMeditation() {
  if (installed_) {
    ::sigaction(SIGUSR1, &previous_, nullptr);
    gWakeFd.store(-1, std::memory_order_release);
    // A handler that loaded the fd before the store above finishes in a few instructions.
    while (gHandlersRunning.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }
  if (thread_.joinable()) {
    // The pipe is non-blocking: when it is full, wait until the thread has drained it.
    while (::write(wakeWrite_.get(), &kWakeQuit, 1) != 1 && (errno == EAGAIN || errno == EINTR)) {
      std::this_thread::yield();
    }
    thread_.join();
  }
}

Result<void> GuruMeditation::ensureDir() {
  const std::string& dir = opts_.reportsDir;
  if (dir.empty()) return Error::invalidInput("reports_dir", dir, "must not be empty");
  std::error_code ec;
  std::filesystem::path parent = std::filesystem::path(dir).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return errorf(ErrorCode::Internal, "reports dir {}: {}", dir, std::strerror(errno));
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return errorf(ErrorCode::Internal, "reports dir {}: not a directory", dir);
  }
  // The umask may have taken bits away; an older directory may have more.
  if ((st.st_mode & 07777) != 0700 && ::chmod(dir.c_str(), 0700) != 0) {
    return errorf(ErrorCode::Internal, "reports dir {}: chmod 0700: {}", dir, std::strerror(errno));
  }
  return ok();
}

Result<void> GuruMeditation::start() {
  if (thread_.joinable()) return Error::failedPrecondition("guru meditation reporter: already started");
  CORRAL_TRY(ensureDir());
  CORRAL_TRY(prepareStackSampling());
  PipeFds pipe = CORRAL_TRY(makePipe(O_CLOEXEC | O_NONBLOCK));
  int expected = -1;
  if (!gWakeFd.compare_exchange_strong(expected, pipe.write.get())) {
    return Error::failedPrecondition("guru meditation reporter: another one owns SIGUSR1 in this process");
  }
  wakeRead_ = std::move(pipe.read);
  wakeWrite_ = std::move(pipe.write);
  struct sigaction sa {};
  sa.sa_handler = onSigusr1;
  sa.sa_flags = SA_RESTART;
  ::sigemptyset(&sa.sa_mask);
  if (::sigaction(SIGUSR1, &sa, &previous_) != 0) {
    int err = errno;
    gWakeFd.store(-1);
    return errorf(ErrorCode::Internal, "sigaction SIGUSR1: {}", std::strerror(err));
  }
  installed_ = true;
  thread_ = std::thread([this] { runThread(); });
  return ok();
}

void GuruMeditation::runThread() {
  while (true) {
    pollfd p{wakeRead_.get(), POLLIN, 0};
    if (::poll(&p, 1, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("guru meditation reporter: poll: {}; SIGUSR1 reports stop", std::strerror(errno));
      return;
    }
    bool report = false;
    bool quit = false;
    char buf[64];
    ssize_t n;
    while ((n = ::read(wakeRead_.get(), buf, sizeof buf)) > 0) {  // many signals make one report
      for (ssize_t i = 0; i < n; ++i) {
        report |= buf[i] == kWakeReport;
        quit |= buf[i] == kWakeQuit;
      }
    }
    if (quit) return;
    if (!report) continue;
    auto saved = capture("SIGUSR1");
    if (!saved.ok()) {
      spdlog::error("guru meditation report failed: {}", saved.error().describe());
      continue;
    }
    if (opts_.toStderr) (void)writeAll(STDERR_FILENO, saved->report.toText());
    spdlog::warn("guru meditation report {} written to {}", saved->report.id, saved->path);
  }
}

Result<GuruMeditation::Saved> GuruMeditation::capture(std::string reason, nlohmann::json context) {
  CORRAL_TRY(ensureDir());
  Saved saved{reporter_.build(std::move(reason), std::move(context)), {}};
  std::string body = saved.report.toJson().dump(2) + "\n";
  std::string tmp = fmt::format("{}/.{}.json.tmp", opts_.reportsDir, saved.report.id);
  saved.path = fmt::format("{}/{}.json", opts_.reportsDir, saved.report.id);

  std::lock_guard lock(writeMu_);
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return errorf(ErrorCode::Internal, "report {}: {}", tmp, std::strerror(errno));
  auto written = writeAll(fd.get(), body);
  if (written.ok() && ::fsync(fd.get()) != 0) written = errorf(ErrorCode::Internal, "fsync: {}", std::strerror(errno));
  fd.reset();
  if (written.ok() && ::rename(tmp.c_str(), saved.path.c_str()) != 0) {
    written = errorf(ErrorCode::Internal, "rename to {}: {}", saved.path, std::strerror(errno));
  }
  if (!written.ok()) {
    ::unlink(tmp.c_str());
    return written.error().context(fmt::format("report {}", saved.report.id));
  }
  prune();
  return saved;
}

// Under writeMu_. Ids sort by creation time, so the names do too.
void GuruMeditation::prune() {
  if (opts_.keep == 0) return;
  std::vector<std::string> names;
  DIR* d = ::opendir(opts_.reportsDir.c_str());
  if (d == nullptr) return;
  while (struct dirent* e = ::readdir(d)) {
    if (isReportFile(e->d_name)) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  if (names.size() <= opts_.keep) return;
  std::sort(names.begin(), names.end());
  for (size_t i = 0; i + opts_.keep < names.size(); ++i) {
    std::string path = fmt::format("{}/{}", opts_.reportsDir, names[i]);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("guru meditation: cannot remove old report {}: {}", path, std::strerror(errno));
    }
  }
}

}  // namespace corral::util
