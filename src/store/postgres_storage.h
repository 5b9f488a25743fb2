// The PostgreSQL store's images and disks (postgres_storage.cc) and networks,
// NICs and SSH keys (postgres_network.cc), with Store's contract, kept beside
// postgres_store.cc to keep it readable. Each call runs on the caller's leased
// connection and never takes another.
//
// Internal to store/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "store/postgres_connection.h"
#include "store/store.h"

namespace corral::store::pg {

Result<ImageRecord> insertImage(Conn& c, const ImageRecord& image);
Result<std::optional<ImageRecord>> findImage(Conn& c, const std::string& name);
Result<std::vector<ImageRecord>> listImages(Conn& c);
Result<ImageRecord> updateImage(Conn& c, const ImageRecord& image);
Result<void> deleteImage(Conn& c, const std::string& name);

Result<DiskRecord> insertDisk(Conn& c, const DiskRecord& disk);
Result<std::vector<DiskRecord>> listDisks(Conn& c, int64_t vmId);
Result<std::vector<DiskRecord>> listAllDisks(Conn& c);
Result<DiskRecord> updateDisk(Conn& c, const DiskRecord& disk);
Result<void> deleteDisk(Conn& c, int64_t id);

// Networks, NICs and SSH keys (postgres_network.cc).
Result<NetworkRecord> insertNetwork(Conn& c, const NetworkRecord& net);
Result<std::optional<NetworkRecord>> findNetwork(Conn& c, const std::string& name);
Result<std::vector<NetworkRecord>> listNetworks(Conn& c);
Result<void> deleteNetwork(Conn& c, const std::string& name);

Result<NicRecord> insertNic(Conn& c, const NicRecord& nic);
Result<std::vector<NicRecord>> listNics(Conn& c, int64_t vmId);
Result<std::vector<NicRecord>> listNetworkNics(Conn& c, const std::string& network);
Result<std::vector<NicRecord>> listAllNics(Conn& c);
Result<void> deleteNic(Conn& c, int64_t id);

Result<SshKeyRecord> insertSshKey(Conn& c, const SshKeyRecord& key);
Result<std::vector<SshKeyRecord>> listSshKeys(Conn& c, const std::string& login);
Result<void> deleteSshKey(Conn& c, const std::string& login, int64_t id);

// Inside the caller's transaction: NotFound (field "cdrom") unless the image a
// VM's CD drive names exists, and a share lock on its row until the caller
// commits, so a concurrent deleteImage (which locks the row FOR UPDATE) waits
// and then sees the VM. "" (an empty drive) passes.
Result<void> checkCdrom(Conn& c, const std::string& cdrom);

}  // namespace corral::store::pg
