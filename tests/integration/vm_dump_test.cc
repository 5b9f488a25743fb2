// VM metadata end to end, against a real corrald and a real guest under TCG:
//  - `corral vm dump` of a stopped VM: corral.metadata/v1 built from the store
//    (creator, how they came, image, flavour, owner, node), runtime null;
//  - of a running one: the metadata recorded at launch and the runtime record,
//    whose argv names the guest (-name guest=NAME,debug-threads=on);
//  - the same facts inside the guest: its shell reads the SMBIOS type 11 OEM
//    strings from /sys/firmware/dmi/entries/11-*/raw, a description with a
//    comma arriving whole;
//  - a VM the caller may not see dumps as 404, like a missing one;
//  - `corral node info` counts the running guest's memory as committed.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/utsname.h>

#include <algorithm>
#include <string>
#include <vector>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/ws_test_client.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kBoot = 90s;
constexpr const char* kMarker = "CORRAL-GUEST-READY";

std::string hostname() {
  struct utsname u {};
  return ::uname(&u) == 0 ? u.nodename : "";
}

TEST(VmDump, MetadataInDumpAndInsideTheGuest) {
  DaemonHarness h;
  uint16_t port = freeLoopbackPort();
  h.startDaemon({"--listen", fmt::format("127.0.0.1:{}", port)});
  h.importGuest("guest");
  ApiClient root = ApiClient::unixSocket(h.socket());
  ASSERT_EQ(root.post("/api/v1/users", {{"login", "bob"}, {"email", "bob@example.org"}}).status, 201);
  auto t = root.post("/api/v1/tokens", {{"user", "bob"}, {"name", "test"}});
  ASSERT_EQ(t.status, 201) << t.body;
  ApiClient bob = ApiClient::tls("127.0.0.1", port).bearer(t.json().value("token", ""));

  auto made = h.cli({"vm", "create", "meta1", "--image", "guest", "--memory", "128", "--description", "web, db"});
  ASSERT_EQ(made.exitCode, 0) << made.err;

  // Stopped: built from the store now; no runtime.
  json d = h.cliJson({"vm", "dump", "meta1"});
  EXPECT_TRUE(d["runtime"].is_null()) << d.dump();
  EXPECT_EQ(d["metadata_source"], "store");
  const json& m = d["metadata"];
  EXPECT_EQ(m["schema"], "corral.metadata/v1");
  EXPECT_EQ(m["name"], "meta1");
  EXPECT_EQ(m["description"], "web, db");
  EXPECT_EQ(m["created"]["by"]["login"], "root");
  EXPECT_EQ(m["created"]["by"]["via"], "unix");
  EXPECT_EQ(m["created"]["image"]["name"], "guest");
  EXPECT_GT(m["created"]["image"]["id"].get<int64_t>(), 0);
  EXPECT_FALSE(m["created"]["at"].get<std::string>().empty());
  EXPECT_EQ(m["flavour"]["memory_mib"], 128);
  EXPECT_EQ(m["owner"]["kind"], "user");
  EXPECT_EQ(m["owner"]["name"], "root");
  EXPECT_EQ(m["node"]["hostname"], hostname());
  std::string uuid = m["uuid"];

  // Bob may not see meta1: 404, worded like a VM that does not exist.
  auto hidden = bob.get("/api/v1/vms/meta1/dump");
  auto missing = bob.get("/api/v1/vms/nosuch/dump");
  EXPECT_EQ(hidden.status, 404) << hidden.body;
  EXPECT_EQ(missing.status, 404) << missing.body;
  EXPECT_NE(hidden.body.find("VM meta1 not found"), std::string::npos) << hidden.body;

  auto started = h.cli({"vm", "start", "meta1"});
  ASSERT_EQ(started.exitCode, 0) << started.err;
  ASSERT_TRUE(h.waitForLog("meta1", kMarker, 1, kBoot)) << h.cli({"vm", "log", "meta1"}).out;

  // Running: the launch's metadata and the runtime record.
  d = h.cliJson({"vm", "dump", "meta1"});
  EXPECT_EQ(d["metadata_source"], "runtime record") << d.dump();
  EXPECT_EQ(d["metadata"]["uuid"], uuid);
  EXPECT_EQ(d["metadata"]["created"]["by"]["login"], "root");
  ASSERT_TRUE(d["runtime"].is_object()) << d.dump();
  EXPECT_GT(d["runtime"]["pid"].get<int64_t>(), 0);
  EXPECT_EQ(d["runtime"]["pid"], h.vm("meta1")["pid"]);
  auto argv = d["runtime"]["argv"].get<std::vector<std::string>>();
  auto name = std::find(argv.begin(), argv.end(), "-name");
  ASSERT_NE(name, argv.end());
  ASSERT_NE(name + 1, argv.end());
  EXPECT_EQ(*(name + 1), "guest=meta1,debug-threads=on");
  // The OEM strings are on the command line with the comma doubled.
  EXPECT_NE(std::find(argv.begin(), argv.end(), "type=11,value=corral.description=web,, db"), argv.end());

  // Node info counts the running guest's memory as committed.
  json node = h.cliJson({"node", "info"});
  EXPECT_EQ(node["memory_committed_mib"], 128) << node.dump();

  // The text view is readable key: value lines.
  auto text = h.cli({"vm", "dump", "meta1"});
  ASSERT_EQ(text.exitCode, 0) << text.err;
  EXPECT_NE(text.out.find("metadata.created.by.login:"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("runtime.argv:"), std::string::npos) << text.out;

  // Inside the guest: its shell prints the type 11 strings (NUL-separated in
  // the raw entry). The expected lines hold values the typed command does not,
  // so the tty's echo of the command cannot match them.
  auto tok = root.post("/api/v1/vms/meta1/console/token", {{"kind", "serial"}});
  ASSERT_EQ(tok.status, 200) << tok.body;
  auto ws = WsTestClient::open(h.socket(),
                               fmt::format("/api/v1/vms/meta1/console/serial?token={}", tok.json().value("token", "")));
  ASSERT_EQ(ws->status(), 101) << ws->body();
  // The raw entry is the structure's header (type, length, handle, string
  // count) and then the strings, NUL-separated: grep -o drops the header bytes.
  ws->send("cat /sys/firmware/dmi/entries/11-*/raw | tr '\\000' '\\n' | grep -o 'corral[.].*' | sed 's/^/OEM:/'\r");
  EXPECT_TRUE(ws->waitFor("OEM:corral.vm=meta1", 30s)) << ws->tail();
  for (const std::string& want :
       std::vector<std::string>{"OEM:corral.schema=corral.metadata/v1", "OEM:corral.uuid=" + uuid,
                                "OEM:corral.owner=user:root", "OEM:corral.creator=root", "OEM:corral.image=guest",
                                "OEM:corral.node=" + hostname(), "OEM:corral.description=web, db"})
    EXPECT_TRUE(ws->waitFor(want, 10s)) << want << "\n" << json(ws->tail()).dump();
  ws.reset();

  auto stopped = h.cli({"vm", "stop", "meta1", "--force"});
  EXPECT_EQ(stopped.exitCode, 0) << stopped.err;
  EXPECT_EQ(h.cli({"vm", "delete", "meta1"}).exitCode, 0);
}

}  // namespace
}  // namespace corral::testing
