// Quotas: the limits that apply to an owner (a user or a group) and the one check
// that every quota-bound change runs inside the store's transaction.
//
// A limit is the subject's override when it has one, else the configured
// default. In both, -1 means unlimited. The quota that applies to a VM is its
// owner's, whoever asks (admins included): quotas belong to owners, not callers.
// The host's own superuser ("root", who has no user row) is unlimited by
// default, so that local administration is never blocked; an override still
// applies to it.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "store/store.h"
#include "util/result.h"

namespace corral::core {

struct QuotaLimits {
  int64_t maxVms = 10;
  int64_t maxRunning = 4;
  int64_t maxMemoryTotalMib = 4096;
  int64_t minMemoryVmMib = 72;
  int64_t maxMemoryVmMib = 2048;
  int64_t maxDiskTotalGib = 100;
  int64_t maxDiskVmGib = 50;

  static QuotaLimits unlimited();
};

// Whether vm counts against its owner's running quota: asked to run, or not yet
// (or no longer) fully stopped.
bool countsAsRunning(const store::VmRecord& vm);

class QuotaPolicy {
 public:
  QuotaPolicy() = default;
  explicit QuotaPolicy(QuotaLimits defaults) : defaults_(defaults) {}

  const QuotaLimits& defaults() const { return defaults_; }
  QuotaLimits effective(const store::QuotaRecord& overrides) const;

  // The check for changing a VM from *before (null: it is being created) to
  // after. Only what the change increases is checked against the limits, so a
  // lowered quota never blocks stopping, pausing or shrinking a VM.
  store::QuotaCheck check(const store::VmRecord* before, const store::VmRecord& after) const;

  // {"subject_kind", "subject", "limits", "usage", "overrides"}: what `corral
  // quota show` and a create form need. Unlimited values are null in "limits".
  nlohmann::json describe(const store::QuotaRecord& overrides, const store::Usage& usage) const;

 private:
  QuotaLimits defaults_;
};

// The JSON keys of the limits, in display order, with their unit.
struct QuotaKey {
  const char* key;
  const char* unit;  // "count", "MiB", "GiB"
  std::optional<int64_t> store::QuotaRecord::*field;
  int64_t QuotaLimits::*limit;
};
const std::vector<QuotaKey>& quotaKeys();
// The limit with this JSON key ("max_vms"), or nullptr for none.
const QuotaKey* findQuotaKey(std::string_view key);

}  // namespace corral::core
