// The registry, the text exposition and the /proc collectors. See metrics.h.
#include "util/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

#include "util/proc.h"

namespace corral::util::metrics {
namespace {

std::string_view typeName(Type t) {
  switch (t) {
    case Type::Counter:
      return "counter";
    case Type::Gauge:
      return "gauge";
    case Type::Histogram:
      return "histogram";
  }
  return "untyped";
}

std::string escapeHelp(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void appendLabels(std::string& out, const Labels& labels) {
  if (labels.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    out += escapeLabelValue(v);
    out += '"';
  }
  out += '}';
}

double clockTicks() {
  static const double ticks = [] {
    long t = ::sysconf(_SC_CLK_TCK);
    return t > 0 ? double(t) : 100.0;
  }();
  return ticks;
}

// The fields of /proc/PID/stat after "(comm)", split on spaces: [0] is field 3 (state).
std::vector<std::string_view> statFieldsAfterComm(std::string_view text) {
  std::vector<std::string_view> out;
  size_t close = text.rfind(')');
  if (close == std::string_view::npos) return out;
  std::string_view rest = text.substr(close + 1);
  while (!rest.empty()) {
    size_t start = rest.find_first_not_of(" \n");
    if (start == std::string_view::npos) break;
    rest.remove_prefix(start);
    size_t end = rest.find_first_of(" \n");
    out.push_back(rest.substr(0, end));
    if (end == std::string_view::npos) break;
    rest.remove_prefix(end);
  }
  return out;
}

template <class T>
bool toNumber(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

// ---- Emitter

FamilySnapshot& Emitter::family(std::string_view name, Type type, std::string_view help) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    FamilySnapshot f;
    f.name = std::string(name);
    f.help = std::string(help);
    f.type = type;
    it = families_.emplace(f.name, std::move(f)).first;
  }
  return it->second;
}

void Emitter::gauge(std::string_view name, std::string_view help, Labels labels, double value) {
  family(name, Type::Gauge, help).samples.push_back({"", std::move(labels), value});
}

void Emitter::counter(std::string_view name, std::string_view help, Labels labels, double value) {
  family(name, Type::Counter, help).samples.push_back({"", std::move(labels), value});
}

// ---- Histogram

Histogram::Histogram(const std::vector<double>* bounds)
    : bounds_(bounds), counts_(std::make_unique<std::atomic<uint64_t>[]>(bounds->size() + 1)) {}

void Histogram::observe(double v) {
  // The first bucket whose upper bound is >= v ("le"); past the last, +Inf.
  size_t i = std::lower_bound(bounds_->begin(), bounds_->end(), v) - bounds_->begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::counts() const {
  std::vector<uint64_t> out(bounds_->size() + 1);
  for (size_t i = 0; i < out.size(); ++i) out[i] = counts_[i].load(std::memory_order_relaxed);
  return out;
}

const std::vector<double>& latencyBuckets() {
  static const std::vector<double> b{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                     0.25,   0.5,   1,      2.5,   5,    10,    30};
  return b;
}

// ---- families

Labels FamilyBase::labelsOf(const std::vector<std::string>& values) const {
  Labels out;
  out.reserve(labelNames_.size() + 1);
  for (size_t i = 0; i < labelNames_.size(); ++i) out.emplace_back(labelNames_[i], values[i]);
  return out;
}

template <class M>
FamilySnapshot Family<M>::snapshot() const {
  FamilySnapshot s{name_, help_, type_, {}};
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    Labels labels = labelsOf(values);
    if constexpr (std::is_same_v<M, Histogram>) {
      auto counts = child->counts();
      uint64_t cumulative = 0;
      for (size_t i = 0; i < counts.size(); ++i) {
        cumulative += counts[i];
        Labels withLe = labels;
        withLe.emplace_back("le", i < bounds_.size() ? formatValue(bounds_[i]) : "+Inf");
        s.samples.push_back({"_bucket", std::move(withLe), double(cumulative)});
      }
      s.samples.push_back({"_sum", labels, child->sum()});
      s.samples.push_back({"_count", std::move(labels), double(cumulative)});
    } else {
      s.samples.push_back({"", std::move(labels), child->value()});
    }
  }
  return s;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

// ---- registry

template <class M>
Family<M>& Registry::add(std::string name, std::string help, Type type, std::vector<std::string> labelNames,
                         std::vector<double> bounds) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it != families_.end()) {
    auto* f = dynamic_cast<Family<M>*>(it->second.get());
    if (f == nullptr || f->type() != type || f->labelNames() != labelNames)
      throw std::logic_error(fmt::format("metric {} registered twice with different types or labels", name));
    return *f;
  }
  if (!std::is_sorted(bounds.begin(), bounds.end()))
    throw std::logic_error(fmt::format("metric {}: bucket bounds must ascend", name));
  auto f = std::make_unique<Family<M>>(name, std::move(help), type, std::move(labelNames), std::move(bounds));
  auto& ref = *f;
  families_.emplace(std::move(name), std::move(f));
  return ref;
}

Family<Counter>& Registry::counter(std::string name, std::string help, std::vector<std::string> labelNames) {
  return add<Counter>(std::move(name), std::move(help), Type::Counter, std::move(labelNames), {});
}

Family<Gauge>& Registry::gauge(std::string name, std::string help, std::vector<std::string> labelNames) {
  return add<Gauge>(std::move(name), std::move(help), Type::Gauge, std::move(labelNames), {});
}

Family<Histogram>& Registry::histogram(std::string name, std::string help, std::vector<std::string> labelNames,
                                       std::vector<double> bounds) {
  return add<Histogram>(std::move(name), std::move(help), Type::Histogram, std::move(labelNames), std::move(bounds));
}

CollectorHandle Registry::addCollector(Collector c) {
  auto e = std::make_shared<CollectorEntry>();
  e->fn = std::move(c);
  std::lock_guard lock(mu_);
  uint64_t id = nextId_++;
  collectors_.emplace(id, std::move(e));
  return CollectorHandle(this, id);
}

void Registry::removeCollector(uint64_t id) {
  std::shared_ptr<CollectorEntry> e;
  {
    std::lock_guard lock(mu_);
    auto it = collectors_.find(id);
    if (it == collectors_.end()) return;
    e = std::move(it->second);
    collectors_.erase(it);
  }
  // A scrape that took it before the erase may be running it: wait for that.
  std::lock_guard running(e->running);
}

CollectorHandle& CollectorHandle::operator=(CollectorHandle&& o) noexcept {
  if (this != &o) {
    reset();
    reg_ = std::exchange(o.reg_, nullptr);
    id_ = o.id_;
  }
  return *this;
}

void CollectorHandle::reset() {
  if (reg_ != nullptr) std::exchange(reg_, nullptr)->removeCollector(id_);
}

std::string Registry::render() const {
  std::vector<const FamilyBase*> fams;
  std::vector<std::shared_ptr<CollectorEntry>> cols;
  {
    std::lock_guard lock(mu_);
    fams.reserve(families_.size());
    for (const auto& [name, f] : families_) fams.push_back(f.get());  // never removed
    for (const auto& [id, c] : collectors_) cols.push_back(c);
  }
  Emitter out;
  for (const auto& c : cols) {
    std::lock_guard running(c->running);
    c->fn(out);
  }
  auto& collected = out.families();
  std::vector<FamilySnapshot> all;
  all.reserve(fams.size() + collected.size());
  for (const auto* f : fams) {
    all.push_back(f->snapshot());
    if (auto it = collected.find(f->name()); it != collected.end()) {
      for (auto& s : it->second.samples) all.back().samples.push_back(std::move(s));
      collected.erase(it);
    }
  }
  for (auto& [name, f] : collected) all.push_back(std::move(f));
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return renderText(all);
}

// ---- text format

std::string escapeLabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string formatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 9.007199254740992e15) return fmt::format("{}", int64_t(v));
  return fmt::format("{}", v);  // shortest form that reads back exactly
}

