// VM state changes as events, for the API's event stream (`corral events`). A
// publisher never waits for a subscriber: callbacks must only queue (the
// WebSocket's send queue drops a peer that stops reading).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

#include "store/store.h"

namespace corral::core {

struct Event {
  // vm.created, vm.started, vm.stopped, vm.shutdown (by the guest), vm.crashed,
  // vm.paused, vm.resumed, vm.rebooted, vm.modified, vm.deleted
  std::string type;
  store::VmRecord vm;  // after the change (before it, for vm.deleted); for access checks
  std::string reason;
  std::string time;  // RFC 3339 UTC
  std::string previousName;  // vm.modified by a rename

  // {"type", "vm", "state", "time", "reason", "previous_name"?}; nothing else of
  // the record (the subscriber reads the VM when it wants more).
  nlohmann::json toJson() const;
};

class EventBus {
 public:
  using Subscriber = std::function<void(const Event&)>;

  // Subscribers are called on the publishing thread, in subscription order,
  // without the bus's lock held, so one may unsubscribe itself.
  uint64_t subscribe(Subscriber s);
  void unsubscribe(uint64_t id);
  void publish(Event e);  // fills e.time when empty
  size_t subscribers() const;

 private:
  mutable std::mutex mu_;
  uint64_t next_ = 1;
  std::map<uint64_t, std::shared_ptr<Subscriber>> subs_;
};

}  // namespace corral::core
