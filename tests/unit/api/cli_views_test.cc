// Proves what the corral CLI prints for each noun in each format: CSV escaping
// per RFC 4180 and CSV carrying the table's columns and cells; the tables of
// users, groups, tokens, operations and events; quota math (free = limit -
// used, never negative, "unlimited" without a limit); a created token's secret
// shown in its record; and an operation's state mapped to the exit code.
#include <gtest/gtest.h>

#include "cli/output.h"
#include "cli/views.h"

namespace corral::cli {
namespace {

using nlohmann::json;

TEST(Csv, EscapesPerRfc4180) {
  EXPECT_EQ(csvField("plain"), "plain");
  EXPECT_EQ(csvField(""), "");
  EXPECT_EQ(csvField("a,b"), "\"a,b\"");
  EXPECT_EQ(csvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(csvField("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(csvField("cr\rx"), "\"cr\rx\"");
  EXPECT_EQ(formatCsv({"A", "B"}, {{"1", "x,y"}, {"2"}}),
            "A,B\r\n1,\"x,y\"\r\n2,-\r\n");
  EXPECT_EQ(formatCsv({"A"}, {}), "A\r\n");
}

TEST(Csv, SameColumnsAndCellsAsTheTable) {
  auto body = json::parse(
      R"({"vms": [{"name": "web1", "state": "running", "owner": "sipb", "memory": 128,
    "vcpus": 1, "image": "tiny", "pid": 42}]})");
  EXPECT_EQ(renderView(vmListView(body), "csv"),
            "NAME,STATE,OWNER,MEMORY,VCPUS,IMAGE,PID\r\nweb1,running,sipb,"
            "128MiB,1,tiny,42\r\n");
  // A record: one header row of its keys, one row of values.
  auto vm = json::parse(
      R"({"name": "web1", "state": "running", "description": "a, b"})");
  EXPECT_EQ(renderView(vmInfoView(vm), "csv"),
            "name,state,description\r\nweb1,running,\"a, b\"\r\n");
  EXPECT_EQ(renderView(vmInfoView(vm), "table"),
            "name:         web1\nstate:        running\ndescription:  a, b\n");
}

TEST(Views, Users) {
  auto body = json::parse(R"({"users": [
    {"login": "alice", "display_name": "Alice A", "email": "a@example.org", "admin": true},
    {"login": "bob", "display_name": null, "email": "", "admin": false}]})");
  EXPECT_EQ(renderView(userListView(body), "table"),
            "LOGIN   DISPLAY_NAME   EMAIL           ADMIN\n"
            "alice   Alice A        a@example.org   true\n"
            "bob     -              -               false\n");
  EXPECT_EQ(renderView(userListView(body), "csv"),
            "LOGIN,DISPLAY_NAME,EMAIL,ADMIN\r\nalice,Alice "
            "A,a@example.org,true\r\nbob,-,-,false\r\n");
  auto one = renderView(
      userView(json::parse(
          R"({"email": "a@x", "login": "alice", "groups": ["g1", "g2"]})")),
      "table");
  EXPECT_EQ(one.rfind("login:", 0), 0u) << one;
  EXPECT_NE(one.find("groups:  g1, g2\n"), std::string::npos) << one;
}

TEST(Views, GroupsJoinMembers) {
  auto body = json::parse(
      R"({"groups": [{"name": "sipb", "description": "club", "members": ["alice", "bob"]},
    {"name": "empty", "description": "", "members": []}]})");
  EXPECT_EQ(renderView(groupListView(body), "table"),
            "NAME    DESCRIPTION   MEMBERS\n"
            "sipb    club          alice, bob\n"
            "empty   -             -\n");
  EXPECT_EQ(renderView(groupView(body["groups"][0]), "csv"),
            "name,description,members\r\nsipb,club,\"alice, bob\"\r\n");
}

