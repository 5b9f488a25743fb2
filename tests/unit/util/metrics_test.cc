// Proves that util/metrics writes the Prometheus text format 0.0.4 as specified
// (HELP/TYPE lines, escaping, cumulative histogram buckets with +Inf, _sum and
// _count, families without samples), that collectors' samples join the output
// and stop when their handle goes, that concurrent increments are not lost, and
// that the /proc parsers read the fields they claim to.
#include "util/metrics.h"

#include <unistd.h>

#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace corral::util::metrics {
namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// HELP and TYPE lines precede the samples; a counter's value is written as an integer.
TEST(Metrics, CounterHasHelpTypeAndValue) {
  Registry r;
  r.counter("corral_things_total", "Things done.", {"kind"}).labels({"a"}).inc(3);
  EXPECT_EQ(r.render(),
            "# HELP corral_things_total Things done.\n"
            "# TYPE corral_things_total counter\n"
            "corral_things_total{kind=\"a\"} 3\n");
}

// Backslash, double quote and newline in label values, and backslash and
// newline in HELP, are escaped as the format requires.
TEST(Metrics, EscapesLabelValuesAndHelp) {
  Registry r;
  r.gauge("corral_g", "a \\ help\nline", {"v"}).labels({"x\\y\"z\nw"}).set(1.5);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# HELP corral_g a \\\\ help\\nline\n")) << text;
  EXPECT_TRUE(contains(text, "corral_g{v=\"x\\\\y\\\"z\\nw\"} 1.5\n")) << text;
}

// Buckets are cumulative, end in le="+Inf" equal to _count, and _sum adds the
// observations; a value equal to a bound falls into that bound's bucket.
TEST(Metrics, HistogramBucketsAreCumulative) {
  Registry r;
  auto& h = r.histogram("corral_lat_seconds", "Latency.", {"route"}, {0.1, 1}).labels({"/x"});
  h.observe(0.05);
  h.observe(0.1);
  h.observe(0.5);
  h.observe(7);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "# TYPE corral_lat_seconds histogram\n")) << text;
  EXPECT_TRUE(contains(text,
                       "corral_lat_seconds_bucket{route=\"/x\",le=\"0.1\"} 2\n"
                       "corral_lat_seconds_bucket{route=\"/x\",le=\"1\"} 3\n"
                       "corral_lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"
                       "corral_lat_seconds_sum{route=\"/x\"} 7.65\n"
                       "corral_lat_seconds_count{route=\"/x\"} 4\n"))
      << text;
}

// A family that has no child yet is still declared (HELP and TYPE), with no sample lines.
TEST(Metrics, FamilyWithoutSamplesIsDeclared) {
  Registry r;
  r.counter("corral_none_total", "Nothing yet.", {"x"});
  EXPECT_EQ(r.render(), "# HELP corral_none_total Nothing yet.\n# TYPE corral_none_total counter\n");
}

