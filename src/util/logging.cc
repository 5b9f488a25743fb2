// The log formats and the per-thread request id; see logging.h.
#include "util/logging.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>

namespace corral::util::log {
namespace {

thread_local std::string tRequestId;
thread_local std::string tRequestWhat;

std::string_view levelName(spdlog::level::level_enum l) {
  auto sv = spdlog::level::to_string_view(l);
  return {sv.data(), sv.size()};
}

// 2026-12-03T13:40:00.123Z
void appendTime(spdlog::log_clock::time_point t, spdlog::memory_buf_t& dest) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
  fmt::format_to(std::back_inserter(dest), "{:%Y-%m-%dT%H:%M:%S}.{:03d}Z", fmt::gmtime(spdlog::log_clock::to_time_t(t)),
                 static_cast<int>(ms));
}

// A key=value value: bare when it is one plain word, else double-quoted with
// backslash escapes, so that a line always splits back into its pairs.
void appendValue(std::string_view v, spdlog::memory_buf_t& dest) {
  bool plain = !v.empty();
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) plain = false;
  if (plain) {
    dest.append(v.data(), v.data() + v.size());
    return;
  }
  dest.push_back('"');
  for (char c : v) {
    switch (c) {
      case '"':
        dest.append(std::string_view("\\\""));
        break;
      case '\\':
        dest.append(std::string_view("\\\\"));
        break;
      case '\n':
        dest.append(std::string_view("\\n"));
        break;
      case '\r':
        dest.append(std::string_view("\\r"));
        break;
      case '\t':
        dest.append(std::string_view("\\t"));
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          fmt::format_to(std::back_inserter(dest), "\\x{:02x}", int(c));
        else
          dest.push_back(c);
    }
  }
  dest.push_back('"');
}

class StructuredFormatter final : public spdlog::formatter {
 public:
  explicit StructuredFormatter(Format format) : format_(format) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string_view text(msg.payload.data(), msg.payload.size());
    switch (format_) {
      case Format::Json: {
        spdlog::memory_buf_t ts;
        appendTime(msg.time, ts);
        nlohmann::json j{{"ts", std::string_view(ts.data(), ts.size())},
                         {"level", levelName(msg.level)},
                         {"msg", text},
                         {"thread", msg.thread_id}};
        if (!tRequestId.empty()) j["request_id"] = tRequestId;
        // Invalid UTF-8 in a message (a guest's bytes, a path) is replaced, never thrown on.
        std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        dest.append(line.data(), line.data() + line.size());
        break;
      }
      case Format::KeyValue:
        dest.append(std::string_view("ts="));
        appendTime(msg.time, dest);
        fmt::format_to(std::back_inserter(dest), " level={} thread={}", levelName(msg.level), msg.thread_id);
        if (!tRequestId.empty()) fmt::format_to(std::back_inserter(dest), " request_id={}", tRequestId);
        dest.append(std::string_view(" msg="));
        appendValue(text, dest);
        break;
      case Format::Text:
        appendTime(msg.time, dest);
        fmt::format_to(std::back_inserter(dest), " {} {}", levelName(msg.level), text);
        if (!tRequestId.empty() && text.find("req=") == std::string_view::npos)
          fmt::format_to(std::back_inserter(dest), " req={}", tRequestId);
        break;
    }
    dest.append(std::string_view("\n"));
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<StructuredFormatter>(format_); }

 private:
  Format format_;
};

std::mutex gRecentMu;
std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> gRecent;

}  // namespace

Result<Format> parseFormat(std::string_view s, std::string_view field) {
  if (s == "text") return Format::Text;
  if (s == "keyvalue" || s == "kv") return Format::KeyValue;
  if (s == "json") return Format::Json;
  return Error::invalidInput(std::string(field), std::string(s), "must be text, keyvalue or json");
}

void setup(const Options& opts) {
  auto logger = spdlog::default_logger();
  logger->set_formatter(std::make_unique<StructuredFormatter>(opts.format));
  if (opts.recentProblems > 0) {
    auto recent = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(opts.recentProblems);
    recent->set_level(spdlog::level::warn);
    recent->set_formatter(std::make_unique<StructuredFormatter>(opts.format));
    logger->sinks().push_back(recent);
    std::lock_guard lock(gRecentMu);
    gRecent = recent;
  }
  logger->set_level(spdlog::level::from_str(opts.level));
}

std::vector<std::string> recentProblems() {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> recent;
  {
    std::lock_guard lock(gRecentMu);
    recent = gRecent;
  }
  if (!recent) return {};
  auto lines = recent->last_formatted();
  for (auto& l : lines)
    if (!l.empty() && l.back() == '\n') l.pop_back();
  return lines;
}

std::string_view requestId() { return tRequestId; }
std::string_view requestWhat() { return tRequestWhat; }

RequestScope::RequestScope(std::string id, std::string what)
    : previousId_(std::move(tRequestId)), previousWhat_(std::move(tRequestWhat)) {
  tRequestId = std::move(id);
  tRequestWhat = std::move(what);
}

RequestScope::~RequestScope() {
  tRequestId = std::move(previousId_);
  tRequestWhat = std::move(previousWhat_);
}

}  // namespace corral::util::log
