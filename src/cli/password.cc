// Reading secrets (password.h).
#include "cli/password.h"

#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include <fmt/format.h>

namespace corral::cli {
namespace {

constexpr size_t kMaxSecret = 4096;

void chomp(std::string &s) {
  if (!s.empty() && s.back() == '\n')
    s.pop_back();
  if (!s.empty() && s.back() == '\r')
    s.pop_back();
}

Result<std::string> readAllStdin(std::string_view what) {
  std::string data;
  char buf[512];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return Error{ErrorCode::InvalidInput,
                   fmt::format("cannot read {} from stdin: {}", what,
                               std::strerror(errno)),
                   "stdin",
                   {}};
    if (n == 0)
      break;
    data.append(buf, size_t(n));
    if (data.size() > kMaxSecret)
      return Error::invalidInput(
          "stdin", "",
          fmt::format("{} is longer than {} bytes", what, kMaxSecret));
  }
  return data;
}

} // namespace

bool stdinIsTerminal() { return ::isatty(STDIN_FILENO) == 1; }

Result<std::string> readSecretFromStdin(std::string_view what) {
  std::string s = CORRAL_TRY(readAllStdin(what));
  chomp(s);
  if (s.empty())
    return Error::invalidInput("stdin", "",
                               fmt::format("no {} on stdin", what));
  if (s.find('\n') != std::string::npos)
    return Error::invalidInput("stdin", "",
                               fmt::format("{} must be one line", what));
  return s;
}

Result<std::pair<std::string, std::string>>
readTwoLinesFromStdin(std::string_view what) {
  std::string s = CORRAL_TRY(readAllStdin(what));
  chomp(s);
  std::pair<std::string, std::string> out;
  size_t nl = s.find('\n');
  out.first = s.substr(0, nl);
  if (nl != std::string::npos)
    out.second = s.substr(nl + 1);
  chomp(out.first);
  if (out.first.empty())
    return Error::invalidInput("stdin", "",
                               fmt::format("no {} on stdin", what));
  if (out.second.find('\n') != std::string::npos)
    return Error::invalidInput(
        "stdin", "",
        "expected at most two lines: the new password, then the current one");
  return out;
}

Result<std::string> promptSecret(std::string_view prompt) {
  std::cerr << prompt << std::flush;
  termios old{};
  bool restore = ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (restore) {
    termios quiet = old;
    quiet.c_lflag &= ~tcflag_t(ECHO);
    quiet.c_lflag |= ECHONL;
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
  }
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  if (restore)
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
  if (!got)
    return Error::invalidInput("stdin", "", "no answer on the terminal");
  chomp(line);
  return line;
}

Result<std::string> promptNewPassword(std::string_view login, bool allowEmpty) {
  std::string first = CORRAL_TRY(
      promptSecret(fmt::format("New password for {}{}: ", login,
                               allowEmpty ? " (empty for none)" : "")));
  if (first.empty()) {
    if (allowEmpty)
      return first;
    return Error::invalidInput("password", "", "must not be empty");
  }
  std::string second = CORRAL_TRY(promptSecret("Again: "));
  if (first != second)
    return Error::invalidInput("password", "", "the two passwords differ");
  return first;
}

bool confirm(std::string_view question) {
  std::cerr << question << " [y/N] " << std::flush;
  std::string line;
  if (!std::getline(std::cin, line))
    return false;
  return line == "y" || line == "Y" || line == "yes" || line == "Yes";
}

} // namespace corral::cli
