#include "api/json_model.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "host/qemu_img.h"
#include "util/strings.h"

namespace corral::api {
using nlohmann::json;

// Unknown keys are refused rather than ignored: a misspelt "memroy" must not
// silently give the default.
Result<void> onlyKeys(const json& body, std::initializer_list<std::string_view> keys) {
  if (!body.is_object()) return Error::invalidInput("body", body.dump(), "must be a JSON object");
  for (const auto& [k, v] : body.items()) {
    bool known = false;
    for (auto key : keys) known = known || key == k;
    if (!known) return Error::invalidInput(k, v.dump(), "unknown field");
  }
  return ok();
}

Result<std::string> stringField(const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) return Error::invalidInput(key, "", "is required");
    return std::string();
  }
  if (!it->is_string()) return Error::invalidInput(key, it->dump(), "must be a string");
  return it->get<std::string>();
}

Result<std::optional<int64_t>> intField(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<int64_t>{};
  if (!it->is_number_integer()) return Error::invalidInput(key, it->dump(), "must be an integer");
  return std::optional<int64_t>{it->get<int64_t>()};
}

Result<bool> boolField(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Error::invalidInput(key, it->dump(), "must be true or false");
  return it->get<bool>();
}

Result<std::optional<std::string>> optionalString(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end()) return std::optional<std::string>{};
  if (!it->is_string()) return Error::invalidInput(key, it->dump(), "must be a string");
  return std::optional<std::string>{it->get<std::string>()};
}

json toJson(const store::VmRecord& vm) {
  json j = {{"name", vm.name},           {"uuid", vm.uuid},
            {"image", vm.image},         {"memory", vm.memoryMib},
            {"vcpus", vm.vcpus},         {"state", vm.state},
            {"desired_state", vm.desiredState},
            {"on_crash", vm.onCrash},    {"pid", nullptr},
            {"created_at", vm.createdAt}, {"updated_at", vm.updatedAt},
            {"state_reason", vm.stateReason}, {"version", vm.version},
            {"owner", vm.owner},         {"owner_kind", vm.ownerKind},
            {"administrator", vm.administrator}, {"contact", vm.contact},
            {"description", vm.description}, {"disk_gib", vm.diskGib},
            {"cdrom", vm.cdrom},         {"boot_cdrom", vm.bootCdrom}};
  if (vm.pid) j["pid"] = *vm.pid;
  if (!vm.accel.empty()) j["accelerator"] = vm.accel;
  return j;
}

json toJson(const store::ImageRecord& image) {
  return {{"name", image.name},
          {"kind", image.kind},
          {"state", image.state},
          {"owner_kind", image.ownerKind},
          {"owner", image.owner},
          {"description", image.description},
          {"size_bytes", image.sizeBytes},
          {"virtual_size", image.virtualSize},
          {"format", image.format},
          {"sha256", image.sha256},
          {"kernel", image.kernel},
          {"initrd", image.initrd},
          {"append", image.append},
          {"created_at", image.createdAt}};
}

// The wrapped key never leaves the daemon.
json toJson(const store::DiskRecord& disk) {
  return {{"name", disk.name},
          {"size_bytes", disk.sizeBytes},
          {"pool", disk.pool},
          {"format", disk.format},
          {"encrypted", disk.encrypted},
          {"backing_image", disk.backingImage},
          {"path", disk.path},
          {"created_at", disk.createdAt}};
}

json toJson(const store::VmRecord& vm, const std::vector<store::DiskRecord>& disks) {
  json j = toJson(vm);
  j["disks"] = json::array();
  for (const auto& d : disks) j["disks"].push_back(toJson(d));
  return j;
}

Result<std::string> sizeField(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::string();
  if (it->is_number_integer()) return std::to_string(it->get<int64_t>());
  if (it->is_string()) return it->get<std::string>();
  return Error::invalidInput(key, it->dump(), "must be a size: bytes, or a string like \"4G\"");
}

// true/false, or the format by name: "luks" (true); "aes" (qcow2's legacy AES)
// is refused, saying why.
Result<bool> encryptField(const json& body, const char* key) {
  auto it = body.find(key);
  if (it != body.end() && it->is_string()) {
    std::string v = it->get<std::string>();
    if (v == "luks") return true;
    if (v == "aes") return Error::invalidInput(key, v, host::kLegacyAesRefusal);
    return Error::invalidInput(key, v, "must be true, false or \"luks\"");
  }
  return boolField(body, key);
}

