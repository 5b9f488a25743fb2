// Proves the VM routes' rules without a guest (a real SQLite store, no QEMU):
// who sees which VM (owner, group member, administrator, stranger, admin), that a
// hidden VM is 404 word for word like a missing one, owner choice on create,
// quota refusals with their numbers (and 50 concurrent creates against a quota
// of 5 giving 5), ETag/If-Match on modify, rename, field-naming errors, quota
// show/set permissions, and events published for what the caller may see.
#include <atomic>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "api/routes.h"
#include "host/state_dir.h"
#include "support/temp_dir.h"

namespace corral::api {
namespace {

using nlohmann::json;

class VmRoutes : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(state_.prepare().ok());
    auto s = store::openSqliteStore(state_.database().string());
    ASSERT_TRUE(s.ok()) << s.error().message;
    store_ = std::move(s).take();
    store::ImageRecord img{.name = "guest", .kernel = "/nonexistent/k", .createdAt = store::nowRfc3339()};
    ASSERT_TRUE(store_->insertImage(img).ok());
    for (std::string u : {"alice", "bob", "carol", "dave"}) {
      store::UserRecord rec{.login = u, .displayName = u, .email = u + "@example.org", .admin = u == "dave",
                            .createdAt = store::nowRfc3339()};
      ASSERT_TRUE(store_->insertUser(rec).ok());
    }
    ASSERT_TRUE(store_->insertGroup({.name = "lab", .createdAt = store::nowRfc3339()}).ok());
    ASSERT_TRUE(store_->addMember("lab", "alice").ok());
    ASSERT_TRUE(store_->addMember("lab", "bob").ok());
    core::ManagerConfig mc;
    mc.quotaDefaults = core::QuotaLimits{.maxVms = 3, .maxRunning = 1, .maxMemoryTotalMib = 512, .minMemoryVmMib = 72,
                                         .maxMemoryVmMib = 512, .maxDiskTotalGib = 10, .maxDiskVmGib = 10};
    vms_ = std::make_unique<core::VmManager>(io_, *store_, state_, mc, &events_);
    ops_ = std::make_unique<core::Operations>(*store_, 2);
    identity_ = std::make_unique<core::Identity>(*store_);
    ASSERT_TRUE(vms_->openStorage().ok());
    images_ = std::make_unique<core::Images>(*store_, vms_->storage(), *ops_);
    auto tokens = core::ConsoleTokens::open({.keyFile = state_.consoleKey()});
    ASSERT_TRUE(tokens.ok()) << tokens.error().describe();
    tokens_ = std::move(tokens).take();
    addAllRoutes(router_, {.vms = *vms_, .images = *images_, .ops = *ops_, .events = events_, .identity = *identity_,
                           .consoleTokens = *tokens_,
                           .nodeFacts = [](const core::Principal&) { return json::object(); }});
  }

  std::shared_ptr<const core::Principal> who(const std::string& login) {
    auto p = std::make_shared<core::Principal>();
    p->login = login;
    p->admin = login == "dave" || login == "root";
    p->via = "token";
    if (login == "alice" || login == "bob") p->groups = {"lab"};
    return p;
  }

  Response call(const std::string& login, std::string method, std::string path, std::string body = {},
                std::map<std::string, std::string> headers = {}) {
    Request req;
    req.method = std::move(method);
    req.path = std::move(path);
    req.body = std::move(body);
    req.headers = std::move(headers);
    if (!req.body.empty()) req.headers.emplace("content-type", "application/json");
    req.principal = login.empty() ? nullptr : who(login);
    req.requestId = newRequestId();
    return router_.dispatch(req);
  }

  Response create(const std::string& login, const std::string& name, const std::string& owner = "",
                  int memory = 96) {
    json b = {{"name", name}, {"image", "guest"}, {"memory", memory}};
    if (!owner.empty()) b["owner"] = owner;
    return call(login, "POST", "/api/v1/vms", b.dump());
  }

  static json body(const Response& r) { return json::parse(r.body, nullptr, false); }

  testing::TempDir dir_;
  host::StateDir state_{dir_.path()};
  std::unique_ptr<store::Store> store_;
  boost::asio::io_context io_;
  core::EventBus events_;
  std::unique_ptr<core::VmManager> vms_;
  std::unique_ptr<core::Operations> ops_;
  std::unique_ptr<core::Identity> identity_;
  std::unique_ptr<core::Images> images_;
  std::unique_ptr<core::ConsoleTokens> tokens_;
  Router router_;
};

