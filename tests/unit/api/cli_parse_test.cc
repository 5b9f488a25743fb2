// Proves the corral CLI's pure logic (header-only, so compiled here): --memory
// and `quota set` value parsing with units and their errors, URL path-segment
// encoding, remote URL parsing (host, port, IPv6, refusals), fingerprint
// normalisation and comparison, table and key/value formatting of the daemon's
// JSON, and the API-error message and exit codes.
#include <gtest/gtest.h>

#include "cli/fingerprint.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/remote_url.h"

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
  for (std::string bad : {"", "M", "12X", "1.5G", "-1", "512MB", "1 G", "0",
                          "0G", "99999999999999999999999", "1099511627777"}) {
    auto r = parseMemoryMib(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, ErrorCode::InvalidInput) << bad;
    EXPECT_EQ(r.error().field, "--memory") << bad;
    EXPECT_EQ(r.error().message.rfind("--memory: ", 0), 0u)
        << r.error().message;
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
  auto t = formatTable({"NAME", "STATE"}, {{"web1", "running"},
                                           {"a-much-longer-name", "stopped"}});
  EXPECT_EQ(t, "NAME                 STATE\n"
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
    {"name": "web1", "state": "running", "owner": "sipb", "memory": 128, "vcpus": 1, "image": "tiny", "pid": 4242},
    {"name": "db", "state": "stopped", "owner": "alice", "memory": 2048, "vcpus": 4, "image": "debian-12", "pid": null}]})");
  EXPECT_EQ(formatVmList(body),
            "NAME   STATE     OWNER   MEMORY    VCPUS   IMAGE       PID\n"
            "web1   running   sipb    128MiB    1       tiny        4242\n"
            "db     stopped   alice   2048MiB   4       debian-12   -\n");
  EXPECT_EQ(formatVmList(nlohmann::json::object()),
            "NAME   STATE   OWNER   MEMORY   VCPUS   IMAGE   PID\n");
}

TEST(Table, ImageList) {
  auto body = nlohmann::json::parse(R"({"images": [
    {"name": "tiny", "kind": "direct-boot", "state": "ready", "kernel": "/k/vmlinuz",
     "initrd": "", "append": "console=ttyS0", "size_bytes": 5242880, "owner_kind": "", "owner": ""}]})");
  EXPECT_EQ(formatImageList(body),
            "NAME   KIND          STATE   SIZE      OWNER\n"
            "tiny   direct-boot   ready   5.0 MiB   -\n");
}

TEST(KeyValues, VmInfoOrdersKnownKeysAndKeepsUnknownOnes) {
  auto vm = nlohmann::json::parse(
      R"({"uuid": "u-1", "name": "web1", "state": "running", "memory": 128,
    "vcpus": 1, "pid": 7, "zzz_new": true, "created_at": "2024-01-01T00:00:00Z", "state_reason": ""})");
  auto out = formatVmInfo(vm);
  EXPECT_EQ(out.rfind("name:", 0), 0u) << out;
  EXPECT_NE(out.find("state:         running\n"), std::string::npos) << out;
  EXPECT_NE(out.find("memory:        128MiB\n"), std::string::npos) << out;
  EXPECT_NE(out.find("state_reason:  -\n"), std::string::npos) << out;
  EXPECT_NE(out.find("zzz_new:       true\n"), std::string::npos) << out;
  EXPECT_LT(out.find("state:"), out.find("uuid:"));
}

TEST(KeyValues, VmInfoShowsOwnerAndContactAfterState) {
  auto vm = nlohmann::json::parse(
      R"({"name": "web1", "state": "running", "owner": "sipb", "owner_kind": "group",
    "administrator": "alice", "contact": "ops@example.org", "memory": 128, "version": 7})");
  auto out = formatVmInfo(vm);
  EXPECT_NE(out.find("owner:          sipb\n"), std::string::npos) << out;
  EXPECT_NE(out.find("contact:        ops@example.org\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("administrator:  alice\n"), std::string::npos) << out;
  EXPECT_LT(out.find("state:"), out.find("owner:"));
  EXPECT_LT(out.find("owner:"), out.find("contact:"));
  EXPECT_LT(out.find("contact:"), out.find("memory:"));
}

TEST(ParseQuotaValue, NumbersUnitsAndDefault) {
  EXPECT_EQ(**parseQuotaValue("--max-vms", "5", QuotaUnit::Count), 5u);
  EXPECT_EQ(**parseQuotaValue("--max-vms", "0", QuotaUnit::Count), 0u);
  EXPECT_FALSE(
      parseQuotaValue("--max-vms", "default", QuotaUnit::Count)->has_value());
  EXPECT_EQ(**parseQuotaValue("--max-memory-total", "4096", QuotaUnit::Mib),
            4096u);
  EXPECT_EQ(**parseQuotaValue("--max-memory-total", "4G", QuotaUnit::Mib),
            4096u);
  EXPECT_EQ(**parseQuotaValue("--max-disk-total", "100", QuotaUnit::Gib), 100u);
  EXPECT_EQ(**parseQuotaValue("--max-disk-total", "2TiB", QuotaUnit::Gib),
            2048u);
  for (auto [unit, bad] : std::vector<std::pair<QuotaUnit, std::string>>{
           {QuotaUnit::Count, "5G"},
           {QuotaUnit::Count, "-1"},
           {QuotaUnit::Count, ""},
           {QuotaUnit::Count, "Default"},
           {QuotaUnit::Mib, "4T"},
           {QuotaUnit::Gib, "4M"},
           {QuotaUnit::Count, "99999999999999999999999"},
           {QuotaUnit::Gib, "1125899906842624T"}}) {
    auto r = parseQuotaValue("--max-x", bad, unit);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().field, "--max-x") << bad;
  }
}

