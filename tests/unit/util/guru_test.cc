// Proves util::GuruMeditation: SIGUSR1 on a process whose event loop is wedged
// on purpose still yields a report file whose threads section (JSON and text
// views) shows the blocked handler's stack; report files are 0600 in a 0700
// directory; only the newest `keep` files remain; two captures at once get two
// ids and two files; SIGUSR1 has one owner per process, and its previous
// disposition is back after the reporter goes away.
#include "util/guru.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include "support/temp_dir.h"

// Outside any namespace and not inlined, so that its name is plain in the stack.
[[gnu::noinline]] void corral_test_wedged_event_loop_handler(std::shared_future<void> release,
                                                             std::promise<void>* entered) {
  entered->set_value();
  release.wait();  // the wedge: an event-loop handler that never returns on its own
  asm volatile("" ::: "memory");
}

namespace corral::util {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using corral::testing::TempDir;

std::vector<fs::path> reportFiles(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string name = e.path().filename().string();
    if (name[0] != '.' && e.path().extension() == ".json") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

json readJson(const fs::path& p) {
  std::ifstream in(p);
  return json::parse(in);
}

mode_t modeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

TEST(GuruMeditation, SigusrReportShowsTheStackOfAWedgedEventLoop) {
  TempDir tmp;
  Reporter reporter;
  addGenericSections(reporter);
  GuruMeditation guru(reporter, {.reportsDir = (tmp / "reports").string(), .toStderr = true, .keep = 50});
  auto started = guru.start();
  ASSERT_TRUE(started.ok()) << started.error().describe();

  boost::asio::io_context io;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> entered;
  boost::asio::post(io, [&] { corral_test_wedged_event_loop_handler(released, &entered); });
  std::thread loop([&] { io.run(); });
  entered.get_future().wait();

  ASSERT_EQ(::kill(::getpid(), SIGUSR1), 0);
  // Bounded wait for the reporter thread's file (the report itself takes well under a second).
  std::vector<fs::path> files;
  for (auto deadline = std::chrono::steady_clock::now() + 60s;
       files.empty() && std::chrono::steady_clock::now() < deadline;) {
    std::this_thread::sleep_for(20ms);
    files = reportFiles(tmp / "reports");
  }
  release.set_value();
  loop.join();
  ASSERT_EQ(files.size(), 1u) << "no report after SIGUSR1";

  json j = readJson(files[0]);
  EXPECT_EQ(j["reason"], "SIGUSR1");
  EXPECT_EQ(j["order"], json({"package", "process", "threads"}));
  bool found = false;
  for (const json& t : j["sections"]["threads"]["threads"]) {
    for (const json& f : t.value("frames", json::array())) {
      found |= f["function"].get<std::string>().find("corral_test_wedged_event_loop_handler") != std::string::npos;
    }
  }
  EXPECT_TRUE(found) << j["sections"]["threads"].dump(2);
  auto rep = Report::fromJson(j);
  ASSERT_TRUE(rep.ok()) << rep.error().describe();
  EXPECT_NE(rep->toText().find("corral_test_wedged_event_loop_handler"), std::string::npos);
  EXPECT_EQ(files[0].filename().string(), j["id"].get<std::string>() + ".json");
}

TEST(GuruMeditation, ReportFileIs0600InA0700Directory) {
  TempDir tmp;
  Reporter reporter;
  reporter.add("package", [] { return packageSection(); });
  ::umask(0022);
  GuruMeditation guru(reporter, {.reportsDir = (tmp / "state" / "reports").string()});
  auto saved = guru.capture("api", json{{"by", "test"}});
  ASSERT_TRUE(saved.ok()) << saved.error().describe();
  EXPECT_EQ(modeOf(tmp / "state" / "reports"), 0700u);
  EXPECT_EQ(modeOf(saved->path), 0600u);
  json j = readJson(saved->path);
  EXPECT_EQ(j, saved->report.toJson());
  EXPECT_EQ(j["context"]["by"], "test");
  EXPECT_EQ(reportFiles(tmp / "state" / "reports").size(), 1u);  // no temp file left behind
}

TEST(GuruMeditation, KeepsOnlyTheNewestFiles) {
  TempDir tmp;
  Reporter reporter;
  reporter.add("package", [] { return packageSection(); });
  GuruMeditation guru(reporter, {.reportsDir = tmp.str(), .keep = 3});
  std::vector<std::string> paths;
  for (int i = 0; i < 5; ++i) {
    auto saved = guru.capture("api");
    ASSERT_TRUE(saved.ok()) << saved.error().describe();
    paths.push_back(saved->path);
  }
  std::vector<fs::path> left = reportFiles(tmp.path());
  ASSERT_EQ(left.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(left[static_cast<size_t>(i)].string(), paths[static_cast<size_t>(i) + 2]);
}

TEST(GuruMeditation, TwoCapturesAtOnceGetTwoIds) {
  TempDir tmp;
  Reporter reporter;
  addGenericSections(reporter);
  GuruMeditation guru(reporter, {.reportsDir = tmp.str()});
  std::promise<void> go;
  std::shared_future<void> goF = go.get_future().share();
  auto one = std::async(std::launch::async, [&] {
    goF.wait();
    return guru.capture("a");
  });
  auto two = std::async(std::launch::async, [&] {
    goF.wait();
    return guru.capture("b");
  });
  go.set_value();
  auto a = one.get();
  auto b = two.get();
  ASSERT_TRUE(a.ok()) << a.error().describe();
  ASSERT_TRUE(b.ok()) << b.error().describe();
  EXPECT_NE(a->report.id, b->report.id);
  EXPECT_EQ(reportFiles(tmp.path()).size(), 2u);
}

void previousUsr1Handler(int) {}

TEST(GuruMeditation, OneOwnerOfSigusr1AndThePreviousHandlerComesBack) {
  TempDir tmp;
  Reporter reporter;
  struct sigaction mine {};
  mine.sa_handler = previousUsr1Handler;
  ::sigemptyset(&mine.sa_mask);
  struct sigaction before {};
  ASSERT_EQ(::sigaction(SIGUSR1, &mine, &before), 0);
  {
    GuruMeditation first(reporter, {.reportsDir = (tmp / "a").string()});
    ASSERT_TRUE(first.start().ok());
    GuruMeditation second(reporter, {.reportsDir = (tmp / "b").string()});
    auto r = second.start();
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, ErrorCode::FailedPrecondition);
    struct sigaction now {};
    ::sigaction(SIGUSR1, nullptr, &now);
    EXPECT_NE(now.sa_handler, previousUsr1Handler);
  }
  struct sigaction after {};
  ::sigaction(SIGUSR1, &before, &after);
  EXPECT_EQ(after.sa_handler, previousUsr1Handler);
}

}  // namespace
}  // namespace corral::util
