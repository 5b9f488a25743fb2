// See password.h.
#include "util/password.h"

#include <argon2.h>

#include <vector>

#include "util/crypto.h"

namespace corral::util {

namespace {
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
}  // namespace

Result<std::string> hashPassword(std::string_view password, const PasswordCost& cost) {
  std::string salt = CORRAL_TRY(randomBytes(kSaltBytes));
  size_t len = argon2_encodedlen(cost.timeCost, cost.memoryKib, cost.parallelism, kSaltBytes, kHashBytes, Argon2_id);
  std::vector<char> encoded(len + 1, '\0');
  int rc = argon2id_hash_encoded(cost.timeCost, cost.memoryKib, cost.parallelism, password.data(), password.size(),
                                 salt.data(), salt.size(), kHashBytes, encoded.data(), encoded.size());
  if (rc != ARGON2_OK) return errorf(ErrorCode::Internal, "argon2id hashing failed: {}", argon2_error_message(rc));
  return std::string(encoded.data());
}

bool verifyPassword(std::string_view encoded, std::string_view password) {
  // Only argon2id: a hash of another variant (or garbage) is not ours.
  if (encoded.substr(0, 10) != "$argon2id$") return false;
  std::string copy(encoded);  // argon2id_verify needs a NUL-terminated string
  return argon2id_verify(copy.c_str(), password.data(), password.size()) == ARGON2_OK;
}

}  // namespace corral::util
