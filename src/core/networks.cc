#include "core/networks.h"

#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "host/dnsmasq.h"
#include "util/ipv4.h"
#include "util/names.h"
#include "util/strings.h"

namespace corral::core {
namespace fs = std::filesystem;
using util::Ipv4;
using util::Ipv4Subnet;

namespace {

constexpr int kInsertAttempts = 8;  // address or MAC races lost before giving up
constexpr std::string_view kTapPrefix = "crl";

Result<void> needAdmin(const Principal& who, std::string_view what) {
  if (!who.admin) return Error::forbidden(fmt::format("only admins may {}", what));
  return ok();
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// The number in "nicN", -1 when it is not one.
int nicNumber(std::string_view name) {
  if (name.size() < 4 || name.substr(0, 3) != "nic") return -1;
  int n = -1;
  auto [p, ec] = std::from_chars(name.data() + 3, name.data() + name.size(), n);
  if (ec != std::errc{} || p != name.data() + name.size() || n < 0 || (name.size() > 4 && name[3] == '0')) return -1;
  return n;
}

// A MAC as QEMU and the guest see it: six lowercase hex pairs, unicast and
// locally administered (no clash with any vendor's hardware).
Result<std::string> checkMac(const std::string& mac) {
  auto bad = [&] {
    return Error::invalidInput("mac", mac, "must be a unicast, locally administered MAC such as 52:54:00:12:34:56");
  };
  if (mac.size() != 17) return bad();
  std::string out = lower(mac);
  unsigned first = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    char c = out[i];
    if (i % 3 == 2) {
      if (c != ':') return bad();
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return bad();
    }
  }
  std::from_chars(out.data(), out.data() + 2, first, 16);
  if ((first & 0x01) != 0 || (first & 0x02) == 0) return bad();
  return out;
}

std::string randomMac() {
  unsigned char b[3];
  if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
  return fmt::format("52:54:00:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2]);
}

struct Forward {
  std::string proto;
  uint16_t hostPort = 0;
  uint16_t guestPort = 0;
};

Result<Forward> parseForward(const std::string& text) {
  auto bad = [&](std::string_view why) { return Error::invalidInput("forward", text, why); };
  size_t a = text.find(':');
  size_t b = a == std::string::npos ? a : text.find(':', a + 1);
  if (b == std::string::npos || text.find(':', b + 1) != std::string::npos)
    return bad("must be PROTO:HOSTPORT:GUESTPORT, e.g. tcp:2222:22");
  Forward f{text.substr(0, a), 0, 0};
  if (f.proto != "tcp" && f.proto != "udp") return bad("protocol must be tcp or udp");
  auto port = [](std::string_view s, uint16_t& out) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc{} || p != s.data() + s.size() || v == 0 || v > 65535) return false;
    out = static_cast<uint16_t>(v);
    return true;
  };
  if (!port(std::string_view(text).substr(a + 1, b - a - 1), f.hostPort) ||
      !port(std::string_view(text).substr(b + 1), f.guestPort))
    return bad("ports must be numbers from 1 to 65535");
  return f;
}

}  // namespace

Result<void> parseForwardPorts(std::string_view text, NetworkConfig& cfg) {
  auto bad = [&] {
    return Error::invalidInput("forward_ports", std::string(text), "must be LOW-HIGH, ports from 1 to 65535");
  };
  size_t dash = text.find('-');
  if (dash == std::string_view::npos) return bad();
  unsigned low = 0, high = 0;
  auto num = [](std::string_view s, unsigned& v) {
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return !s.empty() && ec == std::errc{} && end == s.data() + s.size();
  };
  if (!num(text.substr(0, dash), low) || !num(text.substr(dash + 1), high) || low < 1 || low > high || high > 65535)
    return bad();
  cfg.forwardPortMin = static_cast<uint16_t>(low);
  cfg.forwardPortMax = static_cast<uint16_t>(high);
  return ok();
}

