// The report model, its views, the generator registry and the generic sections; see report.h.
#include "util/report.h"

#include <dirent.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <ctime>
#include <fstream>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "util/build_info.h"
#include "util/proc.h"
#include "util/stacks.h"

namespace corral::util {
namespace {

using json = nlohmann::json;

// ---- text view

std::string scalarText(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

bool isFrameArray(const json& v) {
  return v.is_array() && !v.empty() && v[0].is_object() && v[0].contains("frame") && v[0].contains("address");
}

bool allScalar(const json& obj) {
  for (const auto& [k, v] : obj.items()) {
    if (v.is_structured()) return false;
  }
  return true;
}

void line(std::string& out, int indent, std::string_view text) {
  out.append(static_cast<size_t>(indent), ' ');
  out.append(text);
  out.push_back('\n');
}

std::string frameText(const json& f) {
  std::string s = fmt::format("#{} {}", f.value("frame", 0), f.value("address", std::string("?")));
  std::string fn = f.value("function", std::string());
  s += " " + (fn.empty() ? std::string("??") : fn);
  if (f.value("inlined", false)) s += " [inlined]";
  std::string file = f.value("file", std::string());
  if (!file.empty()) {
    s += fmt::format(" ({}:{})", file, f.value("line", 0));
  } else if (std::string mod = f.value("module", std::string()); !mod.empty()) {
    s += fmt::format(" ({})", mod);
  }
  return s;
}

void renderValue(std::string& out, const json& v, int indent);

void renderField(std::string& out, const std::string& key, const json& v, int indent) {
  if (!v.is_structured()) {
    line(out, indent, key + ": " + scalarText(v));
  } else if (v.empty()) {
    line(out, indent, key + (v.is_array() ? ": []" : ": {}"));
  } else {
    line(out, indent, key + ":");
    renderValue(out, v, indent + 2);
  }
}

void renderValue(std::string& out, const json& v, int indent) {
  if (v.is_object()) {
    for (const auto& [k, item] : v.items()) renderField(out, k, item, indent);
  } else if (isFrameArray(v)) {
    for (const json& f : v) line(out, indent, frameText(f));
  } else if (v.is_array()) {
    for (const json& item : v) {
      if (!item.is_structured()) {
        line(out, indent, "- " + scalarText(item));
      } else if (item.is_object() && allScalar(item)) {
        std::string s = "-";
        for (const auto& [k, x] : item.items()) s += " " + k + "=" + scalarText(x);
        line(out, indent, s);
      } else {
        line(out, indent, "-");
        renderValue(out, item, indent + 2);
      }
    }
  } else {
    line(out, indent, scalarText(v));
  }
}

// ---- build

// What build() shares with its workers; a worker given up on keeps it alive.
struct BuildState {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<std::string, Reporter::Generator>> generators;
  std::vector<std::optional<json>> results;
};

json runGenerator(const Reporter::Generator& g) {
  try {
    return g();
  } catch (const std::exception& e) {
    return json{{"error", fmt::format("generator failed: {}", e.what())}};
  } catch (...) {
    return json{{"error", "generator failed: unknown exception"}};
  }
}

// Runs generators from `first` on; stops early when `abandoned` (set by build()
// when it gave up waiting for this worker).
void runWorker(std::shared_ptr<BuildState> st, size_t first, std::shared_ptr<std::atomic<bool>> abandoned) {
  for (size_t i = first; i < st->generators.size(); ++i) {
    if (abandoned->load()) return;
    json v = runGenerator(st->generators[i].second);
    std::lock_guard lock(st->mu);
    if (abandoned->load()) return;
    st->results[i] = std::move(v);
    st->cv.notify_all();
  }
}

// ---- /proc helpers

int64_t bootTimeUnix() {
  std::istringstream in(readTextFile("/proc/stat").value_or(""));
  std::string key;
  while (in >> key) {
    if (key == "btime") {
      int64_t v = 0;
      in >> v;
      return v;
    }
    in.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  return 0;
}

double seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; }

json openFds() {
  json list = json::array();
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr) return json{{"error", fmt::format("/proc/self/fd: {}", std::strerror(errno))}};
  int own = ::dirfd(d);
  std::vector<int> fds;
  while (struct dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end != e->d_name && *end == '\0' && fd != own) fds.push_back(static_cast<int>(fd));
  }
  std::sort(fds.begin(), fds.end());
  for (int fd : fds) {
    char buf[4096];
    ssize_t n = ::readlink(fmt::format("/proc/self/fd/{}", fd).c_str(), buf, sizeof buf);
    list.push_back(json{{"fd", fd}, {"target", n < 0 ? std::string("?") : std::string(buf, static_cast<size_t>(n))}});
  }
  ::closedir(d);
  return json{{"count", list.size()}, {"fds", std::move(list)}};
}

size_t countTasks() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return 0;
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

}  // namespace

