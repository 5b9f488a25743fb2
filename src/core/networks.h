// Networks: the rules of admin-defined networks and of VMs' NICs on them.
//
// A network is `user` (QEMU user-mode networking: no privilege, host port
// forwards bound to the network's forward address), `nat` (a bridge corral
// makes, with the gateway address, dnsmasq handing out the pool's addresses as
// static leases and answering the hostnames, nftables masquerade out) or
// `bridged` (taps on an existing host bridge, the pool's addresses on the LAN).
//
// Every NIC of a nat or bridged network holds one pool address and a hostname,
// each unique per network (the store's constraints decide races), released
// when the NIC goes. At start the VM's taps are opened here (host/net), enslaved
// to the bridge, passed to QEMU by fd, and given to the admin's hook script.
// Taps die with their QEMU (they are not persistent); removeStaleTaps clears any
// that a crash or an unclean exit left.
//
// Admins create and delete networks; everyone may list and use them.
//
// Guests reach the outside world, never this host's own services (beyond DHCP
// and DNS) nor another nat network: see host::net::GuardSpec, applied at start
// and whenever a nat network comes or goes.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/principal.h"
#include "host/net.h"
#include "host/state_dir.h"
#include "qemu/vm_spec.h"
#include "store/store.h"
#include "util/result.h"
#include "util/unique_fd.h"

namespace corral::core {

struct NetworkConfig {
  // Run once per tap NIC at each start, with INSTANCE, MAC, MODE, INTERFACE,
  // INTERFACE_INDEX, IP, LINK, BRIDGE and TAGS set (as Ganeti's kvm-ifup); a
  // failure fails the start. "": none.
  std::string hookScript;
  std::chrono::milliseconds hookTimeout{10000};
  bool vhostNet = true;                    // vhost-net for virtio NICs when /dev/vhost-net works
  std::string defaultNetwork = "default";  // a new VM's NIC when its create names none; "" none
  // The group every QEMU runs with (uid stays root until per-guest uids come):
  // the firewall (host::net::applyGuardRules) refuses what sockets of this group
  // open towards the host's own addresses and other nat networks. No account or
  // group may have it (corrald refuses to start otherwise).
  gid_t guestGid = kDefaultGuestGid;
  static constexpr gid_t kDefaultGuestGid = 199999;
  // Host ports a user-mode forward may take (`forward_ports`, "1024-65535"), and
  // ports it never may whatever the range: PostgreSQL's 5432 always, and what
  // corrald adds at start (its own TLS port, the --db URL's port).
  uint16_t forwardPortMin = 1024;
  uint16_t forwardPortMax = 65535;
  std::set<uint16_t> reservedPorts{5432};
};

// "LOW-HIGH" (e.g. "20000-29999") into cfg's forward port range: InvalidInput on
// field "forward_ports" unless 1 <= LOW <= HIGH <= 65535.
Result<void> parseForwardPorts(std::string_view text, NetworkConfig& cfg);

struct NetworkRequest {
  std::string name;
  std::string mode;              // user | nat | bridged
  std::string bridge;            // nat: "" picks crlbrN; bridged: the host's bridge
  std::string subnet;            // nat/bridged: "10.77.0.0/24"
  std::string gateway;           // nat: "" = the first host; bridged: the LAN's router, "" none
  std::string poolStart;         // "" = after the gateway / the first host
  std::string poolEnd;           // "" = the last host
  std::vector<std::string> dns;  // nat: "" = the gateway (dnsmasq)
  std::string domain;            // DNS domain of the hostnames ("" none)
  std::string forwardBind;       // user: "" = 127.0.0.1
  std::string description;
};

struct NicRequest {
  std::string network;                // "": the configured default network
  std::string model;                  // "": virtio-net
  std::string mac;                    // "": generated (52:54:00 + 3 random bytes)
  std::string ip;                     // "": the lowest free address of the pool
  std::string hostname;               // "": the VM's name for nic0, VM-nicN for the others
  std::vector<std::string> forwards;  // user networks: "tcp:2222:22", "udp:5353:53"
};

// What `network show` tells: the network, how full its pool is, and (for
// admins) every NIC on it.
struct NetworkInfo {
  store::NetworkRecord network;
  uint64_t poolSize = 0;  // 0 on user networks
  uint64_t poolUsed = 0;
  std::vector<store::NicRecord> nics;  // admins only
};

// One NIC made ready for a launch: its QEMU view and the fds it borrows (they
// stay open until the launch returns, then close: the tap lives on in QEMU).
struct PreparedNic {
  qemu::Nic nic;
  std::optional<host::net::Tap> tap;
  util::UniqueFd vhost;
};

class Networks {
 public:
  Networks(store::Store& store, const host::StateDir& dir, NetworkConfig cfg);

  // At daemon start: every nat network's bridge, address and dnsmasq, the
  // masquerade rules and the guard rules (which user-mode guests need too: a
  // failure to install them fails the start); a bridged network whose bridge is
  // missing is logged.
  Result<void> bringUp();

  Result<store::NetworkRecord> create(const Principal& who, const NetworkRequest& req);
  Result<std::vector<store::NetworkRecord>> list(const Principal& who);
  Result<NetworkInfo> show(const Principal& who, const std::string& name);
  // Refused while any VM has a NIC on it; a nat network's dnsmasq, bridge and rules go.
  Result<void> remove(const Principal& who, const std::string& name);

  // Under the VM's lock. attach validates req, allocates the MAC, address and
  // hostname and records the NIC (errors name the field; nothing is left
  // behind); detach releases them.
  Result<store::NicRecord> attach(const store::VmRecord& vm, const NicRequest& req, const std::string& nicName);
  Result<void> detach(const store::NicRecord& nic);
  // After NIC rows went with their VM (the store cascades): dnsmasq forgets them.
  void forget(const std::vector<store::NicRecord>& nics);
  // The NICs' QEMU views for a start: taps opened, enslaved and hooked.
  Result<std::vector<PreparedNic>> prepare(const store::VmRecord& vm, const std::vector<store::NicRecord>& nics);
  // Deletes the taps of a VM whose QEMU is gone (normally already gone with it).
  void removeTaps(int64_t vmId);
  // Deletes every corral tap whose VM is not in liveVmIds (reconcile).
  void removeStaleTaps(const std::set<int64_t>& liveVmIds);
  Result<store::NetworkRecord> find(const std::string& name);
  const NetworkConfig& config() const { return cfg_; }

  // "crl<vm id>n<nic number>": at most 15 characters for ids below 10^10.
  static std::string tapName(int64_t vmId, const std::string& nicName);
  // The next free "nicN" of a VM with these NICs.
  static std::string nextNicName(const std::vector<store::NicRecord>& nics);

 private:
  Result<void> bringUpNat(const store::NetworkRecord& net);
  Result<void> refreshDnsmasq(const store::NetworkRecord& net);
  Result<void> refreshFirewall();  // the masquerade and guard tables from the store
  std::string networkDir(const store::NetworkRecord& net) const;
  Result<store::NicRecord> insertWithAddress(store::NicRecord nic, const store::NetworkRecord& net, bool pickIp);

  store::Store& store_;
  const host::StateDir& dir_;
  NetworkConfig cfg_;
  std::mutex hostMu_;  // serialises changes to bridges, dnsmasq and nftables
};

}  // namespace corral::core
