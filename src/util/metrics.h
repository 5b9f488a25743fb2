// A small metrics registry and the Prometheus text exposition format 0.0.4
// (Debian 12 packages no Prometheus client library for C++).
//
// Two kinds of metric live here. Instrumented ones (Counter, Gauge, Histogram)
// are updated on hot paths: a family's children are found under that family's
// own mutex and then updated with atomics, so recording never takes a global
// lock and never waits for a scrape that is formatting. Collected ones come from
// collectors, callbacks run at scrape time that emit samples (VM stats over QMP,
// /proc of the node and of the daemon). Registry::render() writes both.
//
// What this file leaves to others: naming (callers follow Prometheus' rules:
// a prefix, base units, _total on counters), the HTTP side (api/routes_metrics),
// and what any collector reads.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "util/result.h"

namespace corral::util::metrics {

enum class Type { Counter, Gauge, Histogram };

using Labels = std::vector<std::pair<std::string, std::string>>;

// One line of the exposition: family name + suffix ("", "_bucket", "_sum",
// "_count"), labels in order, value.
struct Sample {
  std::string suffix;
  Labels labels;
  double value = 0;
};

struct FamilySnapshot {
  std::string name;
  std::string help;
  Type type = Type::Gauge;
  std::vector<Sample> samples;
};

// What a collector writes into during one scrape. Samples of one family name
// are grouped together whatever order they come in; the first declaration of a
// name fixes its type and help. Not thread-safe: one collector at a time.
class Emitter {
 public:
  // Declares a family (so that it is written even with no samples) and returns it.
  FamilySnapshot& family(std::string_view name, Type type, std::string_view help);
  void gauge(std::string_view name, std::string_view help, Labels labels, double value);
  void counter(std::string_view name, std::string_view help, Labels labels, double value);
  std::map<std::string, FamilySnapshot, std::less<>>& families() { return families_; }