TEST_F(VmRoutes, VisibilityFollowsOwnerGroupAdministratorAndAdmin) {
  ASSERT_EQ(create("alice", "labvm", "lab").status, 201);
  auto mine = create("alice", "alicevm");
  ASSERT_EQ(mine.status, 201);
  EXPECT_EQ(body(mine)["owner"], "alice");
  EXPECT_EQ(body(mine)["owner_kind"], "user");
  EXPECT_EQ(body(mine)["administrator"], "alice");
  EXPECT_EQ(body(mine)["contact"], "alice@example.org");  // the owner's email by default

  struct Case {
    std::string who, vm;
    bool sees;
  };
  for (const auto& c : std::vector<Case>{{"alice", "labvm", true},
                                         {"bob", "labvm", true},
                                         {"carol", "labvm", false},
                                         {"dave", "labvm", true},
                                         {"bob", "alicevm", false},
                                         {"dave", "alicevm", true}}) {
    SCOPED_TRACE(c.who + " " + c.vm);
    auto r = call(c.who, "GET", "/api/v1/vms/" + c.vm);
    EXPECT_EQ(r.status, c.sees ? 200 : 404);
    auto list = body(call(c.who, "GET", "/api/v1/vms"))["vms"];
    bool listed = std::any_of(list.begin(), list.end(), [&](const json& v) { return v["name"] == c.vm; });
    EXPECT_EQ(listed, c.sees);
    if (!c.sees) {
      // Word for word what a VM that does not exist gives.
      auto missing = body(call(c.who, "GET", "/api/v1/vms/nosuchvm"));
      auto hidden = body(r);
      EXPECT_EQ(hidden["error"]["code"], missing["error"]["code"]);
      EXPECT_EQ(hidden["error"]["message"], "VM " + c.vm + " not found");
      for (std::string verb : {"start", "stop", "reboot", "pause", "resume"})
        EXPECT_EQ(call(c.who, "POST", "/api/v1/vms/" + c.vm + "/actions/" + verb).status, 404) << verb;
      EXPECT_EQ(call(c.who, "PATCH", "/api/v1/vms/" + c.vm, R"({"description":"x"})").status, 404);
      EXPECT_EQ(call(c.who, "GET", "/api/v1/vms/" + c.vm + "/log").status, 404);
      EXPECT_EQ(call(c.who, "DELETE", "/api/v1/vms/" + c.vm).status, 404);
    }
  }
  // The administrator sees and operates the VM without owning it: it may not
  // take the VM, hand it on, or delete it.
  ASSERT_EQ(call("alice", "PATCH", "/api/v1/vms/alicevm", R"({"administrator":"carol"})").status, 200);
  EXPECT_EQ(call("carol", "GET", "/api/v1/vms/alicevm").status, 200);
  EXPECT_EQ(call("carol", "PATCH", "/api/v1/vms/alicevm", R"({"description":"operated"})").status, 200);
  auto take = call("carol", "PATCH", "/api/v1/vms/alicevm", R"({"owner":"carol"})");
  EXPECT_EQ(take.status, 403) << take.body;
  EXPECT_EQ(body(take)["error"]["field"], "owner");
  auto handOn = call("carol", "PATCH", "/api/v1/vms/alicevm", R"({"administrator":"bob"})");
  EXPECT_EQ(handOn.status, 403) << handOn.body;
  EXPECT_EQ(body(handOn)["error"]["field"], "administrator");
  EXPECT_EQ(call("carol", "DELETE", "/api/v1/vms/alicevm").status, 403);
  EXPECT_EQ(body(call("alice", "GET", "/api/v1/vms/alicevm"))["owner"], "alice");
  EXPECT_EQ(call("", "GET", "/api/v1/vms").status, 401);
}

// The list is cached per caller until the store's change mark moves: every
// kind of change must show in the next list, for every caller.
TEST_F(VmRoutes, CachedListFollowsEveryChange) {
  auto names = [&](const std::string& who) {
    std::vector<std::string> out;
    json list = body(call(who, "GET", "/api/v1/vms"));  // named: a range-for over a temporary's member dangles
    for (const auto& v : list["vms"]) out.push_back(v["name"]);
    return out;
  };
  using V = std::vector<std::string>;
  ASSERT_EQ(create("alice", "l1", "lab").status, 201);
  EXPECT_EQ(names("bob"), V{"l1"});
  ASSERT_EQ(create("alice", "l2").status, 201);
  EXPECT_EQ(names("bob"), V{"l1"});
  EXPECT_EQ(names("alice"), (V{"l1", "l2"}));
  ASSERT_EQ(call("alice", "PATCH", "/api/v1/vms/l2", R"({"owner":"lab"})").status, 200);
  EXPECT_EQ(names("bob"), (V{"l1", "l2"}));
  ASSERT_EQ(call("alice", "PATCH", "/api/v1/vms/l1", R"({"description":"changed"})").status, 200);
  EXPECT_EQ(body(call("bob", "GET", "/api/v1/vms"))["vms"][0]["description"], "changed");
  ASSERT_EQ(call("bob", "DELETE", "/api/v1/vms/l1").status, 204);
  EXPECT_EQ(names("alice"), V{"l2"});
  EXPECT_EQ(names("dave"), V{"l2"});
  EXPECT_EQ(names("carol"), V{});
}

