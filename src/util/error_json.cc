#include "util/error_json.h"

namespace corral::util {

nlohmann::json errorJson(const Error& e, std::string_view internalMessage) {
  nlohmann::json j;
  j["code"] = std::string(toString(e.code));
  // The shape is fixed (clients may index every key); absent parts are null.
  j["field"] = nullptr;
  j["value"] = nullptr;
  if (e.code == ErrorCode::Internal) {
    j["message"] = std::string(internalMessage);
    return j;
  }
  j["message"] = e.message;
  if (!e.field.empty()) {
    j["field"] = e.field;
    j["value"] = e.value;
  }
  if (e.quota) {
    j["resource"] = e.quota->resource;
    j["limit"] = e.quota->limit;
    j["usage"] = e.quota->usage;
    j["request"] = e.quota->requested;
  }
  return j;
}

}  // namespace corral::util
