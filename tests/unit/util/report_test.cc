// Proves the Guru Meditation Report engine (util/report.h): the text and JSON
// views show the same sections in the same (registration) order and survive a
// JSON round trip; a generator that throws or hangs costs only its own section;
// a later add() replaces a section in place; ids are unique and sort by
// creation; the generic sections carry the package facts, this very process's
// identity and fds, and a symbolized stack for every thread, while a thread
// that blocks the sampling signal is reported as not answering instead of
// hanging the report.
#include "util/report.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "util/build_info.h"
#include "util/stacks.h"

namespace corral::util {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

// A thread parked in a function with a name the test can look for.
// Says its tid from inside its own frame, so a sample taken after the tid is known always finds
// this function on the stack (announcing before the call raced the sample under load).
[[gnu::noinline]] void corralReportTestParkedThread(std::promise<pid_t>& tid, std::shared_future<void> release) {
  tid.set_value(::gettid());
  release.wait();
  asm volatile("" ::: "memory");  // keeps the frame: no tail call
}

const json* findThread(const json& threads, pid_t tid) {
  for (const json& t : threads["threads"]) {
    if (t["tid"].get<pid_t>() == tid) return &t;
  }
  return nullptr;
}

TEST(Report, TextAndJsonShowTheSameSectionsInRegistrationOrder) {
  Reporter r;
  r.add("zeta", [] { return json{{"answer", 42}}; });
  r.add("alpha", [] { return json{{"nested", {{"deep", "value-a"}}}, {"list", {1, 2}}}; });
  r.add("mid", [] { return json("plain"); });
  Report rep = r.build("test", json{{"request", "GET /x"}});

  json j = rep.toJson();
  EXPECT_EQ(j["order"], json({"zeta", "alpha", "mid"}));
  EXPECT_EQ(j["sections"]["zeta"]["answer"], 42);
  EXPECT_EQ(j["reason"], "test");
  EXPECT_EQ(j["context"]["request"], "GET /x");
  EXPECT_EQ(j["created_at"], formatRfc3339(rep.createdUnix));

  std::string text = rep.toText();
  EXPECT_EQ(text.rfind("==== Guru Meditation ====\n", 0), 0u) << text;
  size_t z = text.find("==== zeta ====");
  size_t a = text.find("==== alpha ====");
  size_t m = text.find("==== mid ====");
  ASSERT_NE(z, std::string::npos) << text;
  ASSERT_NE(a, std::string::npos) << text;
  ASSERT_NE(m, std::string::npos) << text;
  EXPECT_LT(z, a);
  EXPECT_LT(a, m);
  EXPECT_NE(text.find("answer: 42"), std::string::npos) << text;
  EXPECT_NE(text.find("  deep: value-a"), std::string::npos) << text;  // nested: indented
  EXPECT_NE(text.find("request: GET /x"), std::string::npos) << text;

  // A client that fetched the JSON renders the very same text.
  auto back = Report::fromJson(j);
  ASSERT_TRUE(back.ok()) << back.error().describe();
  EXPECT_EQ(back->toText(), text);
  EXPECT_FALSE(Report::fromJson(json{{"id", "x"}}).ok());
}

TEST(Report, ThrowingGeneratorGivesAnErrorAndTheOthersStillAppear) {
  Reporter r;
  r.add("before", [] { return json{{"ok", true}}; });
  r.add("broken", []() -> json { throw std::runtime_error("database on fire"); });
  r.add("after", [] { return json{{"ok", true}}; });
  Report rep = r.build("test");
  ASSERT_EQ(rep.sections.size(), 3u);
  EXPECT_EQ(rep.sections[0].second["ok"], true);
  EXPECT_EQ(rep.sections[1].first, "broken");
  ASSERT_TRUE(rep.sections[1].second.contains("error"));
  EXPECT_NE(rep.sections[1].second["error"].get<std::string>().find("database on fire"), std::string::npos);
  EXPECT_EQ(rep.sections[2].second["ok"], true);
}

TEST(Report, HangingGeneratorGivesAnErrorAndTheOthersStillAppear) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  Reporter r(100ms);
  r.add("stuck", [released] {
    released.wait();  // like a section waiting on a lock that a wedged thread holds
    return json{{"late", true}};
  });
  r.add("after", [] { return json{{"ok", true}}; });
  Report rep = r.build("test");
  release.set_value();
  ASSERT_EQ(rep.sections.size(), 2u);
  ASSERT_TRUE(rep.sections[0].second.contains("error")) << rep.sections[0].second;
  EXPECT_NE(rep.sections[0].second["error"].get<std::string>().find("did not finish in 100 ms"), std::string::npos);
  EXPECT_EQ(rep.sections[1].second["ok"], true);
}

