// Proves the Error -> HTTP mapping: one status per code, the fixed error JSON
// shape with field and value, and that an internal error's message never reaches
// the response body (only a report id does).
#include "api/http_error.h"

#include <gtest/gtest.h>

#include "api/router.h"

namespace corral::api {
namespace {

TEST(HttpError, StatusPerCode) {
  EXPECT_EQ(httpStatus(ErrorCode::InvalidInput), 400);
  EXPECT_EQ(httpStatus(ErrorCode::NotFound), 404);
  EXPECT_EQ(httpStatus(ErrorCode::AlreadyExists), 409);
  EXPECT_EQ(httpStatus(ErrorCode::FailedPrecondition), 409);
  EXPECT_EQ(httpStatus(ErrorCode::QuotaExceeded), 409);
  EXPECT_EQ(httpStatus(ErrorCode::Forbidden), 403);
  EXPECT_EQ(httpStatus(ErrorCode::Unavailable), 503);
  EXPECT_EQ(httpStatus(ErrorCode::Timeout), 504);
  EXPECT_EQ(httpStatus(ErrorCode::Internal), 500);
}

TEST(HttpError, BodyNamesTheField) {
  auto e = Error::invalidInput("memory", "0", "must be at least 16 MiB");
  auto j = errorBody(e, "r1");
  ASSERT_TRUE(j.contains("error"));
  const auto& err = j["error"];
  EXPECT_EQ(err["code"], "invalid_input");
  EXPECT_EQ(err["message"], "memory: must be at least 16 MiB");
  EXPECT_EQ(err["field"], "memory");
  EXPECT_EQ(err["value"], "0");
  EXPECT_EQ(err["request_id"], "r1");
}

TEST(HttpError, BodyWithoutFieldHasNulls) {
  auto j = errorBody(Error::notFound("vm web1 not found"), "r2");
  EXPECT_EQ(j["error"]["code"], "not_found");
  EXPECT_EQ(j["error"]["message"], "vm web1 not found");
  EXPECT_TRUE(j["error"]["field"].is_null());
  EXPECT_TRUE(j["error"]["value"].is_null());
}

TEST(HttpError, CodeStringsFollowResultH) {
  for (auto c : {ErrorCode::AlreadyExists, ErrorCode::FailedPrecondition, ErrorCode::QuotaExceeded,
                 ErrorCode::Forbidden, ErrorCode::Unavailable, ErrorCode::Timeout}) {
    EXPECT_EQ(errorBody(Error{c, "m", {}, {}}, "r")["error"]["code"], std::string(toString(c)));
  }
}

TEST(HttpError, InternalMessageStaysInTheLog) {
  Error e = Error::internal("open /var/lib/corral/secret.key: permission denied");
  e.field = "key";
  e.value = "hunter2";
  auto resp = Response::error(e, "deadbeef00000001");
  EXPECT_EQ(resp.status, 500);
  EXPECT_EQ(resp.body.find("secret"), std::string::npos);
  EXPECT_EQ(resp.body.find("hunter2"), std::string::npos);
  auto j = nlohmann::json::parse(resp.body);
  EXPECT_EQ(j["error"]["code"], "internal");
  EXPECT_EQ(j["error"]["message"], "internal error, report id deadbeef00000001");
  EXPECT_TRUE(j["error"]["field"].is_null());
}

TEST(HttpError, ResponseErrorUsesStatus) {
  auto resp = Response::error(Error::alreadyExists("name", "web1", "vm web1 already exists"), "r");
  EXPECT_EQ(resp.status, 409);
  EXPECT_EQ(resp.contentType, "application/json");
  EXPECT_EQ(nlohmann::json::parse(resp.body)["error"]["field"], "name");
}

}  // namespace
}  // namespace corral::api
