#include "support/ssh_keys.h"

#include <openssl/evp.h>

#include <cstdint>

namespace corral::testing {

std::string ed25519KeyLine(char fill, const std::string& comment) {
  // The SSH wire format: each part a 32-bit big-endian length and its bytes.
  std::string blob;
  for (const std::string& part : {std::string("ssh-ed25519"), std::string(32, fill)}) {
    uint32_t n = static_cast<uint32_t>(part.size());
    for (int shift = 24; shift >= 0; shift -= 8) blob.push_back(static_cast<char>((n >> shift) & 0xff));
    blob += part;
  }
  std::string b64(4 * ((blob.size() + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                            reinterpret_cast<const unsigned char*>(blob.data()), static_cast<int>(blob.size()));
  b64.resize(static_cast<size_t>(len));
  return "ssh-ed25519 " + b64 + (comment.empty() ? "" : " " + comment);
}

}  // namespace corral::testing