TEST_F(VmRoutes, OwnerChoiceOnCreate) {
  auto notMine = create("carol", "c1", "lab");
  EXPECT_EQ(notMine.status, 400);
  EXPECT_EQ(body(notMine)["error"]["field"], "owner");
  auto otherUser = create("bob", "b1", "alice");
  EXPECT_EQ(otherUser.status, 400);
  auto unknown = create("dave", "d1", "nobody");
  EXPECT_EQ(unknown.status, 400);
  EXPECT_EQ(body(unknown)["error"]["field"], "owner");
  EXPECT_EQ(create("dave", "d2", "carol").status, 201);  // admins give VMs to anyone
  auto badContact = call("alice", "POST", "/api/v1/vms",
                         json{{"name", "a1"}, {"image", "guest"}, {"memory", 96}, {"contact", "x@"}}.dump());
  EXPECT_EQ(badContact.status, 400);
  EXPECT_EQ(body(badContact)["error"]["field"], "contact");
}

TEST_F(VmRoutes, QuotaRefusalsCarryTheNumbers) {
  auto big = create("alice", "big", "", 1024);
  ASSERT_EQ(big.status, 409) << big.body;
  auto e = body(big)["error"];
  EXPECT_EQ(e["code"], "quota_exceeded");
  EXPECT_EQ(e["resource"], "max_memory_vm");
  EXPECT_EQ(e["limit"], 512);
  EXPECT_EQ(e["request"], 1024);
  for (std::string n : {"q1", "q2", "q3"}) ASSERT_EQ(create("alice", n).status, 201);
  auto fourth = create("alice", "q4");
  ASSERT_EQ(fourth.status, 409);
  EXPECT_EQ(body(fourth)["error"]["resource"], "max_vms");
  EXPECT_EQ(body(fourth)["error"]["usage"], 3);
  // The group's quota is its own: alice can still create for lab.
  EXPECT_EQ(create("alice", "g1", "lab").status, 201);
  // Nothing was left behind by the refusals.
  EXPECT_FALSE(store_->findVm("q4")->has_value());
  EXPECT_FALSE(store_->findVm("big")->has_value());
}

