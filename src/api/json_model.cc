#include "api/json_model.h"

#include <set>

#include <fmt/format.h>

namespace corral::api {
using nlohmann::json;

namespace {

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

Result<std::string> str(const json& body, const char* key, bool required) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) {
    if (required) return Error::invalidInput(key, "", "is required");
    return std::string();
  }
  if (!it->is_string()) return Error::invalidInput(key, it->dump(), "must be a string");
  return it->get<std::string>();
}

Result<std::optional<int64_t>> integer(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return std::optional<int64_t>{};
  if (!it->is_number_integer()) return Error::invalidInput(key, it->dump(), "must be an integer");
  return std::optional<int64_t>{it->get<int64_t>()};
}

Result<bool> boolean(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return false;
  if (!it->is_boolean()) return Error::invalidInput(key, it->dump(), "must be true or false");
  return it->get<bool>();
}

}  // namespace

json toJson(const store::VmRecord& vm) {
  json j = {{"name", vm.name},           {"uuid", vm.uuid},
            {"image", vm.image},         {"memory", vm.memoryMib},
            {"vcpus", vm.vcpus},         {"state", vm.state},
            {"desired_state", vm.desiredState},
            {"on_crash", vm.onCrash},    {"pid", nullptr},
            {"created_at", vm.createdAt}, {"updated_at", vm.updatedAt},
            {"state_reason", vm.stateReason}, {"version", vm.version}};
  if (vm.pid) j["pid"] = *vm.pid;
  if (!vm.accel.empty()) j["accelerator"] = vm.accel;
  return j;
}

json toJson(const store::ImageRecord& image) {
  return {{"name", image.name},     {"kind", image.kind},          {"kernel", image.kernel},
          {"initrd", image.initrd}, {"append", image.append},      {"size_bytes", image.sizeBytes},
          {"created_at", image.createdAt}};
}

Result<core::CreateVmRequest> parseCreateVm(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"name", "image", "memory", "vcpus", "on_crash", "start"}));
  core::CreateVmRequest req;
  req.name = CORRAL_TRY(str(body, "name", true));
  req.image = CORRAL_TRY(str(body, "image", true));
  req.memoryMib = CORRAL_TRY(integer(body, "memory"));
  req.vcpus = CORRAL_TRY(integer(body, "vcpus"));
  std::string onCrash = CORRAL_TRY(str(body, "on_crash", false));
  if (!onCrash.empty()) req.onCrash = onCrash;
  req.start = CORRAL_TRY(boolean(body, "start"));
  return req;
}

Result<core::StopOptions> parseStop(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"force", "timeout"}));
  core::StopOptions opts;
  opts.force = CORRAL_TRY(boolean(body, "force"));
  auto timeout = CORRAL_TRY(integer(body, "timeout"));
  if (timeout) {
    if (*timeout < 0 || *timeout > 3600)
      return Error::invalidInput("timeout", std::to_string(*timeout), "must be 0 to 3600 seconds");
    opts.timeout = std::chrono::seconds(*timeout);
  }
  return opts;
}

Result<core::ImportImageRequest> parseImportImage(const json& body) {
  CORRAL_TRY(onlyKeys(body, {"name", "kernel", "initrd", "append"}));
  core::ImportImageRequest req;
  req.name = CORRAL_TRY(str(body, "name", true));
  req.kernel = CORRAL_TRY(str(body, "kernel", true));
  req.initrd = CORRAL_TRY(str(body, "initrd", false));
  req.append = CORRAL_TRY(str(body, "append", false));
  return req;
}

}  // namespace corral::api