std::string renderText(const std::vector<FamilySnapshot>& families) {
  std::string out;
  size_t n = 0;
  for (const auto& f : families) n += f.samples.size();
  out.reserve(n * 64 + families.size() * 96);
  for (const auto& f : families) {
    out += "# HELP ";
    out += f.name;
    out += ' ';
    out += escapeHelp(f.help);
    out += "\n# TYPE ";
    out += f.name;
    out += ' ';
    out += typeName(f.type);
    out += '\n';
    for (const auto& s : f.samples) {
      out += f.name;
      out += s.suffix;
      appendLabels(out, s.labels);
      out += ' ';
      out += formatValue(s.value);
      out += '\n';
    }
  }
  return out;
}

// ---- /proc

Result<double> parseProcCpuSeconds(std::string_view statText) {
  auto f = statFieldsAfterComm(statText);
  // utime and stime are fields 14 and 15; f[0] is field 3.
  uint64_t utime = 0, stime = 0;
  if (f.size() < 13 || !toNumber(f[11], utime) || !toNumber(f[12], stime))
    return Error::invalidInput("stat", std::string(statText.substr(0, 80)), "is not a /proc/PID/stat line");
  return double(utime + stime) / clockTicks();
}

Result<double> processCpuSeconds(pid_t pid) {
  auto text = readTextFile(fmt::format("/proc/{}/stat", pid));
  if (!text) return Error::notFound(fmt::format("no process {}", pid));
  return parseProcCpuSeconds(*text);
}

