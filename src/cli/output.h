// What the corral CLI prints: a View (columns and rows cut from the API's JSON)
// rendered as an aligned table, a key/value record or RFC 4180 CSV with the
// same columns; the one-line message for an API error; and the exit codes. Pure
// functions of their inputs, header-only so that unit tests compile them
// without the client's transport. Shapes follow the daemon's JSON (VM, IMAGE,
// DISK, NODE here; the control-plane nouns in views.h); a missing or null value
// prints as "-", in CSV too, so that both show the same cells.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/progress.h"

namespace corral::cli {

// The CLI's exit codes, a contract with scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitApiError = 1; // the daemon answered with an error
inline constexpr int kExitUsage =
    2; // bad command line (CLI11's own errors too)
inline constexpr int kExitUnreachable = 3; // no daemon answers on the socket

// The exit code for an HTTP status the daemon answered with.
inline int exitCodeForStatus(int status) {
  return status >= 200 && status < 300 ? kExitOk : kExitApiError;
}

// One table cell: strings as they are, numbers and bools as JSON writes them,
// null/missing/empty as "-", arrays and objects as compact JSON.
inline std::string cell(const nlohmann::json &j) {
  if (j.is_null())
    return "-";
  if (j.is_string()) {
    const auto &s = j.get_ref<const std::string &>();
    return s.empty() ? "-" : s;
  }
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

inline std::string field(const nlohmann::json &obj, std::string_view key) {
  if (!obj.is_object())
    return "-";
  auto it = obj.find(key);
  return it == obj.end() ? "-" : cell(*it);
}

// Columns left-aligned, three spaces apart; the last column is not padded so
// that lines carry no trailing blanks. Always prints the header.
inline std::string
formatTable(const std::vector<std::string> &headers,
            const std::vector<std::vector<std::string>> &rows) {
  std::vector<size_t> width(headers.size(), 0);
  for (size_t i = 0; i < headers.size(); ++i)
    width[i] = headers[i].size();
  for (const auto &row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  std::string out;
  auto line = [&](const std::vector<std::string> &cells) {
    std::string l;
    for (size_t i = 0; i < headers.size(); ++i) {
      const std::string &c = i < cells.size() ? cells[i] : std::string("-");
      l += c;
      if (i + 1 < headers.size())
        l += std::string(width[i] - std::min(width[i], c.size()) + 3, ' ');
    }
    while (!l.empty() && l.back() == ' ')
      l.pop_back();
    out += l;
    out += '\n';
  };
  line(headers);
  for (const auto &row : rows)
    line(row);
  return out;
}

// "key:   value" lines, values aligned one column after the longest key.
inline std::string
formatKeyValues(const std::vector<std::pair<std::string, std::string>> &kv) {
  size_t w = 0;
  for (const auto &[k, _] : kv)
    w = std::max(w, k.size());
  std::string out;
  for (const auto &[k, v] : kv)
    out += fmt::format("{:<{}}  {}\n", k + ":", w + 1, v);
  return out;
}

inline std::string memoryCell(const nlohmann::json &obj, std::string_view key) {
  if (!obj.is_object())
    return "-";
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number())
    return field(obj, key);
  return fmt::format("{}MiB", it->dump());
}

inline const nlohmann::json &listOf(const nlohmann::json &body,
                                    std::string_view key) {
  static const nlohmann::json empty = nlohmann::json::array();
  if (body.is_array())
    return body; // a bare list is as good as {"<key>": [...]}
  if (!body.is_object())
    return empty;
  auto it = body.find(key);
  return it != body.end() && it->is_array() ? *it : empty;
}

// RFC 4180: a field with a comma, quote, CR or LF is quoted and its quotes
// doubled; lines end in CRLF. Spreadsheet formula prefixes are left alone: the
// CSV is for scripts, and rewriting cells would break the "same cells" promise.
inline std::string csvField(std::string_view s) {
  if (s.find_first_of(",\"\r\n") == std::string_view::npos)
    return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"')
      out += '"';
    out += c;
  }
  out += '"';
  return out;
}

// One CSV line (CRLF-terminated) of these cells.
inline std::string csvRow(const std::vector<std::string> &cells) {
  std::string out;
  for (size_t i = 0; i < cells.size(); ++i) {
    if (i > 0)
      out += ',';
    out += csvField(cells[i]);
  }
  return out + "\r\n";
}

// The header row, then each row padded or cut to the header's width.
inline std::string
formatCsv(const std::vector<std::string> &headers,
          const std::vector<std::vector<std::string>> &rows) {
  std::string out = csvRow(headers);
  for (auto row : rows) {
    row.resize(headers.size(), "-");
    out += csvRow(row);
  }
  return out;
}

// What a command shows of an answer. A list has one row per item; a record
// (one object) has one row and is shown as "key: value" lines in the table
// format. CSV always writes the header row and then the rows.
struct View {
  std::vector<std::string> headers;
  std::vector<std::vector<std::string>> rows;
  bool record = false;
};

inline bool isKnownFormat(std::string_view format) {
  return format == "table" || format == "json" || format == "csv";
}

// format "table" or "csv" (JSON is the answer itself, not a View).
inline std::string renderView(const View &v, std::string_view format) {
  if (format == "csv")
    return formatCsv(v.headers, v.rows);
  if (v.record) {
    std::vector<std::pair<std::string, std::string>> kv;
    for (size_t i = 0; i < v.headers.size(); ++i)
      kv.emplace_back(v.headers[i], !v.rows.empty() && i < v.rows[0].size()
                                        ? v.rows[0][i]
                                        : "-");
    return formatKeyValues(kv);
  }
  return formatTable(v.headers, v.rows);
}

// Record view of one object: the known keys first in a reading order, then
// whatever else the daemon sent (newer daemons add keys; show them, sorted).
inline View objectView(const nlohmann::json &obj,
                       const std::vector<std::string> &order) {
  auto render = [&](const std::string &k,
                    const nlohmann::json &v) -> std::string {
    if (k == "memory" || k == "memory_total_mib" ||
        k == "memory_available_mib" || k == "memory_committed_mib")
      return memoryCell(obj, k);
    if (v.is_object()) {
      // {"running": 1, "stopped": 2} -> "running=1 stopped=2"
      std::string flat;
      for (const auto &[ik, iv] : v.items())
        flat += fmt::format("{}{}={}", flat.empty() ? "" : " ", ik, cell(iv));
      return flat.empty() ? "-" : flat;
    }
    if (v.is_array() && std::all_of(v.begin(), v.end(), [](const auto &e) {
          return e.is_string();
        })) {
      // ["alice", "bob"] -> "alice, bob"
      std::string joined;
      for (const auto &e : v)
        joined += (joined.empty() ? "" : ", ") + e.template get<std::string>();
      return joined.empty() ? "-" : joined;
    }
    return cell(v);
  };
  View view;
  view.record = true;
  view.rows.emplace_back();
  if (!obj.is_object())
    return view;
  auto add = [&](const std::string &k, const nlohmann::json &v) {
    view.headers.push_back(k);
    view.rows[0].push_back(render(k, v));
  };
  for (const auto &k : order)
    if (auto it = obj.find(k); it != obj.end())
      add(k, *it);
  for (const auto &[k, v] : obj.items())
    if (std::find(order.begin(), order.end(), k) == order.end())
      add(k, v);
  return view;
}

inline std::string formatObject(const nlohmann::json &obj,
                                const std::vector<std::string> &order) {
  return renderView(objectView(obj, order), "table");
}

// GET /api/v1/vms -> NAME STATE OWNER MEMORY VCPUS IMAGE PID
inline View vmListView(const nlohmann::json &body) {
  View v{{"NAME", "STATE", "OWNER", "MEMORY", "VCPUS", "IMAGE", "PID"}, {}};
  for (const auto &vm : listOf(body, "vms"))
    v.rows.push_back({field(vm, "name"), field(vm, "state"), field(vm, "owner"),
                      memoryCell(vm, "memory"), field(vm, "vcpus"),
                      field(vm, "image"), field(vm, "pid")});
  return v;
}
inline std::string formatVmList(const nlohmann::json &body) {
  return renderView(vmListView(body), "table");
}

// A size in bytes (a JSON integer) as "4.0 GiB"; anything else as field().
inline std::string sizeCell(const nlohmann::json &obj, std::string_view key) {
  if (!obj.is_object())
    return "-";
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer() || it->get<int64_t>() < 0)
    return field(obj, key);
  return formatBytes(it->get<uint64_t>());
}