namespace {

// Whether a new forward's host port is one forwards may take: inside the
// configured range and not a host service's (PostgreSQL's, corrald's own).
Result<void> checkHostPort(const NetworkConfig& cfg, const std::string& text, uint16_t hostPort) {
  if (hostPort < cfg.forwardPortMin || hostPort > cfg.forwardPortMax)
    return Error::invalidInput("forward", text,
                               fmt::format("host port must be from {} to {}", cfg.forwardPortMin, cfg.forwardPortMax));
  if (cfg.reservedPorts.count(hostPort))
    return Error::invalidInput("forward", text, fmt::format("host port {} is reserved for this host's services", hostPort));
  return ok();
}

// Names no guest may answer to on a network's DNS: what clients look up to find
// their proxy or router, and the network's own names. Taking one would let a
// tenant's guest stand in for the gateway or a proxy for everyone on it.
Result<void> checkReservedHostname(const std::string& hostname, const store::NetworkRecord& net) {
  static const std::set<std::string> kReserved = {"wpad", "isatap", "gateway", "router", "proxy", "localhost"};
  if (kReserved.count(hostname) || hostname == lower(net.name) || hostname == lower(net.bridge))
    return Error::invalidInput("hostname", hostname,
                               fmt::format("is reserved on network {} (wpad, gateway, the network's own names ...)",
                                           net.name));
  return ok();
}

// A DNS domain: dot-separated hostname labels, at most 253 characters.
Result<void> checkDomain(const std::string& domain) {
  if (domain.size() > 253) return Error::invalidInput("domain", domain, "must be at most 253 characters");
  for (const auto& label : util::splitList(domain, '.')) {
    if (!util::validateHostname("domain", label).ok())
      return Error::invalidInput("domain", domain, "must be dot-separated labels of letters, digits and '-'");
  }
  if (domain.front() == '.' || domain.back() == '.' || domain.find("..") != std::string::npos)
    return Error::invalidInput("domain", domain, "must be dot-separated labels of letters, digits and '-'");
  return ok();
}

struct Pool {
  Ipv4Subnet subnet;
  Ipv4 start, end;
  std::optional<Ipv4> gateway;
  uint64_t size() const {
    uint64_t n = uint64_t{end.value} - start.value + 1;
    if (gateway && *gateway >= start && *gateway <= end) --n;
    return n;
  }
};

Result<Pool> poolOf(const store::NetworkRecord& net) {
  Pool p;
  p.subnet = CORRAL_TRY(util::parseIpv4Subnet("subnet", net.subnet));
  p.start = CORRAL_TRY(util::parseIpv4("pool_start", net.poolStart));
  p.end = CORRAL_TRY(util::parseIpv4("pool_end", net.poolEnd));
  if (!net.gateway.empty()) p.gateway = CORRAL_TRY(util::parseIpv4("gateway", net.gateway));
  return p;
}

bool usesPool(const store::NetworkRecord& net) { return net.mode == "nat" || net.mode == "bridged"; }

// Fills and checks the subnet, gateway and pool of a nat or bridged network.
Result<void> planAddresses(const NetworkRequest& req, store::NetworkRecord& net) {
  if (req.subnet.empty())
    return Error::invalidInput("subnet", "", fmt::format("a {} network needs a subnet", net.mode));
  Ipv4Subnet subnet = CORRAL_TRY(util::parseIpv4Subnet("subnet", req.subnet));
  std::optional<Ipv4> gw;
  if (!req.gateway.empty()) {
    gw = CORRAL_TRY(util::parseIpv4("gateway", req.gateway));
    if (!subnet.isHost(*gw)) return Error::invalidInput("gateway", req.gateway, "must be a host address of the subnet");
  } else if (net.mode == "nat") {
    gw = subnet.firstHost();
  }
  Ipv4 start = subnet.firstHost(), end = subnet.lastHost();
  if (!req.poolStart.empty()) {
    start = CORRAL_TRY(util::parseIpv4("pool_start", req.poolStart));
  } else if (gw && *gw == subnet.firstHost()) {
    start = Ipv4{gw->value + 1};
  }
  if (!req.poolEnd.empty()) end = CORRAL_TRY(util::parseIpv4("pool_end", req.poolEnd));
  if (!subnet.isHost(start))
    return Error::invalidInput("pool_start", start.str(), "must be a host address of the subnet");
  if (!subnet.isHost(end)) return Error::invalidInput("pool_end", end.str(), "must be a host address of the subnet");
  if (end < start) return Error::invalidInput("pool_end", end.str(), "must not come before pool_start");
  net.subnet = subnet.str();
  net.gateway = gw ? gw->str() : "";
  net.poolStart = start.str();
  net.poolEnd = end.str();
  if (Pool{subnet, start, end, gw}.size() == 0)
    return Error::invalidInput("pool_end", end.str(), "the pool holds no address but the gateway");
  return ok();
}

}  // namespace