// `corral token list` says which tokens still work: a revoked one and one past
// its expiry are not shown as if active.
TEST(Views, TokenListShowsEachTokensState) {
  auto body = json::parse(R"({"tokens": [
    {"id": 1, "name": "a", "user": "u", "created_at": "2026-01-01T00:00:00Z", "expires_at": null, "revoked_at": null},
    {"id": 2, "name": "r", "user": "u", "created_at": "2026-01-01T00:00:00Z", "expires_at": null,
     "revoked_at": "2026-02-01T00:00:00Z"},
    {"id": 3, "name": "e", "user": "u", "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-12-07T19:59:59Z",
     "revoked_at": null},
    {"id": 4, "name": "l", "user": "u", "created_at": "2026-01-01T00:00:00Z", "expires_at": "2026-12-07T20:00:01Z",
     "revoked_at": null}]})");
  EXPECT_EQ(renderView(tokenListView(body, "2026-12-07T20:00:00Z"), "csv"),
            "ID,NAME,USER,STATE,CREATED,EXPIRES\r\n"
            "1,a,u,active,2026-01-01T00:00:00Z,never\r\n"
            "2,r,u,revoked,2026-01-01T00:00:00Z,never\r\n"
            "3,e,u,expired,2026-01-01T00:00:00Z,2026-12-07T19:59:59Z\r\n"
            "4,l,u,active,2026-01-01T00:00:00Z,2026-12-07T20:00:01Z\r\n");
}

TEST(Views, TokensNeverShowASecretInTheList) {
  auto body = json::parse(R"({"tokens": [
    {"id": "t1", "name": "laptop", "user": "alice", "created_at": "2024-01-01T00:00:00Z", "expires_at": null,
     "token": "crl_must_not_show"}]})");
  auto table = renderView(tokenListView(body, "2026-12-07T20:00:00Z"), "table");
  EXPECT_EQ(table, "ID   NAME     USER    STATE    CREATED                EXPIRES\n"
                   "t1   laptop   alice   active   2024-01-01T00:00:00Z   never\n");
  EXPECT_EQ(table.find("crl_"), std::string::npos);
  auto created = json::parse(
      R"({"id": "t2", "name": "ci", "user": "bob", "created_at": "c", "expires_at": "e",
    "token": "crl_secret"})");
  auto out = renderView(createdTokenView(created), "table");
  EXPECT_NE(out.find("token:       crl_secret\n"), std::string::npos) << out;
  EXPECT_EQ(renderView(createdTokenView(created), "csv"),
            "id,name,user,created_at,expires_at,token\r\nt2,ci,bob,c,e,crl_"
            "secret\r\n");
}

TEST(Quota, LimitsAgainstUsage) {
  auto q = json::parse(R"({"subject_kind": "user", "subject": "alice",
    "limits": {"max_vms": 5, "max_running": 2, "max_memory_total": 4096, "min_memory_vm": 64,
               "max_memory_vm": 2048, "max_disk_total": null, "max_disk_vm": 50},
    "usage": {"vms": 3, "running": 3, "memory_total": 1536, "disk_total": 70},
    "overrides": {"max_vms": 5}})");
  EXPECT_EQ(
      renderView(quotaView(q), "table"),
      "RESOURCE        LIMIT       USED      FREE\n"
      "vms             5           3         2\n"
      "running         2           3         0\n" // over the limit (lowered by
                                                  // an admin): never negative
      "memory_total    4096MiB     1536MiB   2560MiB\n"
      "disk_total      unlimited   70GiB     unlimited\n"
      "memory_vm_max   2048MiB     -         -\n"
      "memory_vm_min   64MiB       -         -\n"
      "disk_vm_max     50GiB       -         -\n");
  EXPECT_EQ(renderView(quotaView(q), "csv").substr(0, 37),
            "RESOURCE,LIMIT,USED,FREE\r\nvms,5,3,2\r\n");
  // Nothing known: every limit unlimited, no usage.
  auto empty = renderView(quotaView(json::object()), "table");
  EXPECT_NE(empty.find("vms             unlimited   -      -\n"),
            std::string::npos)
      << empty;
  EXPECT_NE(empty.find("memory_vm_min   -           -      -\n"),
            std::string::npos)
      << empty;
}