 private:
  std::map<std::string, FamilySnapshot, std::less<>> families_;
};

using Collector = std::function<void(Emitter&)>;

// A monotonically increasing value. Lock-free; any thread.
class Counter {
 public:
  void inc(double by = 1) { v_.fetch_add(by, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// A value that goes up and down. Lock-free; any thread.
class Gauge {
 public:
  void set(double v) { v_.store(v, std::memory_order_relaxed); }
  void inc(double by = 1) { v_.fetch_add(by, std::memory_order_relaxed); }
  void dec(double by = 1) { v_.fetch_add(-by, std::memory_order_relaxed); }
  double value() const { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Observations counted into fixed buckets (upper bounds, ascending, +Inf
// implied). Lock-free; any thread. A scrape during observe() may see the new
// count before the new sum: harmless for rates, and _count always equals the
// +Inf bucket.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>* bounds);
  void observe(double v);
  // Per bucket (not cumulative), the last one +Inf; and the sum.
  std::vector<uint64_t> counts() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double>* bounds_;  // owned by the family
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

// Upper bounds for request and command latencies, in seconds: 0.5 ms to 30 s.
const std::vector<double>& latencyBuckets();

// A family of one instrumented type: one child per distinct label-value tuple,
// made on first use and never removed (label values must be of bounded
// cardinality: route patterns, not paths). References to children stay valid
// for the registry's life, so a hot path may look one up once and keep it.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, Type type, std::vector<std::string> labelNames)
      : name_(std::move(name)), help_(std::move(help)), type_(type), labelNames_(std::move(labelNames)) {}
  virtual ~FamilyBase() = default;
  const std::string& name() const { return name_; }
  Type type() const { return type_; }
  const std::vector<std::string>& labelNames() const { return labelNames_; }
  virtual FamilySnapshot snapshot() const = 0;

 protected:
  Labels labelsOf(const std::vector<std::string>& values) const;
  std::string name_;
  std::string help_;
  Type type_;
  std::vector<std::string> labelNames_;
};

template <class M>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Type type, std::vector<std::string> labelNames,
         std::vector<double> bounds = {})
      : FamilyBase(std::move(name), std::move(help), type, std::move(labelNames)), bounds_(std::move(bounds)) {}

  // The child for these label values, in the order of the label names (a
  // wrong count is a bug: missing values are "", extra ones dropped).
  M& labels(std::vector<std::string> values) {
    values.resize(labelNames_.size());
    std::lock_guard lock(mu_);
    auto it = children_.find(values);
    if (it == children_.end()) it = children_.emplace(std::move(values), make()).first;
    return *it->second;
  }
  M& labels(std::initializer_list<std::string_view> values) {
    return labels(std::vector<std::string>(values.begin(), values.end()));
  }
  FamilySnapshot snapshot() const override;

 private:
  std::unique_ptr<M> make() const {
    if constexpr (std::is_same_v<M, Histogram>)
      return std::make_unique<Histogram>(&bounds_);
    else
      return std::make_unique<M>();
  }
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;
};

class Registry;

// Keeps a collector registered while it lives; destroying it unregisters the
// collector and waits for a scrape running it to finish, so that what the
// collector captured may go right after.
class CollectorHandle {
 public:
  CollectorHandle() = default;
  CollectorHandle(CollectorHandle&& o) noexcept : reg_(std::exchange(o.reg_, nullptr)), id_(o.id_) {}
  CollectorHandle& operator=(CollectorHandle&& o) noexcept;
  ~CollectorHandle() { reset(); }
  void reset();

 private:
  friend class Registry;
  CollectorHandle(Registry* reg, uint64_t id) : reg_(reg), id_(id) {}
  Registry* reg_ = nullptr;
  uint64_t id_ = 0;
};

// Thread-safe. Registering is for startup (it takes the registry's lock);
// registering a name again with the same type and label names returns the
// same family (two servers in one test share one), with another type or
// other labels it is a bug (std::logic_error).
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  Family<Counter>& counter(std::string name, std::string help, std::vector<std::string> labelNames = {});
  Family<Gauge>& gauge(std::string name, std::string help, std::vector<std::string> labelNames = {});
  Family<Histogram>& histogram(std::string name, std::string help, std::vector<std::string> labelNames,
                               std::vector<double> bounds = latencyBuckets());

  // Runs at every scrape, on the scraping thread, with no registry lock held;
  // it must bound its own time (a collector that waits on a guest waits with a
  // timeout). Registered until the handle goes.
  [[nodiscard]] CollectorHandle addCollector(Collector c);

  // Every family, instrumented and collected, in the text format 0.0.4, sorted
  // by name. A collected family with the name of an instrumented one adds its
  // samples to it.
  std::string render() const;

 private:
  friend class CollectorHandle;
  struct CollectorEntry {
    Collector fn;
    std::mutex running;  // held while a scrape runs it
  };
  template <class M>
  Family<M>& add(std::string name, std::string help, Type type, std::vector<std::string> labelNames,
                 std::vector<double> bounds);
  void removeCollector(uint64_t id);

  mutable std::mutex mu_;  // guards the two maps (not the families' contents)
  std::map<std::string, std::unique_ptr<FamilyBase>> families_;
  std::map<uint64_t, std::shared_ptr<CollectorEntry>> collectors_;
  uint64_t nextId_ = 1;
};

// The text format of the families (each written even with no samples).
std::string renderText(const std::vector<FamilySnapshot>& families);
// A label value escaped for the text format: \ " and newline.
std::string escapeLabelValue(std::string_view v);
// A sample value: integers without a fraction, +Inf, -Inf, NaN.
std::string formatValue(double v);

// ---- collectors of /proc facts (Linux)

// process_cpu_seconds_total, process_resident_memory_bytes,
// process_virtual_memory_bytes, process_open_fds, process_max_fds,
// process_start_time_seconds of the calling process.
void collectProcess(Emitter& out);
// corral_node_memory_total_bytes, corral_node_memory_available_bytes,
// corral_node_cpus, corral_node_cpu_seconds_total{mode}.
void collectNode(Emitter& out);

// utime+stime of a process in seconds, from /proc/PID/stat's text.
Result<double> parseProcCpuSeconds(std::string_view statText);
// utime+stime of pid in seconds. NotFound when it is gone.
Result<double> processCpuSeconds(pid_t pid);
// "MemTotal" -> bytes, from /proc/meminfo's text ("kB" lines scaled).
std::map<std::string, uint64_t> parseMeminfo(std::string_view text);
// The aggregate "cpu" line of /proc/stat as seconds per mode (user, nice,
// system, idle, iowait, irq, softirq, steal).
std::vector<std::pair<std::string, double>> parseCpuModes(std::string_view statText);

}  // namespace corral::util::metrics
