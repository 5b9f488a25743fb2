// corral.metadata/v1: what corral records about each VM so that, a year later,
// anyone can tell how and by what it was made (DESIGN.md, Lineage: Nova's
// metadata in libvirt XML). Two halves:
//
//  - creation facts (CreationFacts), frozen at create in the store
//    (VmRecord::creation): when, by whom and how they came, which corral, and the
//    root image as it was then (name, id, sha256);
//  - current facts, filled at every launch: name, uuid, description, flavour
//    (memory, vCPUs, disks), owner, administrator, node, the corral running it.
//
// VmMetadata is written into each guest's runtime record (qemu::RuntimeRecord::
// metadata), shown by `corral vm dump`, and reaches the guest as SMBIOS type 11
// OEM strings "corral.<key>=<value>" (oemStrings()).
//
// The schema only ever grows. Parsing never fails: a missing field takes its
// default (a record written by an older corral, or none at all), and every key
// it does not know (a newer corral's) is kept and written back unchanged.
// Pure functions of their inputs; no I/O here (core/vm_dump.cc and
// VmManager::startLocked gather the inputs).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/principal.h"
#include "store/store.h"

namespace corral::core {

inline constexpr const char* kMetadataSchema = "corral.metadata/v1";

struct CreationFacts {
  std::string createdAt;      // RFC 3339
  std::string creatorLogin;   // who made it
  std::string creatorVia;     // how they came: unix | token | session | cert | proxy
  std::string corralVersion;  // the corral that made it
  std::string corralCommit;
  std::string imageName;  // the root image as it was at create
  int64_t imageId = 0;
  std::string imageSha256;                        // "" for images without one (direct-boot)
  nlohmann::json raw = nlohmann::json::object();  // as parsed: keeps keys this version does not know

  // The facts of a create by `who` from `image`, with this build's version.
  static CreationFacts atCreate(const Principal& who, const store::ImageRecord& image, std::string createdAt);
  nlohmann::json toJson() const;
  // Never fails; anything not an object (VmRecord::creation "" of an old VM) is all defaults.
  static CreationFacts fromJson(const nlohmann::json& j);
  static CreationFacts fromText(const std::string& text);
};

struct MetadataDisk {
  std::string name;
  int64_t sizeBytes = 0;
  std::string format;
  std::string pool;
};

struct VmMetadata {
  std::string schema;  // kMetadataSchema once built; "" when parsed from nothing
  CreationFacts created;
  // Current facts, as of the last launch (or of the dump, for a stopped VM).
  std::string name;
  std::string uuid;
  std::string description;
  uint64_t memoryMib = 0;
  unsigned vcpus = 0;
  std::vector<MetadataDisk> disks;
  std::string ownerKind;  // user | group
  std::string owner;
  std::string administrator;
  std::string node;           // hostname
  std::string corralVersion;  // the corral running it
  std::string corralCommit;
  nlohmann::json raw = nlohmann::json::object();

  // Current facts from the store's records and this node; the creation facts
  // from vm.creation (or, for a VM older than them, just its created_at).
  static VmMetadata build(const store::VmRecord& vm, const std::vector<store::DiskRecord>& disks,
                          const std::string& hostname);
  nlohmann::json toJson() const;
  static VmMetadata fromJson(const nlohmann::json& j);

  // "corral.<key>=<value>" for SMBIOS type 11, in a fixed order; empty values
  // left out. Values are as the user gave them except control characters (a
  // NUL would end the SMBIOS string), which become spaces; commas stay (the qemu
  // layer escapes them).
  std::vector<std::string> oemStrings() const;
};

}  // namespace corral::core
