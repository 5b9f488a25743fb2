// One dnsmasq per `nat` network: its files, start, reload and stop; see dnsmasq.h.
#include "host/dnsmasq.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>

#include "host/net.h"
#include "util/ipv4.h"
#include "util/command.h"
#include "util/proc.h"
#include "util/unique_fd.h"

namespace corral::host::net {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using Ms = std::chrono::milliseconds;

constexpr const char* kConf = "dnsmasq.conf";
constexpr const char* kDhcpHosts = "dhcp-hosts";
constexpr const char* kHosts = "hosts";
constexpr const char* kPidfile = "dnsmasq.pid";
constexpr const char* kLeases = "dnsmasq.leases";
constexpr const char* kLog = "dnsmasq.log";
constexpr const char* kStderr = "dnsmasq.stderr";
constexpr Ms kStartTimeout{15000};
constexpr Ms kStopGrace{5000};

std::string dnsmasqTool() {
  for (const char* p : {"/usr/sbin/dnsmasq", "/sbin/dnsmasq", "/usr/bin/dnsmasq"})
    if (::access(p, X_OK) == 0) return p;
  return "dnsmasq";
}

// ---- validation

Result<void> noSeparators(std::string_view field, const std::string& value) {
  if (value.find_first_of(std::string_view("\n\r,\0", 4)) != std::string::npos)
    return Error::invalidInput(std::string(field), value, "must not hold a newline or a comma");
  return ok();
}

bool isLabel(std::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

bool isDomain(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  while (true) {
    size_t dot = s.find('.');
    if (!isLabel(s.substr(0, dot))) return false;
    if (dot == std::string_view::npos) return true;
    s.remove_prefix(dot + 1);
  }
}

bool isMac(std::string_view s) {
  if (s.size() != 17) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (i % 3 == 2) {
      if (c != ':') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// Paths appear in dnsmasq.conf lines and are matched in /proc/PID/cmdline:
// absolute, plain characters only.
bool isPlainPath(std::string_view s) {
  return !s.empty() && s[0] == '/' && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '.' ||
           c == '_' || c == '-' || c == '+' || c == '@' || c == ':';
  });
}

Result<std::string> normalDir(const std::string& dir) {
  CORRAL_TRY(noSeparators("dir", dir));
  if (!isPlainPath(dir))
    return Error::invalidInput("dir", dir, "must be an absolute path of A-Z a-z 0-9 / . _ - + @ :");
  std::string d = fs::path(dir).lexically_normal().string();
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  return d;
}

// ---- the files

struct Files {
  std::string dir;
  std::string conf, dhcpHosts, hosts;
};

struct DropUser {
  std::string user, group;  // "" when neither dnsmasq nor nobody exists: dnsmasq's default then
};

DropUser dropUser() {
  for (const char* name : {"dnsmasq", "nobody"}) {
    struct passwd pw {};
    struct passwd* found = nullptr;
    char buf[4096];
    if (::getpwnam_r(name, &pw, buf, sizeof buf, &found) != 0 || found == nullptr) continue;
    struct group gr {};
    struct group* gfound = nullptr;
    char gbuf[4096];
    std::string group;
    if (::getgrgid_r(pw.pw_gid, &gr, gbuf, sizeof gbuf, &gfound) == 0 && gfound != nullptr) group = gr.gr_name;
    return {name, group};
  }
  return {};
}

Result<Files> renderFiles(const DnsmasqConfig& cfg) {
  Files f;
  f.dir = CORRAL_TRY(normalDir(cfg.dir));
  for (const auto& [field, value] : {std::pair<const char*, const std::string*>{"bridge", &cfg.bridge},
                                     {"gateway", &cfg.gateway},
                                     {"subnet", &cfg.subnet},
                                     {"domain", &cfg.domain}})
    CORRAL_TRY(noSeparators(field, *value));
  if (!validIfName(cfg.bridge)) return Error::invalidInput("bridge", cfg.bridge, "is not a valid interface name");
  util::Ipv4Prefixed prefixed = CORRAL_TRY(util::parseIpv4Prefixed("subnet", cfg.subnet));
  if (prefixed.prefix < 1 || prefixed.prefix > 30)
    return Error::invalidInput("subnet", cfg.subnet, "must be between /1 and /30");
  const util::Ipv4Subnet subnet = prefixed.subnet();
  auto hostAddress = [&](std::string_view field, const std::string& text) -> Result<uint32_t> {
    util::Ipv4 a = CORRAL_TRY(util::parseIpv4(field, text));
    if (!subnet.isHost(a))
      return Error::invalidInput(std::string(field), text, fmt::format("must be a host address inside {}", subnet.str()));
    return a.value;
  };
  const uint32_t gateway = CORRAL_TRY(hostAddress("gateway", cfg.gateway));
  if (!cfg.domain.empty() && !isDomain(cfg.domain))
    return Error::invalidInput("domain", cfg.domain, "must be a DNS domain of labels [a-z0-9-] separated by dots");
  for (const auto& d : cfg.dns) {
    CORRAL_TRY(noSeparators("dns", d));
    CORRAL_TRY(util::parseIpv4("dns", d));
  }

  std::set<std::string> macs, names;
  std::set<uint32_t> ips;
  for (const auto& h : cfg.hosts) {
    CORRAL_TRY(noSeparators("mac", h.mac));
    CORRAL_TRY(noSeparators("ip", h.ip));
    CORRAL_TRY(noSeparators("hostname", h.hostname));
    if (!isMac(h.mac)) return Error::invalidInput("mac", h.mac, "must be a MAC address xx:xx:xx:xx:xx:xx");
    if (!isLabel(h.hostname))
      return Error::invalidInput("hostname", h.hostname, "must be 1-63 of [a-z0-9-], not starting or ending with -");
    const uint32_t ip = CORRAL_TRY(hostAddress("ip", h.ip));
    if (ip == gateway) return Error::invalidInput("ip", h.ip, "is the gateway's address");
    std::string mac = h.mac;
    std::transform(mac.begin(), mac.end(), mac.begin(), [](char c) { return char(std::tolower(c)); });
    if (!macs.insert(mac).second) return Error::invalidInput("mac", h.mac, "is given to two hosts");
    if (!ips.insert(ip).second) return Error::invalidInput("ip", h.ip, "is given to two hosts");
    if (!names.insert(h.hostname).second) return Error::invalidInput("hostname", h.hostname, "is given to two hosts");
    f.dhcpHosts += fmt::format("{},{},{}\n", mac, h.ip, h.hostname);
    f.hosts += cfg.domain.empty() ? fmt::format("{} {}\n", h.ip, h.hostname)
                                  : fmt::format("{} {}.{} {}\n", h.ip, h.hostname, cfg.domain, h.hostname);
  }

  const std::string& d = f.dir;
  std::string& c = f.conf;
  c += fmt::format("# corral's dnsmasq for bridge {}: rewritten at each start, do not edit.\n", cfg.bridge);
  // DNS: only on the bridge (dnsmasq would add lo by itself), only our names
  // from our files, plain names and private reverse lookups never forwarded.
  c += fmt::format("port=53\ninterface={}\nexcept-interface=lo\nbind-interfaces\n", cfg.bridge);
  c += fmt::format("no-hosts\naddn-hosts={}/{}\ndomain-needed\nbogus-priv\n", d, kHosts);
  if (!cfg.domain.empty()) c += fmt::format("domain={0}\nlocal=/{0}/\n", cfg.domain);
  // DHCP: static leases only, for the MACs in dhcp-hosts; nobody else is answered.
  c += fmt::format("dhcp-range={},static,{},12h\n", subnet.network.str(), subnet.netmask());
  c += fmt::format("dhcp-hostsfile={}/{}\ndhcp-ignore=tag:!known\ndhcp-authoritative\n", d, kDhcpHosts);
  c += fmt::format("dhcp-option=option:router,{}\n", cfg.gateway);
  if (!cfg.dns.empty()) {
    std::string list;
    for (const auto& s : cfg.dns) list += (list.empty() ? "" : ",") + s;
    c += fmt::format("dhcp-option=option:dns-server,{}\n", list);
  }
  c += fmt::format("dhcp-leasefile={0}/{1}\npid-file={0}/{2}\nlog-facility={0}/{3}\n", d, kLeases, kPidfile, kLog);
  DropUser u = dropUser();
  if (!u.user.empty()) c += fmt::format("user={}\n", u.user);
  if (!u.group.empty()) c += fmt::format("group={}\n", u.group);
  return f;
}

// Written beside the target and renamed over it: dnsmasq, rereading on SIGHUP,
// sees the old file or the new one, never half of one.
Result<void> writeAtomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  util::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return errorf(ErrorCode::Internal, "create {}: {}", tmp, std::strerror(errno));
  if (::fchmod(fd.get(), 0644) != 0) return errorf(ErrorCode::Internal, "chmod {}: {}", tmp, std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errorf(ErrorCode::Internal, "write {}: {}", tmp, std::strerror(errno));
    done += size_t(n);
  }
  fd.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return errorf(ErrorCode::Internal, "rename {}: {}", path, std::strerror(errno));
  return ok();
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// dnsmasq rereads dhcp-hosts and hosts as its unprivileged user: DIR must be
// enterable by others, and so must every directory above it.
Result<void> prepareDirAccess(const std::string& dir, const std::string& user) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    return Error::failedPrecondition(fmt::format("network state dir {}: {}", dir, std::strerror(errno)));
  if (!S_ISDIR(st.st_mode)) return Error::failedPrecondition(fmt::format("{} is not a directory", dir));
  if (!(st.st_mode & S_IXOTH) && ::chmod(dir.c_str(), (st.st_mode & 07777) | S_IXOTH) != 0)
    return errorf(ErrorCode::Internal, "chmod {}: {}", dir, std::strerror(errno));
  for (fs::path p = fs::path(dir).parent_path();; p = p.parent_path()) {
    if (::stat(p.c_str(), &st) != 0)
      return errorf(ErrorCode::Internal, "stat {}: {}", p.string(), std::strerror(errno));
    if (!(st.st_mode & S_IXOTH))
      return Error::failedPrecondition(fmt::format(
          "{} (mode {:04o}) may not be entered by others: dnsmasq, running as user {}, rereads {}/{} and {}/{}",
          p.string(), st.st_mode & 07777, user.empty() ? "nobody" : user, dir, kDhcpHosts, dir, kHosts));
    if (p == p.root_path()) break;
  }
  return ok();
}

// Polls until `pid` (started at `startTime`) has ended (or is a zombie).
bool waitGone(pid_t pid, uint64_t startTime, Ms limit) {
  const auto deadline = Clock::now() + limit;
  while (util::processAlive(pid, startTime)) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(Ms(10));
  }
  return true;
}

}  // namespace