TEST(RemoteUrl, HostAndPort) {
  auto u = parseRemoteUrl("https://corral.example.org:8443");
  ASSERT_TRUE(u.ok()) << u.error().message;
  EXPECT_EQ(u->host, "corral.example.org");
  EXPECT_EQ(u->port, 8443);
  EXPECT_EQ(u->authority(), "corral.example.org:8443");
  auto d = parseRemoteUrl("HTTPS://10.0.0.1/");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host, "10.0.0.1");
  EXPECT_EQ(d->port, 443);
  auto v6 = parseRemoteUrl("https://[::1]:9443");
  ASSERT_TRUE(v6.ok()) << v6.error().message;
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 9443);
  EXPECT_EQ(v6->authority(), "[::1]:9443");
}

TEST(RemoteUrl, RefusesWhatIsNotHttpsHostPort) {
  for (std::string bad :
       {"http://h:80", "h:8443", "https://", "https://:8443",
        "https://h:", "https://h:0", "https://h:65536", "https://h:80x",
        "https://u:p@h:1", "https://h:1/api", "https://h:1?x", "https://[::1",
        "https://[::1]x", "https://h_h:1", "ftp://h"}) {
    auto r = parseRemoteUrl(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.error().field, "url") << bad;
    }
  }
}

TEST(Fingerprint, NormalisesAndCompares) {
  std::string canon = "AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:"
                      "EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89";
  std::string bare =
      "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
  EXPECT_EQ(*normalizeFingerprint(bare), canon);
  EXPECT_EQ(*normalizeFingerprint("sha256:" + bare), canon);
  EXPECT_EQ(*normalizeFingerprint("SHA256 Fingerprint=" + canon), canon);
  EXPECT_TRUE(fingerprintsMatch(bare, canon));
  std::string other = bare;
  other.back() = '8';
  EXPECT_FALSE(fingerprintsMatch(other, canon));
  EXPECT_FALSE(fingerprintsMatch("", "")); // nothing pinned never matches
  EXPECT_FALSE(normalizeFingerprint(bare.substr(2)).ok());
  EXPECT_FALSE(normalizeFingerprint(bare + "00").ok());
  EXPECT_FALSE(normalizeFingerprint("zz" + bare.substr(2)).ok());
  EXPECT_EQ(normalizeFingerprint("xyz").error().field, "--fingerprint");
  const unsigned char d[3] = {0x00, 0x0f, 0xff};
  EXPECT_EQ(formatFingerprint(d, 3), "00:0F:FF");
}

TEST(KeyValues, NodeInfoFlattensCounts) {
  auto node = nlohmann::json::parse(
      R"({"hostname": "h1", "vms": {"running": 2, "stopped": 1}, "cpus": 8})");
  auto out = formatNodeInfo(node);
  EXPECT_NE(out.find("vms:       running=2 stopped=1\n"), std::string::npos)
      << out;
  EXPECT_NE(out.find("hostname:  h1\n"), std::string::npos) << out;
}

TEST(ApiError, MessageAndField) {
  EXPECT_EQ(
      apiErrorMessage(
          400,
          R"({"error": {"code": "invalid_input", "message": "memory: too small",
            "field": "memory", "value": "1"}})"),
      "corral: memory: too small (field: memory)");
  EXPECT_EQ(
      apiErrorMessage(
          404, R"({"error": {"code": "not_found", "message": "vm x not found",
            "field": null, "value": null}})"),
      "corral: vm x not found");
  EXPECT_EQ(apiErrorMessage(502, "Bad Gateway\n"),
            "corral: HTTP 502: Bad Gateway");
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

} // namespace
} // namespace corral::cli