TEST_F(VmRoutes, FiftyConcurrentCreatesAgainstAQuotaOfFiveGiveFive) {
  store::QuotaRecord q{.subjectKind = "user", .subject = "bob", .maxVms = 5};
  ASSERT_TRUE(store_->setQuota(q).ok());
  std::atomic<int> created{0}, refused{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 50; ++i)
    ts.emplace_back([&, i] {
      auto r = create("bob", "r" + std::to_string(i));
      if (r.status == 201) ++created;
      if (r.status == 409) ++refused;
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(created, 5);
  EXPECT_EQ(refused, 45);
  EXPECT_EQ(store_->usage("user", "bob")->vms, 5);
}

TEST_F(VmRoutes, ModifyHonoursIfMatchAndRenames) {
  auto made = create("alice", "m1");
  ASSERT_EQ(made.status, 201);
  std::string etag = made.headers["ETag"];
  ASSERT_EQ(etag, "\"" + std::to_string(body(made)["version"].get<int64_t>()) + "\"");
  auto ok1 = call("alice", "PATCH", "/api/v1/vms/m1", R"({"description":"one","vcpus":1})", {{"if-match", etag}});
  ASSERT_EQ(ok1.status, 200) << ok1.body;
  auto stale = call("alice", "PATCH", "/api/v1/vms/m1", R"({"description":"two"})", {{"if-match", etag}});
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(body(stale)["error"]["code"], "version_mismatch");
  auto renamed = call("alice", "PATCH", "/api/v1/vms/m1", R"({"name":"m1b","memory":128})",
                      {{"if-match", ok1.headers["ETag"]}});
  ASSERT_EQ(renamed.status, 200) << renamed.body;
  EXPECT_EQ(body(renamed)["name"], "m1b");
  EXPECT_EQ(body(renamed)["memory"], 128);
  EXPECT_EQ(call("alice", "GET", "/api/v1/vms/m1").status, 404);
  for (auto [field, bad] : std::vector<std::pair<std::string, json>>{{"name", "Bad Name"},
                                                                      {"memory", 10},
                                                                      {"memory", "x"},
                                                                      {"vcpus", 0},
                                                                      {"on_crash", "explode"},
                                                                      {"contact", "nope"},
                                                                      {"owner", "carol"},
                                                                      {"administrator", "nobody"}}) {
    auto r = call("alice", "PATCH", "/api/v1/vms/m1b", json{{field, bad}}.dump());
    EXPECT_EQ(r.status, 400) << field << " " << r.body;
    EXPECT_EQ(body(r)["error"]["field"], field) << r.body;
  }
  auto unknown = call("alice", "PATCH", "/api/v1/vms/m1b", R"({"colour":"red"})");
  EXPECT_EQ(body(unknown)["error"]["field"], "colour");
  auto empty = call("alice", "PATCH", "/api/v1/vms/m1b", "{}");
  EXPECT_EQ(empty.status, 400);
  // Giving the VM to a group over its quota is refused, naming the group.
  store::QuotaRecord q{.subjectKind = "group", .subject = "lab", .maxVms = 0};
  ASSERT_TRUE(store_->setQuota(q).ok());
  auto given = call("alice", "PATCH", "/api/v1/vms/m1b", R"({"owner":"lab"})");
  EXPECT_EQ(given.status, 409) << given.body;
  EXPECT_NE(body(given)["error"]["message"].get<std::string>().find("group lab"), std::string::npos);
}

TEST_F(VmRoutes, QuotaShowAndSetPermissions) {
  ASSERT_EQ(create("alice", "s1").status, 201);
  auto own = call("alice", "GET", "/api/v1/quota");
  ASSERT_EQ(own.status, 200) << own.body;
  EXPECT_EQ(body(own)["usage"]["vms"], 1);
  EXPECT_EQ(body(own)["limits"]["max_vms"], 3);
  EXPECT_EQ(call("alice", "GET", "/api/v1/quotas/groups/lab").status, 200);
  EXPECT_EQ(call("carol", "GET", "/api/v1/quotas/groups/lab").status, 404);
  EXPECT_EQ(call("carol", "GET", "/api/v1/quotas/users/alice").status, 404);
  EXPECT_EQ(call("alice", "PUT", "/api/v1/quotas/users/alice", R"({"max_vms":100})").status, 403);
  auto set = call("dave", "PUT", "/api/v1/quotas/users/alice", R"({"max_vms":7,"max_running":-1})");
  ASSERT_EQ(set.status, 200) << set.body;
  EXPECT_EQ(body(set)["limits"]["max_vms"], 7);
  EXPECT_TRUE(body(set)["limits"]["max_running"].is_null());
  auto cleared = call("dave", "PUT", "/api/v1/quotas/users/alice", R"({"max_vms":null})");
  EXPECT_EQ(body(cleared)["limits"]["max_vms"], 3);
  auto bad = call("dave", "PUT", "/api/v1/quotas/users/alice", R"({"max_vms":"many"})");
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(body(bad)["error"]["field"], "max_vms");
  EXPECT_EQ(call("dave", "PUT", "/api/v1/quotas/users/nobody", R"({"max_vms":1})").status, 404);
}

// PATCH changes the limits it names and keeps the others (PUT replaces them
// all): `corral quota set --max-running 2` after `--max-vms 1` keeps max_vms.
TEST_F(VmRoutes, QuotaPatchChangesOnlyWhatItNames) {
  const std::string q = "/api/v1/quotas/users/alice";
  const auto defaults = body(call("dave", "GET", q))["limits"];
  EXPECT_EQ(call("alice", "PATCH", q, R"({"max_vms":100})").status, 403);
  EXPECT_EQ(call("carol", "PATCH", "/api/v1/quotas/groups/lab", R"({"max_vms":1})").status, 403);
  EXPECT_EQ(call("dave", "PATCH", "/api/v1/quotas/users/nobody", R"({"max_vms":1})").status, 404);
  ASSERT_EQ(call("dave", "PATCH", q, R"({"max_vms":1})").status, 200);
  auto second = call("dave", "PATCH", q, R"({"max_running":2})");
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_EQ(body(second)["limits"]["max_vms"], 1) << "the first PATCH's limit stays";
  EXPECT_EQ(body(second)["limits"]["max_running"], 2);
  auto cleared = call("dave", "PATCH", q, R"({"max_vms":null})");
  ASSERT_EQ(cleared.status, 200) << cleared.body;
  EXPECT_EQ(body(cleared)["limits"]["max_vms"], defaults["max_vms"]) << "null: back to the default";
  EXPECT_EQ(body(cleared)["limits"]["max_running"], 2);
  auto empty = call("dave", "PATCH", q, "{}");
  EXPECT_EQ(empty.status, 200) << "an empty PATCH changes nothing";
  EXPECT_EQ(body(empty)["limits"]["max_running"], 2);
  for (const char* bad : {R"({"max_vms":"many"})", R"({"max_vms":-2})", R"({"max_vmz":1})", R"([1])"}) {
    auto r = call("dave", "PATCH", q, bad);
    EXPECT_EQ(r.status, 400) << bad;
    EXPECT_FALSE(body(r)["error"]["field"].get<std::string>().empty()) << bad;
  }
  EXPECT_EQ(body(call("dave", "GET", q))["limits"]["max_running"], 2) << "a refused PATCH changes nothing";
  // PUT still replaces: what it leaves out goes back to the default.
  auto put = call("dave", "PUT", q, R"({"max_vms":5})");
  EXPECT_EQ(body(put)["limits"]["max_vms"], 5);
  EXPECT_EQ(body(put)["limits"]["max_running"], defaults["max_running"]);
}

TEST_F(VmRoutes, EventsCarryTheChangesForAccessChecks) {
  std::vector<core::Event> seen;
  std::mutex mu;
  auto id = events_.subscribe([&](const core::Event& e) {
    std::lock_guard lock(mu);
    seen.push_back(e);
  });
  ASSERT_EQ(create("alice", "ev1", "lab").status, 201);
  ASSERT_EQ(call("bob", "PATCH", "/api/v1/vms/ev1", R"({"name":"ev2"})").status, 200);
  ASSERT_EQ(call("bob", "DELETE", "/api/v1/vms/ev2").status, 204);
  events_.unsubscribe(id);
  std::lock_guard lock(mu);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].type, "vm.created");
  EXPECT_EQ(seen[1].type, "vm.modified");
  EXPECT_EQ(seen[1].previousName, "ev1");
  EXPECT_EQ(seen[2].type, "vm.deleted");
  for (const auto& e : seen) {
    EXPECT_TRUE(core::canAccess(*who("bob"), e.vm));
    EXPECT_FALSE(core::canAccess(*who("carol"), e.vm));
  }
}

}  // namespace
}  // namespace corral::api

