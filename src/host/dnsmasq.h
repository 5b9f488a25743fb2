// DHCP and DNS for a `nat` network: one dnsmasq (Debian's dnsmasq-base,
// /usr/sbin/dnsmasq) per network, bound only to the network's bridge, handing
// out static leases to the NICs corral knows and answering their hostnames.
//
// Everything of one network's dnsmasq lives in that network's own state dir DIR:
//   DIR/dnsmasq.conf     the whole configuration (/etc/dnsmasq.conf and
//                        /etc/dnsmasq.d are never read; neither is /etc/hosts)
//   DIR/dhcp-hosts       "MAC,IP,HOSTNAME" per NIC: the only clients given an address
//   DIR/hosts            "IP HOSTNAME.DOMAIN HOSTNAME" per NIC, answered by DNS
//   DIR/dnsmasq.pid      written by dnsmasq itself
//   DIR/dnsmasq.leases   dnsmasq's lease database
//   DIR/dnsmasq.log      dnsmasq's log (no syslog)
//   DIR/dnsmasq.stderr   what dnsmasq said while starting (why it refused to)
//
// dnsmasq daemonizes itself (own session, pidfile), so like corral's QEMUs it
// outlives a corrald restart; the pidfile and /proc/PID/cmdline (the program is
// dnsmasq and its --conf-file is DIR/dnsmasq.conf) find it again.
//
// Privileges: dnsmasq starts as root (to bind port 53 and 67 on the bridge),
// then drops to the user `dnsmasq` (made by dnsmasq-base; `nobody` where it is
// missing) with that user's primary group. It rereads DIR/dhcp-hosts and
// DIR/hosts on SIGHUP as that user, so those two files are 0644 and DIR is made
// searchable by others (o+x; it is never made listable); every directory above
// DIR must already be searchable by others, or start fails with
// FailedPrecondition naming the one that is not. None of these files holds a
// secret: MACs, addresses and hostnames of one network.
//
// Values come from core/ already validated; they are checked again here (MACs,
// dotted quads inside the subnet, hostnames [a-z0-9-], a DNS domain) and a
// newline or a comma anywhere is refused (InvalidInput naming the field), since
// either would let a value write another line or field of dnsmasq's files.
//
// Threads: calls for one DIR must not overlap (core/ serialises a network's
// changes); calls for different DIRs may run at once.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "util/result.h"

namespace corral::host::net {

struct DhcpHost {
  std::string mac;       // "52:54:00:12:34:56"
  std::string ip;        // inside the subnet, not the gateway
  std::string hostname;  // a DNS label [a-z0-9-], 1..63
};

struct DnsmasqConfig {
  std::string dir;               // the network's own state dir (exists, absolute); see above
  std::string bridge;            // the interface dnsmasq serves (it must have `gateway` as an address)
  std::string gateway;           // the bridge's own address: the router handed to guests
  std::string subnet;            // "10.77.0.0/24"
  std::string domain;            // "corral.lan"; "" for none
  std::vector<std::string> dns;  // resolvers handed to guests; empty: the gateway itself (this dnsmasq)
  std::vector<DhcpHost> hosts;   // static leases: only these MACs get an address (no dynamic range)
};

// The text of DIR/dnsmasq.conf for cfg (validated first). Exposed for tests.
Result<std::string> dnsmasqConfText(const DnsmasqConfig& cfg);

// Writes DIR's files and starts dnsmasq, stopping first any dnsmasq that DIR's
// pidfile names (a restart). Returns once dnsmasq listens and has written its
// pidfile; an Error with dnsmasq's own message when it refused to start (e.g.
// the bridge lacks the gateway's address, or port 53 there is taken). Blocks
// for up to ~15 s.
Result<void> startDnsmasq(const DnsmasqConfig& cfg);

// Brings the running dnsmasq in line with cfg: when only the hosts changed, it
// rewrites DIR/dhcp-hosts and DIR/hosts atomically and sends SIGHUP (dnsmasq
// rereads them and forgets its DNS cache); when anything else changed
// (dnsmasq.conf differs) or none is running, it does startDnsmasq(cfg).
Result<void> updateDnsmasq(const DnsmasqConfig& cfg);

// Stops DIR's dnsmasq (TERM, KILL after 5 s) and waits until it is gone;
// removes the pidfile. Ok when none runs; never signals a process that is not
// DIR's dnsmasq (a stale pidfile naming a reused pid).
Result<void> stopDnsmasq(const std::string& dir);

// The pid of DIR's live dnsmasq: the pidfile's pid, not a zombie, running
// dnsmasq with DIR's conf file (checked in /proc, never with kill(pid, 0)).
std::optional<pid_t> dnsmasqPid(const std::string& dir);

}  // namespace corral::host::net
