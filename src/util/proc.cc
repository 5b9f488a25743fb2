// /proc parsing for process identity; see proc.h.
#include "util/proc.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

namespace corral::util {

std::optional<std::string> readTextFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
namespace {

Result<std::string> readWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) return Error::notFound(fmt::format("{}: no such process", path));
    return Error::internal(fmt::format("{}: {}", path, std::strerror(err)));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return Error::notFound(fmt::format("{}: read failed (process gone?)", path));
  return ss.str();
}

template <class T>
bool parseNumber(std::string_view s, T& out) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

}  // namespace

Result<ProcStat> parseProcStat(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Error::invalidInput("stat", std::string(text.substr(0, 80)), why);
  };
  // "pid (comm) state ppid ...": comm may contain anything, so it ends at the last ')'.
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return bad("no (comm) field");
  }
  ProcStat st;
  std::string_view pidText = text.substr(0, open);
  while (!pidText.empty() && pidText.back() == ' ') pidText.remove_suffix(1);
  if (!parseNumber(pidText, st.pid)) return bad("bad pid field");
  st.comm = std::string(text.substr(open + 1, close - open - 1));

  // Fields after comm, numbered as in proc(5): 3 = state ... 22 = starttime.
  std::vector<std::string_view> fields;
  std::string_view rest = text.substr(close + 1);
  size_t i = 0;
  while (i < rest.size() && fields.size() < 20) {
    while (i < rest.size() && (rest[i] == ' ' || rest[i] == '\n')) ++i;
    size_t j = i;
    while (j < rest.size() && rest[j] != ' ' && rest[j] != '\n') ++j;
    if (j > i) fields.push_back(rest.substr(i, j - i));
    i = j;
  }
  if (fields.size() < 20) return bad("too few fields");
  if (fields[0].size() != 1) return bad("bad state field");
  st.state = fields[0][0];
  if (!parseNumber(fields[1], st.ppid) || !parseNumber(fields[2], st.pgrp) ||
      !parseNumber(fields[3], st.session) || !parseNumber(fields[19], st.startTime)) {
    return bad("bad numeric field");
  }
  return st;
}

Result<ProcStat> readProcStat(pid_t pid) {
  if (pid <= 0) return Error::notFound(fmt::format("pid {}: not a process", pid));
  std::string text = CORRAL_TRY(readWholeFile(fmt::format("/proc/{}/stat", pid)));
  if (text.empty()) return Error::notFound(fmt::format("pid {}: gone", pid));
  return parseProcStat(text);
}

Result<std::vector<std::string>> readProcCmdline(pid_t pid) {
  if (pid <= 0) return Error::notFound(fmt::format("pid {}: not a process", pid));
  std::string text = CORRAL_TRY(readWholeFile(fmt::format("/proc/{}/cmdline", pid)));
  std::vector<std::string> argv;
  size_t start = 0;
  while (start < text.size()) {
    size_t nul = text.find('\0', start);
    if (nul == std::string::npos) nul = text.size();
    argv.emplace_back(text.substr(start, nul - start));
    start = nul + 1;
  }
  return argv;
}

bool processAlive(pid_t pid, uint64_t expectedStartTime) {
  auto st = readProcStat(pid);
  if (!st.ok()) return false;
  return !st->finished() && st->startTime == expectedStartTime;
}

Result<uint64_t> processStartTime(pid_t pid) {
  auto st = CORRAL_TRY(readProcStat(pid));
  return st.startTime;
}

}  // namespace corral::util
