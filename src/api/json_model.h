// JSON <-> model for the API: the shapes documented in docs/api.yaml. Parsing
// only checks types and names the field; the rules are core/'s.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/images.h"
#include "core/vm_manager.h"
#include "store/store.h"
#include "util/result.h"

namespace corral::api {

// Field readers for request bodies, each naming the field in its error.
// onlyKeys refuses unknown keys (a misspelt "memroy" must not silently give the default).
Result<void> onlyKeys(const nlohmann::json& body, std::initializer_list<std::string_view> keys);
Result<std::string> stringField(const nlohmann::json& body, const char* key, bool required);
Result<std::optional<int64_t>> intField(const nlohmann::json& body, const char* key);
Result<bool> boolField(const nlohmann::json& body, const char* key);
// "encrypt": true/false or "luks"; "aes" (qcow2 legacy AES) refused saying why.
Result<bool> encryptField(const nlohmann::json& body, const char* key);
// Absent: nullopt; present: must be a string (possibly empty, to clear a field).
Result<std::optional<std::string>> optionalString(const nlohmann::json& body, const char* key);

// If-Match: "\"7\"" (or W/"7", or 7) -> 7; absent -> 0 (no check).
Result<int64_t> parseIfMatch(const std::string& header);
std::string etag(int64_t version);  // "\"7\""

nlohmann::json toJson(const store::VmRecord& vm);
nlohmann::json toJson(const store::ImageRecord& image);
nlohmann::json toJson(const store::DiskRecord& disk);
// A VM with its disks (GET /vms/{name}); lists leave the disks out.
nlohmann::json toJson(const store::VmRecord& vm, const std::vector<store::DiskRecord>& disks);

nlohmann::json toJson(const store::NetworkRecord& net);
nlohmann::json toJson(const store::NicRecord& nic);
nlohmann::json toJson(const core::NetworkInfo& info);  // GET /networks/{name}

// Identity: users, groups, API tokens (never the secret), SSH keys.
nlohmann::json toJson(const store::UserRecord& user);
nlohmann::json toJson(const store::GroupRecord& group);
nlohmann::json toJson(const store::TokenRecord& token);
nlohmann::json toJson(const store::SshKeyRecord& key);

Result<core::CreateVmRequest> parseCreateVm(const nlohmann::json& body);
Result<core::NetworkRequest> parseNetworkRequest(const nlohmann::json& body);
// {"network", "model", "mac", "ip", "hostname", "forwards": ["tcp:2222:22"]}; errors name prefix.key.
Result<core::NicRequest> parseNicRequest(const nlohmann::json& body, std::string_view prefix);
Result<core::StopOptions> parseStop(const nlohmann::json& body);
Result<core::BootOptions> parseBoot(const nlohmann::json& body);  // {"cdrom": "iso"}
Result<core::ImportImageRequest> parseImportImage(const nlohmann::json& body);
// {"size": "10G" | bytes, "encrypt": bool, "pool": "name"}; size required unless allowEmptySize.
Result<core::DiskRequest> parseDiskRequest(const nlohmann::json& body, std::string_view field, bool allowEmptySize);
// A size given as a string ("4G") or an integer (bytes), as text for core/ to parse.
Result<std::string> sizeField(const nlohmann::json& body, const char* key);
Result<core::ModifyVmRequest> parseModifyVm(const nlohmann::json& body);
// {"max_vms": 5, "max_memory_vm": null, ...}: null clears an override.
Result<store::QuotaRecord> parseQuota(const nlohmann::json& body);
// A PATCH of quota limits: each key given (an integer, -1 unlimited, or null
// for the default) and nothing else; an empty object changes nothing.
Result<std::map<std::string, std::optional<int64_t>>> parseQuotaChanges(const nlohmann::json& body);

}  // namespace corral::api
