#include "util/names.h"

#include <algorithm>
#include <cctype>

namespace corral::util {
namespace {

bool isLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

Result<void> checkLength(std::string_view field, std::string_view name) {
  if (name.empty()) return Error::invalidInput(std::string(field), std::string(name), "must not be empty");
  if (name.size() > 63)
    return Error::invalidInput(std::string(field), std::string(name), "must be at most 63 characters");
  return ok();
}

}  // namespace

Result<void> validateVmName(std::string_view field, std::string_view name) {
  CORRAL_TRY(checkLength(field, name));
  bool chars = std::all_of(name.begin(), name.end(), [](char c) { return isLowerAlnum(c) || c == '-'; });
  if (!chars || !isLowerAlnum(name.front()) || !isLowerAlnum(name.back()))
    return Error::invalidInput(std::string(field), std::string(name),
                               "use lowercase letters, digits and '-', starting and ending with a letter or digit");
  return ok();
}

Result<void> validateHostname(std::string_view field, std::string_view name) {
  CORRAL_TRY(checkLength(field, name));
  auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
  bool chars = std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '-'; });
  if (!chars || !alnum(name.front()) || !alnum(name.back()))
    return Error::invalidInput(std::string(field), std::string(name),
                               "use letters, digits and '-', starting and ending with a letter or digit");
  return ok();
}

Result<void> validateImageName(std::string_view field, std::string_view name) {
  CORRAL_TRY(checkLength(field, name));
  bool chars = std::all_of(name.begin(), name.end(),
                           [](char c) { return isLowerAlnum(c) || c == '-' || c == '.' || c == '_'; });
  if (!chars || !isLowerAlnum(name.front()) || !isLowerAlnum(name.back()) ||
      name.find("..") != std::string_view::npos)
    return Error::invalidInput(std::string(field), std::string(name),
                               "use lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or "
                               "digit, no '..'");
  return ok();
}

Result<void> validateLogin(std::string_view field, std::string_view name) {
  auto bad = [&](std::string_view why) { return Error::invalidInput(std::string(field), std::string(name), why); };
  if (name.empty()) return bad("must not be empty");
  if (name.size() > 32) return bad("must be at most 32 characters");
  bool chars = std::all_of(name.begin(), name.end(), [](char c) { return isLowerAlnum(c) || c == '-' || c == '_'; });
  bool first = (name.front() >= 'a' && name.front() <= 'z') || name.front() == '_';
  if (!chars || !first) return bad("use lowercase letters, digits, '-' and '_', starting with a letter or '_'");
  return ok();
}

Result<void> validateEmail(std::string_view field, std::string_view email) {
  auto bad = [&](std::string_view why) { return Error::invalidInput(std::string(field), std::string(email), why); };
  if (email.empty()) return bad("must not be empty");
  if (email.size() > 254) return bad("must be at most 254 characters");
  size_t at = email.find('@');
  if (at == std::string_view::npos || email.find('@', at + 1) != std::string_view::npos)
    return bad("must be an address of the form name@example.org");
  std::string_view local = email.substr(0, at), domain = email.substr(at + 1);
  auto localChar = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("._%+-").find(c) != std::string_view::npos;
  };
  if (local.empty() || local.size() > 64 || !std::all_of(local.begin(), local.end(), localChar) ||
      local.front() == '.' || local.back() == '.' || local.find("..") != std::string_view::npos)
    return bad("the part before '@' may use letters, digits and . _ % + -");
  size_t labels = 0;
  while (true) {
    size_t dot = domain.find('.');
    std::string_view label = domain.substr(0, dot);
    bool okLabel = !label.empty() && label.size() <= 63 && label.front() != '-' && label.back() != '-' &&
                   std::all_of(label.begin(), label.end(),
                               [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-'; });
    if (!okLabel) return bad("the domain must be dot-separated labels of letters, digits and '-'");
    ++labels;
    if (dot == std::string_view::npos) break;
    domain.remove_prefix(dot + 1);
  }
  if (labels < 2) return bad("the domain needs at least one dot (example.org)");
  return ok();
}

}  // namespace corral::util