std::string formatRfc3339(int64_t unixSeconds) {
  std::time_t t = static_cast<std::time_t>(unixSeconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string newReportId(int64_t unixSeconds) {
  // Seeded at random so that ids of two runs in the same second differ; counts
  // up so that ids of one run sort in creation order.
  static std::atomic<uint32_t> counter = [] {
    uint32_t seed = 0;
    if (::getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = static_cast<uint32_t>(::getpid());
    return seed & 0x7fffffu;
  }();
  std::time_t t = static_cast<std::time_t>(unixSeconds);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return fmt::format("{}-{:06x}", buf, counter.fetch_add(1) & 0xffffffu);
}

json Report::toJson() const {
  json secs = json::object();
  json order = json::array();
  for (const auto& [name, value] : sections) {
    secs[name] = value;
    order.push_back(name);
  }
  return json{{"id", id},
              {"reason", reason},
              {"created_at", formatRfc3339(createdUnix)},
              {"context", context},
              {"sections", std::move(secs)},
              {"order", std::move(order)}};
}

std::string Report::toText() const {
  std::string out;
  line(out, 0, "==== Guru Meditation ====");
  line(out, 0, "id: " + id);
  line(out, 0, "reason: " + reason);
  line(out, 0, "created_at: " + formatRfc3339(createdUnix));
  renderField(out, "context", context, 0);
  for (const auto& [name, value] : sections) {
    line(out, 0, fmt::format("==== {} ====", name));
    renderValue(out, value, 0);
  }
  return out;
}

Result<Report> Report::fromJson(const json& j) {
  auto bad = [](std::string_view why) { return Error::invalidInput("report", "", why); };
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("sections") ||
      !j["sections"].is_object() || !j.contains("order") || !j["order"].is_array()) {
    return bad("not a report: needs id, sections and order");
  }
  Report r;
  r.id = j["id"].get<std::string>();
  r.reason = j.value("reason", std::string());
  r.context = j.value("context", json::object());
  std::string created = j.value("created_at", std::string());
  std::tm tm{};
  if (!created.empty()) {
    if (::strptime(created.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm) == nullptr) return bad("created_at: not RFC3339 UTC");
    r.createdUnix = static_cast<int64_t>(::timegm(&tm));
  }
  const json& secs = j["sections"];
  for (const json& name : j["order"]) {
    if (!name.is_string() || !secs.contains(name.get<std::string>())) return bad("order names a missing section");
    r.sections.emplace_back(name.get<std::string>(), secs[name.get<std::string>()]);
  }
  return r;
}

void Reporter::add(std::string section, Generator g) {
  std::lock_guard lock(mu_);
  for (auto& [name, gen] : generators_) {
    if (name == section) {
      gen = std::move(g);
      return;
    }
  }
  generators_.emplace_back(std::move(section), std::move(g));
}

std::vector<std::string> Reporter::sections() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> names;
  for (const auto& [name, gen] : generators_) names.push_back(name);
  return names;
}

Report Reporter::build(std::string reason, json context) const {
  Report r;
  r.createdUnix =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  r.id = newReportId(r.createdUnix);
  r.reason = std::move(reason);
  r.context = std::move(context);

  auto st = std::make_shared<BuildState>();
  {
    std::lock_guard lock(mu_);
    st->generators = generators_;
  }
  size_t n = st->generators.size();
  st->results.resize(n);
  // One worker runs the generators in order; when one overruns, that worker is
  // given up on (detached, it stops after the stuck generator returns) and a
  // fresh one takes the rest, so that one stuck section loses only itself.
  auto abandoned = std::make_shared<std::atomic<bool>>(false);
  std::thread worker(runWorker, st, 0, abandoned);
  for (size_t i = 0; i < n; ++i) {
    std::unique_lock lock(st->mu);
    if (!st->cv.wait_for(lock, sectionTimeout_, [&] { return st->results[i].has_value(); })) {
      abandoned->store(true);
      st->results[i] = json{{"error", fmt::format("did not finish in {} ms", sectionTimeout_.count())}};
      lock.unlock();
      worker.detach();
      abandoned = std::make_shared<std::atomic<bool>>(false);
      worker = std::thread(runWorker, st, i + 1, abandoned);
    }
  }
  worker.join();
  for (size_t i = 0; i < n; ++i) r.sections.emplace_back(st->generators[i].first, std::move(*st->results[i]));
  return r;
}

json packageSection() {
  return json{{"product", build::kProduct},
              {"vendor", build::kVendor},
              {"version", build::kVersion},
              {"commit", build::kCommit},
              {"build_type", build::kBuildType},
              {"compiler", build::kCompiler},
              {"compiler_version", build::kCompilerVersion}};
}

json processSection() {
  json j;
  j["pid"] = ::getpid();
  j["ppid"] = ::getppid();
  uid_t ruid = 0, euid = 0, suid = 0;
  gid_t rgid = 0, egid = 0, sgid = 0;
  ::getresuid(&ruid, &euid, &suid);
  ::getresgid(&rgid, &egid, &sgid);
  j["uid"] = json{{"real", ruid}, {"effective", euid}, {"saved", suid}};
  j["gid"] = json{{"real", rgid}, {"effective", egid}, {"saved", sgid}};
  auto st = readProcStat(::getpid());
  if (st.ok()) {
    j["state"] = std::string(1, st->state);
    long ticks = ::sysconf(_SC_CLK_TCK);
    int64_t boot = bootTimeUnix();
    if (ticks > 0 && boot > 0) {
      double startedAt = static_cast<double>(boot) + static_cast<double>(st->startTime) / static_cast<double>(ticks);
      double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      j["start_time"] = formatRfc3339(static_cast<int64_t>(startedAt));
      j["uptime_s"] = std::max(0.0, now - startedAt);
    }
  } else {
    j["state"] = json{{"error", st.error().describe()}};
  }
  rusage ru{};
  if (::getrusage(RUSAGE_SELF, &ru) == 0) {
    j["rusage"] = json{{"user_cpu_s", seconds(ru.ru_utime)},
                       {"sys_cpu_s", seconds(ru.ru_stime)},
                       {"max_rss_kib", ru.ru_maxrss},
                       {"minor_faults", ru.ru_minflt},
                       {"major_faults", ru.ru_majflt},
                       {"voluntary_ctx_switches", ru.ru_nvcsw},
                       {"involuntary_ctx_switches", ru.ru_nivcsw}};
  }
  j["open_fds"] = openFds();
  j["threads"] = json{{"count", countTasks()}};
  return j;
}

json threadsSection(std::chrono::milliseconds perThreadTimeout) {
  auto sampled = sampleThreadStacks(perThreadTimeout);
  if (!sampled.ok()) return json{{"error", sampled.error().describe()}};
  std::vector<ThreadStack> stacks = std::move(sampled).take();
  auto symbolized = symbolizeStacks(stacks);
  json threads = json::array();
  size_t answered = 0;
  for (const ThreadStack& t : stacks) {
    json tj{{"tid", t.tid}, {"name", t.name}, {"state", std::string(1, t.state)}};
    if (t.self) tj["reporter"] = true;
    if (!t.error.empty()) {
      tj["error"] = t.error;
    } else {
      ++answered;
      json frames = json::array();
      for (size_t i = 0; i < t.frames.size(); ++i) {
        const StackFrame& f = t.frames[i];
        json fj{{"frame", i}, {"address", fmt::format("{:#x}", f.address)}, {"function", f.function}};
        if (!f.file.empty()) {
          fj["file"] = f.file;
          fj["line"] = f.line;
        }
        if (!f.module.empty()) fj["module"] = f.module;
        if (f.inlined) fj["inlined"] = true;
        frames.push_back(std::move(fj));
      }
      tj["frames"] = std::move(frames);
    }
    threads.push_back(std::move(tj));
  }
  json j{{"count", stacks.size()}, {"sampled", answered}, {"threads", std::move(threads)}};
  if (!symbolized.ok()) j["symbolize_error"] = symbolized.error().describe();
  return j;
}

void addGenericSections(Reporter& r) {
  r.add("package", [] { return packageSection(); });
  r.add("process", [] { return processSection(); });
  r.add("threads", [] { return threadsSection(); });
}

}  // namespace corral::util
