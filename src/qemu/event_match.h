// eventMatches: the recursive subset match that QEMU's python QEMUMachine.event_match
// applies to QMP events, so that `waitEvent("SHUTDOWN", {"data": {"guest": true}})`
// means here what it means in QEMU's own test suite.
//
// Pure function, no I/O; QmpTransport uses it to pick the event a waiter wants.
#pragma once

#include <nlohmann/json.hpp>

namespace corral::qemu {

// True when `match` is a subset of `event`:
//  - a null `match` matches anything (also as a nested value: {"data": {"reason": null}}
//    asks only that "reason" be present, as in QEMU's python);
//  - an object `match` matches an object `event` that has every key of `match`, each
//    value matching recursively; extra keys in `event` are ignored;
//  - any other `match` (string, number, bool, array) must equal `event`.
bool eventMatches(const nlohmann::json& event, const nlohmann::json& match);

}  // namespace corral::qemu
