#include "qemu/event_match.h"

namespace corral::qemu {

bool eventMatches(const nlohmann::json& event, const nlohmann::json& match) {
  if (match.is_null()) return true;
  if (!match.is_object()) return event == match;
  if (!event.is_object()) return false;
  for (const auto& [key, want] : match.items()) {
    auto it = event.find(key);
    if (it == event.end() || !eventMatches(*it, want)) return false;
  }
  return true;
}

}  // namespace corral::qemu
