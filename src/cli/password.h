// Secrets typed by a person or piped by a script, never taken from argv (where
// `ps` and shell history would show them).
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::cli {

// True when stdin is a terminal (prompts are possible).
bool stdinIsTerminal();

// Reads stdin to its end (at most 4 KiB) and drops one trailing "\n" or
// "\r\n": `echo secret | corral ... --password-stdin`.
Result<std::string> readSecretFromStdin(std::string_view what);

// The first line of stdin and, when present, the second (for passwd's current
// password); trailing CR/LF dropped.
Result<std::pair<std::string, std::string>>
readTwoLinesFromStdin(std::string_view what);

// Prompts on stderr and reads one line from the terminal on stdin with echo
// off (restored afterwards, also on error).
Result<std::string> promptSecret(std::string_view prompt);

// Prompts twice; InvalidInput when the two differ. allowEmpty: an empty first
// answer returns "" without asking again (user add: no password).
Result<std::string> promptNewPassword(std::string_view login, bool allowEmpty);

// Asks a yes/no question on stderr, reading the answer from stdin.
bool confirm(std::string_view question);

} // namespace corral::cli
