// Guru Meditation Reports, structured logs and secrets against a real corrald:
//  - wedged: a request is stuck inside the store (the test holds SQLite's write
//    lock, so the handler waits in SQLite's busy handler); SIGUSR1 still writes
//    a report, to stderr and under <state>/reports/, whose threads section holds
//    that handler's stack (corral::store frames over SQLite's). When the lock
//    outlasts SQLite's patience the request fails with a 500 whose report id
//    names a saved report carrying the request's context;
//  - `corral admin report`: every section, in order, in text and JSON; a
//    running guest with its QMP health; non-admins refused;
//  - one request id follows "start VM" from the HTTP line through the
//    operation to QEMU's `cont` on QMP, in JSON log lines;
//  - secrets: with a database password, API tokens, a user's password and the
//    daemon's keys in play, none of their values appears in any log line, any
//    report or any API answer.
#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/types.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "support/api_client.h"
#include "support/daemon_harness.h"
#include "support/files.h"
#include "support/postgres_server.h"
#include "support/temp_dir.h"
#include "util/command.h"

namespace corral::testing {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr auto kBoot = 90s;
constexpr const char* kMarker = "CORRAL-GUEST-READY";

// Every report file under the state dir, parsed, by id.
std::map<std::string, json> reports(const DaemonHarness& h) {
  std::map<std::string, json> out;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(fs::path(h.stateDir()) / "reports", ec)) {
    if (f.path().extension() != ".json") continue;
    json j = json::parse(readAll(f.path()), nullptr, false);
    if (!j.is_discarded()) out[j.value("id", "")] = j;
  }
  return out;
}

// Threads of the daemon now sleeping in clock_nanosleep (SQLite's busy handler sleeps there).
std::set<std::string> sleepingThreads(pid_t pid) {
  std::set<std::string> out;
  std::error_code ec;
  for (const auto& t : fs::directory_iterator(fmt::format("/proc/{}/task", pid), ec)) {
    std::string wchan = readAll(t.path() / "wchan");
    if (wchan.find("nanosleep") != std::string::npos) out.insert(t.path().filename().string());
  }
  return out;
}

// The frames of every thread in a report's threads section, one string per thread.
std::vector<std::string> threadStacks(const json& report) {
  std::vector<std::string> out;
  for (const auto& t : report["sections"]["threads"].value("threads", json::array())) {
    std::string s;
    for (const auto& f : t.value("frames", json::array())) s += f.value("function", "") + "\n";
    out.push_back(s);
  }
  return out;
}

