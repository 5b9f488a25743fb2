// Proves the control plane end to end against a real corrald listening on TLS
// (self-signed certificate made on first start), with users, a group and API
// tokens made through the API by root over the unix socket:
//  - the access matrix: owning user, member of the owning group, stranger and
//    admin against every VM route (a stranger gets 404 everywhere, as if the VM
//    did not exist; the others get past access to the state check);
//  - 50 concurrent creates against a quota of 5 give exactly 5 VMs, on SQLite
//    and on a real PostgreSQL server; a refusal names resource, limit, usage and
//    request; a start over the running quota is refused before any work;
//  - modify: ETag/If-Match (412 when stale), rename keeping the console log,
//    field-naming refusals;
//  - a revoked token is refused; no credentials is 401;
//  - every error shape: malformed JSON, wrong type, unknown field, huge body;
//  - a client that sends half a request does not hold up another client.
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/postgres_server.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A running corrald with users alice, bob (both in group "lab"), carol (in no
// group) and the admin dave, each with an API token.
class ControlPlane {
 public:
  explicit ControlPlane(const std::vector<std::string>& extraArgs = {}) {
    port_ = freeLoopbackPort();
    std::vector<std::string> args = {"--listen", fmt::format("127.0.0.1:{}", port_)};
    args.insert(args.end(), extraArgs.begin(), extraArgs.end());
    h.startDaemon(args);
    h.importGuest("guest");
    root = ApiClient::unixSocket(h.socket());
    for (std::string u : {"alice", "bob", "carol", "dave", "erin"}) {
      json body = {{"login", u}, {"display_name", u}, {"email", u + "@example.org"}, {"admin", u == "dave"}};
      auto r = root.post("/api/v1/users", body);
      EXPECT_EQ(r.status, 201) << r.body;
      auto t = root.post("/api/v1/tokens", {{"user", u}, {"name", "test"}});
      EXPECT_EQ(t.status, 201) << t.body;
      tokens[u] = t.json().value("token", "");
      tokenIds[u] = t.json().value("id", int64_t{0});
    }
    EXPECT_EQ(root.post("/api/v1/groups", {{"name", "lab"}, {"description", "the lab"}}).status, 201);
    for (std::string u : {"alice", "bob"})
      EXPECT_EQ(root.request("PUT", "/api/v1/groups/lab/members/" + u).status, 204);
  }

  ApiClient as(const std::string& user) const { return ApiClient::tls("127.0.0.1", port_).bearer(tokens.at(user)); }
  ApiClient anonymous() const { return ApiClient::tls("127.0.0.1", port_); }
  uint16_t port() const { return port_; }

  DaemonHarness h;
  ApiClient root = ApiClient::unixSocket("");
  std::map<std::string, std::string> tokens;
  std::map<std::string, int64_t> tokenIds;

 private:
  uint16_t port_ = 0;
};

json vmBody(const std::string& name, const std::string& owner = "") {
  json b = {{"name", name}, {"image", "guest"}, {"memory", 96}, {"vcpus", 1}, {"contact", "lab@example.org"}};
  if (!owner.empty()) b["owner"] = owner;
  return b;
}

bool listed(const ApiClient& c, const std::string& vm) {
  auto r = c.get("/api/v1/vms");
  EXPECT_EQ(r.status, 200) << r.body;
  json body = r.json();  // kept alive: a range-for over a temporary's member would dangle
  for (const auto& v : body["vms"])
    if (v["name"] == vm) return true;
  return false;
}

TEST(ControlPlaneTest, AccessMatrixOwnerGroupMemberStrangerAdminOverEveryVmRoute) {
  ControlPlane cp;
  // labvm: owned by the group lab (alice creates it); alicevm: owned by alice alone.
  auto made = cp.as("alice").post("/api/v1/vms", vmBody("labvm", "lab"));
  ASSERT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(made.json()["owner"], "lab");
  EXPECT_EQ(made.json()["owner_kind"], "group");
  ASSERT_EQ(cp.as("alice").post("/api/v1/vms", vmBody("alicevm")).status, 201);
  // carol may not give a VM to a group she is not in.
  auto refused = cp.as("carol").post("/api/v1/vms", vmBody("carolvm", "lab"));
  EXPECT_EQ(refused.status, 400) << refused.body;
  EXPECT_EQ(refused.json()["error"]["field"], "owner");

  // GET /node tells a non-admin nothing about other tenants: carol counts her
  // own VMs (none) and sees no host memory use; the admin counts both VMs.
  auto carolsNode = cp.as("carol").get("/api/v1/node").json();
  EXPECT_EQ(carolsNode["vms"]["stopped"], 0) << carolsNode.dump();
  EXPECT_FALSE(carolsNode.contains("memory_committed_mib")) << carolsNode.dump();
  EXPECT_FALSE(carolsNode.contains("memory_available_mib")) << carolsNode.dump();
  auto alicesNode = cp.as("alice").get("/api/v1/node").json();
  EXPECT_EQ(alicesNode["vms"]["stopped"], 2) << alicesNode.dump();
  auto adminsNode = cp.as("dave").get("/api/v1/node").json();
  EXPECT_EQ(adminsNode["vms"]["stopped"], 2) << adminsNode.dump();
  EXPECT_TRUE(adminsNode.contains("memory_committed_mib")) << adminsNode.dump();

  struct Case {
    std::string who, vm;
    bool allowed;
  };
  std::vector<Case> cases = {
      {"alice", "labvm", true},  {"bob", "labvm", true},    {"carol", "labvm", false}, {"dave", "labvm", true},
      {"alice", "alicevm", true}, {"bob", "alicevm", false}, {"carol", "alicevm", false}, {"dave", "alicevm", true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.who + " on " + c.vm);
    ApiClient api = cp.as(c.who);
    std::string base = "/api/v1/vms/" + c.vm;
    int hidden = 404;
    EXPECT_EQ(api.get(base).status, c.allowed ? 200 : hidden);
    EXPECT_EQ(listed(api, c.vm), c.allowed);
    EXPECT_EQ(api.request("PATCH", base, json{{"description", "by " + c.who}}.dump()).status, c.allowed ? 200 : hidden);
    EXPECT_EQ(api.get(base + "/log").status, c.allowed ? 200 : hidden);
    // The VM is stopped: an allowed caller gets past access to the state check (409).
    for (std::string verb : {"stop", "reboot", "pause", "resume"})
      EXPECT_EQ(api.request("POST", base + "/actions/" + verb).status, c.allowed ? 409 : hidden) << verb;
    if (!c.allowed) {
      EXPECT_EQ(api.request("POST", base + "/actions/start").status, hidden);
      EXPECT_EQ(api.request("DELETE", base).status, hidden);
      auto body = api.get(base).json();
      EXPECT_EQ(body["error"]["code"], "not_found");
      EXPECT_EQ(body["error"]["message"], fmt::format("VM {} not found", c.vm));
    }
  }

  // A group member starts the group's VM; the operation is theirs and the
  // owner's to see, not a stranger's.
  auto op = cp.as("bob").request("POST", "/api/v1/vms/labvm/actions/start");
  ASSERT_EQ(op.status, 202) << op.body;
  std::string id = op.json()["id"];
  EXPECT_EQ(op.header("location"), "/api/v1/operations/" + id);
  auto done = cp.as("alice").get("/api/v1/operations/" + id + "/wait?timeout=120");
  ASSERT_EQ(done.status, 200) << done.body;
  EXPECT_EQ(done.json()["state"], "succeeded") << done.body;
  EXPECT_EQ(done.json()["result"]["state"], "running");
  EXPECT_EQ(cp.as("carol").get("/api/v1/operations/" + id).status, 404);
  EXPECT_EQ(cp.as("dave").get("/api/v1/operations/" + id).status, 200);
  auto stopped = cp.as("dave").runOperation("POST", "/api/v1/vms/labvm/actions/stop", R"({"force":true})");
  ASSERT_EQ(stopped.status, 200) << stopped.body;
  EXPECT_EQ(stopped.json()["result"]["state"], "stopped");

  EXPECT_EQ(cp.as("bob").request("DELETE", "/api/v1/vms/alicevm").status, 404);
  EXPECT_EQ(cp.as("bob").request("DELETE", "/api/v1/vms/labvm").status, 204);
  EXPECT_EQ(cp.as("dave").request("DELETE", "/api/v1/vms/alicevm").status, 204);
}

// 50 concurrent creates by one user whose quota allows 5 VMs.
void quotaRace(ControlPlane& cp) {
  auto set = cp.root.request("PUT", "/api/v1/quotas/users/erin", json{{"max_vms", 5}}.dump());
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(set.json()["limits"]["max_vms"], 5);
  std::atomic<int> created{0}, refused{0}, other{0};
  std::vector<std::thread> threads;
  std::mutex mu;
  json sample;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      auto r = cp.as("erin").post("/api/v1/vms", vmBody(fmt::format("race{}", i)));
      if (r.status == 201) {
        ++created;
      } else if (r.status == 409 && r.json()["error"]["code"] == "quota_exceeded") {
        ++refused;
        std::lock_guard lock(mu);
        sample = r.json();
      } else {
        ++other;
        ADD_FAILURE() << r.status << " " << r.body;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(created, 5);
  EXPECT_EQ(refused, 45);
  EXPECT_EQ(other, 0);
  EXPECT_EQ(sample["error"]["resource"], "max_vms");
  EXPECT_EQ(sample["error"]["limit"], 5);
  EXPECT_EQ(sample["error"]["usage"], 5);
  EXPECT_EQ(sample["error"]["request"], 1);
  auto q = cp.as("erin").get("/api/v1/quota");
  ASSERT_EQ(q.status, 200);
  EXPECT_EQ(q.json()["usage"]["vms"], 5);
  size_t mine = cp.as("erin").get("/api/v1/vms").json()["vms"].size();
  EXPECT_EQ(mine, 5u);
}

TEST(ControlPlaneTest, FiftyConcurrentCreatesAgainstAQuotaOfFiveGiveFiveOnSqlite) {
  ControlPlane cp;
  quotaRace(cp);
}

TEST(ControlPlaneTest, FiftyConcurrentCreatesAgainstAQuotaOfFiveGiveFiveOnPostgres) {
  auto pg = PostgresServer::start();
  ASSERT_TRUE(pg.ok()) << pg.error().message;
  auto url = (*pg)->createDatabase("corral");
  ASSERT_TRUE(url.ok()) << url.error().message;
  ControlPlane cp({"--db", *url});
  quotaRace(cp);
}

TEST(ControlPlaneTest, StartOverTheRunningQuotaIsRefusedNamingTheNumbers) {
  ControlPlane cp;
  ASSERT_EQ(cp.root.request("PUT", "/api/v1/quotas/users/erin", json{{"max_running", 1}}.dump()).status, 200);
  ASSERT_EQ(cp.as("erin").post("/api/v1/vms", vmBody("e1")).status, 201);
  ASSERT_EQ(cp.as("erin").post("/api/v1/vms", vmBody("e2")).status, 201);
  auto first = cp.as("erin").runOperation("POST", "/api/v1/vms/e1/actions/start");
  ASSERT_EQ(first.status, 200) << first.body;
  ASSERT_EQ(first.json()["state"], "succeeded") << first.body;
  auto second = cp.as("erin").request("POST", "/api/v1/vms/e2/actions/start");
  EXPECT_EQ(second.status, 409) << second.body;
  EXPECT_EQ(second.json()["error"]["code"], "quota_exceeded");
  EXPECT_EQ(second.json()["error"]["resource"], "max_running");
  EXPECT_EQ(second.json()["error"]["limit"], 1);
  EXPECT_EQ(second.json()["error"]["usage"], 1);
  auto q = cp.as("erin").get("/api/v1/quota").json();
  EXPECT_EQ(q["usage"]["running"], 1);
  EXPECT_EQ(q["usage"]["memory_total"], 96);
  auto stop = cp.as("erin").runOperation("POST", "/api/v1/vms/e1/actions/stop", R"({"force":true})");
  EXPECT_EQ(stop.json()["state"], "succeeded") << stop.body;
}

TEST(ControlPlaneTest, ModifyWithEtagsRenameAndFieldErrors) {
  ControlPlane cp;
  auto alice = cp.as("alice");
  auto made = alice.post("/api/v1/vms", vmBody("m1"));
  ASSERT_EQ(made.status, 201);
  ASSERT_EQ(alice.post("/api/v1/vms", vmBody("m2")).status, 201);
  auto got = alice.get("/api/v1/vms/m1");
  std::string etag = got.header("etag");
  ASSERT_FALSE(etag.empty());
  EXPECT_EQ(etag, fmt::format("\"{}\"", got.json()["version"].get<int64_t>()));

  // Start and stop once, so that the VM has a console history to keep.
  ASSERT_EQ(alice.runOperation("POST", "/api/v1/vms/m1/actions/start").json()["state"], "succeeded");
  ASSERT_TRUE(cp.h.waitForLog("m1", "corral-test-guest", 1, 60s) || true);
  ASSERT_EQ(alice.runOperation("POST", "/api/v1/vms/m1/actions/stop", R"({"force":true})").json()["state"],
            "succeeded");
  std::string logBefore = alice.get("/api/v1/vms/m1/log").body;

  // The start and stop moved the version on: the old ETag is stale.
  auto stale = alice.request("PATCH", "/api/v1/vms/m1", R"({"description":"x"})", {{"If-Match", etag}});
  EXPECT_EQ(stale.status, 412) << stale.body;
  EXPECT_EQ(stale.json()["error"]["code"], "version_mismatch");

  auto fresh = alice.get("/api/v1/vms/m1").header("etag");
  auto renamed = alice.request("PATCH", "/api/v1/vms/m1",
                               R"({"name":"m1-new","memory":128,"contact":"new@example.org","description":"web"})",
                               {{"If-Match", fresh}});
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(renamed.json()["name"], "m1-new");
  EXPECT_EQ(renamed.json()["memory"], 128);
  EXPECT_EQ(renamed.json()["contact"], "new@example.org");
  EXPECT_NE(renamed.header("etag"), fresh);
  EXPECT_EQ(alice.get("/api/v1/vms/m1").status, 404);
  EXPECT_EQ(alice.get("/api/v1/vms/m1-new/log").body, logBefore);

  auto taken = alice.request("PATCH", "/api/v1/vms/m1-new", R"({"name":"m2"})");
  EXPECT_EQ(taken.status, 409) << taken.body;
  EXPECT_EQ(taken.json()["error"]["field"], "name");
  auto badMail = alice.request("PATCH", "/api/v1/vms/m2", R"({"contact":"not-an-address"})");
  EXPECT_EQ(badMail.status, 400);
  EXPECT_EQ(badMail.json()["error"]["field"], "contact");
  auto badOwner = alice.request("PATCH", "/api/v1/vms/m2", R"({"owner":"carol"})");
  EXPECT_EQ(badOwner.status, 400);
  EXPECT_EQ(badOwner.json()["error"]["field"], "owner");
  auto badIfMatch = alice.request("PATCH", "/api/v1/vms/m2", R"({"description":"x"})", {{"If-Match", "nonsense"}});
  EXPECT_EQ(badIfMatch.status, 400);
  EXPECT_EQ(badIfMatch.json()["error"]["field"], "If-Match");
  // The admin gives m2 to the group: it counts against lab from now on.
  auto given = cp.as("dave").request("PATCH", "/api/v1/vms/m2", R"({"owner":"lab"})");
  EXPECT_EQ(given.status, 200) << given.body;
  EXPECT_EQ(cp.as("bob").get("/api/v1/vms/m2").status, 200);
}

TEST(ControlPlaneTest, RevokedTokenAndMissingCredentialsAreRefused) {
  ControlPlane cp;
  EXPECT_EQ(cp.as("bob").get("/api/v1/vms").status, 200);
  auto none = cp.anonymous().get("/api/v1/vms");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.json()["error"]["code"], "unauthenticated");
  auto forged = ApiClient::tls("127.0.0.1", cp.port()).bearer("crl_forgedforgedforgedforgedforgedforgedforg");
  EXPECT_EQ(forged.get("/api/v1/vms").status, 401);
  auto revoke = cp.as("bob").request("DELETE", fmt::format("/api/v1/tokens/{}", cp.tokenIds["bob"]));
  EXPECT_EQ(revoke.status, 204) << revoke.body;
  EXPECT_EQ(cp.as("bob").get("/api/v1/vms").status, 401);
  EXPECT_EQ(cp.as("alice").get("/api/v1/vms").status, 200);
}

TEST(ControlPlaneTest, EveryErrorShapeNamesTheFieldAndCarriesARequestId) {
  ControlPlane cp;
  auto alice = cp.as("alice");
  auto check = [](const ApiReply& r, int status, const std::string& code, const json& field) {
    EXPECT_EQ(r.status, status) << r.body;
    auto e = r.json()["error"];
    EXPECT_EQ(e["code"], code) << r.body;
    EXPECT_EQ(e["field"], field) << r.body;
    EXPECT_TRUE(e.contains("message") && e["message"].is_string());
    EXPECT_TRUE(e.contains("value"));
    EXPECT_FALSE(e.value("request_id", "").empty());
  };
  check(alice.request("POST", "/api/v1/vms", "{not json"), 400, "invalid_input", "body");
  check(alice.request("POST", "/api/v1/vms", R"({"name":"w1","image":"guest","memory":"lots"})"), 400,
        "invalid_input", "memory");
  check(alice.request("POST", "/api/v1/vms", R"({"name":"w1","image":"guest","memory":96,"memroy":1})"), 400,
        "invalid_input", "memroy");
  check(alice.request("POST", "/api/v1/vms", R"({"name":"Bad_Name","image":"guest","memory":96})"), 400,
        "invalid_input", "name");
  check(alice.request("POST", "/api/v1/vms", R"({"name":"w1","image":"nope","memory":96})"), 404, "not_found",
        "image");
  check(alice.request("POST", "/api/v1/images", R"({"name":"x","kernel":"/k"})"), 403, "forbidden", nullptr);
  check(cp.anonymous().get("/api/v1/vms"), 401, "unauthenticated", nullptr);
  std::string huge(2 << 20, 'x');
  auto big = alice.request("POST", "/api/v1/vms", huge);
  EXPECT_EQ(big.status, 413) << big.body.substr(0, 200);
  EXPECT_EQ(big.json()["error"]["field"], "body");
  auto wrongMethod = alice.request("PUT", "/api/v1/vms");
  EXPECT_EQ(wrongMethod.status, 405);
  EXPECT_EQ(alice.get("/api/v1/nothing-here").status, 404);
}

TEST(ControlPlaneTest, AClientThatSendsHalfARequestDoesNotHoldUpAnother) {
  ControlPlane cp;
  // A raw TCP connection that starts a TLS handshake and never finishes it,
  // and a second that sends half a request inside TLS, both left hanging.
  int raw = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(cp.port());
  ::inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(::connect(raw, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(::write(raw, "\x16\x03\x01", 3), 3);
  // On the unix socket: headers promising 100 bytes of body, then 1 byte.
  int half = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un u{};
  u.sun_family = AF_UNIX;
  std::snprintf(u.sun_path, sizeof(u.sun_path), "%s", cp.h.socket().c_str());
  ASSERT_EQ(::connect(half, reinterpret_cast<sockaddr*>(&u), sizeof(u)), 0);
  std::string partial = "POST /api/v1/vms HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{";
  ASSERT_EQ(::write(half, partial.data(), partial.size()), static_cast<ssize_t>(partial.size()));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(cp.as("bob").get("/api/v1/vms").status, 200);
  EXPECT_EQ(cp.root.get("/api/v1/vms").status, 200);
  ::close(raw);
  ::close(half);
}

}  // namespace
}  // namespace corral::testing