Result<core::DiskRequest> parseDiskRequest(const json& body, std::string_view field, bool allowEmptySize) {
  core::DiskRequest d;
  std::string f(field);
  if (body.is_string() || body.is_number_integer()) {
    d.size = body.is_string() ? body.get<std::string>() : std::to_string(body.get<int64_t>());
    return d;
  }
  if (!body.is_object()) return Error::invalidInput(f, body.dump(), "must be a size or {\"size\", \"pool\", \"encrypt\"}");
  for (const auto& [k, v] : body.items())
    if (k != "size" && k != "pool" && k != "encrypt") return Error::invalidInput(f + "." + k, v.dump(), "unknown field");
  d.size = CORRAL_TRY(sizeField(body, "size"));
  if (d.size.empty() && !allowEmptySize) return Error::invalidInput(f.empty() ? "size" : f + ".size", "", "is required");
  d.pool = CORRAL_TRY(stringField(body, "pool", false));
  if (body.contains("encrypt")) d.encrypt = CORRAL_TRY(encryptField(body, "encrypt"));
  return d;
}

Result<core::CreateVmRequest> parseCreateVm(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"name", "image", "memory", "vcpus", "on_crash", "start", "owner", "administrator",
                             "contact", "description", "disks", "encrypt", "full_clone", "cdrom", "pool", "nics",
                             "no_network"}));
  core::CreateVmRequest req;
  req.name = CORRAL_TRY(stringField(body, "name", true));
  req.image = CORRAL_TRY(stringField(body, "image", true));
  req.memoryMib = CORRAL_TRY(intField(body, "memory"));
  req.vcpus = CORRAL_TRY(intField(body, "vcpus"));
  std::string onCrash = CORRAL_TRY(stringField(body, "on_crash", false));
  if (!onCrash.empty()) req.onCrash = onCrash;
  req.start = CORRAL_TRY(boolField(body, "start"));
  req.owner = CORRAL_TRY(stringField(body, "owner", false));
  req.administrator = CORRAL_TRY(stringField(body, "administrator", false));
  req.contact = CORRAL_TRY(stringField(body, "contact", false));
  req.description = CORRAL_TRY(stringField(body, "description", false));
  if (auto it = body.find("disks"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return Error::invalidInput("disks", it->dump(), "must be a list of sizes");
    for (size_t i = 0; i < it->size(); ++i)
      req.disks.push_back(CORRAL_TRY(parseDiskRequest((*it)[i], fmt::format("disks[{}]", i), true)));
  }
  req.encrypt = CORRAL_TRY(encryptField(body, "encrypt"));
  req.fullClone = CORRAL_TRY(boolField(body, "full_clone"));
  req.cdrom = CORRAL_TRY(stringField(body, "cdrom", false));
  req.pool = CORRAL_TRY(stringField(body, "pool", false));
  if (auto it = body.find("nics"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return Error::invalidInput("nics", it->dump(), "must be a list of NICs");
    for (size_t i = 0; i < it->size(); ++i)
      req.nics.push_back(CORRAL_TRY(parseNicRequest((*it)[i], fmt::format("nics[{}]", i))));
  }
  req.noNetwork = CORRAL_TRY(boolField(body, "no_network"));
  if (req.noNetwork && !req.nics.empty())
    return Error::invalidInput("no_network", "true", "contradicts the NICs given in nics");
  return req;
}

namespace {

// A list of strings (or absent: empty); errors name field.
Result<std::vector<std::string>> stringList(const json& body, const char* key, std::string_view field) {
  std::vector<std::string> out;
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return out;
  if (!it->is_array()) return Error::invalidInput(std::string(field), it->dump(), "must be a list of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return Error::invalidInput(std::string(field), v.dump(), "must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

}  // namespace

Result<core::NicRequest> parseNicRequest(const json& body, std::string_view prefix) {
  std::string p = prefix.empty() ? "" : std::string(prefix) + ".";
  if (!body.is_object()) return Error::invalidInput(std::string(prefix.empty() ? "body" : prefix), body.dump(),
                                                    "must be an object");
  for (const auto& [k, v] : body.items()) {
    static const std::vector<std::string> keys = {"network", "model", "mac", "ip", "hostname", "forwards"};
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) return Error::invalidInput(p + k, v.dump(), "unknown field");
  }
  core::NicRequest r;
  auto field = [&](const char* key) -> Result<std::string> {
    auto v = stringField(body, key, false);
    if (!v.ok()) return Error::invalidInput(p + key, v.error().value, "must be a string");
    return v;
  };
  r.network = CORRAL_TRY(field("network"));
  r.model = CORRAL_TRY(field("model"));
  r.mac = CORRAL_TRY(field("mac"));
  r.ip = CORRAL_TRY(field("ip"));
  r.hostname = CORRAL_TRY(field("hostname"));
  r.forwards = CORRAL_TRY(stringList(body, "forwards", p + "forwards"));
  return r;
}

Result<core::NetworkRequest> parseNetworkRequest(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"name", "mode", "bridge", "subnet", "gateway", "pool_start", "pool_end", "dns", "domain",
                             "forward_bind", "description"}));
  core::NetworkRequest r;
  r.name = CORRAL_TRY(stringField(body, "name", true));
  r.mode = CORRAL_TRY(stringField(body, "mode", false));
  r.bridge = CORRAL_TRY(stringField(body, "bridge", false));
  r.subnet = CORRAL_TRY(stringField(body, "subnet", false));
  r.gateway = CORRAL_TRY(stringField(body, "gateway", false));
  r.poolStart = CORRAL_TRY(stringField(body, "pool_start", false));
  r.poolEnd = CORRAL_TRY(stringField(body, "pool_end", false));
  r.dns = CORRAL_TRY(stringList(body, "dns", "dns"));
  r.domain = CORRAL_TRY(stringField(body, "domain", false));
  r.forwardBind = CORRAL_TRY(stringField(body, "forward_bind", false));
  r.description = CORRAL_TRY(stringField(body, "description", false));
  return r;
}