// An image's size as a person thinks of it: what a VM gets from a disk or iso
// image (virtual_size), the files' bytes for a direct-boot image (size_bytes).
inline std::string imageSizeCell(const nlohmann::json &im) {
  bool directBoot = im.is_object() && im.contains("kind") &&
                    im["kind"] == "direct-boot";
  if (!directBoot && im.is_object() && im.contains("virtual_size") &&
      im["virtual_size"].is_number_integer() && im["virtual_size"] != 0)
    return sizeCell(im, "virtual_size");
  return sizeCell(im, "size_bytes");
}

// GET /api/v1/images -> NAME KIND STATE SIZE OWNER. OWNER is "-" for a public
// image (owner_kind ""), whom everyone sees.
inline View imageListView(const nlohmann::json &body) {
  View v{{"NAME", "KIND", "STATE", "SIZE", "OWNER"}, {}};
  for (const auto &im : listOf(body, "images"))
    v.rows.push_back({field(im, "name"), field(im, "kind"), field(im, "state"),
                      imageSizeCell(im), field(im, "owner")});
  return v;
}
inline std::string formatImageList(const nlohmann::json &body) {
  return renderView(imageListView(body), "table");
}

// GET /api/v1/vms/{name}/disks -> NAME SIZE POOL FORMAT ENCRYPTED BACKING
inline View diskListView(const nlohmann::json &body) {
  View v{{"NAME", "SIZE", "POOL", "FORMAT", "ENCRYPTED", "BACKING"}, {}};
  for (const auto &d : listOf(body, "disks"))
    v.rows.push_back({field(d, "name"), sizeCell(d, "size_bytes"),
                      field(d, "pool"), field(d, "format"),
                      field(d, "encrypted"), field(d, "backing_image")});
  return v;
}

