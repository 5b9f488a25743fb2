// The cloud-init NoCloud seed of a VM: a small ISO 9660 CD (volume id
// "cidata", Joliet and Rock Ridge) holding meta-data (instance-id, hostname),
// user-data (#cloud-config: hostname, fqdn, the owner's SSH public keys) and
// network-config (version 2: each NIC matched by MAC, its static address,
// default route and resolvers, or DHCP), which cloud-init in the guest reads on
// boot.
//
// Every string value is written as a JSON string (YAML 1.2 is a superset of
// JSON, and PyYAML reads JSON strings too), escaped to ASCII, and every key is
// fixed text: no value given here, whatever it holds (quotes, newlines, "#",
// "!!python/object"), can end its scalar, add a key or a tag. Values are still
// expected validated by core/ (hostnames, MACs, addresses, keys); this file
// guarantees only that they stay the values they are.
//
// The ISO is made by xorriso (Debian's xorriso) through util::Command. What it
// leaves to others: which VM gets which seed and attaching it as a CD (core/,
// qemu/); where the seed lives (the VM's state dir).
//
// Threads: the render functions are pure. writeSeedIso calls for the same path
// must not overlap (core/ serialises a VM's changes); different paths may.
#pragma once

#include <string>
#include <vector>

#include "util/result.h"

namespace corral::host {

struct SeedNic {
  std::string name;                 // the NIC's id in network-config, e.g. "nic0"; "" = "nic<index>"
  std::string mac;                  // "52:54:00:12:34:56" (written lowercase)
  std::string address;              // CIDR "10.77.0.5/24"; "" = DHCP
  std::string gateway;              // "10.77.0.1"; "" = no default route
  std::vector<std::string> dns;     // resolvers
  std::vector<std::string> search;  // search domains
};

struct SeedConfig {
  std::string instanceId;  // changes when the guest should re-run first-boot steps
  std::string hostname;
  std::string fqdn;                  // "" = none
  std::vector<std::string> sshKeys;  // whole OpenSSH public key lines
  std::vector<SeedNic> nics;
};

// "instance-id: ...\nlocal-hostname: ...\n"
std::string renderMetaData(const SeedConfig& cfg);
// "#cloud-config\n" then hostname, fqdn (when set), manage_etc_hosts and
// ssh_authorized_keys (an empty list when there are no keys).
std::string renderUserData(const SeedConfig& cfg);
// network-config version 2: "ethernets" with one entry per NIC, matched by
// macaddress; a static one has dhcp4 false, its address, a default route via
// the gateway when there is one and its nameservers; a DHCP one has dhcp4 true
// (and nameservers when given).
std::string renderNetworkConfig(const SeedConfig& cfg);

// Writes the seed ISO at `path` (its directory must exist), mode 0644: no
// secret is in it, and the VM's QEMU must read it. The three files are built
// in a private temporary directory beside path (removed afterwards), the ISO
// is made there and renamed over path, so that a reader sees the old seed or
// the new one, never half of one. A digest of what the ISO holds is kept in
// path + ".digest"; when path exists and the digest matches, nothing is done
// and the answer is false (the ISO, its mtime included, is left alone). true
// when the ISO was (re)written. InvalidInput for an empty instance id or
// hostname or a NIC without a MAC; Internal when xorriso or the file system fails.
Result<bool> writeSeedIso(const SeedConfig& cfg, const std::string& path);

}  // namespace corral::host