Result<std::string> dnsmasqConfText(const DnsmasqConfig& cfg) {
  Files f = CORRAL_TRY(renderFiles(cfg));
  return std::move(f.conf);
}

std::optional<pid_t> dnsmasqPid(const std::string& dirIn) {
  auto dir = normalDir(dirIn);
  if (!dir.ok()) return std::nullopt;
  std::string text = readFile(fmt::format("{}/{}", *dir, kPidfile));
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
  pid_t pid = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), pid);
  if (text.empty() || ec != std::errc{} || p != text.data() + text.size() || pid <= 1) return std::nullopt;
  auto st = util::readProcStat(pid);
  if (!st.ok() || st->finished()) return std::nullopt;
  auto argv = util::readProcCmdline(pid);
  if (!argv.ok() || argv->empty() || fs::path((*argv)[0]).filename() != "dnsmasq") return std::nullopt;
  const std::string confArg = fmt::format("--conf-file={}/{}", *dir, kConf);
  if (std::find(argv->begin(), argv->end(), confArg) == argv->end()) return std::nullopt;
  return pid;
}

Result<void> stopDnsmasq(const std::string& dirIn) {
  const std::string dir = CORRAL_TRY(normalDir(dirIn));
  if (auto pid = dnsmasqPid(dir)) {
    if (auto start = util::processStartTime(*pid); start.ok()) {
      ::kill(*pid, SIGTERM);
      if (!waitGone(*pid, *start, kStopGrace)) {
        spdlog::warn("dnsmasq of {} (pid {}) ignored SIGTERM for {} ms; sending SIGKILL", dir, *pid,
                     kStopGrace.count());
        ::kill(*pid, SIGKILL);
        if (!waitGone(*pid, *start, kStopGrace))
          return Error::timeout(fmt::format("dnsmasq of {} (pid {}) survived SIGKILL", dir, *pid));
      }
      spdlog::info("stopped dnsmasq of {} (pid {})", dir, *pid);
    }
  }
  const std::string pidfile = fmt::format("{}/{}", dir, kPidfile);
  if (::unlink(pidfile.c_str()) != 0 && errno != ENOENT)
    return errorf(ErrorCode::Internal, "remove {}: {}", pidfile, std::strerror(errno));
  return ok();
}