Networks::Networks(store::Store& store, const host::StateDir& dir, NetworkConfig cfg)
    : store_(store), dir_(dir), cfg_(std::move(cfg)) {}

std::string Networks::tapName(int64_t vmId, const std::string& nicName) {
  return fmt::format("{}{}n{}", kTapPrefix, vmId, std::max(nicNumber(nicName), 0));
}

std::string Networks::nextNicName(const std::vector<store::NicRecord>& nics) {
  std::set<int> used;
  for (const auto& n : nics) used.insert(nicNumber(n.name));
  int i = 0;
  while (used.count(i)) ++i;
  return fmt::format("nic{}", i);
}

std::string Networks::networkDir(const store::NetworkRecord& net) const {
  return (dir_.root() / "networks" / net.name).string();
}

Result<store::NetworkRecord> Networks::find(const std::string& name) {
  auto net = CORRAL_TRY(store_.findNetwork(name));
  if (!net) return Error::notFound(fmt::format("network {} not found", name));
  return std::move(*net);
}

Result<store::NetworkRecord> Networks::create(const Principal& who, const NetworkRequest& req) {
  CORRAL_TRY(needAdmin(who, "create networks"));
  CORRAL_TRY(util::validateVmName("name", req.name));
  store::NetworkRecord net;
  net.name = req.name;
  net.mode = req.mode;
  net.description = req.description;
  if (net.mode != "user" && net.mode != "nat" && net.mode != "bridged")
    return Error::invalidInput("mode", req.mode, "must be user, nat or bridged");
  if (req.description.size() > 1000) return Error::invalidInput("description", "", "must be at most 1000 characters");
  auto others = CORRAL_TRY(store_.listNetworks());
  if (net.mode == "user") {
    for (auto [field, value] : {std::pair{"bridge", &req.bridge},
                                {"subnet", &req.subnet},
                                {"gateway", &req.gateway},
                                {"pool_start", &req.poolStart},
                                {"pool_end", &req.poolEnd},
                                {"domain", &req.domain}}) {
      if (!value->empty()) return Error::invalidInput(field, *value, "a user network has no such setting");
    }
    if (!req.dns.empty()) return Error::invalidInput("dns", util::joinList(req.dns), "a user network has no such setting");
    Ipv4 bind = CORRAL_TRY(util::parseIpv4("forward_bind", req.forwardBind.empty() ? "127.0.0.1" : req.forwardBind));
    net.forwardBind = bind.str();
  } else {
    if (!req.forwardBind.empty())
      return Error::invalidInput("forward_bind", req.forwardBind, "only user networks forward host ports");
    CORRAL_TRY(planAddresses(req, net));
    Ipv4Subnet mine = CORRAL_TRY(util::parseIpv4Subnet("subnet", net.subnet));
    for (const auto& o : others) {
      if (!usesPool(o)) continue;
      auto theirs = util::parseIpv4Subnet("subnet", o.subnet);
      if (theirs.ok() && theirs->overlaps(mine))
        return Error::invalidInput("subnet", net.subnet, fmt::format("overlaps network {} ({})", o.name, o.subnet));
    }
    for (const auto& d : req.dns) {
      Ipv4 ip = CORRAL_TRY(util::parseIpv4("dns", d));
      net.dns += (net.dns.empty() ? "" : ",") + ip.str();
    }
    if (net.dns.empty() && net.mode == "nat") net.dns = net.gateway;
    if (!req.domain.empty()) CORRAL_TRY(checkDomain(req.domain));
    net.domain = lower(req.domain);
    if (net.mode == "nat") {
      net.bridge = req.bridge;
      if (net.bridge.empty()) {
        for (int i = 0; net.bridge.empty(); ++i) {
          std::string candidate = fmt::format("crlbr{}", i);
          bool taken = host::net::linkExists(candidate) ||
                       std::any_of(others.begin(), others.end(), [&](auto& o) { return o.bridge == candidate; });
          if (!taken) net.bridge = candidate;
        }
      } else if (!host::net::validIfName(net.bridge) || net.bridge.rfind(kTapPrefix, 0) == 0) {
        return Error::invalidInput("bridge", net.bridge,
                                   "must be an interface name of 1-15 letters, digits, '-', '_' or '.', not crl...");
      } else if (host::net::linkExists(net.bridge)) {
        return Error::invalidInput("bridge", net.bridge, "exists on this host: a nat network makes its own bridge");
      }
    } else {
      if (req.bridge.empty()) return Error::invalidInput("bridge", "", "a bridged network needs the host's bridge");
      if (!host::net::validIfName(req.bridge))
        return Error::invalidInput("bridge", req.bridge, "must be an interface name of 1-15 characters");
      if (!host::net::isBridge(req.bridge))
        return Error::invalidInput("bridge", req.bridge, "is not a bridge on this host");
      net.bridge = req.bridge;
    }
    for (const auto& o : others) {
      if (o.bridge == net.bridge && (o.mode == "nat" || net.mode == "nat"))
        return Error::invalidInput("bridge", net.bridge, fmt::format("is network {}'s bridge", o.name));
    }
  }
  net.createdAt = store::nowRfc3339();
  auto created = CORRAL_TRY(store_.insertNetwork(net));
  if (created.mode == "nat") {
    std::lock_guard lock(hostMu_);
    auto up = bringUpNat(created);
    if (up.ok()) up = refreshFirewall();
    if (!up.ok()) {
      // Nothing half made: the row, the bridge and its dnsmasq go again.
      (void)host::net::stopDnsmasq(networkDir(created));
      (void)host::net::deleteLink(created.bridge);
      (void)store_.deleteNetwork(created.name);
      (void)refreshFirewall();
      return up.error().context(fmt::format("network {}", created.name));
    }
  }
  spdlog::info("network={} created mode={} bridge={} subnet={} pool={}-{} by={}", created.name, created.mode,
               created.bridge, created.subnet, created.poolStart, created.poolEnd, who.login);
  return created;
}