// "4.0 GiB (4294967296 bytes)": the size to read and the exact one (what a
// resize compares against).
inline std::string exactSizeCell(const nlohmann::json &obj,
                                 std::string_view key) {
  std::string human = sizeCell(obj, key);
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number_integer() || it->get<int64_t>() < 0)
    return human;
  return fmt::format("{} ({} bytes)", human, it->get<uint64_t>());
}

// The same object with its byte sizes written for people.
inline nlohmann::json withReadableSizes(nlohmann::json obj,
                                        std::initializer_list<const char *> keys) {
  if (!obj.is_object())
    return obj;
  for (const char *k : keys)
    if (obj.contains(k) && obj[k].is_number_integer())
      obj[k] = exactSizeCell(obj, k);
  return obj;
}

// One disk (POST/PATCH answers, `disk add|resize|rekey -o`).
inline View diskView(const nlohmann::json &d) {
  return objectView(withReadableSizes(d, {"size_bytes"}),
                    {"name", "size_bytes", "pool", "format", "encrypted",
                     "backing_image", "path", "created_at"});
}

// A VM's disks on one line of `vm info`: "disk0 4.0 GiB default qcow2
// encrypted backing=debian-12; disk1 10 GiB fast qcow2".
inline std::string disksSummary(const nlohmann::json &disks) {
  if (!disks.is_array())
    return cell(disks);
  std::string out;
  for (const auto &d : disks) {
    std::string one = fmt::format("{} {} {} {}", field(d, "name"),
                                  sizeCell(d, "size_bytes"), field(d, "pool"),
                                  field(d, "format"));
    if (d.is_object() && d.contains("encrypted") && d["encrypted"].is_boolean() &&
        d["encrypted"].get<bool>())
      one += " encrypted";
    if (std::string b = field(d, "backing_image"); b != "-")
      one += " backing=" + b;
    out += (out.empty() ? "" : "; ") + one;
  }
  return out.empty() ? "-" : out;
}

