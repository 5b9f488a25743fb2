// Proves the three log formats: JSON lines parse and carry ts, level, msg and
// the request id; key=value lines quote and escape so a message with spaces,
// quotes and newlines stays one line; text lines append the request id. Also
// that request scopes nest and restore, that an id crosses to another thread
// only when carried, and that the recent-problems ring keeps warnings and
// errors only, newest last, bounded.
#include "util/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

namespace corral::util::log {
namespace {

class LoggingTest : public ::testing::Test {
 protected:
  void use(Format f, size_t recent = 3) {
    out_.str("");
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", sink));
    setup({.format = f, .level = "debug", .recentProblems = recent});
  }
  std::vector<std::string> lines() {
    std::vector<std::string> v;
    std::istringstream in(out_.str());
    for (std::string l; std::getline(in, l);) v.push_back(l);
    return v;
  }
  void TearDown() override { spdlog::set_default_logger(previous_); }

  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_ = spdlog::default_logger();
};

TEST_F(LoggingTest, JsonLinesCarryTheRequestId) {
  use(Format::Json);
  spdlog::info("outside");
  {
    RequestScope scope("abc123", "POST /api/v1/vms");
    spdlog::warn("inside \"quoted\"\nsecond line");
  }
  auto l = lines();
  ASSERT_EQ(l.size(), 2u) << out_.str();
  auto a = nlohmann::json::parse(l[0]), b = nlohmann::json::parse(l[1]);
  EXPECT_EQ(a.value("msg", ""), "outside");
  EXPECT_EQ(a.value("level", ""), "info");
  EXPECT_FALSE(a.contains("request_id"));
  EXPECT_EQ(b.value("msg", ""), "inside \"quoted\"\nsecond line");
  EXPECT_EQ(b.value("request_id", ""), "abc123");
  EXPECT_EQ(b.value("level", ""), "warning");
  EXPECT_EQ(b.value("ts", "").size(), std::string("2026-12-03T13:40:00.123Z").size()) << b.dump();
}

TEST_F(LoggingTest, KeyValueQuotesAndEscapes) {
  use(Format::KeyValue);
  RequestScope scope("r1");
  spdlog::info("vm=x said \"hi\"\nthen=bye");
  spdlog::info("plain");
  auto l = lines();
  ASSERT_EQ(l.size(), 2u) << out_.str();
  EXPECT_NE(l[0].find(" level=info "), std::string::npos) << l[0];
  EXPECT_NE(l[0].find(" request_id=r1 "), std::string::npos) << l[0];
  EXPECT_NE(l[0].find(R"( msg="vm=x said \"hi\"\nthen=bye")"), std::string::npos) << l[0];
  EXPECT_EQ(l[0].rfind("ts=", 0), 0u);
  EXPECT_NE(l[1].find(" msg=plain"), std::string::npos) << l[1];
}

TEST_F(LoggingTest, TextAddsTheRequestIdUnlessTheMessageHasOne) {
  use(Format::Text);
  {
    RequestScope scope("r2");
    spdlog::info("started");
    spdlog::info("http GET / 200 req=r2");
  }
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_NE(l[0].find("info started req=r2"), std::string::npos) << l[0];
  EXPECT_EQ(l[1].find("req=r2 req=r2"), std::string::npos) << l[1];
}

TEST_F(LoggingTest, ScopesNestAndStayOnTheirThread) {
  use(Format::Json);
  EXPECT_EQ(requestId(), "");
  RequestScope outer("outer", "GET /a");
  {
    RequestScope inner("inner", "GET /b");
    EXPECT_EQ(requestId(), "inner");
    EXPECT_EQ(requestWhat(), "GET /b");
    std::string seen = "unset";
    std::thread([&] { seen = std::string(requestId()); }).join();
    EXPECT_EQ(seen, "") << "another thread has its own id unless it is carried";
  }
  EXPECT_EQ(requestId(), "outer");
  EXPECT_EQ(requestWhat(), "GET /a");
}

TEST_F(LoggingTest, RecentProblemsKeepsTheNewestWarningsAndErrors) {
  use(Format::Text, 3);
  spdlog::info("not a problem");
  for (int i = 1; i <= 5; ++i) spdlog::error("problem {}", i);
  spdlog::warn("last");
  auto recent = recentProblems();
  ASSERT_EQ(recent.size(), 3u);
  EXPECT_NE(recent[0].find("problem 4"), std::string::npos) << recent[0];
  EXPECT_NE(recent[1].find("problem 5"), std::string::npos);
  EXPECT_NE(recent[2].find("last"), std::string::npos);
  for (const auto& r : recent) EXPECT_EQ(r.find('\n'), std::string::npos);
}

TEST(LoggingFormatTest, ParsesEveryFormatAndNamesTheFieldOtherwise) {
  EXPECT_EQ(*parseFormat("text"), Format::Text);
  EXPECT_EQ(*parseFormat("keyvalue"), Format::KeyValue);
  EXPECT_EQ(*parseFormat("json"), Format::Json);
  auto bad = parseFormat("xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "log_format");
}

}  // namespace
}  // namespace corral::util::log