Result<std::vector<store::NetworkRecord>> Networks::list(const Principal&) { return store_.listNetworks(); }

Result<NetworkInfo> Networks::show(const Principal& who, const std::string& name) {
  NetworkInfo info;
  info.network = CORRAL_TRY(find(name));
  auto nics = CORRAL_TRY(store_.listNetworkNics(name));
  if (usesPool(info.network)) {
    Pool pool = CORRAL_TRY(poolOf(info.network));
    info.poolSize = pool.size();
  }
  for (const auto& n : nics)
    if (!n.ip.empty()) ++info.poolUsed;
  if (who.admin) info.nics = std::move(nics);
  return info;
}

Result<void> Networks::remove(const Principal& who, const std::string& name) {
  CORRAL_TRY(needAdmin(who, "delete networks"));
  auto net = CORRAL_TRY(find(name));
  CORRAL_TRY(store_.deleteNetwork(name));
  if (net.mode == "nat") {
    std::lock_guard lock(hostMu_);
    if (auto r = host::net::stopDnsmasq(networkDir(net)); !r.ok())
      spdlog::warn("network={}: cannot stop dnsmasq: {}", name, r.error().message);
    if (auto r = host::net::deleteLink(net.bridge); !r.ok())
      spdlog::warn("network={}: cannot delete bridge {}: {}", name, net.bridge, r.error().message);
    if (auto r = refreshFirewall(); !r.ok()) spdlog::warn("network={}: nftables: {}", name, r.error().message);
    std::error_code ec;
    fs::remove_all(networkDir(net), ec);
  }
  spdlog::info("network={} deleted by={}", name, who.login);
  return ok();
}

Result<void> Networks::bringUp() {
  auto nets = CORRAL_TRY(store_.listNetworks());
  std::lock_guard lock(hostMu_);
  for (const auto& net : nets) {
    if (net.mode == "nat") {
      if (auto r = bringUpNat(net); !r.ok())
        spdlog::error("network={}: cannot bring up: {}", net.name, r.error().describe());
    } else if (net.mode == "bridged" && !host::net::isBridge(net.bridge)) {
      spdlog::warn("network={}: bridge {} does not exist on this host: its VMs cannot start", net.name, net.bridge);
    }
  }
  return refreshFirewall();
}

