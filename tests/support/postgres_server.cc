#include "support/postgres_server.h"

#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace corral::testing {
namespace {

namespace fs = std::filesystem;

// The newest /usr/lib/postgresql/<version>/bin holding initdb and postgres.
Result<std::string> findBinDir() {
  const fs::path root = "/usr/lib/postgresql";
  std::vector<int> versions;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(root, ec)) {
    const std::string name = e.path().filename().string();
    if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit) &&
        fs::exists(e.path() / "bin" / "initdb") && fs::exists(e.path() / "bin" / "postgres"))
      versions.push_back(std::stoi(name));
  }
  if (versions.empty())
    return Error::unavailable(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-deps");
  return (root / std::to_string(*std::max_element(versions.begin(), versions.end())) / "bin").string();
}

bool validDatabaseName(const std::string& name) {
  return !name.empty() && name.size() <= 63 &&
         std::all_of(name.begin(), name.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

// The end of the server's log, for an error: the dir goes when start() fails.
std::string logTail(const std::string& path) {
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

}  // namespace

Result<std::unique_ptr<PostgresServer>> PostgresServer::start() {
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  s->binDir_ = CORRAL_TRY(findBinDir());

  // PostgreSQL refuses to run as root: as root (CI), run it as `postgres`;
  // otherwise as ourselves.
  const bool root = ::geteuid() == 0;
  s->uid_ = ::geteuid();
  s->gid_ = ::getegid();
  if (root) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    std::vector<char> buf(16384);
    if (::getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
      return Error::unavailable(
          "no `postgres` system user (the postgresql package makes it): run scripts/install-deps");
    s->uid_ = pw.pw_uid;
    s->gid_ = pw.pw_gid;
  }

  // The temp dir holds the cluster and the socket; postgres owns it, 0700. The
  // path stays short so that the socket fits in sun_path.
  char tmpl[] = "/dev/shm/crl-pg.XXXXXX";
  char fallback[] = "/tmp/crl-pg.XXXXXX";
  char* made = fs::is_directory("/dev/shm") ? ::mkdtemp(tmpl) : nullptr;
  if (made == nullptr) made = ::mkdtemp(fallback);
  if (made == nullptr) return Error::internal(fmt::format("mkdtemp: {}", std::strerror(errno)));
  s->dir_ = made;
  s->socketDir_ = s->dir_;
  if ((root && ::chown(s->socketDir_.c_str(), s->uid_, s->gid_) != 0) || ::chmod(s->socketDir_.c_str(), 0700) != 0)
    return Error::internal(fmt::format("chown {} to postgres: {}", s->socketDir_, std::strerror(errno)));
  const std::string data = s->dir_ + "/data";

  util::Command initdb(s->binDir_ + "/initdb");
  initdb.args({"-D", data, "--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "--no-sync",
               "--no-instructions"})
      .workDir(s->socketDir_)
      .stdoutToBuffer()
      .stderrToBuffer()
      .timeout(std::chrono::seconds(60));
  if (root) initdb.uid(s->uid_).gid(s->gid_);
  if (auto r = initdb.run(); !r.ok()) return r.error().context("initdb");

  s->server_ = std::make_unique<util::Command>(s->binDir_ + "/postgres");
  s->server_->args({"-D", data, "-k", s->socketDir_, "-p", std::to_string(s->port_)})
      .args({"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
             "full_page_writes=off", "-c", "max_connections=200"})
      .workDir(s->socketDir_)
      .stdoutToFile(s->dir_ + "/server.log")
      .stderrToStdout()
      // The server must not outlive a test process that crashed. Set after the
      // uid change, which would clear it.
      .preExec([]() -> Result<void> {
        if (::prctl(PR_SET_PDEATHSIG, SIGQUIT) != 0) return Error::internal("prctl(PR_SET_PDEATHSIG)");
        return ok();
      });
  if (root) s->server_->uid(s->uid_).gid(s->gid_);
  if (auto r = s->server_->start(); !r.ok()) return r.error().context("start postgres");

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    util::Command ready(s->binDir_ + "/pg_isready");
    ready.args({"-q", "-h", s->socketDir_, "-p", std::to_string(s->port_), "-U", "postgres"}).allowFailureStatus();
    auto r = ready.run();
    if (r.ok() && r->status.success()) break;
    if (auto exited = s->server_->wait(std::chrono::milliseconds(0)); exited.ok() || exited.error().code != ErrorCode::Timeout)
      return Error::unavailable(fmt::format("postgres exited while starting: {}", logTail(s->dir_ + "/server.log")));
    if (std::chrono::steady_clock::now() > deadline)
      return Error::timeout(fmt::format("postgres did not accept connections within 30 s: {}",
                                        logTail(s->dir_ + "/server.log")));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return s;
}

PostgresServer::~PostgresServer() {
  if (server_ && server_->pid() > 0) {
    // SIGINT is the fast shutdown: clients are cut off, no checkpoint waits.
    ::kill(server_->pid(), SIGINT);
    auto r = server_->wait(std::chrono::seconds(10));
    if (!r.ok() && r.error().code == ErrorCode::Timeout) (void)server_->abort(std::chrono::milliseconds(1000));
  }
  server_.reset();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string PostgresServer::url(const std::string& database) const {
  return fmt::format("postgresql:///{}?host={}&port={}&user=postgres", database, socketDir_, port_);
}

Result<std::string> PostgresServer::createDatabase(const std::string& name) {
  if (!validDatabaseName(name)) return Error::invalidInput("name", name, "must be 1-63 of [a-z0-9_]");
  util::Command createdb(binDir_ + "/createdb");
  createdb.args({"-h", socketDir_, "-p", std::to_string(port_), "-U", "postgres", "-T", "template0", name})
      .stderrToBuffer()
      .timeout(std::chrono::seconds(30));
  if (auto r = createdb.run(); !r.ok()) return r.error().context("createdb");
  return url(name);
}

}  // namespace corral::testing
