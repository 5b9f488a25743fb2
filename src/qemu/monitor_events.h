// MonitorEvents: how qemu/ tells core/ what happened to a guest (STYLE.md §3, §8).
//
// core/ implements this interface; qemu/ never includes core/. dispatchMonitorEvent
// turns one QMP event object (as QmpTransport::onEvent delivers it) into a call on
// the interface; events it does not know are left alone (returns false). The caller
// decides threading: the transport calls its event handlers on its strand, so an
// implementation should hand the work over (post to the VM's strand) and return.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace corral::qemu {

class MonitorEvents {
 public:
  virtual ~MonitorEvents() = default;

  // SHUTDOWN: the guest powered off (guest=true) or the host asked (quit,
  // system_powerdown handled by the guest). reason is QEMU's ShutdownCause, e.g.
  // "guest-shutdown", "host-qmp-quit", "host-signal".
  virtual void onShutdown(bool guest, std::string reason) = 0;
  virtual void onStop() = 0;    // STOP: vCPUs paused
  virtual void onResume() = 0;  // RESUME: vCPUs running
  // RESET: the guest rebooted itself (guest=true) or system_reset was sent.
  virtual void onReset(bool guest) = 0;
  // The QMP connection ended without us closing it: QEMU exited or crashed.
  virtual void onDisconnected() = 0;
};

// Calls the MonitorEvents method that `event` stands for. Returns false for events
// the interface has no method for (RTC_CHANGE, POWERDOWN, ...) and for non-events.
inline bool dispatchMonitorEvent(const nlohmann::json& event, MonitorEvents& sink) {
  if (!event.is_object()) return false;
  auto name = event.find("event");
  if (name == event.end() || !name->is_string()) return false;
  const auto& n = name->get_ref<const std::string&>();
  static const nlohmann::json kNoData = nlohmann::json::object();
  auto dataIt = event.find("data");
  const nlohmann::json& data = (dataIt != event.end() && dataIt->is_object()) ? *dataIt : kNoData;
  auto boolField = [&](const char* key) {
    auto it = data.find(key);
    return it != data.end() && it->is_boolean() && it->get<bool>();
  };
  if (n == "SHUTDOWN") {
    auto r = data.find("reason");
    sink.onShutdown(boolField("guest"), (r != data.end() && r->is_string()) ? r->get<std::string>() : "");
  } else if (n == "STOP") {
    sink.onStop();
  } else if (n == "RESUME") {
    sink.onResume();
  } else if (n == "RESET") {
    sink.onReset(boolField("guest"));
  } else {
    return false;
  }
  return true;
}

}  // namespace corral::qemu
