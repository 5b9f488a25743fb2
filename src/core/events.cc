// EventBus: a list of callbacks under a mutex. publish() copies the list and
// calls each subscriber without the lock, so that a subscriber may unsubscribe
// (itself or another) or subscribe from inside its callback without deadlock.
// One subscriber's exception is logged and does not keep the event from the
// others: the publisher is a VM's state change, which must not fail for a reader.
#include "core/events.h"

#include <exception>
#include <utility>
#include <vector>

#include <spdlog/spdlog.h>

namespace corral::core {

nlohmann::json Event::toJson() const {
  nlohmann::json j{{"type", type}, {"vm", vm.name}, {"state", vm.state}, {"time", time}, {"reason", reason}};
  if (!previousName.empty()) j["previous_name"] = previousName;
  return j;
}

uint64_t EventBus::subscribe(Subscriber s) {
  std::lock_guard lock(mu_);
  uint64_t id = next_++;
  subs_.emplace(id, std::make_shared<Subscriber>(std::move(s)));
  return id;
}

void EventBus::unsubscribe(uint64_t id) {
  std::lock_guard lock(mu_);
  subs_.erase(id);
}

void EventBus::publish(Event e) {
  if (e.time.empty()) e.time = store::nowRfc3339();
  std::vector<std::pair<uint64_t, std::shared_ptr<Subscriber>>> targets;
  {
    std::lock_guard lock(mu_);
    targets.assign(subs_.begin(), subs_.end());  // map order = subscription order
  }
  for (const auto& [id, sub] : targets) {
    {
      // Unsubscribed by an earlier callback of this same event (e.g. a socket
      // that closed): skip it, so unsubscribe() means "no more calls" to the
      // thread that made it.
      std::lock_guard lock(mu_);
      if (!subs_.count(id)) continue;
    }
    try {
      (*sub)(e);
    } catch (const std::exception& ex) {
      spdlog::error("event subscriber {} failed on {} vm={}: {}", id, e.type, e.vm.name, ex.what());
    } catch (...) {
      spdlog::error("event subscriber {} failed on {} vm={}", id, e.type, e.vm.name);
    }
  }
}

size_t EventBus::subscribers() const {
  std::lock_guard lock(mu_);
  return subs_.size();
}

}  // namespace corral::core