namespace corral::api {
namespace {

// Storage fields of a create are parsed with their field names: sizes as bytes
// or strings, "encrypt": "aes" refused saying why, an unknown disk key refused;
// GET /vms/{name} carries the disks, lists do not.
TEST_F(VmRoutes, StorageFieldsOnCreate) {
  auto aes = call("alice", "POST", "/api/v1/vms",
                  R"({"name":"a1","image":"guest","memory":96,"disks":["64M"],"encrypt":"aes"})");
  EXPECT_EQ(aes.status, 400);
  EXPECT_EQ(body(aes)["error"]["field"], "encrypt");
  EXPECT_NE(aes.body.find("legacy AES"), std::string::npos) << aes.body;

  auto badKey = call("alice", "POST", "/api/v1/vms",
                     R"({"name":"a2","image":"guest","memory":96,"disks":[{"size":"64M","colour":"red"}]})");
  EXPECT_EQ(badKey.status, 400);
  EXPECT_EQ(body(badKey)["error"]["field"], "disks[0].colour");

  auto badSize = call("alice", "POST", "/api/v1/vms", R"({"name":"a3","image":"guest","memory":96,"disks":["4Q"]})");
  EXPECT_EQ(badSize.status, 400);
  EXPECT_EQ(body(badSize)["error"]["field"], "disks[0]");

  auto made = call("alice", "POST", "/api/v1/vms",
                   R"({"name":"a4","image":"guest","memory":96,"disks":[67108864, {"size":"64M","encrypt":"luks"}]})");
  ASSERT_EQ(made.status, 201) << made.body;
  auto one = body(call("alice", "GET", "/api/v1/vms/a4"));
  ASSERT_EQ(one["disks"].size(), 2u);
  EXPECT_EQ(one["disks"][0]["size_bytes"], 64 << 20);
  EXPECT_FALSE(one["disks"][0]["encrypted"].get<bool>());
  EXPECT_TRUE(one["disks"][1]["encrypted"].get<bool>());
  EXPECT_EQ(one["disks"][1].dump().find("wrapped"), std::string::npos);
  auto list = body(call("alice", "GET", "/api/v1/vms"));
  for (const auto& vm : list["vms"]) EXPECT_FALSE(vm.contains("disks"));
}

}  // namespace
}  // namespace corral::api
