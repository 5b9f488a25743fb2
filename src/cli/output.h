// What the corral CLI prints: aligned tables and key/value views of the API's
// JSON, the one-line message for an API error, and the exit codes. Pure
// functions of their inputs, header-only so that unit tests compile them (the
// `corral` executable is not a library). Shapes follow the daemon's JSON
// (VM, IMAGE, NODE); a missing or null value prints as "-".
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace corral::cli {

// The CLI's exit codes, a contract with scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitApiError = 1;     // the daemon answered with an error
inline constexpr int kExitUsage = 2;        // bad command line (CLI11's own errors too)
inline constexpr int kExitUnreachable = 3;  // no daemon answers on the socket

// The exit code for an HTTP status the daemon answered with.
inline int exitCodeForStatus(int status) { return status >= 200 && status < 300 ? kExitOk : kExitApiError; }

// One table cell: strings as they are, numbers and bools as JSON writes them,
// null/missing/empty as "-", arrays and objects as compact JSON.
inline std::string cell(const nlohmann::json& j) {
  if (j.is_null()) return "-";
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    return s.empty() ? "-" : s;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::string field(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return "-";
  auto it = obj.find(key);
  return it == obj.end() ? "-" : cell(*it);
}

// Columns left-aligned, three spaces apart; the last column is not padded so
// that lines carry no trailing blanks. Always prints the header.
inline std::string formatTable(const std::vector<std::string>& headers,
                               const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(headers.size(), 0);
  for (size_t i = 0; i < headers.size(); ++i) width[i] = headers[i].size();
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
  std::string out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string l;
    for (size_t i = 0; i < headers.size(); ++i) {
      const std::string& c = i < cells.size() ? cells[i] : std::string("-");
      l += c;
      if (i + 1 < headers.size()) l += std::string(width[i] - std::min(width[i], c.size()) + 3, ' ');
    }
    while (!l.empty() && l.back() == ' ') l.pop_back();
    out += l;
    out += '\n';
  };
  line(headers);
  for (const auto& row : rows) line(row);
  return out;
}

// "key:   value" lines, values aligned one column after the longest key.
inline std::string formatKeyValues(const std::vector<std::pair<std::string, std::string>>& kv) {
  size_t w = 0;
  for (const auto& [k, _] : kv) w = std::max(w, k.size());
  std::string out;
  for (const auto& [k, v] : kv) out += fmt::format("{:<{}}  {}\n", k + ":", w + 1, v);
  return out;
}

inline std::string memoryCell(const nlohmann::json& obj, std::string_view key) {
  if (!obj.is_object()) return "-";
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return field(obj, key);
  return fmt::format("{}MiB", it->dump());
}

inline const nlohmann::json& listOf(const nlohmann::json& body, std::string_view key) {
  static const nlohmann::json empty = nlohmann::json::array();
  if (!body.is_object()) return empty;
  auto it = body.find(key);
  return it != body.end() && it->is_array() ? *it : empty;
}

// GET /api/v1/vms -> NAME STATE MEMORY VCPUS IMAGE PID
inline std::string formatVmList(const nlohmann::json& body) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& vm : listOf(body, "vms"))
    rows.push_back({field(vm, "name"), field(vm, "state"), memoryCell(vm, "memory"), field(vm, "vcpus"),
                    field(vm, "image"), field(vm, "pid")});
  return formatTable({"NAME", "STATE", "MEMORY", "VCPUS", "IMAGE", "PID"}, rows);
}

// GET /api/v1/images -> NAME KIND KERNEL INITRD APPEND
inline std::string formatImageList(const nlohmann::json& body) {
  std::vector<std::vector<std::string>> rows;
  for (const auto& im : listOf(body, "images"))
    rows.push_back({field(im, "name"), field(im, "kind"), field(im, "kernel"), field(im, "initrd"),
                    field(im, "append")});
  return formatTable({"NAME", "KIND", "KERNEL", "INITRD", "APPEND"}, rows);
}

// Key/value view of one object: the known keys first in a reading order, then
// whatever else the daemon sent (newer daemons add keys; show them, sorted).
inline std::string formatObject(const nlohmann::json& obj, const std::vector<std::string>& order) {
  auto render = [&](const std::string& k, const nlohmann::json& v) -> std::string {
    if (k == "memory" || k == "memory_total_mib" || k == "memory_available_mib") return memoryCell(obj, k);
    if (v.is_object()) {
      // {"running": 1, "stopped": 2} -> "running=1 stopped=2"
      std::string flat;
      for (const auto& [ik, iv] : v.items()) flat += fmt::format("{}{}={}", flat.empty() ? "" : " ", ik, cell(iv));
      return flat.empty() ? "-" : flat;
    }
    return cell(v);
  };
  std::vector<std::pair<std::string, std::string>> kv;
  if (!obj.is_object()) return formatKeyValues(kv);
  for (const auto& k : order)
    if (auto it = obj.find(k); it != obj.end()) kv.emplace_back(k, render(k, *it));
  for (const auto& [k, v] : obj.items())
    if (std::find(order.begin(), order.end(), k) == order.end()) kv.emplace_back(k, render(k, v));
  return formatKeyValues(kv);
}

inline std::string formatVmInfo(const nlohmann::json& vm) {
  return formatObject(vm, {"name", "state", "state_reason", "image", "memory", "vcpus", "on_crash", "pid",
                           "accelerator", "uuid", "created_at"});
}

inline std::string formatImageInfo(const nlohmann::json& im) {
  return formatObject(im, {"name", "kind", "kernel", "initrd", "append", "size_bytes", "created_at"});
}

inline std::string formatNodeInfo(const nlohmann::json& node) {
  return formatObject(node, {"hostname", "version", "commit", "qemu_version", "qemu_binary", "accelerator",
                             "accelerator_reason", "cpus", "memory_total_mib", "memory_available_mib", "vms"});
}

// The stderr line for a non-2xx answer: "corral: <message>" and, when the error
// names a field, " (field: X)". A body that is not the API's error JSON (a proxy,
// an old daemon) is shown with its status so the user still learns something.
inline std::string apiErrorMessage(int status, std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    const auto& e = j["error"];
    std::string msg = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>()
                                                                         : fmt::format("HTTP {}", status);
    if (e.contains("field") && e["field"].is_string() && !e["field"].get_ref<const std::string&>().empty())
      msg += fmt::format(" (field: {})", e["field"].get<std::string>());
    return "corral: " + msg;
  }
  std::string text(body.substr(0, 200));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text.empty() ? fmt::format("corral: HTTP {}", status) : fmt::format("corral: HTTP {}: {}", status, text);
}

// The stderr line when no daemon answers.
inline std::string unreachableMessage(std::string_view socketPath, std::string_view reason) {
  return fmt::format(
      "corral: cannot reach corrald at {}: {}\n"
      "  Is corrald running? Start it (e.g. `sudo corrald`), or point to its socket with --socket PATH or "
      "CORRAL_SOCKET.",
      socketPath, reason);
}

}  // namespace corral::cli
