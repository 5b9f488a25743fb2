// Taps, bridges, vhost-net, counters, forwarding, nftables and the NIC hook; see net.h.
//
// Reads use the kernel directly (ioctl, rtnetlink) so that the hot ones (link
// counters for metrics, existence checks) start no process; changes go through
// `ip` and `nft`, whose error messages an operator already knows.
#include "host/net.h"

#include <fcntl.h>
#include <signal.h>
// <net/if.h> before the <linux/...> headers, and never <linux/if.h>: the two clash.
#include <linux/if_link.h>
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <set>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "util/command.h"
#include "util/ipv4.h"

namespace corral::host::net {
namespace {

using Ms = std::chrono::milliseconds;
constexpr Ms kToolTimeout{15000};

Result<void> checkIfName(const std::string& name) {
  if (!validIfName(name))
    return Error::invalidInput("interface", name, "must be 1-15 characters of A-Z a-z 0-9 _ . -, not . or ..");
  return ok();
}

std::string sysMessage(std::string_view what, int err) { return fmt::format("{}: {}", what, std::strerror(err)); }

// The absolute path of an administration tool, looked up where Debian puts it
// (corrald's own PATH may lack the sbin directories); the bare name otherwise,
// which util::Command resolves against PATH (and reports when missing).
std::string findTool(const char* name) {
  for (const char* dir : {"/usr/sbin", "/sbin", "/usr/bin", "/bin"}) {
    std::string p = fmt::format("{}/{}", dir, name);
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return name;
}

const std::string& ipTool() {
  static const std::string path = findTool("ip");
  return path;
}

const std::string& nftTool() {
  static const std::string path = findTool("nft");
  return path;
}

std::string trimmed(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  return std::string(s);
}

std::string tailOf(std::string_view s, size_t max) {
  std::string t = trimmed(s);
  if (t.size() > max) t = "..." + t.substr(t.size() - max);
  return t;
}

// Runs an administration tool; its stdout, or an error "ip link add ...: <its stderr>".
Result<std::string> runTool(const std::string& tool, const std::vector<std::string>& args,
                            std::optional<std::string> input = std::nullopt) {
  util::Command c(tool);
  c.args(args).stdoutToBuffer().stderrToBuffer().timeout(kToolTimeout).allowFailureStatus();
  if (input) c.stdinBuffer(std::move(*input));
  auto r = c.run();
  if (!r.ok()) return r.error().context(c.toString());
  if (!r->status.success()) {
    std::string err = tailOf(r->err, 512);
    return Error::internal(fmt::format("{}: {}{}", c.toString(), r->status.describe(), err.empty() ? "" : ": " + err));
  }
  return std::move(r->out);
}

Result<std::string> runIp(const std::vector<std::string>& args) { return runTool(ipTool(), args); }

// ---- rtnetlink: one RTM_GETLINK by name

struct LinkQuery {
  int ifindex = 0;
  std::string kind;  // IFLA_INFO_KIND: "bridge", "tun", "veth"... ("" for plain devices)
  int master = 0;    // IFLA_MASTER, 0 when none
  std::optional<LinkStats> stats;
};

void parseLinkInfo(const rtattr* nested, LinkQuery& q) {
  int len = int(RTA_PAYLOAD(nested));
  for (auto* a = static_cast<const rtattr*>(RTA_DATA(nested)); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if ((a->rta_type & NLA_TYPE_MASK) == IFLA_INFO_KIND) {
      const char* s = static_cast<const char*>(RTA_DATA(a));
      q.kind.assign(s, ::strnlen(s, RTA_PAYLOAD(a)));
    }
  }
}

// nullopt when no link of that name exists in the calling thread's namespace.
Result<std::optional<LinkQuery>> queryLink(const std::string& name) {
  util::UniqueFd sock(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!sock) return Error::internal(sysMessage("rtnetlink socket", errno));

  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
    char attrs[RTA_SPACE(IFNAMSIZ)];
  } req{};
  req.nh.nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  req.nh.nlmsg_type = RTM_GETLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  auto* attr = reinterpret_cast<rtattr*>(reinterpret_cast<char*>(&req) + NLMSG_ALIGN(req.nh.nlmsg_len));
  attr->rta_type = IFLA_IFNAME;
  attr->rta_len = RTA_LENGTH(name.size() + 1);
  std::memcpy(RTA_DATA(attr), name.c_str(), name.size() + 1);
  req.nh.nlmsg_len = NLMSG_ALIGN(req.nh.nlmsg_len) + RTA_ALIGN(attr->rta_len);

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(sock.get(), &req, req.nh.nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return Error::internal(sysMessage("rtnetlink send", errno));

  std::vector<char> buf(65536);  // operator new's alignment suits nlmsghdr
  while (true) {
    ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), MSG_TRUNC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::internal(sysMessage("rtnetlink receive", errno));
    if (size_t(n) > buf.size()) return Error::internal("rtnetlink: reply larger than 64 KiB");
    int len = int(n);
    for (auto* nh = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(nh, len); nh = NLMSG_NEXT(nh, len)) {
      if (nh->nlmsg_seq != 1) continue;
      if (nh->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(nh));
        if (e->error == 0) continue;
        if (e->error == -ENODEV) return std::optional<LinkQuery>();
        return Error::internal(sysMessage(fmt::format("rtnetlink: get link {}", name), -e->error));
      }
      if (nh->nlmsg_type != RTM_NEWLINK) continue;
      const auto* ifi = static_cast<const ifinfomsg*>(NLMSG_DATA(nh));
      LinkQuery q;
      q.ifindex = ifi->ifi_index;
      int alen = int(IFLA_PAYLOAD(nh));
      for (auto* a = IFLA_RTA(ifi); RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        switch (a->rta_type & NLA_TYPE_MASK) {
          case IFLA_MASTER:
            if (RTA_PAYLOAD(a) >= sizeof(uint32_t)) {
              uint32_t m = 0;
              std::memcpy(&m, RTA_DATA(a), sizeof m);
              q.master = int(m);
            }
            break;
          case IFLA_STATS64:
            if (RTA_PAYLOAD(a) >= sizeof(rtnl_link_stats64)) {
              rtnl_link_stats64 s{};
              std::memcpy(&s, RTA_DATA(a), sizeof s);
              q.stats = LinkStats{s.rx_bytes,  s.tx_bytes,  s.rx_packets, s.tx_packets,
                                  s.rx_errors, s.tx_errors, s.rx_dropped, s.tx_dropped};
            }
            break;
          case IFLA_LINKINFO:
            parseLinkInfo(a, q);
            break;
          default:
            break;
        }
      }
      return std::optional<LinkQuery>(std::move(q));
    }
  }
}

Result<LinkQuery> requireLink(const std::string& name) {
  CORRAL_TRY(checkIfName(name));
  auto q = CORRAL_TRY(queryLink(name));
  if (!q) return Error::notFound(fmt::format("network interface {} does not exist", name));
  return std::move(*q);
}

}  // namespace

