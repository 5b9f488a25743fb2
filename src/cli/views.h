// Views (output.h) of the control-plane nouns: users, groups, tokens, quotas,
// operations, events and the client's own remotes, plus the exit code an
// operation's final state maps to. Pure and header-only like output.h; the
// JSON shapes are those of docs/api.yaml and docs/control-plane.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "cli/output.h"

namespace corral::cli {

// ---- users and groups

// GET /api/v1/users -> LOGIN DISPLAY_NAME EMAIL ADMIN
inline View userListView(const nlohmann::json &body) {
  View v{{"LOGIN", "DISPLAY_NAME", "EMAIL", "ADMIN"}, {}};
  for (const auto &u : listOf(body, "users"))
    v.rows.push_back({field(u, "login"), field(u, "display_name"),
                      field(u, "email"), field(u, "admin")});
  return v;
}

inline View userView(const nlohmann::json &u) {
  return objectView(u, {"login", "display_name", "email", "admin", "groups",
                        "version", "created_at"});
}

// Members as "a, b"; the list answer may leave them out (then "-").
inline std::string joinedNames(const nlohmann::json &obj,
                               std::string_view key) {
  if (!obj.is_object())
    return "-";
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_array())
    return field(obj, key);
  std::string out;
  for (const auto &e : *it)
    out += (out.empty() ? "" : ", ") +
           (e.is_string() ? e.get<std::string>() : cell(e));
  return out.empty() ? "-" : out;
}

// GET /api/v1/groups -> NAME DESCRIPTION MEMBERS
inline View groupListView(const nlohmann::json &body) {
  View v{{"NAME", "DESCRIPTION", "MEMBERS"}, {}};
  for (const auto &g : listOf(body, "groups"))
    v.rows.push_back(
        {field(g, "name"), field(g, "description"), joinedNames(g, "members")});
  return v;
}

inline View groupView(const nlohmann::json &g) {
  return objectView(g, {"name", "description", "members", "created_at"});
}

// ---- tokens

// Now in the daemon's RFC 3339 UTC form, for tokenState.
inline std::string nowRfc3339Utc() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// A token's state for people: "revoked" (revoked_at set), "expired"
// (expires_at before now), else "active". now and the timestamps are the
// daemon's RFC 3339 UTC form ("2026-12-07T20:59:00Z"), which sorts as text.
inline std::string tokenState(const nlohmann::json &t, std::string_view now) {
  if (!t.is_object())
    return "";
  auto at = [&](const char *key) {
    auto it = t.find(key);
    return it != t.end() && it->is_string() ? it->get<std::string>()
                                             : std::string();
  };
  if (!at("revoked_at").empty())
    return "revoked";
  const std::string expires = at("expires_at");
  if (!expires.empty() && expires <= now)
    return "expired";
  return "active";
}

// GET /api/v1/tokens -> ID NAME USER STATE CREATED EXPIRES (never a secret:
// the daemon does not have it, and a "token" key would be dropped here anyway).
inline View tokenListView(const nlohmann::json &body, std::string_view now) {
  View v{{"ID", "NAME", "USER", "STATE", "CREATED", "EXPIRES"}, {}};
  for (const auto &t : listOf(body, "tokens"))
    v.rows.push_back(
        {field(t, "id"), field(t, "name"), field(t, "user"),
         tokenState(t, now), field(t, "created_at"),
         t.is_object() && t.contains("expires_at") && t["expires_at"].is_null()
             ? "never"
             : field(t, "expires_at")});
  return v;
}

// POST /api/v1/tokens answer: the one time the secret is shown.
inline View createdTokenView(const nlohmann::json &t) {
  return objectView(
      t, {"id", "name", "user", "created_at", "expires_at", "token"});
}

// ---- quotas

// One line of `quota show`: a limit (null = unlimited) against what is in use
// (null = a per-VM bound, nothing to add up).
struct QuotaLine {
  std::string resource;
  std::optional<int64_t> limit;
  std::optional<int64_t> used;
  std::string_view unit; // "", "MiB", "GiB"
};

inline std::optional<int64_t> optionalNumber(const nlohmann::json &obj,
                                             std::string_view key) {
  if (!obj.is_object())
    return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number())
    return std::nullopt;
  return it->get<int64_t>();
}

