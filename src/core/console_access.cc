// Console token rules; see console_access.h.
#include "core/console_access.h"

#include <fmt/format.h>

namespace corral::core {

Result<ConsoleTokens::Minted> mintConsoleToken(VmManager& vms, ConsoleTokens& tokens, Identity& identity,
                                               const Principal& who, const std::string& vm, ConsoleKind kind) {
  const auto record = CORRAL_TRY(vms.get(who, vm));
  ConsoleTokenClaims c;
  c.login = who.login;
  c.userId = CORRAL_TRY(identity.userIdOf(who));
  c.via = who.via;
  c.apiTokenId = who.tokenId;
  c.vmUuid = record.uuid;
  c.kind = kind;
  return tokens.mint(std::move(c));
}

Result<Principal> redeemConsoleToken(VmManager& vms, ConsoleTokens& tokens, Identity& identity,
                                     const std::string& token, const std::string& vm, ConsoleKind kind) {
  if (token.empty())
    return Error::unauthenticated(
        fmt::format("a console WebSocket needs ?token= (POST /api/v1/vms/{}/console/token mints one)", vm));
  const auto claims = CORRAL_TRY(tokens.redeem(token, kind));
  auto who = CORRAL_TRY(identity.confirm(claims.login, claims.userId, claims.apiTokenId));
  const auto record = CORRAL_TRY(vms.get(who, vm));
  if (record.uuid != claims.vmUuid) return Error::forbidden(fmt::format("this console token is not for VM {}", vm));
  if (record.state != "running" && record.state != "paused")
    return Error::failedPrecondition(fmt::format("VM {} is {}: its console opens once it runs", vm, record.state));
  return who;
}

}  // namespace corral::core