std::map<std::string, uint64_t> parseMeminfo(std::string_view text) {
  std::map<std::string, uint64_t> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view rest = line.substr(colon + 1);
    size_t b = rest.find_first_not_of(' ');
    if (b == std::string_view::npos) continue;
    rest.remove_prefix(b);
    size_t e = rest.find(' ');
    uint64_t v = 0;
    if (!toNumber(rest.substr(0, e), v)) continue;
    bool kb = e != std::string_view::npos && rest.substr(e + 1) == "kB";
    out[std::string(line.substr(0, colon))] = kb ? v * 1024 : v;
  }
  return out;
}

std::vector<std::pair<std::string, double>> parseCpuModes(std::string_view statText) {
  static const char* kModes[] = {"user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"};
  std::vector<std::pair<std::string, double>> out;
  if (statText.substr(0, 4) != "cpu ") return out;
  std::string_view line = statText.substr(4, statText.find('\n') - 4);
  size_t i = 0;
  while (!line.empty() && i < std::size(kModes)) {
    size_t b = line.find_first_not_of(' ');
    if (b == std::string_view::npos) break;
    line.remove_prefix(b);
    size_t e = line.find(' ');
    uint64_t v = 0;
    if (!toNumber(line.substr(0, e), v)) break;
    out.emplace_back(kModes[i++], double(v) / clockTicks());
    line.remove_prefix(e == std::string_view::npos ? line.size() : e);
  }
  return out;
}

void collectProcess(Emitter& out) {
  auto stat = readTextFile("/proc/self/stat");
  auto f = stat ? statFieldsAfterComm(*stat) : std::vector<std::string_view>{};
  if (auto cpu = stat ? parseProcCpuSeconds(*stat) : Result<double>(Error::notFound("")); cpu.ok())
    out.counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", {}, *cpu);
  uint64_t vsize = 0, rss = 0, start = 0;
  // Fields 22 (starttime), 23 (vsize, bytes), 24 (rss, pages).
  if (f.size() >= 22 && toNumber(f[19], start) && toNumber(f[20], vsize) && toNumber(f[21], rss)) {
    out.gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", {}, double(vsize));
    out.gauge("process_resident_memory_bytes", "Resident memory size in bytes.", {},
              double(rss) * double(::sysconf(_SC_PAGESIZE)));
    if (auto s = readTextFile("/proc/stat")) {
      size_t at = s->find("\nbtime ");
      uint64_t btime = 0;
      if (at != std::string::npos) {
        std::string_view v(*s);
        v = v.substr(at + 7);
        if (toNumber(v.substr(0, v.find('\n')), btime))
          out.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", {},
                    double(btime) + double(start) / clockTicks());
      }
    }
  }
  if (DIR* d = ::opendir("/proc/self/fd")) {
    size_t n = 0;
    while (auto* ent = ::readdir(d))
      if (ent->d_name[0] != '.') ++n;
    ::closedir(d);
    out.gauge("process_open_fds", "Number of open file descriptors.", {}, double(n - 1));  // not the DIR's own
  }
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
    out.gauge("process_max_fds", "Maximum number of open file descriptors.", {}, double(rl.rlim_cur));
}

void collectNode(Emitter& out) {
  if (auto m = readTextFile("/proc/meminfo")) {
    auto info = parseMeminfo(*m);
    if (auto it = info.find("MemTotal"); it != info.end())
      out.gauge("corral_node_memory_total_bytes", "Memory of this node (MemTotal).", {}, double(it->second));
    if (auto it = info.find("MemAvailable"); it != info.end())
      out.gauge("corral_node_memory_available_bytes", "Memory available for new work on this node (MemAvailable).", {},
                double(it->second));
  }
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus > 0) out.gauge("corral_node_cpus", "Online CPUs of this node.", {}, double(cpus));
  if (auto s = readTextFile("/proc/stat")) {
    auto& fam = out.family("corral_node_cpu_seconds_total", Type::Counter, "CPU time of this node by mode, all CPUs.");
    for (auto& [mode, secs] : parseCpuModes(*s)) fam.samples.push_back({"", {{"mode", mode}}, secs});
  }
}

}  // namespace corral::util::metrics
