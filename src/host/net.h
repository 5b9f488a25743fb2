// This host's network plumbing for guests' NICs: tap devices (opened here and
// handed to QEMU as fds), Linux bridges, vhost-net, interface counters, IPv4
// forwarding, the nftables masquerade of `nat` networks, and the per-NIC hook
// script an operator may install (as Ganeti's kvm-ifup).
//
// Everything acts on the *calling thread's* network namespace: reads go through
// if_nametoindex()/if_nameindex(), ioctls and rtnetlink sockets, writes through
// iproute2's `ip` and `nft` (found in /usr/sbin, /sbin, /usr/bin, /bin) started with
// util::Command, which inherit the namespace. Nothing reads /sys/class/net: that
// shows the namespace of whoever mounted /sys, not the caller's.
//
// What it leaves to others: which networks and NICs exist and their addresses
// (core/), DHCP and DNS for `nat` networks (host/dnsmasq.h), QEMU's -netdev
// options (qemu/). Names reaching here were validated by core/; every function
// still refuses an invalid interface name (InvalidInput, field "interface").
//
// Threads: every function may be called from any thread; they share no state
// except vhostNetUsable()'s cached probe (computed once, thread-safe). Two
// callers changing the same link at once get whatever the kernel's order gives.
// The caller needs CAP_NET_ADMIN (corrald runs as root).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "util/unique_fd.h"