// The table's rows in a fixed order: totals first (they have usage), then the
// bounds of one VM.
inline std::vector<QuotaLine> quotaLines(const nlohmann::json &q) {
  const nlohmann::json empty = nlohmann::json::object();
  const auto &limits =
      q.is_object() && q.contains("limits") ? q["limits"] : empty;
  const auto &usage = q.is_object() && q.contains("usage") ? q["usage"] : empty;
  return {
      {"vms", optionalNumber(limits, "max_vms"), optionalNumber(usage, "vms"),
       ""},
      {"running", optionalNumber(limits, "max_running"),
       optionalNumber(usage, "running"), ""},
      {"memory_total", optionalNumber(limits, "max_memory_total"),
       optionalNumber(usage, "memory_total"), "MiB"},
      {"disk_total", optionalNumber(limits, "max_disk_total"),
       optionalNumber(usage, "disk_total"), "GiB"},
      {"memory_vm_max", optionalNumber(limits, "max_memory_vm"), std::nullopt,
       "MiB"},
      {"memory_vm_min", optionalNumber(limits, "min_memory_vm"), std::nullopt,
       "MiB"},
      {"disk_vm_max", optionalNumber(limits, "max_disk_vm"), std::nullopt,
       "GiB"},
  };
}

// FREE = limit - used, never below 0 (an admin may lower a limit under what is
// in use already); "unlimited" when there is no limit; "-" when nothing adds
// up.
inline std::string quotaFree(const QuotaLine &l) {
  if (!l.used)
    return "-";
  if (!l.limit)
    return "unlimited";
  int64_t free = *l.limit > *l.used ? *l.limit - *l.used : 0;
  return fmt::format("{}{}", free, l.unit);
}

// GET /api/v1/quota(s/...) -> RESOURCE LIMIT USED FREE
inline View quotaView(const nlohmann::json &q) {
  View v{{"RESOURCE", "LIMIT", "USED", "FREE"}, {}};
  for (const auto &l : quotaLines(q)) {
    // A min bound of nothing is no bound; a missing max is unlimited.
    std::string limit =
        l.limit ? fmt::format("{}{}", *l.limit, l.unit)
                : (l.resource == "memory_vm_min" ? std::string("-")
                                                 : std::string("unlimited"));
    v.rows.push_back({l.resource, limit,
                      l.used ? fmt::format("{}{}", *l.used, l.unit) : "-",
                      quotaFree(l)});
  }
  return v;
}

// ---- operations

inline View operationListView(const nlohmann::json &body) {
  View v{{"ID", "KIND", "TARGET", "STATE", "PROGRESS", "REQUESTER", "CREATED"},
         {}};
  for (const auto &op : listOf(body, "operations"))
    v.rows.push_back({field(op, "id"), field(op, "kind"), field(op, "target"),
                      field(op, "state"), field(op, "progress"),
                      field(op, "requester"), field(op, "created_at")});
  return v;
}

inline View operationView(const nlohmann::json &op) {
  return objectView(op, {"id", "kind", "target", "state", "progress",
                         "requester", "result", "created_at", "updated_at"});
}

// The exit code of an operation in `state`: 0 succeeded, 1 failed (or any end
// state this client does not know), nullopt while it has not ended.
inline std::optional<int> operationExitCode(std::string_view state) {
  if (state == "pending" || state == "running")
    return std::nullopt;
  if (state == "succeeded")
    return kExitOk;
  return kExitApiError;
}

inline std::string operationState(const nlohmann::json &op) {
  return op.is_object() && op.contains("state") && op["state"].is_string()
             ? op["state"].get<std::string>()
             : "";
}

// Why an operation failed, from its result: {"error": {"message"}} (the API's
// error shape), {"message"} or a bare string; else a generic line.
inline std::string operationFailure(const nlohmann::json &op) {
  const nlohmann::json *r =
      op.is_object() && op.contains("result") ? &op["result"] : nullptr;
  std::string id = field(op, "id");
  if (r != nullptr) {
    if (r->is_string() && !r->get_ref<const std::string &>().empty())
      return r->get<std::string>();
    if (r->is_object()) {
      const nlohmann::json *e =
          r->contains("error") && (*r)["error"].is_object() ? &(*r)["error"]
                                                            : r;
      if (e->contains("message") && (*e)["message"].is_string())
        return (*e)["message"].get<std::string>();
    }
  }
  return fmt::format("operation {} {}", id,
                     operationState(op).empty() ? "failed"
                                                : operationState(op));
}

