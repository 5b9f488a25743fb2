// Proves the networking commands of the corral CLI in-process against a
// stand-in daemon that records each request: `network create|list|show|delete`
// send exactly the options given to the right routes, `vm create` turns
// --network/--hostname/--ip/--mac/--nic-model/--forward into its "nics" (the
// per-NIC options shape the first NIC) and --no-network into "no_network", and
// `vm nic list|add|remove` use the VM's NIC routes; tables show what matters.
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli/context.h"
#include "cli/output.h"
#include "cli_fake_daemon.h"
#include "cli_run.h"

namespace corral::cli {
namespace {

using nlohmann::json;
using testutil::FakeDaemon;
using testutil::Reply;
using testutil::SeenRequest;

// `corral ARGS...` with the vm and network nouns.
testutil::CliRun corral(const FakeDaemon& daemon, std::vector<std::string> args) {
  return testutil::runCli(daemon, std::move(args), {addVmCommands, addNetworkCommands});
}

const char* kLan =
    R"({"name":"lan","mode":"nat","bridge":"crlbr0","subnet":"10.77.0.0/24","gateway":"10.77.0.1",
        "pool_start":"10.77.0.2","pool_end":"10.77.0.254","dns":["10.77.0.1"],"domain":"lab.test",
        "description":"","created_at":"2026-12-03T00:00:00Z","pool_size":253,"pool_used":1,
        "nics":[{"name":"nic0","vm":"web1","network":"lan","ip":"10.77.0.2","hostname":"web1"}]})";
const char* kNic =
    R"({"name":"nic1","vm":"web1","network":"lan","model":"virtio-net","mac":"52:54:00:00:00:02",
        "ip":"10.77.0.3","hostname":"web1-nic1","forwards":[],"created_at":"2026-12-03T00:00:00Z"})";

Reply daemonAnswer(const SeenRequest& r) {
  if (r.target == "/api/v1/networks" && r.method == "POST") return {201, kLan};
  if (r.target == "/api/v1/networks") return {200, std::string(R"({"networks":[)") + kLan + "]}"};
  if (r.target == "/api/v1/networks/lan") return r.method == "DELETE" ? Reply{204, ""} : Reply{200, kLan};
  if (r.target == "/api/v1/vms/web1/nics") {
    if (r.method == "POST") return {201, kNic};
    return {200, std::string(R"({"nics":[)") + kNic + "]}"};
  }
  if (r.target == "/api/v1/vms/web1/nics/nic1") return {204, ""};
  if (r.target.rfind("/api/v1/vms", 0) == 0)
    return {r.method == "POST" && r.target == "/api/v1/vms" ? 201 : 200, R"({"name":"web1","state":"stopped"})"};
  return {404, R"({"error":{"code":"not_found","message":"no route"}})"};
}

TEST(CliNetwork, CreateSendsOnlyWhatWasGiven) {
  FakeDaemon daemon(daemonAnswer);
  auto r = corral(daemon, {"network", "create", "lan", "--mode", "nat", "--subnet", "10.77.0.0/24", "--dns", "1.1.1.1",
                           "--dns", "9.9.9.9", "--domain", "lab.test"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("created network lan"), std::string::npos) << r.out;
  auto seen = daemon.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].target, "/api/v1/networks");
  EXPECT_EQ(json::parse(seen[0].body), json::parse(R"({"name":"lan","mode":"nat","subnet":"10.77.0.0/24",
      "dns":["1.1.1.1","9.9.9.9"],"domain":"lab.test"})"));
  EXPECT_EQ(corral(daemon, {"network", "create", "x", "--mode", "vxlan"}).code, kExitUsage);
  EXPECT_EQ(corral(daemon, {"network", "create", "x"}).code, kExitUsage);  // --mode is required
}

TEST(CliNetwork, ListShowDelete) {
  FakeDaemon daemon(daemonAnswer);
  auto list = corral(daemon, {"network", "list"});
  ASSERT_EQ(list.code, kExitOk) << list.err;
  EXPECT_NE(list.out.find("NAME"), std::string::npos);
  EXPECT_NE(list.out.find("10.77.0.2-10.77.0.254"), std::string::npos) << list.out;
  auto show = corral(daemon, {"network", "show", "lan"});
  ASSERT_EQ(show.code, kExitOk) << show.err;
  EXPECT_NE(show.out.find("10.77.0.2-10.77.0.254 (1 of 253 in use)"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("web1/nic0 10.77.0.2 web1"), std::string::npos) << show.out;
  auto del = corral(daemon, {"network", "delete", "lan"});
  ASSERT_EQ(del.code, kExitOk) << del.err;
  EXPECT_EQ(daemon.requests().back().method, "DELETE");
}

TEST(CliNetwork, VmCreateShapesItsNics) {
  FakeDaemon daemon(daemonAnswer);
  auto r = corral(daemon, {"vm", "create", "web1", "--image", "img", "--memory", "128", "--network", "lan",
                           "--network", "default", "--hostname", "www", "--ip", "10.77.0.9", "--forward",
                           "tcp:2222:22", "--nic-model", "e1000"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  json body = json::parse(daemon.requests().at(0).body);
  EXPECT_EQ(body["nics"], json::parse(R"([{"network":"lan","hostname":"www","ip":"10.77.0.9","model":"e1000",
      "forwards":["tcp:2222:22"]},{"network":"default"}])"));
  EXPECT_FALSE(body.contains("no_network"));

  auto none = corral(daemon, {"vm", "create", "web1", "--image", "img", "--memory", "128", "--no-network"});
  ASSERT_EQ(none.code, kExitOk) << none.err;
  json noneBody = json::parse(daemon.requests().back().body);
  EXPECT_EQ(noneBody["no_network"], true);
  EXPECT_FALSE(noneBody.contains("nics"));

  auto plain = corral(daemon, {"vm", "create", "web1", "--image", "img", "--memory", "128"});
  ASSERT_EQ(plain.code, kExitOk) << plain.err;
  json plainBody = json::parse(daemon.requests().back().body);
  EXPECT_FALSE(plainBody.contains("nics"));  // the daemon's default network
}

TEST(CliNetwork, VmNicListAddRemove) {
  FakeDaemon daemon(daemonAnswer);
  auto list = corral(daemon, {"vm", "nic", "list", "web1"});
  ASSERT_EQ(list.code, kExitOk) << list.err;
  EXPECT_NE(list.out.find("52:54:00:00:00:02"), std::string::npos) << list.out;
  auto add = corral(daemon, {"vm", "nic", "add", "web1", "--network", "lan", "--hostname", "api"});
  ASSERT_EQ(add.code, kExitOk) << add.err;
  EXPECT_NE(add.out.find("added nic1 to vm web1 on network lan (10.77.0.3 web1-nic1)"), std::string::npos) << add.out;
  EXPECT_EQ(json::parse(daemon.requests().back().body), json::parse(R"({"network":"lan","hostname":"api"})"));
  auto remove = corral(daemon, {"vm", "nic", "remove", "web1", "nic1"});
  ASSERT_EQ(remove.code, kExitOk) << remove.err;
  EXPECT_EQ(daemon.requests().back().method, "DELETE");
  EXPECT_EQ(daemon.requests().back().target, "/api/v1/vms/web1/nics/nic1");
}

}  // namespace
}  // namespace corral::cli
