// Masking secrets before a value reaches a log line, a report or an API answer.
#pragma once

#include <string>
#include <string_view>

namespace corral::util {

inline constexpr std::string_view kMasked = "***";

// A URL with its password masked, in either place libpq and most clients take
// one: the userinfo ("postgres://u:secret@h/db" -> "postgres://u:***@h/db") and
// a query parameter ("...?password=secret&x=1" -> "...?password=***&x=1").
// Anything else is returned as it is.
std::string maskUrlPassword(std::string_view url);

}  // namespace corral::util