json toJson(const store::NetworkRecord& n) {
  json j = {{"name", n.name},   {"mode", n.mode},   {"description", n.description}, {"created_at", n.createdAt}};
  if (n.mode == "user") {
    j["forward_bind"] = n.forwardBind;
  } else {
    j["bridge"] = n.bridge;
    j["subnet"] = n.subnet;
    j["gateway"] = n.gateway;
    j["pool_start"] = n.poolStart;
    j["pool_end"] = n.poolEnd;
    j["dns"] = util::splitList(n.dns);
    j["domain"] = n.domain;
  }
  return j;
}

json toJson(const store::NicRecord& n) {
  json j = {{"name", n.name}, {"vm", n.vm},   {"network", n.network}, {"model", n.model},
            {"mac", n.mac},   {"ip", n.ip},   {"hostname", n.hostname}, {"created_at", n.createdAt}};
  j["forwards"] = util::splitList(n.forwards);
  return j;
}

json toJson(const core::NetworkInfo& info) {
  json j = toJson(info.network);
  if (info.network.mode != "user") {
    j["pool_size"] = info.poolSize;
    j["pool_used"] = info.poolUsed;
  }
  json nics = json::array();
  for (const auto& n : info.nics) nics.push_back(toJson(n));
  j["nics"] = nics;
  return j;
}

Result<core::ModifyVmRequest> parseModifyVm(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"name", "owner", "administrator", "contact", "description", "memory", "vcpus",
                             "on_crash"}));
  if (body.empty()) return Error::invalidInput("body", "{}", "names no field to change");
  core::ModifyVmRequest req;
  req.name = CORRAL_TRY(optionalString(body, "name"));
  req.owner = CORRAL_TRY(optionalString(body, "owner"));
  req.administrator = CORRAL_TRY(optionalString(body, "administrator"));
  req.contact = CORRAL_TRY(optionalString(body, "contact"));
  req.description = CORRAL_TRY(optionalString(body, "description"));
  req.onCrash = CORRAL_TRY(optionalString(body, "on_crash"));
  req.memoryMib = CORRAL_TRY(intField(body, "memory"));
  req.vcpus = CORRAL_TRY(intField(body, "vcpus"));
  return req;
}