// Special values are written the way Prometheus parses them.
TEST(Metrics, FormatsSpecialValues) {
  EXPECT_EQ(formatValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(formatValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(formatValue(0.0 / 0.0), "NaN");
  EXPECT_EQ(formatValue(42), "42");
  EXPECT_EQ(formatValue(0.25), "0.25");
}

// The same name registered twice with the same shape is the same family.
TEST(Metrics, ReRegisteringReturnsTheFamily) {
  Registry r;
  EXPECT_EQ(&r.gauge("corral_b", "B."), &r.gauge("corral_b", "B."));
}

// Families come out sorted by name, a collector's family is written once even
// when its samples came in two calls, and its samples go with its handle.
TEST(Metrics, CollectorSamplesAndRemoval) {
  Registry r;
  r.gauge("corral_b", "B.").labels({}).set(2);
  {
    auto h = r.addCollector([](Emitter& out) {
      out.gauge("corral_a", "A.", {{"vm", "x"}}, 1);
      out.gauge("corral_a", "A.", {{"vm", "y"}}, 2);
    });
    EXPECT_EQ(r.render(),
              "# HELP corral_a A.\n# TYPE corral_a gauge\ncorral_a{vm=\"x\"} 1\ncorral_a{vm=\"y\"} 2\n"
              "# HELP corral_b B.\n# TYPE corral_b gauge\ncorral_b 2\n");
  }
  EXPECT_EQ(r.render(), "# HELP corral_b B.\n# TYPE corral_b gauge\ncorral_b 2\n");
}

// Registering a name again with another type is a bug and says so.
TEST(Metrics, SameNameOtherTypeThrows) {
  Registry r;
  r.gauge("corral_x", "X.");
  EXPECT_THROW(r.counter("corral_x", "X."), std::logic_error);
  EXPECT_THROW(r.gauge("corral_x", "X.", {"other"}), std::logic_error);
}

// Eight threads each adding 10,000 to one counter and observing into one
// histogram lose nothing.
TEST(Metrics, ConcurrentIncrementsSum) {
  Registry r;
  auto& fam = r.counter("corral_c_total", "C.", {"k"});
  auto& hist = r.histogram("corral_h_seconds", "H.", {});
  std::vector<std::thread> ts;
  for (int t = 0; t < 8; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        fam.labels({"same"}).inc();
        hist.labels({}).observe(0.002);
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(fam.labels({"same"}).value(), 80000);
  std::string text = r.render();
  EXPECT_TRUE(contains(text, "corral_h_seconds_count 80000\n")) << text;
  EXPECT_TRUE(contains(text, "corral_h_seconds_bucket{le=\"+Inf\"} 80000\n")) << text;
}

// utime (14) and stime (15) are read after a comm holding spaces and parentheses.
TEST(Metrics, ParsesProcStatCpu) {
  std::string text =
      "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 150 50 0 0 20 0 1 0 987654 1000 10 "
      "18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  auto s = parseProcCpuSeconds(text);
  ASSERT_TRUE(s.ok()) << s.error().describe();
  EXPECT_DOUBLE_EQ(*s, 200.0 / double(::sysconf(_SC_CLK_TCK)));
  EXPECT_FALSE(parseProcCpuSeconds("garbage").ok());
}

TEST(Metrics, ParsesMeminfoAndCpuModes) {
  auto m = parseMeminfo("MemTotal:       16384 kB\nMemAvailable:    1024 kB\nHugePages_Total:       3\n");
  EXPECT_EQ(m["MemTotal"], 16384u * 1024);
  EXPECT_EQ(m["MemAvailable"], 1024u * 1024);
  EXPECT_EQ(m["HugePages_Total"], 3u);
  double t = double(::sysconf(_SC_CLK_TCK));
  auto modes = parseCpuModes("cpu  100 2 30 400 5 0 6 0 0 0\ncpu0 1 2 3\n");
  ASSERT_EQ(modes.size(), 8u);
  EXPECT_EQ(modes[0].first, "user");
  EXPECT_DOUBLE_EQ(modes[0].second, 100 / t);
  EXPECT_EQ(modes[3].first, "idle");
  EXPECT_DOUBLE_EQ(modes[3].second, 400 / t);
}

// The process and node collectors find this process's and this node's facts.
TEST(Metrics, ProcessAndNodeCollectors) {
  Emitter out;
  collectProcess(out);
  collectNode(out);
  auto& f = out.families();
  for (const char* name :
       {"process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds",
        "corral_node_memory_total_bytes", "corral_node_cpus", "corral_node_cpu_seconds_total"}) {
    ASSERT_TRUE(f.count(name)) << name;
    ASSERT_FALSE(f.at(name).samples.empty()) << name;
  }
  EXPECT_GT(f.at("process_resident_memory_bytes").samples[0].value, 0);
  EXPECT_GT(f.at("process_open_fds").samples[0].value, 2);  // stdin, stdout, stderr at least
  EXPECT_GE(f.at("corral_node_cpus").samples[0].value, 1);
}

}  // namespace
}  // namespace corral::util::metrics
