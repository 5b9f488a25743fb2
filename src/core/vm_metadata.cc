#include "core/vm_metadata.h"

#include <fmt/format.h>

#include "util/build_info.h"

namespace corral::core {
namespace {

using nlohmann::json;

// Readers that never throw: a missing key, or one of another type (a future
// corral is free to grow, never to change a type, but an old reader must not
// crash on a record it cannot fully read), gives the default.
std::string str(const json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

int64_t num(const json& j, const char* key) {
  if (!j.is_object()) return 0;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : 0;
}

const json& obj(const json& j, const char* key) {
  static const json kEmpty = json::object();
  if (!j.is_object()) return kEmpty;
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

// j[key] as an object to write known fields into, keeping the keys already
// there (a newer corral's).
json& objAt(json& j, const char* key) {
  json& o = j[key];
  if (!o.is_object()) o = json::object();
  return o;
}

std::string oemValue(std::string v) {
  for (char& c : v)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  return v;
}

}  // namespace

CreationFacts CreationFacts::atCreate(const Principal& who, const store::ImageRecord& image, std::string createdAt) {
  CreationFacts c;
  c.createdAt = std::move(createdAt);
  c.creatorLogin = who.login;
  c.creatorVia = who.via;
  c.corralVersion = util::build::kVersion;
  c.corralCommit = util::build::kCommit;
  c.imageName = image.name;
  c.imageId = image.id;
  c.imageSha256 = image.sha256;
  return c;
}

json CreationFacts::toJson() const {
  json j = raw.is_object() ? raw : json::object();
  j["at"] = createdAt;
  json& by = objAt(j, "by");
  by["login"] = creatorLogin;
  by["via"] = creatorVia;
  json& corral = objAt(j, "corral");
  corral["version"] = corralVersion;
  corral["commit"] = corralCommit;
  json& image = objAt(j, "image");
  image["name"] = imageName;
  image["id"] = imageId;
  image["sha256"] = imageSha256;
  return j;
}

CreationFacts CreationFacts::fromJson(const json& j) {
  CreationFacts c;
  if (!j.is_object()) return c;
  c.raw = j;
  c.createdAt = str(j, "at");
  c.creatorLogin = str(obj(j, "by"), "login");
  c.creatorVia = str(obj(j, "by"), "via");
  c.corralVersion = str(obj(j, "corral"), "version");
  c.corralCommit = str(obj(j, "corral"), "commit");
  c.imageName = str(obj(j, "image"), "name");
  c.imageId = num(obj(j, "image"), "id");
  c.imageSha256 = str(obj(j, "image"), "sha256");
  return c;
}

CreationFacts CreationFacts::fromText(const std::string& text) {
  if (text.empty()) return {};
  return fromJson(json::parse(text, nullptr, /*allow_exceptions=*/false));
}

VmMetadata VmMetadata::build(const store::VmRecord& vm, const std::vector<store::DiskRecord>& disks,
                             const std::string& hostname) {
  VmMetadata m;
  m.schema = kMetadataSchema;
  m.created = CreationFacts::fromText(vm.creation);
  // A VM made before creation facts were recorded still has its creation time
  // and (while it exists) its image's name.
  if (m.created.createdAt.empty()) m.created.createdAt = vm.createdAt;
  if (m.created.imageName.empty()) {
    m.created.imageName = vm.image;
    m.created.imageId = vm.imageId;
  }
  m.name = vm.name;
  m.uuid = vm.uuid;
  m.description = vm.description;
  m.memoryMib = vm.memoryMib;
  m.vcpus = vm.vcpus;
  for (const auto& d : disks)
    m.disks.push_back({.name = d.name, .sizeBytes = d.sizeBytes, .format = d.format, .pool = d.pool});
  m.ownerKind = vm.ownerKind;
  m.owner = vm.owner;
  m.administrator = vm.administrator;
  m.node = hostname;
  m.corralVersion = util::build::kVersion;
  m.corralCommit = util::build::kCommit;
  return m;
}

json VmMetadata::toJson() const {
  json j = raw.is_object() ? raw : json::object();
  j["schema"] = schema.empty() ? std::string(kMetadataSchema) : schema;
  j["created"] = created.toJson();
  j["name"] = name;
  j["uuid"] = uuid;
  j["description"] = description;
  json& flavour = objAt(j, "flavour");
  flavour["memory_mib"] = memoryMib;
  flavour["vcpus"] = vcpus;
  json& ds = flavour["disks"];
  if (!ds.is_array()) ds = json::array();
  // Disks beyond ours (none, unless a newer record listed more) are dropped
  // with ours: the list is the flavour as of now, not an add-only bag.
  json out = json::array();
  for (size_t i = 0; i < disks.size(); ++i) {
    json d = i < ds.size() && ds[i].is_object() ? ds[i] : json::object();
    d["name"] = disks[i].name;
    d["size_bytes"] = disks[i].sizeBytes;
    d["format"] = disks[i].format;
    d["pool"] = disks[i].pool;
    out.push_back(std::move(d));
  }
  ds = std::move(out);
  json& ow = objAt(j, "owner");
  ow["kind"] = ownerKind;
  ow["name"] = owner;
  j["administrator"] = administrator;
  objAt(j, "node")["hostname"] = node;
  json& corral = objAt(j, "corral");
  corral["version"] = corralVersion;
  corral["commit"] = corralCommit;
  return j;
}

VmMetadata VmMetadata::fromJson(const json& j) {
  VmMetadata m;
  if (!j.is_object()) return m;
  m.raw = j;
  m.schema = str(j, "schema");
  m.created = CreationFacts::fromJson(obj(j, "created"));
  m.name = str(j, "name");
  m.uuid = str(j, "uuid");
  m.description = str(j, "description");
  const json& flavour = obj(j, "flavour");
  m.memoryMib = static_cast<uint64_t>(num(flavour, "memory_mib"));
  m.vcpus = static_cast<unsigned>(num(flavour, "vcpus"));
  if (auto it = flavour.find("disks"); it != flavour.end() && it->is_array()) {
    for (const auto& d : *it)
      m.disks.push_back({.name = str(d, "name"),
                         .sizeBytes = num(d, "size_bytes"),
                         .format = str(d, "format"),
                         .pool = str(d, "pool")});
  }
  m.ownerKind = str(obj(j, "owner"), "kind");
  m.owner = str(obj(j, "owner"), "name");
  m.administrator = str(j, "administrator");
  m.node = str(obj(j, "node"), "hostname");
  m.corralVersion = str(obj(j, "corral"), "version");
  m.corralCommit = str(obj(j, "corral"), "commit");
  return m;
}

std::vector<std::string> VmMetadata::oemStrings() const {
  std::vector<std::pair<const char*, std::string>> kv = {
      {"schema", schema.empty() ? std::string(kMetadataSchema) : schema},
      {"vm", name},
      {"uuid", uuid},
      {"owner", ownerKind.empty() ? owner : fmt::format("{}:{}", ownerKind, owner)},
      {"administrator", administrator},
      {"creator", created.creatorLogin},
      {"creator.via", created.creatorVia},
      {"created", created.createdAt},
      {"created.version", created.corralVersion},
      {"image", created.imageName},
      {"image.id", created.imageId ? std::to_string(created.imageId) : std::string{}},
      {"image.sha256", created.imageSha256},
      {"memory_mib", std::to_string(memoryMib)},
      {"vcpus", std::to_string(vcpus)},
      {"node", node},
      {"version", corralVersion},
      {"commit", corralCommit},
      {"description", description},
  };
  std::vector<std::string> out;
  for (auto& [k, v] : kv)
    if (!v.empty()) out.push_back(fmt::format("corral.{}={}", k, oemValue(std::move(v))));
  return out;
}

}  // namespace corral::core