// ---------------------------------------------------------------- names and addresses

bool validIfName(std::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == '-';
  });
}

// ---------------------------------------------------------------- links

bool linkExists(const std::string& name) { return validIfName(name) && ::if_nametoindex(name.c_str()) != 0; }

std::vector<std::string> listLinks() {
  std::vector<std::string> names;
  struct if_nameindex* list = ::if_nameindex();
  if (list == nullptr) return names;
  for (auto* p = list; p->if_index != 0 && p->if_name != nullptr; ++p) names.emplace_back(p->if_name);
  ::if_freenameindex(list);
  return names;
}

bool isBridge(const std::string& name) {
  if (!validIfName(name)) return false;
  auto q = queryLink(name);
  return q.ok() && q->has_value() && (*q)->kind == "bridge";
}

Result<std::string> linkMaster(const std::string& name) {
  LinkQuery q = CORRAL_TRY(requireLink(name));
  if (q.master == 0) return std::string();
  char buf[IF_NAMESIZE] = {};
  if (::if_indextoname(unsigned(q.master), buf) == nullptr)
    return Error::internal(sysMessage(fmt::format("name of interface index {}", q.master), errno));
  return std::string(buf);
}

Result<void> createBridge(const std::string& name) {
  CORRAL_TRY(checkIfName(name));
  auto existing = CORRAL_TRY(queryLink(name));
  if (existing && existing->kind != "bridge")
    return Error::failedPrecondition(fmt::format("network interface {} exists and is not a bridge (it is {})", name,
                                                 existing->kind.empty() ? "a plain device" : existing->kind));
  if (!existing) {
    auto made = runIp({"link", "add", "name", name, "type", "bridge", "stp_state", "0", "forward_delay", "0"});
    // Another caller may have made it meanwhile: a bridge of that name is what we wanted.
    if (!made.ok() && !isBridge(name)) return std::move(made).error();
    if (made.ok()) spdlog::info("made bridge {}", name);
  }
  return setLinkUp(name);
}