// A VM's NICs on one line of `vm info`: "nic0 lan 52:54:00:12:34:56
// 10.77.0.10 web1; nic1 default 52:54:00:.. tcp:2222:22".
inline std::string nicsSummary(const nlohmann::json &nics) {
  if (!nics.is_array())
    return cell(nics);
  std::string out;
  for (const auto &n : nics) {
    std::string one = fmt::format("{} {} {}", field(n, "name"),
                                  field(n, "network"), field(n, "mac"));
    for (const char *k : {"ip", "hostname"})
      if (std::string v = field(n, k); v != "-")
        one += " " + v;
    if (n.is_object() && n.contains("forwards") && n["forwards"].is_array())
      for (const auto &f : n["forwards"])
        one += " " + cell(f);
    out += (out.empty() ? "" : "; ") + one;
  }
  return out.empty() ? "-" : out;
}

inline View vmInfoView(const nlohmann::json &vm) {
  nlohmann::json shown = vm;
  if (shown.is_object() && shown.contains("disks"))
    shown["disks"] = disksSummary(shown["disks"]);
  if (shown.is_object() && shown.contains("nics"))
    shown["nics"] = nicsSummary(shown["nics"]);
  return objectView(shown, {"name", "state", "state_reason", "owner",
                            "owner_kind", "administrator", "contact",
                            "description", "image", "memory", "vcpus",
                            "disk_gib", "disks", "nics", "cdrom", "boot_cdrom",
                            "on_crash", "pid", "accelerator", "uuid",
                            "version", "created_at"});
}
inline std::string formatVmInfo(const nlohmann::json &vm) {
  return renderView(vmInfoView(vm), "table");
}

inline View imageInfoView(const nlohmann::json &im) {
  return objectView(withReadableSizes(im, {"size_bytes", "virtual_size"}),
                    {"name", "kind", "state", "owner_kind", "owner",
                     "description", "size_bytes", "virtual_size", "format",
                     "sha256", "kernel", "initrd", "append", "created_at"});
}
inline std::string formatImageInfo(const nlohmann::json &im) {
  return renderView(imageInfoView(im), "table");
}

inline View nodeInfoView(const nlohmann::json &node) {
  return objectView(node,
                    {"hostname", "version", "commit", "qemu_version",
                     "qemu_binary", "accelerator", "accelerator_reason", "cpus",
                     "memory_total_mib", "memory_available_mib",
                     "memory_committed_mib", "vms"});
}
inline std::string formatNodeInfo(const nlohmann::json &node) {
  return renderView(nodeInfoView(node), "table");
}

// The stderr line for a non-2xx answer: "corral: <message>" and, when the error
// names a field, " (field: X)". A body that is not the API's error JSON (a
// proxy, an old daemon) is shown with its status so the user still learns
// something.
inline std::string apiErrorMessage(int status, std::string_view body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") &&
      j["error"].is_object()) {
    const auto &e = j["error"];
    std::string msg = e.contains("message") && e["message"].is_string()
                          ? e["message"].get<std::string>()
                          : fmt::format("HTTP {}", status);
    if (e.contains("field") && e["field"].is_string() &&
        !e["field"].get_ref<const std::string &>().empty())
      msg += fmt::format(" (field: {})", e["field"].get<std::string>());
    return "corral: " + msg;
  }
  std::string text(body.substr(0, 200));
  while (!text.empty() &&
         (text.back() == '\n' || text.back() == '\r' || text.back() == ' '))
    text.pop_back();
  return text.empty() ? fmt::format("corral: HTTP {}", status)
                      : fmt::format("corral: HTTP {}: {}", status, text);
}

// The stderr line when no daemon answers.
inline std::string unreachableMessage(std::string_view socketPath,
                                      std::string_view reason) {
  return fmt::format("corral: cannot reach corrald at {}: {}\n"
                     "  Is corrald running? Start it (e.g. `sudo corrald`), or "
                     "point to its socket with --socket PATH or "
                     "CORRAL_SOCKET.",
                     socketPath, reason);
}

// The stderr line when a remote daemon cannot be reached over TLS.
inline std::string remoteUnreachableMessage(std::string_view remote,
                                            std::string_view url,
                                            std::string_view reason) {
  return fmt::format("corral: cannot reach remote {} at {}: {}", remote, url,
                     reason);
}

} // namespace corral::cli
