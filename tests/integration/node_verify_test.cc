// `corral node verify` and `corral node info` against a real corrald:
//  - a healthy daemon passes every check: exit 0, no PROBLEM line;
//  - a state dir others may read (0755), a console key file 0644 and a missing
//    qemu-img are each a problem: exit 1, the check named in the table and in
//    the summary, the detail saying what is wrong;
//  - verify is for admins: a user's token gets 403;
//  - node info reports memory committed to guests (0 with none running).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdio>

#include "support/api_client.h"
#include "support/daemon_harness.h"

namespace corral::testing {
namespace {

using nlohmann::json;

// The check named `name` in a verify answer, or null.
json check(const json& body, const std::string& name) {
  for (const auto& c : body.value("checks", json::array()))
    if (c.value("name", "") == name) return c;
  return nullptr;
}

TEST(NodeVerify, HealthyDaemonPassesAndBrokenModesFail) {
  DaemonHarness h;
  uint16_t port = freeLoopbackPort();
  h.startDaemon({"--listen", fmt::format("127.0.0.1:{}", port)});

  auto ok = h.cli({"node", "verify"});
  EXPECT_EQ(ok.exitCode, 0) << ok.out << ok.err;
  EXPECT_EQ(ok.out.find("PROBLEM"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("no problems"), std::string::npos) << ok.out;
  json body = h.cliJson({"node", "verify"});
  EXPECT_EQ(body["problems"], 0) << body.dump(2);
  for (const char* name : {"qemu", "qemu_img", "accelerator", "net.tun", "net.bridge", "net.vhost", "state_dir",
                           "state_dir.keys", "key.console", "database", "pool.default", "clock.sane", "clock.sync"})
    EXPECT_FALSE(check(body, name).is_null()) << "no check " << name << " in " << body.dump(2);
  EXPECT_NE(check(body, "database")["detail"].get<std::string>().find("current"), std::string::npos);

  json info = h.cliJson({"node", "info"});
  EXPECT_EQ(info["memory_committed_mib"], 0) << info.dump();
  EXPECT_TRUE(info.contains("memory_total_mib"));

  // Admins only.
  ApiClient root = ApiClient::unixSocket(h.socket());
  ASSERT_EQ(root.post("/api/v1/users", {{"login", "bob"}, {"email", "bob@example.org"}}).status, 201);
  auto t = root.post("/api/v1/tokens", {{"user", "bob"}, {"name", "test"}});
  ASSERT_EQ(t.status, 201) << t.body;
  EXPECT_EQ(ApiClient::tls("127.0.0.1", port).bearer(t.json().value("token", "")).get("/api/v1/node/verify").status,
            403);

  // The state dir readable by others, and the console key too.
  std::string key = h.stateDir() + "/keys/console.key";
  ASSERT_EQ(::chmod(h.stateDir().c_str(), 0755), 0);
  ASSERT_EQ(::chmod(key.c_str(), 0644), 0);
  auto bad = h.cli({"node", "verify"});
  EXPECT_EQ(bad.exitCode, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("2 problems: state_dir, key.console"), std::string::npos) << bad.out;
  auto raw = h.cli({"node", "verify", "-o", "json"});
  EXPECT_EQ(raw.exitCode, 1);
  body = json::parse(raw.out, nullptr, false);
  EXPECT_EQ(body["problems"], 2) << raw.out;
  EXPECT_FALSE(check(body, "state_dir")["ok"].get<bool>());
  EXPECT_NE(check(body, "state_dir")["detail"].get<std::string>().find("0755"), std::string::npos);
  EXPECT_FALSE(check(body, "key.console")["ok"].get<bool>());
  ASSERT_EQ(::chmod(h.stateDir().c_str(), 0711), 0);
  ASSERT_EQ(::chmod(key.c_str(), 0600), 0);
  EXPECT_EQ(h.cli({"node", "verify"}).exitCode, 0);
}

TEST(NodeVerify, MissingQemuImgIsAProblem) {
  DaemonHarness h;
  std::string config = (h.dir() / "corrald.json").string();
  {
    FILE* f = std::fopen(config.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("{\"qemu_img\": \"/nonexistent/qemu-img\"}\n", f);
    std::fclose(f);
  }
  h.startDaemon({"--config", config});
  auto r = h.cli({"node", "verify"});
  EXPECT_EQ(r.exitCode, 1) << r.out << r.err;
  EXPECT_NE(r.out.find("1 problem: qemu_img"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("/nonexistent/qemu-img"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace corral::testing
