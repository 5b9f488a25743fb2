// Who may open which console: minting a console token for a caller and a VM, and
// redeeming one when a console WebSocket opens. The rules live here, not in api/:
// a token names the VM by uuid (a VM re-created under the same name is another
// VM) and its user by row id; redeeming re-checks that the user still exists, the
// API token it was minted with still stands, the user may still see the VM, and
// the guest runs.
#pragma once

#include <string>

#include "core/console_tokens.h"
#include "core/identity.h"
#include "core/principal.h"
#include "core/vm_manager.h"
#include "util/result.h"

namespace corral::core {

// A console token of `kind` for VM `vm`, which `who` must be able to see.
Result<ConsoleTokens::Minted> mintConsoleToken(VmManager& vms, ConsoleTokens& tokens, Identity& identity,
                                               const Principal& who, const std::string& vm, ConsoleKind kind);

// The principal a console token stands for, when it opens VM `vm`'s console of
// `kind` now: Unauthenticated (no, forged, expired or voided token, another
// kind, user or API token gone), Forbidden (a token for another VM), NotFound (a
// VM the user may not see), FailedPrecondition (the guest is not running).
Result<Principal> redeemConsoleToken(VmManager& vms, ConsoleTokens& tokens, Identity& identity,
                                     const std::string& token, const std::string& vm, ConsoleKind kind);

}  // namespace corral::core