Result<void> Networks::bringUpNat(const store::NetworkRecord& net) {
  Pool pool = CORRAL_TRY(poolOf(net));
  CORRAL_TRY(host::net::createBridge(net.bridge));
  CORRAL_TRY(host::net::addAddress(net.bridge, fmt::format("{}/{}", net.gateway, pool.subnet.prefix)));
  CORRAL_TRY(host::net::setLinkUp(net.bridge));
  CORRAL_TRY(host::net::enableIpv4Forwarding());
  // dnsmasq drops root and rereads its hosts files: the dirs down to them are
  // enterable by others (not listable).
  constexpr auto kEnterable = fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec;
  CORRAL_TRY(host::makeDir(dir_.root() / "networks", kEnterable));
  CORRAL_TRY(host::makeDir(networkDir(net), kEnterable));
  return refreshDnsmasq(net);
}

Result<void> Networks::refreshDnsmasq(const store::NetworkRecord& net) {
  host::net::DnsmasqConfig dc;
  dc.dir = networkDir(net);
  dc.bridge = net.bridge;
  dc.gateway = net.gateway;
  dc.subnet = net.subnet;
  dc.domain = net.domain;
  dc.dns = util::splitList(net.dns);
  for (const auto& n : CORRAL_TRY(store_.listNetworkNics(net.name))) dc.hosts.push_back({n.mac, n.ip, n.hostname});
  return host::net::updateDnsmasq(dc);  // starts one when none runs
}

Result<void> Networks::refreshFirewall() {
  std::vector<std::string> subnets;
  host::net::GuardSpec guard{.guestGid = cfg_.guestGid, .nat = {}};
  for (const auto& n : CORRAL_TRY(store_.listNetworks())) {
    if (n.mode != "nat") continue;
    subnets.push_back(n.subnet);
    guard.nat.push_back({.bridge = n.bridge, .subnet = n.subnet, .gateway = n.gateway});
  }
  CORRAL_TRY(host::net::applyNatRules(subnets));
  return host::net::applyGuardRules(guard);
}

Result<store::NicRecord> Networks::insertWithAddress(store::NicRecord nic, const store::NetworkRecord& net,
                                                     bool pickIp) {
  bool pickMac = nic.mac.empty();
  for (int attempt = 0;; ++attempt) {
    if (pickMac) nic.mac = randomMac();
    if (pickIp) {
      Pool pool = CORRAL_TRY(poolOf(net));
      std::set<uint32_t> used;
      for (const auto& n : CORRAL_TRY(store_.listNetworkNics(net.name))) {
        auto ip = util::parseIpv4("ip", n.ip);
        if (ip.ok()) used.insert(ip->value);
      }
      if (pool.gateway) used.insert(pool.gateway->value);
      nic.ip.clear();
      for (uint64_t a = pool.start.value; a <= pool.end.value; ++a) {
        if (!used.count(static_cast<uint32_t>(a))) {
          nic.ip = Ipv4{static_cast<uint32_t>(a)}.str();
          break;
        }
      }
      if (nic.ip.empty())
        return Error::invalidInput("network", net.name,
                                   fmt::format("has no free address: all {} addresses of its pool {}-{} are in use",
                                               pool.size(), net.poolStart, net.poolEnd));
    }
    auto inserted = store_.insertNic(nic);
    if (inserted.ok()) return inserted;
    const Error& e = inserted.error();
    bool lostRace =
        e.code == ErrorCode::AlreadyExists && ((e.field == "ip" && pickIp) || (e.field == "mac" && pickMac));
    if (!lostRace || attempt + 1 >= kInsertAttempts) {
      if (e.code == ErrorCode::AlreadyExists && e.field == "hostname")
        return Error::alreadyExists("hostname", nic.hostname,
                                    fmt::format("hostname {} is taken on network {}", nic.hostname, net.name));
      if (e.code == ErrorCode::AlreadyExists && e.field == "ip")
        return Error::alreadyExists("ip", nic.ip, fmt::format("address {} is taken on network {}", nic.ip, net.name));
      return inserted.error();
    }
  }
}