TEST(DiagnosticsTest, SignalReportsAWedgedHandlersStackAndAFiveHundredSavesOne) {
  DaemonHarness h;
  h.startDaemon();
  ApiClient root = ApiClient::unixSocket(h.socket());
  pid_t daemon = h.daemonPid();
  auto before = sleepingThreads(daemon);

  // The test takes SQLite's write lock; the daemon's next write waits in the
  // busy handler (5 s), holding its handler thread and the store.
  SQLite::Database db((fs::path(h.stateDir()) / "corral.db").string(), SQLite::OPEN_READWRITE);
  db.exec("BEGIN EXCLUSIVE");
  auto wedged = std::async(std::launch::async, [&] { return root.post("/api/v1/users", {{"login", "wedged"}}); });
  ASSERT_TRUE(DaemonHarness::waitFor(
      [&] {
        for (const auto& tid : sleepingThreads(daemon))
          if (!before.count(tid)) return true;
        return false;
      },
      4s))
      << "no handler thread of corrald started waiting on the database";

  ASSERT_EQ(::kill(daemon, SIGUSR1), 0);
  json signalled;
  ASSERT_TRUE(DaemonHarness::waitFor(
      [&] {
        for (const auto& [id, r] : reports(h))
          if (r.value("reason", "") == "SIGUSR1") signalled = r;
        return !signalled.is_null();
      },
      30s))
      << h.daemonLog();
  bool found = false;
  for (const auto& stack : threadStacks(signalled))
    if (stack.find("corral::store::") != std::string::npos &&
        (stack.find("sqlite3") != std::string::npos || stack.find("SQLite::") != std::string::npos))
      found = true;
  EXPECT_TRUE(found) << "no thread stack shows the handler waiting in the store:\n"
                     << signalled["sections"]["threads"].dump(1);
  std::string id = signalled.value("id", "");
  EXPECT_NE(h.daemonStderr().find("==== Guru Meditation ===="), std::string::npos);
  EXPECT_NE(h.daemonStderr().find(id), std::string::npos) << "the text view goes to stderr";
  EXPECT_NE(h.daemonLog().find(id), std::string::npos) << "its path is logged";
  EXPECT_EQ(modeOf(fs::path(h.stateDir()) / "reports" / (id + ".json")), 0600);

  // SQLite gives up after its busy timeout: an internal error, and its report.
  ApiReply failed = wedged.get();
  db.exec("ROLLBACK");
  ASSERT_EQ(failed.status, 500) << failed.body;
  json err = failed.json()["error"];
  std::string reportId = err.value("report_id", "");
  ASSERT_FALSE(reportId.empty()) << failed.body;
  EXPECT_EQ(err.value("message", ""), "internal error, report id " + reportId);
  EXPECT_EQ(failed.body.find("database"), std::string::npos) << "the real message stays in the log and the report";
  auto all = reports(h);
  ASSERT_TRUE(all.count(reportId)) << "no saved report " << reportId;
  const json& ctx = all[reportId]["context"];
  EXPECT_EQ(all[reportId].value("reason", ""), "internal error");
  EXPECT_EQ(ctx.value("request", ""), "POST /api/v1/users");
  EXPECT_EQ(ctx.value("request_id", ""), err.value("request_id", ""));
  EXPECT_NE(ctx.value("error", "").find("database"), std::string::npos) << ctx.dump();
  EXPECT_NE(h.daemonLog().find("report " + reportId), std::string::npos);

  // The daemon is well again.
  EXPECT_EQ(root.post("/api/v1/users", {{"login", "after"}}).status, 201);
}

TEST(DiagnosticsTest, AdminReportHasEverySectionAndTheGuestsQmpHealth) {
  DaemonHarness h;
  uint16_t port = freeLoopbackPort();
  h.startDaemon({"--listen", fmt::format("127.0.0.1:{}", port)});
  h.importGuest("guest");
  ASSERT_EQ(h.cli({"vm", "create", "r1", "--image", "guest", "--memory", "128", "--start"}).exitCode, 0);
  ASSERT_TRUE(h.waitForLog("r1", kMarker, 1, kBoot));

  json j = h.cliJson({"admin", "report"});
  std::vector<std::string> order = j["order"];
  EXPECT_EQ(order, (std::vector<std::string>{"package", "process", "threads", "configuration", "node", "vms",
                                             "operations", "database", "last_errors"}));
  const json& s = j["sections"];
  EXPECT_FALSE(s["package"].value("version", "").empty());
  EXPECT_EQ(s["process"].value("pid", 0), h.daemonPid());
  EXPECT_GT(s["threads"].value("count", 0), 2);
  EXPECT_EQ(s["configuration"].value("state_dir", ""), h.stateDir());
  EXPECT_EQ(s["database"].value("reachable", false), true);
  ASSERT_EQ(s["vms"].size(), 1u) << s["vms"].dump();
  const json& vm = s["vms"][0];
  EXPECT_EQ(vm.value("name", ""), "r1");
  EXPECT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(vm["qmp"].value("ok", false), true) << vm.dump();
  EXPECT_EQ(vm["qmp"].value("status", ""), "running");
  EXPECT_TRUE(fs::exists(j.value("path", ""))) << "the report is saved as well";

  auto text = h.cli({"admin", "report"});
  ASSERT_EQ(text.exitCode, 0) << text.err;
  for (const auto& name : order) EXPECT_NE(text.out.find("==== " + name + " ===="), std::string::npos) << name;
  EXPECT_NE(text.out.find("r1"), std::string::npos);

  ApiClient root = ApiClient::unixSocket(h.socket());
  ASSERT_EQ(root.post("/api/v1/users", {{"login", "bob"}}).status, 201);
  auto t = root.post("/api/v1/tokens", {{"user", "bob"}, {"name", "t"}});
  ASSERT_EQ(t.status, 201) << t.body;
  auto refused = ApiClient::tls("127.0.0.1", port)
                     .bearer(t.json().value("token", ""))
                     .post("/api/v1/admin/report", json::object());
  EXPECT_EQ(refused.status, 403) << refused.body;
  EXPECT_EQ(ApiClient::tls("127.0.0.1", port).post("/api/v1/admin/report", json::object()).status, 401);
}