Result<void> deleteLink(const std::string& name) {
  CORRAL_TRY(checkIfName(name));
  if (!linkExists(name)) return ok();
  auto r = runIp({"link", "delete", "dev", name});
  if (!r.ok() && linkExists(name)) return std::move(r).error();
  return ok();
}

Result<void> setLinkUp(const std::string& name) {
  CORRAL_TRY(checkIfName(name));
  util::UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return Error::internal(sysMessage("socket", errno));
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.c_str(), name.size() + 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &ifr) != 0) {
    if (errno == ENODEV) return Error::notFound(fmt::format("network interface {} does not exist", name));
    return Error::internal(sysMessage(fmt::format("flags of {}", name), errno));
  }
  if (ifr.ifr_flags & IFF_UP) return ok();
  ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &ifr) != 0)
    return Error::internal(sysMessage(fmt::format("set {} up", name), errno));
  return ok();
}

Result<void> setMaster(const std::string& link, const std::string& bridge) {
  CORRAL_TRY(requireLink(link));
  LinkQuery br = CORRAL_TRY(requireLink(bridge));
  if (br.kind != "bridge")
    return Error::failedPrecondition(fmt::format("network interface {} is not a bridge", bridge));
  CORRAL_TRY(runIp({"link", "set", "dev", link, "master", bridge}));
  return ok();
}

Result<void> addAddress(const std::string& link, const std::string& cidr) {
  util::Ipv4Prefixed c = CORRAL_TRY(util::parseIpv4Prefixed("address", cidr));
  CORRAL_TRY(requireLink(link));
  // `replace` adds the address or, when it is there already, leaves it as it is.
  CORRAL_TRY(runIp({"-4", "address", "replace", c.str(), "dev", link}));
  return ok();
}

// ---------------------------------------------------------------- taps and vhost-net

Result<Tap> openTap(const std::string& name) {
  CORRAL_TRY(checkIfName(name));
  if (linkExists(name))
    return Error::alreadyExists("interface", name, fmt::format("network interface {} already exists", name));
  util::UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!fd) return Error::unavailable(sysMessage("open /dev/net/tun", errno));

  unsigned features = 0;
  if (::ioctl(fd.get(), TUNGETFEATURES, &features) != 0) features = 0;
  Tap tap;
  tap.vnetHdr = (features & IFF_VNET_HDR) != 0;

  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.c_str(), name.size() + 1);
  ifr.ifr_flags = short(IFF_TAP | IFF_NO_PI | (tap.vnetHdr ? IFF_VNET_HDR : 0));
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int err = errno;
    if (err == EBUSY || err == EEXIST)
      return Error::alreadyExists("interface", name, fmt::format("network interface {} already exists", name));
    return Error::internal(sysMessage(fmt::format("create tap {}", name), err));
  }
  // A persistent tap made between the check above and TUNSETIFF would have been
  // attached to rather than made: refuse it as above (closing detaches us).
  ifreq got{};
  if (::ioctl(fd.get(), TUNGETIFF, &got) == 0 && (got.ifr_flags & IFF_PERSIST))
    return Error::alreadyExists("interface", name, fmt::format("network interface {} already exists", name));

  tap.name = name;
  tap.ifindex = int(::if_nametoindex(name.c_str()));
  if (tap.ifindex == 0) return Error::internal(sysMessage(fmt::format("index of tap {}", name), errno));
  CORRAL_TRY(setLinkUp(name));
  tap.fd = std::move(fd);
  return tap;
}

namespace {
constexpr const char* kVhostNet = "/dev/vhost-net";
// VHOST_GET_FEATURES from <linux/vhost.h>, which pulls in <linux/virtio_ring.h>
// that does not compile as C++.
constexpr unsigned long kVhostGetFeatures = _IOR(0xAF, 0x00, uint64_t);
}  // namespace

Result<util::UniqueFd> openVhostNet() {
  util::UniqueFd fd(::open(kVhostNet, O_RDWR | O_CLOEXEC));
  if (!fd) return Error::unavailable(sysMessage(fmt::format("open {}", kVhostNet), errno));
  return fd;
}