namespace corral::host::net {

// ---- names and addresses

// Interface names: 1..15 chars (IFNAMSIZ - 1) of [A-Za-z0-9_.-], not "." or "..".
bool validIfName(std::string_view name);

// Addresses and subnets: util/ipv4.h.

// ---- links (all in the calling thread's network namespace)

bool linkExists(const std::string& name);
std::vector<std::string> listLinks();    // every link's name, in ifindex order
bool isBridge(const std::string& name);  // false when absent
// The bridge `name` is enslaved to, "" when none; NotFound when `name` is absent.
Result<std::string> linkMaster(const std::string& name);

// Makes a Linux bridge (STP off, forwarding delay 0, so a new port forwards at
// once) and sets it up. Idempotent: an existing bridge is only set up.
// FailedPrecondition when `name` exists and is not a bridge.
Result<void> createBridge(const std::string& name);
// Removes the link; ok when it is absent.
Result<void> deleteLink(const std::string& name);
// Sets the link administratively up. NotFound when absent.
Result<void> setLinkUp(const std::string& name);
// Enslaves `link` to the bridge `bridge`. NotFound when either is absent,
// FailedPrecondition when `bridge` is not a bridge.
Result<void> setMaster(const std::string& link, const std::string& bridge);
// Gives `link` the address `cidr` ("10.77.0.1/24"); idempotent (an address
// already there is kept). InvalidInput (field "address") for a bad cidr.
Result<void> addAddress(const std::string& link, const std::string& cidr);

// ---- taps and vhost-net

// A tap opened for one NIC. The tap lives as long as `fd` (and any copy of it
// in QEMU) stays open: it is not persistent, so the kernel removes it when the
// last descriptor closes.
struct Tap {
  util::UniqueFd fd;  // O_CLOEXEC; util::Command::passFd() clears that in the child
  std::string name;
  int ifindex = 0;
  bool vnetHdr = false;  // opened with IFF_VNET_HDR (QEMU reads this back from the fd)
};
// Creates the tap `name` through /dev/net/tun with IFF_TAP | IFF_NO_PI, plus
// IFF_VNET_HDR when TUNGETFEATURES says the kernel supports it, and sets it up.
// AlreadyExists (field "interface") when a link of that name exists: attaching
// to someone else's (possibly persistent) tap is never what the caller wants.
// Unavailable when /dev/net/tun cannot be opened.
Result<Tap> openTap(const std::string& name);

// Whether vhost-net can accelerate guests' NICs: /dev/vhost-net opens O_RDWR and
// answers VHOST_GET_FEATURES. VHOST_SET_OWNER is never called: QEMU, which gets
// the fd, does that. Probed once per process; later calls return the cached answer.
bool vhostNetUsable();
// A fresh O_CLOEXEC descriptor of /dev/vhost-net for one NIC (pass it to QEMU as
// vhostfd=). Unavailable when it cannot be opened.
Result<util::UniqueFd> openVhostNet();

// ---- counters and forwarding

// The kernel's 64-bit counters of a link (rtnetlink IFLA_STATS64), seen from
// the host: on a tap, rx is what the guest sent and tx what it was sent.
struct LinkStats {
  uint64_t rxBytes = 0, txBytes = 0, rxPackets = 0, txPackets = 0, rxErrors = 0, txErrors = 0, rxDropped = 0,
           txDropped = 0;
};
// NotFound when the link is absent.
Result<LinkStats> linkStats(const std::string& name);

// Writes 1 to /proc/sys/net/ipv4/ip_forward (a per-namespace setting: the
// calling thread's namespace).
Result<void> enableIpv4Forwarding();

// ---- nftables

// The nft script applyNatRules() feeds to `nft -f -`. Exposed for tests and for
// an operator's report. Subnets are normalized (host bits cleared), deduplicated
// and sorted; InvalidInput (field "subnet") for a bad one.
Result<std::string> natRulesScript(const std::vector<std::string>& subnets);
// Replaces, in one nft transaction, the table `ip corral` that holds everything
// corral adds to the firewall: for each subnet, a masquerade of traffic from it
// to anywhere outside it (chain `postrouting`, nat hook), and in chain `forward`
// (filter hook, policy accept) an accept of traffic from it and of established
// or related traffic back to it. An empty list removes the table (ok when absent).
//
// nftables runs every base chain of every table: an accept here does not
// override a drop in another table (an iptables FORWARD policy DROP, a
// firewall's own table). Hosts with such a firewall must let these subnets
// through there too; the operator's documentation says so.
Result<void> applyNatRules(const std::vector<std::string>& subnets);

// What keeps guests off the host and away from each other (table `inet
// corral_guard`, apart from the masquerade table above):
//  - every QEMU runs with the group guestGid, and whatever a socket of that group
//    sends to one of this host's own addresses (the slirp of a user-mode NIC
//    turns the guest's 10.0.2.2 into 127.0.0.1) is refused at once (TCP reset,
//    else ICMP admin-prohibited), except DNS (port 53: slirp forwards the guest's
//    queries to the host's resolver, which may be local); so is whatever it sends
//    into a nat network's subnet (another tenant's guests);
//  - a nat network's guests reach this host only for DHCP (udp 67), DNS on their
//    gateway (53) and ping; replies to what the host opened still come back;
//  - guests on two different nat networks cannot reach each other.
struct GuardNetwork {
  std::string bridge;   // a valid interface name
  std::string subnet;   // "10.77.0.0/24"
  std::string gateway;  // the host's address on the bridge, "10.77.0.1"
};
struct GuardSpec {
  gid_t guestGid = 0;
  std::vector<GuardNetwork> nat;
};
// The nft script applyGuardRules() feeds to `nft -f -`. InvalidInput naming the
// field ("interface", "subnet", "gateway", "guest_gid") for a bad entry; gid 0
// (root's group, which corrald itself runs with) is refused.
Result<std::string> guardRulesScript(const GuardSpec& spec);
// Replaces the table `inet corral_guard` in one nft transaction (the old rules
// hold until the new ones do).
Result<void> applyGuardRules(const GuardSpec& spec);

// ---- the NIC hook

// What a NIC hook script is told, one environment variable each (Ganeti's
// kvm-ifup names): INSTANCE, MAC, MODE (user|nat|bridged), INTERFACE (the tap),
// INTERFACE_INDEX, IP, LINK (the network's name), BRIDGE, TAGS (space-separated).
// Every variable is set, empty when it has no value; PATH=/usr/sbin:/usr/bin:/sbin:/bin
// is the only other one.
struct NicHookEnv {
  std::string instance, mac, mode, interface, ip, link, bridge, tags;
  int interfaceIndex = 0;
};
// Runs `script` (an absolute path to an executable regular file; InvalidInput,
// field "nic_hook", otherwise) with no arguments, exactly the environment above,
// stdin /dev/null and its stdout and stderr captured together. Killed (TERM,
// then KILL) after `timeout`: Timeout. A non-zero exit: an Internal error naming
// the script, its status and the tail of its output. Failures are also logged.
// Blocks for up to `timeout` (+ 2 s for a hook ignoring TERM).
Result<void> runNicHook(const std::string& script, const NicHookEnv& env, std::chrono::milliseconds timeout);

}  // namespace corral::host::net