TEST(Report, LaterAddReplacesTheSectionInPlace) {
  Reporter r;
  r.add("a", [] { return json(1); });
  r.add("b", [] { return json(2); });
  r.add("a", [] { return json(3); });
  EXPECT_EQ(r.sections(), (std::vector<std::string>{"a", "b"}));
  Report rep = r.build("test");
  EXPECT_EQ(rep.sections[0].second, 3);
}

TEST(Report, IdsAreUniqueFileNameSafeAndSortInCreationOrder) {
  std::string first = newReportId(1'796'304'612);  // 2026-12-03T13:30:12Z
  std::string second = newReportId(1'796'304'612);
  EXPECT_NE(first, second);
  EXPECT_LT(first, second);
  EXPECT_EQ(first.rfind("20261203T133012Z-", 0), 0u) << first;
  EXPECT_EQ(first.find('/'), std::string::npos);
  EXPECT_EQ(formatRfc3339(1'796'304'612), "2026-12-03T13:30:12Z");
}

TEST(Report, TextShowsFramesOnePerLine) {
  Report rep;
  rep.sections.emplace_back(
      "stack",
      json{{"frames",
            {{{"frame", 3}, {"address", "0x10"}, {"function", "corral::foo()"}, {"file", "src/a.cc"}, {"line", 12}}}}});
  EXPECT_NE(rep.toText().find("  #3 0x10 corral::foo() (src/a.cc:12)\n"), std::string::npos) << rep.toText();
}

TEST(ReportSections, PackageNamesProductVersionAndCompiler) {
  json p = packageSection();
  EXPECT_EQ(p["product"], "corral");
  EXPECT_EQ(p["vendor"], "corral project");
  EXPECT_EQ(p["version"], build::kVersion);
  EXPECT_FALSE(p["version"].get<std::string>().empty());
  EXPECT_FALSE(p["commit"].get<std::string>().empty());
  EXPECT_FALSE(p["compiler"].get<std::string>().empty());
  EXPECT_FALSE(p["compiler_version"].get<std::string>().empty());
}

TEST(ReportSections, ProcessDescribesThisProcess) {
  json p = processSection();
  EXPECT_EQ(p["pid"], ::getpid());
  EXPECT_EQ(p["ppid"], ::getppid());
  EXPECT_EQ(p["uid"]["real"], ::getuid());
  EXPECT_EQ(p["gid"]["effective"], ::getegid());
  EXPECT_GT(p["open_fds"]["count"].get<int>(), 0);
  bool sawStdin = false;
  for (const json& fd : p["open_fds"]["fds"]) sawStdin |= fd["fd"] == 0;
  EXPECT_TRUE(sawStdin) << p["open_fds"];
  EXPECT_GE(p["threads"]["count"].get<int>(), 1);
  EXPECT_TRUE(p.contains("start_time")) << p;
  EXPECT_GE(p["rusage"]["max_rss_kib"].get<long>(), 1);
}

TEST(ReportSections, ThreadsHaveSymbolizedStacksAndASilentThreadDoesNotHangTheReport) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<pid_t> parkedTid;
  std::promise<pid_t> deafTid;
  std::thread parked([&] {
    ::pthread_setname_np(::pthread_self(), "corral-parked");
    corralReportTestParkedThread(parkedTid, released);
  });
  std::thread deaf([&] {
    EXPECT_TRUE(prepareStackSampling().ok());
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);  // the sampling signal can never reach it
    deafTid.set_value(::gettid());
    released.wait();
  });
  pid_t parkedId = parkedTid.get_future().get();
  pid_t deafId = deafTid.get_future().get();

  json threads = threadsSection(100ms);
  release.set_value();
  parked.join();
  deaf.join();

  const json* p = findThread(threads, parkedId);
  ASSERT_NE(p, nullptr) << threads.dump(2);
  EXPECT_EQ((*p)["name"], "corral-parked");
  bool found = false;
  for (const json& f : (*p)["frames"]) {
    found |= f["function"].get<std::string>().find("corralReportTestParkedThread") != std::string::npos;
  }
  EXPECT_TRUE(found) << p->dump(2);

  const json* d = findThread(threads, deafId);
  ASSERT_NE(d, nullptr) << threads.dump(2);
  EXPECT_NE((*d).value("error", std::string()).find("did not answer in 100 ms"), std::string::npos) << d->dump(2);

  const json* self = findThread(threads, ::gettid());
  ASSERT_NE(self, nullptr);
  EXPECT_EQ((*self)["reporter"], true);
  EXPECT_FALSE((*self)["frames"].empty());
}

}  // namespace
}  // namespace corral::util
