// Proves the corral CLI's pure logic (header-only, so compiled here): --memory
// parsing with units and its errors, URL path-segment encoding, table and
// key/value formatting of the daemon's JSON, and the API-error message and exit
// codes.
#include <gtest/gtest.h>

#include "cli/output.h"
#include "cli/parse.h"

namespace corral::cli {
namespace {

TEST(ParseMemory, AcceptsNumbersAndUnits) {
  EXPECT_EQ(*parseMemoryMib("128"), 128u);
  EXPECT_EQ(*parseMemoryMib("512M"), 512u);
  EXPECT_EQ(*parseMemoryMib("512m"), 512u);
  EXPECT_EQ(*parseMemoryMib("512MiB"), 512u);
  EXPECT_EQ(*parseMemoryMib("1G"), 1024u);
  EXPECT_EQ(*parseMemoryMib("2g"), 2048u);
  EXPECT_EQ(*parseMemoryMib("4GiB"), 4096u);
}

TEST(ParseMemory, RefusesBadValuesNamingTheOption) {
  for (std::string bad : {"", "M", "12X", "1.5G", "-1", "512MB", "1 G", "0", "0G", "99999999999999999999999",
                          "1099511627777"}) {
    auto r = parseMemoryMib(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput) << bad;
    EXPECT_EQ(r.error().field, "--memory") << bad;
    EXPECT_EQ(r.error().message.rfind("--memory: ", 0), 0u) << r.error().message;
  }
}

TEST(EncodePathSegment, KeepsNamesAndEscapesTheRest) {
  EXPECT_EQ(encodePathSegment("web-1.a_b~"), "web-1.a_b~");
  EXPECT_EQ(encodePathSegment("a/b"), "a%2Fb");
  EXPECT_EQ(encodePathSegment("a b?c%"), "a%20b%3Fc%25");
  EXPECT_EQ(encodePathSegment(".."), "%2E%2E");
  EXPECT_EQ(encodePathSegment("."), "%2E");
}

TEST(Table, AlignsColumns) {
  auto t = formatTable({"NAME", "STATE"}, {{"web1", "running"}, {"a-much-longer-name", "stopped"}});
  EXPECT_EQ(t,
            "NAME                 STATE\n"
            "web1                 running\n"
            "a-much-longer-name   stopped\n");
}

TEST(Table, HeaderOnlyWhenEmptyAndNoTrailingBlanks) {
  EXPECT_EQ(formatTable({"NAME", "STATE"}, {}), "NAME   STATE\n");
  auto t = formatTable({"A", "B"}, {{"x", ""}});
  EXPECT_EQ(t, "A   B\nx\n");
}

TEST(Table, VmList) {
  auto body = nlohmann::json::parse(R"({"vms": [
    {"name": "web1", "state": "running", "memory": 128, "vcpus": 1, "image": "tiny", "pid": 4242},
    {"name": "db", "state": "stopped", "memory": 2048, "vcpus": 4, "image": "debian-12", "pid": null}]})");
  EXPECT_EQ(formatVmList(body),
            "NAME   STATE     MEMORY    VCPUS   IMAGE       PID\n"
            "web1   running   128MiB    1       tiny        4242\n"
            "db     stopped   2048MiB   4       debian-12   -\n");
  EXPECT_EQ(formatVmList(nlohmann::json::object()), "NAME   STATE   MEMORY   VCPUS   IMAGE   PID\n");
}

TEST(Table, ImageList) {
  auto body = nlohmann::json::parse(R"({"images": [
    {"name": "tiny", "kind": "direct-boot", "kernel": "/k/vmlinuz", "initrd": "", "append": "console=ttyS0"}]})");
  EXPECT_EQ(formatImageList(body),
            "NAME   KIND          KERNEL       INITRD   APPEND\n"
            "tiny   direct-boot   /k/vmlinuz   -        console=ttyS0\n");
}

TEST(KeyValues, VmInfoOrdersKnownKeysAndKeepsUnknownOnes) {
  auto vm = nlohmann::json::parse(R"({"uuid": "u-1", "name": "web1", "state": "running", "memory": 128,
    "vcpus": 1, "pid": 7, "zzz_new": true, "created_at": "2024-01-01T00:00:00Z", "state_reason": ""})");
  auto out = formatVmInfo(vm);
  EXPECT_EQ(out.rfind("name:", 0), 0u) << out;
  EXPECT_NE(out.find("state:         running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("memory:        128MiB\n"), std::string::npos) << out;
  EXPECT_NE(out.find("state_reason:  -\n"), std::string::npos) << out;
  EXPECT_NE(out.find("zzz_new:       true\n"), std::string::npos) << out;
  EXPECT_LT(out.find("state:"), out.find("uuid:"));
}

TEST(KeyValues, NodeInfoFlattensCounts) {
  auto node = nlohmann::json::parse(R"({"hostname": "h1", "vms": {"running": 2, "stopped": 1}, "cpus": 8})");
  auto out = formatNodeInfo(node);
  EXPECT_NE(out.find("vms:       running=2 stopped=1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("hostname:  h1\n"), std::string::npos) << out;
}

TEST(ApiError, MessageAndField) {
  EXPECT_EQ(apiErrorMessage(400, R"({"error": {"code": "invalid_input", "message": "memory: too small",
            "field": "memory", "value": "1"}})"),
            "corral: memory: too small (field: memory)");
  EXPECT_EQ(apiErrorMessage(404, R"({"error": {"code": "not_found", "message": "vm x not found",
            "field": null, "value": null}})"),
            "corral: vm x not found");
  EXPECT_EQ(apiErrorMessage(502, "Bad Gateway\n"), "corral: HTTP 502: Bad Gateway");
  EXPECT_EQ(apiErrorMessage(500, ""), "corral: HTTP 500");
}

TEST(ExitCodes, FollowTheContract) {
  EXPECT_EQ(exitCodeForStatus(200), kExitOk);
  EXPECT_EQ(exitCodeForStatus(201), kExitOk);
  EXPECT_EQ(exitCodeForStatus(204), kExitOk);
  EXPECT_EQ(exitCodeForStatus(400), kExitApiError);
  EXPECT_EQ(exitCodeForStatus(404), kExitApiError);
  EXPECT_EQ(exitCodeForStatus(503), kExitApiError);
  EXPECT_EQ(kExitUsage, 2);
  EXPECT_EQ(kExitUnreachable, 3);
  auto msg = unreachableMessage("/run/x.sock", "Connection refused");
  EXPECT_NE(msg.find("/run/x.sock"), std::string::npos);
  EXPECT_NE(msg.find("corrald"), std::string::npos);
}

}  // namespace
}  // namespace corral::cli
