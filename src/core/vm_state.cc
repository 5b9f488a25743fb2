#include "core/vm_state.h"

namespace corral::core {

std::string_view toString(VmState s) {
  switch (s) {
    case VmState::Stopped: return "stopped";
    case VmState::Starting: return "starting";
    case VmState::Running: return "running";
    case VmState::Paused: return "paused";
    case VmState::Stopping: return "stopping";
    case VmState::Crashed: return "crashed";
  }
  return "stopped";
}

std::optional<VmState> parseVmState(std::string_view s) {
  for (VmState v : kAllVmStates)
    if (toString(v) == s) return v;
  return std::nullopt;
}

bool canTransition(VmState from, VmState to) {
  switch (from) {
    case VmState::Stopped:
      return to == VmState::Starting;
    case VmState::Starting:
      return to == VmState::Running || to == VmState::Paused || to == VmState::Crashed || to == VmState::Stopped;
    case VmState::Running:
      return to == VmState::Paused || to == VmState::Stopping || to == VmState::Stopped || to == VmState::Crashed;
    case VmState::Paused:
      return to == VmState::Running || to == VmState::Stopping || to == VmState::Stopped || to == VmState::Crashed;
    case VmState::Stopping:
      return to == VmState::Stopped || to == VmState::Crashed;
    case VmState::Crashed:
      return to == VmState::Starting || to == VmState::Stopped;
  }
  return false;
}

bool hasProcess(VmState s) {
  switch (s) {
    case VmState::Starting:
    case VmState::Running:
    case VmState::Paused:
    case VmState::Stopping:
      return true;
    case VmState::Stopped:
    case VmState::Crashed:
      return false;
  }
  return false;
}

std::string_view toString(OnCrash p) {
  switch (p) {
    case OnCrash::Restart: return "restart";
    case OnCrash::Stop: return "stop";
    case OnCrash::Preserve: return "preserve";
  }
  return "restart";
}

std::optional<OnCrash> parseOnCrash(std::string_view s) {
  for (OnCrash p : {OnCrash::Restart, OnCrash::Stop, OnCrash::Preserve})
    if (toString(p) == s) return p;
  return std::nullopt;
}

}  // namespace corral::core