// ---- events

inline std::vector<std::string> eventCells(const nlohmann::json &e) {
  return {field(e, "time"), field(e, "type"), field(e, "vm"), field(e, "state"),
          field(e, "reason")};
}
inline const std::vector<std::string> &eventHeaders() {
  static const std::vector<std::string> h{"TIME", "TYPE", "VM", "STATE",
                                          "REASON"};
  return h;
}

// One event as the line `corral events` prints: "time type vm state reason",
// one space apart (a stream cannot align columns it has not seen yet).
inline std::string formatEventLine(const nlohmann::json &e) {
  auto c = eventCells(e);
  return fmt::format("{} {} {} {} {}\n", c[0], c[1], c[2], c[3], c[4]);
}

// ---- VM dump and node verification

// Appends obj's leaves to v as "prefix.key" rows (a record view): nested
// objects flatten, an argv-like list of strings joins with spaces, and a list
// of objects (disks) numbers its items ("flavour.disks.0.name").
inline void flattenInto(View &v, const std::string &prefix,
                        const nlohmann::json &j) {
  if (j.is_object()) {
    for (const auto &[k, x] : j.items())
      flattenInto(v, prefix.empty() ? k : prefix + "." + k, x);
    return;
  }
  if (j.is_array() &&
      !std::all_of(j.begin(), j.end(), [](const auto &e) { return e.is_string(); })) {
    for (size_t i = 0; i < j.size(); ++i)
      flattenInto(v, prefix + "." + std::to_string(i), j[i]);
    return;
  }
  std::string value;
  if (j.is_array()) {
    for (const auto &e : j)
      value += (value.empty() ? "" : " ") + e.get<std::string>();
  } else {
    value = cell(j);
  }
  v.headers.push_back(prefix);
  v.rows[0].push_back(value.empty() ? "-" : value);
}

// GET /api/v1/vms/{name}/dump -> "metadata.name: web1", ..., "runtime.pid: 42"
// (runtime: "-" when the VM is not running).
inline View vmDumpView(const nlohmann::json &dump) {
  View v;
  v.record = true;
  v.rows.emplace_back();
  if (!dump.is_object())
    return v;
  if (auto it = dump.find("metadata"); it != dump.end())
    flattenInto(v, "metadata", *it);
  if (auto it = dump.find("metadata_source"); it != dump.end())
    flattenInto(v, "metadata_source", *it);
  if (auto it = dump.find("runtime"); it != dump.end())
    flattenInto(v, "runtime", *it);
  return v;
}

// GET /api/v1/node/verify -> CHECK RESULT DETAIL; RESULT is "ok", "WARNING"
// (worth knowing, not wrong) or "PROBLEM".
inline std::string verifyResult(const nlohmann::json &c) {
  bool ok = c.is_object() && c.value("ok", false);
  if (!ok)
    return "PROBLEM";
  return c.value("warning", false) ? "WARNING" : "ok";
}
inline View nodeVerifyView(const nlohmann::json &body) {
  View v{{"CHECK", "RESULT", "DETAIL"}, {}};
  for (const auto &c : listOf(body, "checks"))
    v.rows.push_back({field(c, "name"), verifyResult(c), field(c, "detail")});
  return v;
}
// The summary after the table, naming each problem again so that none hides
// in a long list: "2 problems: state_dir.mode, database.schema".
inline std::string nodeVerifySummary(const nlohmann::json &body) {
  std::vector<std::string> problems, warnings;
  for (const auto &c : listOf(body, "checks")) {
    if (verifyResult(c) == "PROBLEM")
      problems.push_back(field(c, "name"));
    else if (verifyResult(c) == "WARNING")
      warnings.push_back(field(c, "name"));
  }
  std::string out;
  if (problems.empty())
    out = "no problems";
  else
    out = fmt::format("{} problem{}: {}", problems.size(),
                      problems.size() == 1 ? "" : "s",
                      fmt::join(problems, ", "));
  if (!warnings.empty())
    out += fmt::format("; {} warning{}: {}", warnings.size(),
                       warnings.size() == 1 ? "" : "s",
                       fmt::join(warnings, ", "));
  return out + "\n";
}

} // namespace corral::cli