bool vhostNetUsable() {
  static const bool usable = [] {
    auto fd = openVhostNet();
    if (!fd.ok()) {
      spdlog::info("vhost-net is not used: {}", fd.error().describe());
      return false;
    }
    uint64_t features = 0;
    if (::ioctl(fd->get(), kVhostGetFeatures, &features) != 0) {
      spdlog::info("vhost-net is not used: {}", sysMessage("VHOST_GET_FEATURES", errno));
      return false;
    }
    return true;
  }();
  return usable;
}

// ---------------------------------------------------------------- counters and forwarding

Result<LinkStats> linkStats(const std::string& name) {
  LinkQuery q = CORRAL_TRY(requireLink(name));
  if (!q.stats) return Error::internal(fmt::format("the kernel gave no counters for {}", name));
  return *q.stats;
}

Result<void> enableIpv4Forwarding() {
  constexpr const char* kPath = "/proc/sys/net/ipv4/ip_forward";
  util::UniqueFd fd(::open(kPath, O_WRONLY | O_CLOEXEC));
  if (!fd) return Error::internal(sysMessage(fmt::format("open {}", kPath), errno));
  if (::write(fd.get(), "1\n", 2) != 2) return Error::internal(sysMessage(fmt::format("write {}", kPath), errno));
  return ok();
}

// ---------------------------------------------------------------- nftables

Result<std::string> natRulesScript(const std::vector<std::string>& subnets) {
  std::set<std::pair<uint32_t, unsigned>> nets;
  for (const auto& s : subnets) {
    util::Ipv4Prefixed c = CORRAL_TRY(util::parseIpv4Prefixed("subnet", s));
    nets.emplace(c.subnet().network.value, c.prefix);
  }
  // Declaring the table first makes the delete succeed when it is absent; the
  // whole script is one transaction, so the old rules stay until the new ones hold.
  std::string script = "table ip corral {}\ndelete table ip corral\n";
  if (nets.empty()) return script;
  std::string post, fwd;
  for (const auto& [net, prefix] : nets) {
    std::string s = util::Ipv4Subnet{util::Ipv4{net}, prefix}.str();
    post += fmt::format("    ip saddr {0} ip daddr != {0} masquerade\n", s);
    fwd += fmt::format("    ip saddr {0} accept\n    ip daddr {0} ct state established,related accept\n", s);
  }
  script += "table ip corral {\n";
  script += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n" + post + "  }\n";
  script += "  chain forward {\n    type filter hook forward priority filter; policy accept;\n" + fwd + "  }\n";
  script += "}\n";
  return script;
}

Result<void> applyNatRules(const std::vector<std::string>& subnets) {
  std::string script = CORRAL_TRY(natRulesScript(subnets));
  CORRAL_TRY(runTool(nftTool(), {"-f", "-"}, std::move(script)));
  return ok();
}

Result<std::string> guardRulesScript(const GuardSpec& spec) {
  if (spec.guestGid == 0) return Error::invalidInput("guest_gid", "0", "must not be root's group");
  const std::string g = std::to_string(spec.guestGid);
  std::string out, in, fwd;
  std::vector<std::string> bridges, subnets;
  for (const auto& n : spec.nat) {
    if (!validIfName(n.bridge)) return Error::invalidInput("interface", n.bridge, "is not a valid interface name");
    util::Ipv4Prefixed net = CORRAL_TRY(util::parseIpv4Prefixed("subnet", n.subnet));
    util::Ipv4 gw = CORRAL_TRY(util::parseIpv4("gateway", n.gateway));
    bridges.push_back(fmt::format("\"{}\"", n.bridge));
    subnets.push_back(net.subnet().str());
    in += fmt::format("    iifname \"{}\" ip daddr {} meta l4proto {{ tcp, udp }} th dport 53 accept\n", n.bridge,
                      gw.str());
    in += fmt::format("    iifname \"{}\" udp dport 67 accept\n", n.bridge);
  }
  out += fmt::format("    meta skgid {} fib daddr type local meta l4proto {{ tcp, udp }} th dport 53 accept\n", g);
  out += fmt::format("    meta skgid {} fib daddr type local meta l4proto tcp reject with tcp reset\n", g);
  out += fmt::format("    meta skgid {} fib daddr type local reject with icmpx admin-prohibited\n", g);
  if (!subnets.empty()) {
    out += fmt::format("    meta skgid {} ip daddr {{ {} }} meta l4proto tcp reject with tcp reset\n", g,
                       fmt::join(subnets, ", "));
    out += fmt::format("    meta skgid {} ip daddr {{ {} }} reject with icmpx admin-prohibited\n", g,
                       fmt::join(subnets, ", "));
    const std::string all = fmt::format("{{ {} }}", fmt::join(bridges, ", "));
    in += fmt::format("    iifname {} icmp type echo-request accept\n", all);
    in += fmt::format("    iifname {} fib daddr type local meta l4proto tcp reject with tcp reset\n", all);
    in += fmt::format("    iifname {} fib daddr type local reject with icmpx admin-prohibited\n", all);
    for (const auto& b : bridges) {
      std::vector<std::string> others;
      for (const auto& o : bridges)
        if (o != b) others.push_back(o);
      if (!others.empty())
        fwd += fmt::format("    iifname {} oifname {{ {} }} reject with icmpx admin-prohibited\n", b,
                           fmt::join(others, ", "));
    }
  }
  std::string script = "table inet corral_guard {}\ndelete table inet corral_guard\ntable inet corral_guard {\n";
  // Replies to connections opened from outside (a host port forward) go out from
  // the guest's sockets too: only what a guest opens is refused.
  script += "  chain output {\n    type filter hook output priority filter; policy accept;\n";
  script += "    ct state established,related accept\n" + out + "  }\n";
  script += "  chain input {\n    type filter hook input priority filter; policy accept;\n";
  script += "    ct state established,related accept\n" + in + "  }\n";
  script += "  chain forward {\n    type filter hook forward priority filter; policy accept;\n" + fwd + "  }\n";
  script += "}\n";
  return script;
}