Result<store::NicRecord> Networks::attach(const store::VmRecord& vm, const NicRequest& req,
                                          const std::string& nicName) {
  std::string netName = req.network.empty() ? cfg_.defaultNetwork : req.network;
  if (netName.empty()) return Error::invalidInput("network", "", "name a network (no default network is configured)");
  CORRAL_TRY(util::validateVmName("network", netName));
  auto found = CORRAL_TRY(store_.findNetwork(netName));
  if (!found) return Error::invalidInput("network", netName, "no such network");
  const store::NetworkRecord& net = *found;

  store::NicRecord nic;
  nic.vmId = vm.id;
  nic.vm = vm.name;
  nic.name = nicName;
  nic.networkId = net.id;
  nic.network = net.name;
  nic.model = req.model.empty() ? "virtio-net" : req.model;
  if (nic.model != "virtio-net" && nic.model != "e1000")
    return Error::invalidInput("model", req.model, "must be virtio-net or e1000");
  if (!req.mac.empty()) nic.mac = CORRAL_TRY(checkMac(req.mac));
  nic.createdAt = store::nowRfc3339();

  if (net.mode == "user") {
    if (!req.ip.empty()) return Error::invalidInput("ip", req.ip, "a user network gives no pool address");
    if (!req.hostname.empty()) return Error::invalidInput("hostname", req.hostname, "a user network has no hostnames");
    std::vector<Forward> forwards;
    for (const auto& text : req.forwards) {
      forwards.push_back(CORRAL_TRY(parseForward(text)));
      CORRAL_TRY(checkHostPort(cfg_, text, forwards.back().hostPort));
    }
    // One host port per protocol on this host, whichever VM holds it: QEMU
    // would only find out when the second guest starts.
    auto all = CORRAL_TRY(store_.listAllNics());
    std::set<std::string> taken;
    for (const auto& other : all)
      for (const auto& text : util::splitList(other.forwards)) {
        auto f = parseForward(text);
        if (f.ok()) taken.insert(fmt::format("{}:{}", f->proto, f->hostPort));
      }
    std::vector<std::string> canonical;
    for (const auto& f : forwards) {
      std::string key = fmt::format("{}:{}", f.proto, f.hostPort);
      if (!taken.insert(key).second)
        return Error::alreadyExists("forward", fmt::format("{}:{}:{}", f.proto, f.hostPort, f.guestPort),
                                    fmt::format("host port {} ({}) is already forwarded", f.hostPort, f.proto));
      canonical.push_back(fmt::format("{}:{}:{}", f.proto, f.hostPort, f.guestPort));
    }
    nic.forwards = util::joinList(canonical);
    return insertWithAddress(nic, net, /*pickIp=*/false);
  }

  if (!req.forwards.empty())
    return Error::invalidInput("forward", req.forwards.front(), "only user networks forward host ports");
  std::string hostname = req.hostname;
  if (hostname.empty()) hostname = nicNumber(nicName) == 0 ? vm.name : fmt::format("{}-{}", vm.name, nicName);
  CORRAL_TRY(util::validateHostname("hostname", hostname));
  nic.hostname = lower(hostname);
  CORRAL_TRY(checkReservedHostname(nic.hostname, net));
  bool pickIp = req.ip.empty();
  if (!pickIp) {
    Ipv4 ip = CORRAL_TRY(util::parseIpv4("ip", req.ip));
    Pool pool = CORRAL_TRY(poolOf(net));
    if (ip < pool.start || ip > pool.end || (pool.gateway && ip == *pool.gateway))
      return Error::invalidInput(
          "ip", req.ip, fmt::format("must be in the pool of network {} ({}-{})", net.name, net.poolStart, net.poolEnd));
    nic.ip = ip.str();
  }
  auto inserted = CORRAL_TRY(insertWithAddress(nic, net, pickIp));
  if (net.mode == "nat") {
    std::lock_guard lock(hostMu_);
    if (auto r = refreshDnsmasq(net); !r.ok()) {
      (void)store_.deleteNic(inserted.id);
      return r.error().context(fmt::format("network {}: dnsmasq", net.name));
    }
  }
  spdlog::info("vm={} nic={} on network={} mac={} ip={} hostname={}", vm.name, inserted.name, net.name, inserted.mac,
               inserted.ip, inserted.hostname);
  return inserted;
}

Result<void> Networks::detach(const store::NicRecord& nic) {
  CORRAL_TRY(store_.deleteNic(nic.id));
  forget({nic});
  return ok();
}

void Networks::forget(const std::vector<store::NicRecord>& nics) {
  std::set<std::string> names;
  for (const auto& n : nics)
    if (!n.ip.empty()) names.insert(n.network);
  for (const auto& name : names) {
    auto net = store_.findNetwork(name);
    if (!net.ok() || !*net || (*net)->mode != "nat") continue;
    std::lock_guard lock(hostMu_);
    if (auto r = refreshDnsmasq(**net); !r.ok())
      spdlog::warn("network={}: dnsmasq after removing NICs: {}", name, r.error().message);
  }
}