TEST(DiagnosticsTest, OneRequestIdFollowsAStartFromHttpThroughTheOperationToQmp) {
  DaemonHarness h;
  h.startDaemon({"--log-format", "json"});  // the harness runs corrald at --log-level debug
  h.importGuest("guest");
  ASSERT_EQ(h.cli({"vm", "create", "rid", "--image", "guest", "--memory", "128"}).exitCode, 0);
  ApiClient root = ApiClient::unixSocket(h.socket());
  ApiReply started = root.request("POST", "/api/v1/vms/rid/actions/start");
  ASSERT_EQ(started.status, 202) << started.body;
  std::string rid = started.header("x-request-id");
  ASSERT_FALSE(rid.empty());
  ASSERT_TRUE(h.waitForState("rid", "running", kBoot));

  std::vector<std::string> mine;
  std::istringstream lines(h.daemonLog());
  for (std::string line; std::getline(lines, line);) {
    json l = json::parse(line, nullptr, false);
    ASSERT_FALSE(l.is_discarded()) << "not a JSON log line: " << line;
    ASSERT_TRUE(l.contains("ts") && l.contains("level") && l.contains("msg")) << line;
    if (l.value("request_id", "") == rid) mine.push_back(l.value("msg", ""));
  }
  auto has = [&](const std::string& prefix) {
    return std::any_of(mine.begin(), mine.end(), [&](const std::string& m) { return m.rfind(prefix, 0) == 0; });
  };
  std::string all;
  for (const auto& m : mine) all += m + "\n";
  EXPECT_TRUE(has("http POST /api/v1/vms/rid/actions/start 202")) << all;
  EXPECT_TRUE(has("operation vm.start op=")) << all;
  EXPECT_TRUE(has("qmp cont ")) << all;
}

std::string base64(const std::string& raw, bool url) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()), static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  if (url) {
    for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
    while (!out.empty() && out.back() == '=') out.pop_back();
  }
  return out;
}

std::string hex(const std::string& raw) {
  std::string out;
  for (unsigned char c : raw) out += fmt::format("{:02x}", c);
  return out;
}

// Proves corrald refuses a database password on its command line (every user
// of the host reads argv through ps), naming where to put it instead.
TEST(DiagnosticsTest, DbPasswordOnTheCommandLineIsRefused) {
  TempDir state;
  for (const char* url : {"postgres://corral:s3cret@127.0.0.1/corral", "postgresql://h/db?user=c&password=s3cret"}) {
    util::Command c(std::string(CORRAL_BINARY_DIR) + "/bin/corrald");
    c.args({"--state-dir", state.path().string(), "--db", url}).stdoutToBuffer().stderrToBuffer().allowFailureStatus();
    auto r = c.run();
    ASSERT_TRUE(r.ok()) << r.error().describe();
    EXPECT_EQ(r->status.exitCode, 2) << url << "\n" << r->err;
    EXPECT_NE(r->err.find("PGPASSFILE"), std::string::npos) << r->err;
    EXPECT_EQ(r->err.find("s3cret"), std::string::npos) << "the refusal does not repeat the secret";
  }
}