Result<void> applyGuardRules(const GuardSpec& spec) {
  std::string script = CORRAL_TRY(guardRulesScript(spec));
  CORRAL_TRY(runTool(nftTool(), {"-f", "-"}, std::move(script)));
  return ok();
}

// ---------------------------------------------------------------- NIC hook

Result<void> runNicHook(const std::string& script, const NicHookEnv& env, std::chrono::milliseconds timeout) {
  if (script.empty() || script[0] != '/') return Error::invalidInput("nic_hook", script, "must be an absolute path");
  struct stat st {};
  if (::stat(script.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || ::access(script.c_str(), X_OK) != 0)
    return Error::invalidInput("nic_hook", script, "must be an executable file");

  const std::pair<const char*, const std::string*> vars[] = {
      {"INSTANCE", &env.instance},   {"MAC", &env.mac},   {"MODE", &env.mode},
      {"INTERFACE", &env.interface}, {"IP", &env.ip},     {"LINK", &env.link},
      {"BRIDGE", &env.bridge},       {"TAGS", &env.tags},
  };
  util::Command c(script);
  for (const auto& [key, value] : vars) {
    if (value->find('\0') != std::string::npos)
      return Error::invalidInput("nic_hook", *value, fmt::format("{} holds a NUL byte", key));
    c.setEnv(key, *value);
  }
  c.setEnv("INTERFACE_INDEX", std::to_string(env.interfaceIndex));
  c.setEnv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
  c.stdoutToBuffer().stderrToStdout().allowFailureStatus();
  // Its own process group, so that a timeout also ends what the hook started.
  c.preExec([]() -> Result<void> {
    if (::setpgid(0, 0) != 0) return Error::internal(sysMessage("setpgid", errno));
    return ok();
  });

  auto fail = [&](Error e) {
    spdlog::warn("NIC hook for {} ({}): {}", env.interface, env.instance, e.message);
    return e;
  };
  auto outputTail = [&] {
    std::string t = tailOf(c.out(), 1024);
    return t.empty() ? std::string(" (no output)") : ": " + t;
  };
  if (auto started = c.start(); !started.ok()) return fail(started.error().context(fmt::format("NIC hook {}", script)));
  auto status = c.wait(timeout);
  if (!status.ok()) {
    if (status.error().code != ErrorCode::Timeout)
      return fail(status.error().context(fmt::format("NIC hook {}", script)));
    const pid_t group = c.pid();
    if (group > 0) ::kill(-group, SIGTERM);
    (void)c.abort();
    if (group > 0) ::kill(-group, SIGKILL);
    return fail(Error::timeout(fmt::format("NIC hook {} did not finish within {} ms and was killed{}", script,
                                           timeout.count(), outputTail())));
  }
  if (!status->success())
    return fail(Error::internal(fmt::format("NIC hook {} {}{}", script, status->describe(), outputTail())));
  return ok();
}

}  // namespace corral::host::net
