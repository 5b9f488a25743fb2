// JSON <-> model for the API: the shapes documented in docs/api.yaml. Parsing
// only checks types and names the field; the rules are core/'s.
#pragma once

#include <nlohmann/json.hpp>

#include "core/vm_manager.h"
#include "store/store.h"
#include "util/result.h"

namespace corral::api {

nlohmann::json toJson(const store::VmRecord& vm);
nlohmann::json toJson(const store::ImageRecord& image);

Result<core::CreateVmRequest> parseCreateVm(const nlohmann::json& body);
Result<core::StopOptions> parseStop(const nlohmann::json& body);
Result<core::ImportImageRequest> parseImportImage(const nlohmann::json& body);

}  // namespace corral::api