TEST(Quota, FreeMath) {
  EXPECT_EQ(quotaFree({"vms", 5, 3, ""}), "2");
  EXPECT_EQ(quotaFree({"vms", 5, 5, ""}), "0");
  EXPECT_EQ(quotaFree({"vms", 1, 9, ""}), "0");
  EXPECT_EQ(quotaFree({"memory_total", 1024, 0, "MiB"}), "1024MiB");
  EXPECT_EQ(quotaFree({"vms", std::nullopt, 3, ""}), "unlimited");
  EXPECT_EQ(quotaFree({"memory_vm_max", 512, std::nullopt, "MiB"}), "-");
}

TEST(Operations, StateToExitCode) {
  EXPECT_EQ(operationExitCode("succeeded"), kExitOk);
  EXPECT_EQ(operationExitCode("failed"), kExitApiError);
  EXPECT_EQ(operationExitCode("cancelled"),
            kExitApiError); // an end this client does not know is not success
  EXPECT_FALSE(operationExitCode("pending").has_value());
  EXPECT_FALSE(operationExitCode("running").has_value());
}

TEST(Operations, FailureMessageFromResult) {
  EXPECT_EQ(operationFailure(json::parse(R"({"id": "o1", "state": "failed",
    "result": {"error": {"code": "quota_exceeded", "message": "running: limit 2, in use 2, requested 1"}}})")),
            "running: limit 2, in use 2, requested 1");
  EXPECT_EQ(
      operationFailure(json::parse(
          R"({"id": "o1", "state": "failed", "result": {"message": "boom"}})")),
      "boom");
  EXPECT_EQ(operationFailure(json::parse(
                R"({"id": "o1", "state": "failed", "result": "qemu exited"})")),
            "qemu exited");
  EXPECT_EQ(operationFailure(json::parse(
                R"({"id": "o1", "state": "failed", "result": null})")),
            "operation o1 failed");
}

TEST(Operations, ListAndRecord) {
  auto body = json::parse(
      R"({"operations": [{"id": "o1", "kind": "vm.start", "target": "web1",
    "state": "running", "progress": 50, "requester": "alice", "created_at": "t0", "updated_at": "t1"}]})");
  EXPECT_EQ(
      renderView(operationListView(body), "table"),
      "ID   KIND       TARGET   STATE     PROGRESS   REQUESTER   CREATED\n"
      "o1   vm.start   web1     running   50         alice       t0\n");
  auto rec = renderView(operationView(body["operations"][0]), "table");
  EXPECT_EQ(rec.rfind("id:", 0), 0u) << rec;
  // Bare arrays are accepted as lists too.
  EXPECT_EQ(operationListView(body["operations"]).rows.size(), 1u);
}

TEST(Events, OneLinePerEvent) {
  auto e =
      json::parse(R"({"type": "vm.started", "vm": "web1", "state": "running",
    "time": "2024-05-01T10:00:00Z", "reason": null})");
  EXPECT_EQ(formatEventLine(e),
            "2024-05-01T10:00:00Z vm.started web1 running -\n");
  EXPECT_EQ(csvRow(eventCells(e)),
            "2024-05-01T10:00:00Z,vm.started,web1,running,-\r\n");
  EXPECT_EQ(csvRow(eventHeaders()), "TIME,TYPE,VM,STATE,REASON\r\n");
}

TEST(Formats, Known) {
  EXPECT_TRUE(isKnownFormat("table"));
  EXPECT_TRUE(isKnownFormat("json"));
  EXPECT_TRUE(isKnownFormat("csv"));
  EXPECT_FALSE(isKnownFormat("yaml"));
}

} // namespace
} // namespace corral::cli
