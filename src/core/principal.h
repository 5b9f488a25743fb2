// Who is asking: the identity an API request was authenticated as, and the one
// rule of visibility that every VM route applies (DESIGN.md, Errors: a VM the
// caller may not see is NotFound, never Forbidden).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/store.h"

namespace corral::core {

struct Principal {
  std::string login;                // "root" for uid 0 over the unix socket
  bool admin = false;
  std::vector<std::string> groups;  // the groups the user is a member of
  std::string via;                  // "unix", "token", "session", "cert", "proxy"
  std::optional<int64_t> tokenId;   // when via == "token"
  std::string csrfToken;            // when via == "session"

  bool inGroup(const std::string& g) const { return std::find(groups.begin(), groups.end(), g) != groups.end(); }
};

// The caller may see and act on vm: an admin, the owning user, a member of the
// owning group, or the VM's administrator.
inline bool canAccess(const Principal& p, const store::VmRecord& vm) {
  if (p.admin) return true;
  if (!vm.administrator.empty() && vm.administrator == p.login) return true;
  if (vm.ownerKind == "group") return p.inGroup(vm.owner);
  return vm.owner == p.login;
}

// The caller owns vm: an admin, the owning user, or a member of the owning
// group. Owners delete a VM and give it (owner, administrator) away; its
// administrator only operates it.
inline bool ownsVm(const Principal& p, const store::VmRecord& vm) {
  if (p.admin) return true;
  if (vm.ownerKind == "group") return p.inGroup(vm.owner);
  return vm.owner == p.login;
}

// Images: public ones (no owner) are everyone's; a private one is its owning
// user's or its owning group's members'; admins see all.
inline bool canSeeImage(const Principal& p, const store::ImageRecord& img) {
  if (p.admin || img.ownerKind.empty()) return true;
  if (img.ownerKind == "group") return p.inGroup(img.owner);
  return img.owner == p.login;
}

}  // namespace corral::core
