// Pure parsing helpers of the corral CLI: sizes given on the command line and
// path segments put into API URLs. Header-only so that the unit tests (which
// cannot link the `corral` executable) compile the same code.
#pragma once

#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "util/result.h"

namespace corral::cli {

// "--memory" values: a bare number of MiB ("512"), or a number with a suffix M,
// MiB, G or GiB (case-insensitive: "512M", "1G", "2GiB"). Decimal SI units (MB,
// GB) are refused rather than guessed at. Zero is refused; upper bounds are the
// daemon's business (quotas). Errors are InvalidInput on field `option`.
inline Result<uint64_t> parseMemoryMib(std::string_view text,
                                       std::string_view option = "--memory") {
  auto bad = [&](std::string_view why) {
    return Error::invalidInput(std::string(option), std::string(text), why);
  };
  const std::string_view hint =
      "use a number of MiB or a suffix M, MiB, G or GiB (e.g. 512, 512M, 2G)";
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t digit = uint64_t(text[i] - '0');
    if (n > (UINT64_MAX - digit) / 10)
      return bad("is too large");
    n = n * 10 + digit;
    ++i;
  }
  if (i == 0)
    return bad(fmt::format("'{}' is not a size; {}", text, hint));
  std::string unit;
  for (char c : text.substr(i))
    unit += char(std::tolower(static_cast<unsigned char>(c)));
  uint64_t factor = 0;
  if (unit.empty() || unit == "m" || unit == "mib") {
    factor = 1;
  } else if (unit == "g" || unit == "gib") {
    factor = 1024;
  } else {
    return bad(fmt::format("unknown unit '{}'; {}", text.substr(i), hint));
  }
  if (n == 0)
    return bad("must be at least 1 MiB");
  // Larger than any host: the daemon would refuse it anyway, but fail before
  // the multiplication can overflow.
  if (n > (uint64_t(1) << 40) / factor)
    return bad("is too large");
  return n * factor;
}

// The units of `corral quota set` values.
enum class QuotaUnit { Count, Mib, Gib };

// A `quota set` value: "default" (nullopt: clear the override, the configured
// default applies again) or a non-negative integer; MiB values also take the
// suffixes of --memory (M, MiB, G, GiB), GiB values G, GiB, T, TiB. Zero is a
// real limit ("no running VMs"). InvalidInput on field `option`.
inline Result<std::optional<uint64_t>> parseQuotaValue(std::string_view option,
                                                       std::string_view text,
                                                       QuotaUnit unit) {
  auto bad = [&](std::string_view why) {
    return Error::invalidInput(std::string(option), std::string(text), why);
  };
  if (text == "default")
    return std::optional<uint64_t>();
  size_t i = 0;
  uint64_t n = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t digit = uint64_t(text[i] - '0');
    if (n > (UINT64_MAX - digit) / 10)
      return bad("is too large");
    n = n * 10 + digit;
    ++i;
  }
  const char *hint =
      unit == QuotaUnit::Count ? "use a whole number or \"default\""
      : unit == QuotaUnit::Mib
          ? "use MiB (or a suffix M, MiB, G, GiB) or \"default\""
          : "use GiB (or a suffix G, GiB, T, TiB) or \"default\"";
  if (i == 0)
    return bad(fmt::format("'{}' is not a number; {}", text, hint));
  std::string suffix;
  for (char c : text.substr(i))
    suffix += char(std::tolower(static_cast<unsigned char>(c)));
  uint64_t factor = 1;
  if (suffix.empty()) {
    factor = 1;
  } else if (unit == QuotaUnit::Mib && (suffix == "m" || suffix == "mib")) {
    factor = 1;
  } else if (unit == QuotaUnit::Mib && (suffix == "g" || suffix == "gib")) {
    factor = 1024;
  } else if (unit == QuotaUnit::Gib && (suffix == "g" || suffix == "gib")) {
    factor = 1;
  } else if (unit == QuotaUnit::Gib && (suffix == "t" || suffix == "tib")) {
    factor = 1024;
  } else {
    return bad(fmt::format("unknown unit '{}'; {}", text.substr(i), hint));
  }
  // Quotas are stored as signed 64-bit numbers; far above any real limit.
  if (n > (uint64_t(1) << 50) / factor)
    return bad("is too large");
  return std::optional<uint64_t>(n * factor);
}

// Percent-encodes one URL path segment so that a name can never add a '/',
// '?', '%' or '..' to the path the daemon routes on. Unreserved characters of
// RFC 3986 pass through.
inline std::string encodePathSegment(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += char(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  // "." and ".." are unreserved but still mean something in paths.
  if (out == "." || out == "..") {
    std::string enc;
    for (char c : out)
      enc += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    return enc;
  }
  return out;
}

} // namespace corral::cli