TEST(DiagnosticsTest, NoSecretInAnyLogReportOrApiAnswer) {
  auto pg = PostgresServer::start();
  ASSERT_TRUE(pg.ok()) << pg.error().message;
  auto url = (*pg)->createDatabase("corral_secrets");
  ASSERT_TRUE(url.ok()) << url.error().message;
  const std::string dbPassword = "Db-Pw-7f3a9c1e55";
  const std::string userPassword = "User-Pw-c0ffee-42";

  // The password reaches corrald through its config file (on the command line
  // it is refused: see DbPasswordOnTheCommandLineIsRefused).
  TempDir cfgDir;
  const std::string cfgFile = (cfgDir.path() / "corrald.json").string();
  std::ofstream(cfgFile) << json{{"db", *url + "&password=" + dbPassword}}.dump();
  DaemonHarness h;
  uint16_t port = freeLoopbackPort();
  h.startDaemon({"--config", cfgFile, "--listen", fmt::format("127.0.0.1:{}", port)});
  h.importGuest("guest");
  ApiClient root = ApiClient::unixSocket(h.socket());
  std::vector<std::string> answers;  // every API answer but the one that hands out the token
  auto keep = [&](const ApiReply& r) {
    answers.push_back(r.body);
    for (const auto& [k, v] : r.headers) answers.push_back(k + ": " + v);
    return r;
  };
  ASSERT_EQ(keep(root.post("/api/v1/users", {{"login", "bob"}, {"email", "bob@example.org"}})).status, 201);
  ASSERT_EQ(keep(root.request("PUT", "/api/v1/users/bob/password", json{{"password", userPassword}}.dump())).status,
            204);
  auto t = root.post("/api/v1/tokens", {{"user", "bob"}, {"name", "t"}});
  ASSERT_EQ(t.status, 201) << t.body;
  const std::string token = t.json().value("token", "");
  ApiClient bob = ApiClient::tls("127.0.0.1", port).bearer(token);
  ASSERT_EQ(keep(bob.get("/api/v1/whoami")).status, 200);
  ASSERT_EQ(
      keep(ApiClient::tls("127.0.0.1", port).post("/api/v1/login", {{"login", "bob"}, {"password", userPassword}}))
          .status,
      200);
  keep(ApiClient::tls("127.0.0.1", port).post("/api/v1/login", {{"login", "bob"}, {"password", userPassword + "x"}}));
  ASSERT_EQ(keep(bob.post("/api/v1/vms", {{"name", "s1"}, {"image", "guest"}, {"memory", 128}})).status, 201);
  keep(bob.post("/api/v1/vms/s1/console/token", {{"kind", "serial"}}));
  keep(root.get("/api/v1/node"));
  keep(root.get("/api/v1/node/verify"));
  keep(root.get("/api/v1/users"));
  keep(root.get("/api/v1/tokens"));
  keep(bob.get("/api/v1/vms"));
  ASSERT_EQ(keep(root.post("/api/v1/admin/report", json::object())).status, 200);
  ASSERT_EQ(::kill(h.daemonPid(), SIGUSR1), 0);
  ASSERT_TRUE(DaemonHarness::waitFor(
      [&] {
        for (const auto& [id, r] : reports(h))
          if (r.value("reason", "") == "SIGUSR1") return true;
        return false;
      },
      30s));

  std::map<std::string, std::string> secrets{
      {"database password", dbPassword}, {"user password", userPassword}, {"API token", token}};
  for (const char* key : {"console.key", "master.key"}) {
    std::string raw = readAll(fs::path(h.stateDir()) / "keys" / key);
    ASSERT_GE(raw.size(), 16u) << key;
    secrets[std::string(key) + " (hex)"] = hex(raw);
    secrets[std::string(key) + " (base64)"] = base64(raw, false);
    secrets[std::string(key) + " (base64url)"] = base64(raw, true);
    secrets[std::string(key) + " (raw)"] = raw;
  }
  std::map<std::string, std::string> places{{"corrald's log", h.daemonLog()}, {"corrald's stderr", h.daemonStderr()}};
  for (const auto& [id, r] : reports(h)) places["report " + id] = r.dump();
  for (size_t i = 0; i < answers.size(); ++i) places[fmt::format("API answer {}", i)] = answers[i];
  ASSERT_GE(places.size(), 4u);
  for (const auto& [what, value] : secrets)
    for (const auto& [where, text] : places)
      EXPECT_EQ(text.find(value), std::string::npos) << "the " << what << " appears in " << where;
  // The masked database URL is there, so the check above looked at the right thing.
  EXPECT_NE(h.daemonLog().find("password=***"), std::string::npos);
}

}  // namespace
}  // namespace corral::testing
