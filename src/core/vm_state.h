// The VM state machine: one enum, one transition function (STYLE.md §2).
//
//   stopped  -> starting
//   starting -> running | paused | crashed | stopped   (paused: started paused)
//   running  -> paused | stopping | stopped | crashed  (stopped: guest powered off)
//   paused   -> running | stopping | stopped | crashed
//   stopping -> stopped | crashed
//   crashed  -> starting | stopped                     (restart, or cleared by stop)
#pragma once

#include <optional>
#include <string_view>

namespace corral::core {

enum class VmState { Stopped, Starting, Running, Paused, Stopping, Crashed };

inline constexpr VmState kAllVmStates[] = {VmState::Stopped, VmState::Starting, VmState::Running,
                                           VmState::Paused,  VmState::Stopping, VmState::Crashed};

std::string_view toString(VmState s);
std::optional<VmState> parseVmState(std::string_view s);

// No `default:`: adding a state breaks the build until every case is decided.
bool canTransition(VmState from, VmState to);

// Whether a QEMU process is expected to exist in this state.
bool hasProcess(VmState s);

enum class OnCrash { Restart, Stop, Preserve };
std::string_view toString(OnCrash p);
std::optional<OnCrash> parseOnCrash(std::string_view s);

}  // namespace corral::core