Result<void> startDnsmasq(const DnsmasqConfig& cfg) {
  Files f = CORRAL_TRY(renderFiles(cfg));
  const std::string& dir = f.dir;
  CORRAL_TRY(prepareDirAccess(dir, dropUser().user));
  CORRAL_TRY(stopDnsmasq(dir));
  CORRAL_TRY(writeAtomic(fmt::format("{}/{}", dir, kDhcpHosts), f.dhcpHosts));
  CORRAL_TRY(writeAtomic(fmt::format("{}/{}", dir, kHosts), f.hosts));
  const std::string conf = fmt::format("{}/{}", dir, kConf);
  CORRAL_TRY(writeAtomic(conf, f.conf));

  // dnsmasq daemonizes itself; its first process exits only once the daemon
  // listens and has written the pidfile, with a non-zero status (and the reason
  // on stderr) when it could not. Its stderr goes to a file, not a pipe, so that
  // the daemon never holds a pipe of ours.
  const std::string errFile = fmt::format("{}/{}", dir, kStderr);
  util::Command c(dnsmasqTool());
  c.arg(fmt::format("--conf-file={}", conf)).stdoutToNull().stderrToFile(errFile).timeout(kStartTimeout);
  c.allowFailureStatus();
  auto r = c.run();
  if (!r.ok()) return r.error().context(fmt::format("dnsmasq for bridge {}", cfg.bridge));
  if (!r->status.success()) {
    std::string said = readFile(errFile);
    while (!said.empty() && std::isspace(static_cast<unsigned char>(said.back()))) said.pop_back();
    if (said.size() > 1024) said = "..." + said.substr(said.size() - 1024);
    return Error::internal(
        fmt::format("dnsmasq for bridge {} {}{}", cfg.bridge, r->status.describe(), said.empty() ? "" : ": " + said));
  }
  const auto deadline = Clock::now() + Ms(2000);
  while (true) {
    if (auto pid = dnsmasqPid(dir)) {
      spdlog::info("started dnsmasq for bridge {} (pid {}, {} static hosts)", cfg.bridge, *pid, cfg.hosts.size());
      return ok();
    }
    if (Clock::now() >= deadline)
      return Error::internal(
          fmt::format("dnsmasq for bridge {} started, but {}/{} names no running dnsmasq", cfg.bridge, dir, kPidfile));
    std::this_thread::sleep_for(Ms(10));
  }
}

Result<void> updateDnsmasq(const DnsmasqConfig& cfg) {
  Files f = CORRAL_TRY(renderFiles(cfg));
  auto pid = dnsmasqPid(f.dir);
  if (!pid || readFile(fmt::format("{}/{}", f.dir, kConf)) != f.conf) return startDnsmasq(cfg);
  CORRAL_TRY(writeAtomic(fmt::format("{}/{}", f.dir, kDhcpHosts), f.dhcpHosts));
  CORRAL_TRY(writeAtomic(fmt::format("{}/{}", f.dir, kHosts), f.hosts));
  if (::kill(*pid, SIGHUP) != 0) {
    if (errno == ESRCH) return startDnsmasq(cfg);  // it ended since we looked
    return errorf(ErrorCode::Internal, "signal dnsmasq of {} (pid {}): {}", f.dir, *pid, std::strerror(errno));
  }
  return ok();
}

}  // namespace corral::host::net
