// Proves the Router's matching rules: literal and {param} segments, decoded
// params, literal-over-param precedence, trailing slashes, 404 for unknown paths,
// 405 with Allow for a known path and the wrong method; and the Request/Response
// helpers (jsonBody, query parsing, request ids).
#include "api/router.h"

#include <set>

#include <gtest/gtest.h>

namespace corral::api {
namespace {

Handler echo(std::string tag) {
  return [tag](const Request& req) {
    nlohmann::json j{{"tag", tag}, {"params", req.params}};
    return Response::json(200, j);
  };
}

Response call(const Router& r, std::string method, std::string path) {
  Request req;
  req.method = std::move(method);
  req.path = std::move(path);
  req.requestId = "testreq";
  return r.dispatch(req);
}

nlohmann::json bodyOf(const Response& r) { return nlohmann::json::parse(r.body); }

Router table() {
  Router r;
  r.add("GET", "/api/v1/vms", echo("list"));
  r.add("POST", "/api/v1/vms", echo("create"));
  r.add("GET", "/api/v1/vms/{name}", echo("info"));
  r.add("DELETE", "/api/v1/vms/{name}", echo("delete"));
  r.add("POST", "/api/v1/vms/{name}/actions/start", echo("start"));
  r.add("GET", "/api/v1/vms/{name}/log", echo("log"));
  r.add("GET", "/api/v1/vms/special", echo("special"));
  return r;
}

TEST(Router, MatchesLiteralPaths) {
  auto r = table();
  auto resp = call(r, "GET", "/api/v1/vms");
  EXPECT_EQ(resp.status, 200);
  EXPECT_EQ(bodyOf(resp)["tag"], "list");
  EXPECT_EQ(bodyOf(call(r, "POST", "/api/v1/vms"))["tag"], "create");
}

TEST(Router, FillsParams) {
  auto r = table();
  Request req;
  req.method = "POST";
  req.path = "/api/v1/vms/web1/actions/start";
  auto resp = r.dispatch(req);
  EXPECT_EQ(bodyOf(resp)["tag"], "start");
  EXPECT_EQ(req.params.at("name"), "web1");
  EXPECT_EQ(bodyOf(call(r, "GET", "/api/v1/vms/web1/log"))["params"]["name"], "web1");
}

TEST(Router, DecodesParams) {
  auto r = table();
  EXPECT_EQ(bodyOf(call(r, "GET", "/api/v1/vms/a%2Fb%20c"))["params"]["name"], "a/b c");
}

TEST(Router, LiteralWinsOverParam) {
  auto r = table();
  EXPECT_EQ(bodyOf(call(r, "GET", "/api/v1/vms/special"))["tag"], "special");
  EXPECT_EQ(bodyOf(call(r, "GET", "/api/v1/vms/other"))["tag"], "info");
  // A method only the param route has still reaches it.
  EXPECT_EQ(bodyOf(call(r, "DELETE", "/api/v1/vms/special"))["tag"], "delete");
}

TEST(Router, IgnoresTrailingSlash) {
  auto r = table();
  EXPECT_EQ(bodyOf(call(r, "GET", "/api/v1/vms/"))["tag"], "list");
  EXPECT_EQ(bodyOf(call(r, "GET", "/api/v1/vms/web1/"))["tag"], "info");
}

TEST(Router, UnknownPathIs404) {
  auto r = table();
  for (std::string p : {"/", "/api", "/api/v1/vm", "/api/v1/vms/web1/actions", "/api/v1/vms/web1/actions/fly",
                        "/api/v1/vms//log", "/api/v1/vms/web1/log/extra"}) {
    auto resp = call(r, "GET", p);
    EXPECT_EQ(resp.status, 404) << p;
    EXPECT_EQ(bodyOf(resp)["error"]["code"], "not_found") << p;
  }
}

TEST(Router, WrongMethodIs405WithAllow) {
  auto r = table();
  auto resp = call(r, "PUT", "/api/v1/vms/web1");
  EXPECT_EQ(resp.status, 405);
  EXPECT_EQ(resp.headers.at("Allow"), "DELETE, GET");
  EXPECT_EQ(bodyOf(resp)["error"]["field"], "method");
  auto resp2 = call(r, "GET", "/api/v1/vms/web1/actions/start");
  EXPECT_EQ(resp2.status, 405);
  EXPECT_EQ(resp2.headers.at("Allow"), "POST");
}

TEST(Router, ListsRoutesInOrder) {
  auto routes = table().routes();
  ASSERT_EQ(routes.size(), 7u);
  EXPECT_EQ(routes[0], (std::pair<std::string, std::string>{"GET", "/api/v1/vms"}));
  EXPECT_EQ(routes[4], (std::pair<std::string, std::string>{"POST", "/api/v1/vms/{name}/actions/start"}));
}

TEST(Request, JsonBody) {
  Request req;
  auto empty = req.jsonBody();
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(*empty, nlohmann::json::object());
  req.body = " \n";
  EXPECT_EQ(*req.jsonBody(), nlohmann::json::object());
  // Only application/json is read as JSON: a cross-site form cannot send it.
  req.body = R"({"memory": 128})";
  for (const char* type : {"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                           "application/jsonp"}) {
    if (*type) req.headers["content-type"] = type;
    auto refused = req.jsonBody();
    ASSERT_FALSE(refused.ok()) << type;
    EXPECT_EQ(refused.error().field, "content-type") << type;
  }
  req.headers["content-type"] = "Application/JSON; charset=utf-8";
  EXPECT_EQ((*req.jsonBody())["memory"], 128);
  req.headers["content-type"] = "application/json";
  EXPECT_EQ((*req.jsonBody())["memory"], 128);
  req.body = "{not json";
  auto bad = req.jsonBody();
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().code, ErrorCode::InvalidInput);
  EXPECT_EQ(bad.error().field, "body");
}

TEST(Request, ParsesQuery) {
  auto q = parseQuery("a=1&b=x%20y&c=p+q&flag&&a=2");
  EXPECT_EQ(q.at("a"), "2");
  EXPECT_EQ(q.at("b"), "x y");
  EXPECT_EQ(q.at("c"), "p q");
  EXPECT_EQ(q.at("flag"), "");
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(percentDecode("100%", false), "100%");
  EXPECT_EQ(percentDecode("%zz%4", false), "%zz%4");
  EXPECT_EQ(percentDecode("a+b", false), "a+b");
}

TEST(Response, Helpers) {
  auto j = Response::json(201, {{"a", 1}});
  EXPECT_EQ(j.status, 201);
  EXPECT_EQ(j.contentType, "application/json");
  EXPECT_EQ(nlohmann::json::parse(j.body)["a"], 1);
  auto t = Response::text(200, "hello");
  EXPECT_EQ(t.body, "hello");
  EXPECT_NE(t.contentType.find("text/plain"), std::string::npos);
  EXPECT_EQ(Response::noContent().status, 204);
  EXPECT_TRUE(Response::noContent().body.empty());
}

TEST(RequestId, UniqueAndScoped) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(newRequestId());
  EXPECT_EQ(ids.size(), 1000u);
  EXPECT_EQ(newRequestId().size(), 16u);
  EXPECT_EQ(currentRequestId(), "");
  {
    RequestIdScope outer("abc");
    EXPECT_EQ(currentRequestId(), "abc");
    // Response::error takes the scope's id when given none.
    auto resp = Response::error(Error::notFound("vm web1 not found"));
    EXPECT_EQ(nlohmann::json::parse(resp.body)["error"]["request_id"], "abc");
  }
  EXPECT_EQ(currentRequestId(), "");
}

}  // namespace
}  // namespace corral::api