Result<std::vector<PreparedNic>> Networks::prepare(const store::VmRecord& vm,
                                                   const std::vector<store::NicRecord>& nics) {
  std::vector<PreparedNic> out;
  std::map<std::string, store::NetworkRecord> nets;
  for (const auto& rec : nics) {
    if (!nets.count(rec.network)) nets.emplace(rec.network, CORRAL_TRY(find(rec.network)));
    const store::NetworkRecord& net = nets.at(rec.network);
    PreparedNic p;
    p.nic.id = rec.name;
    p.nic.model = rec.model == "e1000" ? qemu::NicModel::E1000 : qemu::NicModel::VirtioNet;
    p.nic.mac = rec.mac;
    if (net.mode == "user") {
      for (const auto& text : util::splitList(rec.forwards)) {
        Forward f = CORRAL_TRY(parseForward(text));
        p.nic.forwards.push_back(
            {.proto = f.proto, .hostAddr = net.forwardBind, .hostPort = f.hostPort, .guestPort = f.guestPort});
      }
      out.push_back(std::move(p));
      continue;
    }
    if (!host::net::isBridge(net.bridge))
      return Error::failedPrecondition(fmt::format(
          "NIC {} is on network {}, whose bridge {} does not exist on this host", rec.name, net.name, net.bridge));
    std::string ifname = tapName(vm.id, rec.name);
    (void)host::net::deleteLink(ifname);  // a stale one from a crash
    host::net::Tap tap = CORRAL_TRY(host::net::openTap(ifname));
    CORRAL_TRY(host::net::setMaster(ifname, net.bridge));
    if (cfg_.vhostNet && p.nic.model == qemu::NicModel::VirtioNet && host::net::vhostNetUsable()) {
      auto vhost = host::net::openVhostNet();
      if (vhost.ok()) {
        p.vhost = std::move(vhost).take();
      } else {
        spdlog::warn("vm={} nic={}: vhost-net: {}", vm.name, rec.name, vhost.error().message);
      }
    }
    if (!cfg_.hookScript.empty()) {
      host::net::NicHookEnv env{.instance = vm.name,
                                .mac = rec.mac,
                                .mode = net.mode,
                                .interface = ifname,
                                .ip = rec.ip,
                                .link = net.bridge,
                                .bridge = net.bridge,
                                .tags = "",
                                .interfaceIndex = tap.ifindex};
      // The admin's hook said no: the start fails, saying so (not an internal error).
      if (auto hooked = host::net::runNicHook(cfg_.hookScript, env, cfg_.hookTimeout); !hooked.ok())
        return Error::failedPrecondition(fmt::format("NIC {}: the network hook failed: {}", rec.name,
                                                     hooked.error().message));
    }
    p.nic.tapFd = tap.fd.get();
    p.nic.vhostFd = p.vhost ? p.vhost.get() : -1;
    p.nic.tapName = ifname;
    p.tap = std::move(tap);
    out.push_back(std::move(p));
  }
  return out;
}

void Networks::removeTaps(int64_t vmId) {
  std::string prefix = fmt::format("{}{}n", kTapPrefix, vmId);
  for (const auto& link : host::net::listLinks()) {
    if (link.rfind(prefix, 0) != 0 || nicNumber("nic" + link.substr(prefix.size())) < 0) continue;
    if (auto r = host::net::deleteLink(link); !r.ok())
      spdlog::warn("cannot delete tap {}: {}", link, r.error().message);
  }
}

void Networks::removeStaleTaps(const std::set<int64_t>& liveVmIds) {
  for (const auto& link : host::net::listLinks()) {
    if (link.rfind(kTapPrefix, 0) != 0) continue;
    size_t n = link.find('n', kTapPrefix.size());
    if (n == std::string::npos) continue;
    int64_t id = 0;
    auto [p, ec] = std::from_chars(link.data() + kTapPrefix.size(), link.data() + n, id);
    if (ec != std::errc{} || p != link.data() + n || nicNumber("nic" + link.substr(n + 1)) < 0) continue;
    if (liveVmIds.count(id)) continue;
    spdlog::info("removing tap {} left by a VM that is not running", link);
    if (auto r = host::net::deleteLink(link); !r.ok())
      spdlog::warn("cannot delete tap {}: {}", link, r.error().message);
  }
}

}  // namespace corral::core
