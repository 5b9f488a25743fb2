#include "util/rollback.h"

#include <exception>
#include <utility>

#include <spdlog/spdlog.h>

namespace corral::util {

Rollback::~Rollback() { rollbackNow(); }

Rollback::Rollback(Rollback&& other) noexcept : undos_(std::exchange(other.undos_, {})) {}

Rollback& Rollback::operator=(Rollback&& other) noexcept {
  if (this != &other) {
    rollbackNow();  // what we held was neither committed nor handed over
    undos_ = std::exchange(other.undos_, {});
  }
  return *this;
}

void Rollback::add(std::function<void()> undo) { undos_.push_back(std::move(undo)); }

void Rollback::commit() noexcept { undos_.clear(); }

void Rollback::rollbackNow() noexcept {
  // Swap out first so that an undo that touches this Rollback sees it empty.
  auto undos = std::exchange(undos_, {});
  for (auto it = undos.rbegin(); it != undos.rend(); ++it) {
    try {
      if (*it) (*it)();
    } catch (const std::exception& e) {
      spdlog::error("rollback: an undo step failed: {}", e.what());
    } catch (...) {
      spdlog::error("rollback: an undo step failed with an unknown exception");
    }
  }
}

}  // namespace corral::util
