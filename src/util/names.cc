#include "util/names.h"

#include <algorithm>

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

}  // namespace corral::util
