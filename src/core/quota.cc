#include "core/quota.h"

#include <fmt/format.h>

#include "core/vm_state.h"

namespace corral::core {
namespace {

constexpr int64_t kUnlimited = -1;

}  // namespace

QuotaLimits QuotaLimits::unlimited() {
  return {kUnlimited, kUnlimited, kUnlimited, kUnlimited, kUnlimited, kUnlimited, kUnlimited};
}

const QuotaKey* findQuotaKey(std::string_view key) {
  for (const auto& k : quotaKeys())
    if (key == k.key) return &k;
  return nullptr;
}

const std::vector<QuotaKey>& quotaKeys() {
  using R = store::QuotaRecord;
  using L = QuotaLimits;
  static const std::vector<QuotaKey> keys = {
      {"max_vms", "count", &R::maxVms, &L::maxVms},
      {"max_running", "count", &R::maxRunning, &L::maxRunning},
      {"max_memory_total", "MiB", &R::maxMemoryTotalMib, &L::maxMemoryTotalMib},
      {"min_memory_vm", "MiB", &R::minMemoryVmMib, &L::minMemoryVmMib},
      {"max_memory_vm", "MiB", &R::maxMemoryVmMib, &L::maxMemoryVmMib},
      {"max_disk_total", "GiB", &R::maxDiskTotalGib, &L::maxDiskTotalGib},
      {"max_disk_vm", "GiB", &R::maxDiskVmGib, &L::maxDiskVmGib},
  };
  return keys;
}

bool countsAsRunning(const store::VmRecord& vm) {
  if (vm.desiredState != "stopped") return true;
  auto s = parseVmState(vm.state).value_or(VmState::Stopped);
  return s != VmState::Stopped && s != VmState::Crashed;
}

QuotaLimits QuotaPolicy::effective(const store::QuotaRecord& o) const {
  QuotaLimits l = o.subjectKind == "user" && o.subject == "root" ? QuotaLimits::unlimited() : defaults_;
  for (const auto& k : quotaKeys())
    if (o.*(k.field)) l.*(k.limit) = *(o.*(k.field));
  return l;
}

store::QuotaCheck QuotaPolicy::check(const store::VmRecord* before, const store::VmRecord& after) const {
  // Copies: the check runs later, inside the store's transaction.
  std::optional<store::VmRecord> prior;
  if (before != nullptr) prior = *before;
  return [this, prior, after](const store::Usage& usage, const store::QuotaRecord& overrides) -> Result<void> {
    store::QuotaRecord owner = overrides;  // whose limits: the (new) owner's, whatever the store filled in
    owner.subjectKind = after.ownerKind;
    owner.subject = after.owner;
    QuotaLimits l = effective(owner);
    std::string subject = fmt::format("{} {}", after.ownerKind, after.owner);
    bool sameOwner = prior && prior->ownerKind == after.ownerKind && prior->owner == after.owner;
    auto over = [&](const char* resource, int64_t limit, int64_t used, int64_t requested) -> Result<void> {
      if (limit == kUnlimited || used + requested <= limit) return ok();
      return Error::quotaExceeded({resource, limit, used, requested}, subject);
    };
    auto mem = static_cast<int64_t>(after.memoryMib);
    bool memoryChanged = !prior || prior->memoryMib != after.memoryMib;
    // Per-VM bounds: on creation, on a change of size, on a change of owner.
    if (memoryChanged || !sameOwner) {
      if (l.minMemoryVmMib != kUnlimited && mem < l.minMemoryVmMib) {
        Error e = Error::quotaExceeded({"min_memory_vm", l.minMemoryVmMib, 0, mem}, subject);
        e.message = fmt::format("quota for {}: a VM needs at least {} MiB of memory, {} requested", subject,
                                l.minMemoryVmMib, mem);
        return e;
      }
      CORRAL_TRY(over("max_memory_vm", l.maxMemoryVmMib, 0, mem));
    }
    if (!prior || prior->diskGib != after.diskGib || !sameOwner)
      CORRAL_TRY(over("max_disk_vm", l.maxDiskVmGib, 0, after.diskGib));
    // Totals: usage excludes this VM, so the VM's own share is what it asks for.
    if (!sameOwner) CORRAL_TRY(over("max_vms", l.maxVms, usage.vms, 1));
    if (!sameOwner || after.diskGib > prior->diskGib)
      CORRAL_TRY(over("max_disk_total", l.maxDiskTotalGib, usage.diskTotalGib, after.diskGib));
    if (countsAsRunning(after)) {
      bool wasRunning = sameOwner && countsAsRunning(*prior);
      if (!wasRunning) CORRAL_TRY(over("max_running", l.maxRunning, usage.running, 1));
      if (!wasRunning || after.memoryMib > prior->memoryMib)
        CORRAL_TRY(over("max_memory_total", l.maxMemoryTotalMib, usage.memoryRunningMib, mem));
    }
    return ok();
  };
}

nlohmann::json QuotaPolicy::describe(const store::QuotaRecord& o, const store::Usage& usage) const {
  QuotaLimits l = effective(o);
  nlohmann::json limits = nlohmann::json::object(), overrides = nlohmann::json::object();
  for (const auto& k : quotaKeys()) {
    int64_t v = l.*(k.limit);
    limits[k.key] = v == kUnlimited ? nlohmann::json(nullptr) : nlohmann::json(v);
    const auto& ov = o.*(k.field);
    overrides[k.key] = ov ? nlohmann::json(*ov) : nlohmann::json(nullptr);
  }
  return {{"subject_kind", o.subjectKind},
          {"subject", o.subject},
          {"limits", limits},
          {"usage",
           {{"vms", usage.vms},
            {"running", usage.running},
            {"memory_total", usage.memoryRunningMib},
            {"disk_total", usage.diskTotalGib}}},
          {"overrides", overrides}};
}

}  // namespace corral::core