Result<std::map<std::string, std::optional<int64_t>>> parseQuotaChanges(const json& body) {
  std::map<std::string, std::optional<int64_t>> changes;
  if (!body.is_object()) return Error::invalidInput("body", body.dump(), "must be a JSON object");
  for (const auto& [k, v] : body.items()) {
    if (core::findQuotaKey(k) == nullptr) return Error::invalidInput(k, v.dump(), "unknown field");
    if (v.is_null()) {
      changes[k] = std::nullopt;  // back to the default
      continue;
    }
    if (!v.is_number_integer()) return Error::invalidInput(k, v.dump(), "must be an integer, -1 (unlimited) or null");
    changes[k] = v.get<int64_t>();
  }
  return changes;
}

Result<store::QuotaRecord> parseQuota(const json& body) {
  store::QuotaRecord q;
  for (const auto& [k, v] : CORRAL_TRY(parseQuotaChanges(body)))
    q.*(core::findQuotaKey(k)->field) = v;  // parseQuotaChanges took only known keys
  return q;
}

Result<int64_t> parseIfMatch(const std::string& header) {
  if (header.empty()) return int64_t{0};
  std::string v = header;
  if (v.rfind("W/", 0) == 0) v = v.substr(2);
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  try {
    size_t used = 0;
    long long n = std::stoll(v, &used);
    if (used == v.size() && n > 0) return static_cast<int64_t>(n);
  } catch (const std::exception&) {
  }
  return Error::invalidInput("If-Match", header, "must be an ETag this API gave, like \"3\"");
}

std::string etag(int64_t version) { return fmt::format("\"{}\"", version); }

Result<core::StopOptions> parseStop(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"force", "timeout"}));
  core::StopOptions opts;
  opts.force = CORRAL_TRY(boolField(body, "force"));
  auto timeout = CORRAL_TRY(intField(body, "timeout"));
  if (timeout) {
    if (*timeout < 0 || *timeout > 3600)
      return Error::invalidInput("timeout", std::to_string(*timeout), "must be 0 to 3600 seconds");
    opts.timeout = std::chrono::seconds(*timeout);
  }
  return opts;
}

Result<core::BootOptions> parseBoot(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"cdrom"}));
  return core::BootOptions{CORRAL_TRY(stringField(body, "cdrom", false))};
}

Result<core::ImportImageRequest> parseImportImage(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"name", "kind", "path", "kernel", "initrd", "append", "owner", "description", "format"}));
  core::ImportImageRequest req;
  req.name = CORRAL_TRY(stringField(body, "name", true));
  req.kernel = CORRAL_TRY(stringField(body, "kernel", false));
  req.kind = CORRAL_TRY(stringField(body, "kind", false));
  if (req.kind.empty()) {
    if (req.kernel.empty()) return Error::invalidInput("kind", "", "is required: disk, iso or direct-boot");
    req.kind = "direct-boot";
  }
  req.path = CORRAL_TRY(stringField(body, "path", false));
  req.initrd = CORRAL_TRY(stringField(body, "initrd", false));
  req.append = CORRAL_TRY(stringField(body, "append", false));
  req.owner = CORRAL_TRY(stringField(body, "owner", false));
  req.description = CORRAL_TRY(stringField(body, "description", false));
  req.format = CORRAL_TRY(stringField(body, "format", false));
  return req;
}

// ---- identity (routes_identity.cc)

namespace {
json nullIfEmpty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }  // optional timestamps
}  // namespace

json toJson(const store::UserRecord& u) {
  return {{"login", u.login},           {"display_name", u.displayName}, {"email", u.email},
          {"admin", u.admin},           {"has_password", !u.passwordHash.empty()},
          {"created_at", u.createdAt},  {"version", u.version}};
}

json toJson(const store::GroupRecord& g) {
  return {{"name", g.name}, {"description", g.description}, {"created_at", g.createdAt}, {"members", g.members}};
}

json toJson(const store::TokenRecord& t) {
  return {{"id", t.id},
          {"user", t.login},
          {"name", t.name},
          {"created_at", t.createdAt},
          {"expires_at", nullIfEmpty(t.expiresAt)},
          {"revoked_at", nullIfEmpty(t.revokedAt)}};
}

// The key's type is its line's first word (the store keeps the canonical line).
json toJson(const store::SshKeyRecord& k) {
  return {{"id", k.id},
          {"name", k.name},
          {"type", k.key.substr(0, k.key.find(' '))},
          {"fingerprint", k.fingerprint},
          {"key", k.key},
          {"created_at", k.createdAt}};
}

}  // namespace corral::api
