// Byte sizes for people ("430 MiB", "1.0 GiB") and the progress line that
// `corral image import` draws while a file travels or an import runs:
// "importing debian-12  43%  430 MiB / 1.0 GiB". On a terminal the line is
// redrawn in place (\r); elsewhere (a log, a pipe) a plain line is written at
// each 10% so that the log stays short. Pure and header-only: the unit tests
// compile the same code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace corral::cli {

// Powers of 1024: "0 B", "512 B", "1.0 KiB", "430 MiB", "1.5 GiB", "10 GiB".
// Below 10 of a unit one decimal is shown, from 10 on none (the precision a
// person reads; the exact number is in the JSON).
inline std::string formatBytes(uint64_t n) {
  static constexpr const char *kUnits[] = {"B",   "KiB", "MiB", "GiB",
                                           "TiB", "PiB", "EiB"};
  if (n < 1024)
    return fmt::format("{} B", n);
  double v = double(n);
  size_t u = 0;
  while (v >= 1024.0 && u + 1 < std::size(kUnits)) {
    v /= 1024.0;
    ++u;
  }
  // 9.96 GiB would print as "10.0 GiB" with one decimal: round first, then
  // choose the form, so the cell never shows a decimal at 10 and above.
  double tenths = static_cast<double>(static_cast<uint64_t>(v * 10.0 + 0.5)) / 10.0;
  if (tenths < 10.0)
    return fmt::format("{:.1f} {}", tenths, kUnits[u]);
  return fmt::format("{} {}", static_cast<uint64_t>(v + 0.5), kUnits[u]);
}

// Whole percent of done/total, clamped to 0..100 (a file that grew while it was
// read must not show 104%); 0 when the total is unknown.
inline int percentOf(uint64_t done, uint64_t total) {
  if (total == 0)
    return 0;
  if (done >= total)
    return 100;
  return static_cast<int>((done * 100.0L) / total);
}

// One progress line, without a line end: "<verb> <name>  43%  430 MiB / 1.0
// GiB". With total 0 (an operation that is not byte-sized) the byte counts are
// left out and `percent` is shown.
inline std::string formatProgressLine(std::string_view verb,
                                      std::string_view name, uint64_t done,
                                      uint64_t total, int percent = 0) {
  if (total == 0)
    return fmt::format("{} {}  {}%", verb, name, std::clamp(percent, 0, 100));
  return fmt::format("{} {}  {}%  {} / {}", verb, name,
                     percentOf(done, total), formatBytes(done),
                     formatBytes(total));
}

// The progress of an operation's JSON: bytes_done/bytes_total when byte-sized,
// else its "progress" (0..100).
struct OpProgress {
  uint64_t done = 0;
  uint64_t total = 0;
  int percent = 0;
};
inline OpProgress operationProgress(const nlohmann::json &op) {
  OpProgress p;
  auto num = [&](std::string_view k) -> uint64_t {
    if (!op.is_object())
      return 0;
    auto it = op.find(k);
    if (it == op.end() || !it->is_number() ||
        (it->is_number_integer() && it->get<int64_t>() < 0))
      return 0;
    return it->get<uint64_t>();
  };
  p.done = num("bytes_done");
  p.total = num("bytes_total");
  p.percent = p.total > 0 ? percentOf(p.done, p.total)
                          : static_cast<int>(std::min<uint64_t>(num("progress"), 100));
  return p;
}

// Draws successive progress states of one task on `out` (stderr in the CLI).
// tty: the line is redrawn in place and finish() ends it with a newline; else
// a line is written the first time each 10% step is reached (0%, 10%, ...,
// 100%), never twice for the same step.
class ProgressReporter {
public:
  ProgressReporter(std::ostream &out, bool tty, std::string verb,
                   std::string name)
      : out_(out), tty_(tty), verb_(std::move(verb)), name_(std::move(name)) {}

  void update(uint64_t done, uint64_t total, int percent = 0) {
    std::string line = formatProgressLine(verb_, name_, done, total, percent);
    int pct = total > 0 ? percentOf(done, total) : std::clamp(percent, 0, 100);
    if (tty_) {
      if (line == last_)
        return;
      // Blanks over what is left of a longer previous line.
      std::string pad(last_.size() > line.size() ? last_.size() - line.size() : 0,
                      ' ');
      out_ << '\r' << line << pad << std::flush;
      last_ = line;
      drawn_ = true;
      return;
    }
    int step = pct / 10;
    if (lastStep_ && step <= *lastStep_)
      return;
    lastStep_ = step;
    out_ << line << '\n' << std::flush;
  }

  // Ends a redrawn line (tty); nothing otherwise.
  void finish() {
    if (tty_ && drawn_)
      out_ << '\n' << std::flush;
    drawn_ = false;
    last_.clear();
  }

private:
  std::ostream &out_;
  bool tty_;
  std::string verb_, name_;
  std::string last_;
  bool drawn_ = false;
  std::optional<int> lastStep_;
};

} // namespace corral::cli
