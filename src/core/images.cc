#include "core/images.h"

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/validate.h"
#include "util/names.h"
#include "util/rollback.h"

namespace corral::core {
namespace fs = std::filesystem;

namespace {

Result<void> absoluteFile(std::string_view field, const std::string& path) {
  if (path.empty()) return Error::invalidInput(std::string(field), path, "is required");
  if (path.front() != '/') return Error::invalidInput(std::string(field), path, "must be an absolute path on the daemon's host");
  return ok();
}

void removeSource(const ImportImageRequest& req) {
  if (!req.ownsSource) return;
  std::error_code ec;
  fs::remove(req.path, ec);
}

}  // namespace

Result<std::pair<std::string, std::string>> Images::resolveOwner(const std::string& owner) {
  if (owner.empty()) return std::pair<std::string, std::string>{"", ""};
  CORRAL_TRY(util::validateLogin("owner", owner));
  if (CORRAL_TRY(store_.findGroup(owner))) return std::pair<std::string, std::string>{"group", owner};
  if (owner == "root" || CORRAL_TRY(store_.findUser(owner))) return std::pair<std::string, std::string>{"user", owner};
  return Error::invalidInput("owner", owner, "no user or group has that name");
}

Result<store::OperationRecord> Images::import(const Principal& who, ImportImageRequest req) {
  util::Rollback dropSource;
  dropSource.add([&] { removeSource(req); });
  if (!who.admin) return Error::forbidden("only admins import images");
  CORRAL_TRY(util::validateImageName("name", req.name));
  if (req.kind == "direct-boot") {
    CORRAL_TRY(absoluteFile("kernel", req.kernel));
    if (!req.initrd.empty()) CORRAL_TRY(absoluteFile("initrd", req.initrd));
    CORRAL_TRY(validateAppend(req.append));
  } else if (req.kind == "disk" || req.kind == "iso") {
    CORRAL_TRY(absoluteFile("path", req.path));
    if (!req.append.empty() || !req.kernel.empty() || !req.initrd.empty())
      return Error::invalidInput("kind", req.kind, "kernel, initrd and append belong to direct-boot images");
  } else {
    return Error::invalidInput("kind", req.kind, "must be disk, iso or direct-boot");
  }
  if (!req.format.empty() && (req.kind != "disk" || (req.format != "qcow2" && req.format != "raw")))
    return Error::invalidInput("format", req.format, "is the format of a disk image's source: qcow2 or raw");
  CORRAL_TRY(validateDescription(req.description));
  auto [ownerKind, owner] = CORRAL_TRY(resolveOwner(req.owner));

  store::ImageRecord row;
  row.name = req.name;
  row.kind = req.kind;
  row.append = req.append;
  row.ownerKind = ownerKind;
  row.owner = owner;
  row.description = req.description;
  row.state = "importing";
  row.createdAt = store::nowRfc3339();
  auto reserved = store_.insertImage(row);
  if (!reserved.ok()) {
    if (reserved.error().code == ErrorCode::AlreadyExists)
      return Error::alreadyExists("name", req.name, fmt::format("name: an image named {} already exists", req.name));
    return reserved.error();
  }
  row = *reserved;
  auto op = ops_.start("image.import", req.name, who.login,
                       [this, req, row](const Operations::Progress& progress) -> Result<nlohmann::json> {
                         auto img = runImport(req, row, progress);
                         removeSource(req);
                         if (!img.ok()) return img.error();
                         return nlohmann::json{{"name", img->name}, {"kind", img->kind}, {"sha256", img->sha256},
                                               {"virtual_size", img->virtualSize}, {"size_bytes", img->sizeBytes}};
                       });
  if (!op.ok()) {
    (void)store_.deleteImage(req.name);
    return op.error();
  }
  dropSource.commit();  // the operation owns it now
  spdlog::info("image={} import started kind={} op={} by={}", req.name, req.kind, op->id, who.login);
  return op;
}

Result<store::ImageRecord> Images::runImport(const ImportImageRequest& req, store::ImageRecord row,
                                             const Operations::Progress& progress) {
  host::ImageLibrary& lib = storage_.library();
  util::Rollback rb;
  rb.add([&] {
    (void)lib.remove(req.name);
    if (auto r = store_.deleteImage(req.name); !r.ok())
      spdlog::error("image={}: failed import left its row: {}", req.name, r.error().message);
  });
  host::ImportOptions opts;
  opts.sourceFormat = req.format;
  opts.progress = [&progress](int64_t done, int64_t total) { progress.bytes(done, total); };
  if (req.kind == "direct-boot") {
    auto files = CORRAL_TRY(lib.importDirectBoot(req.name, req.kernel, req.initrd));
    row.kernel = files.kernel;
    row.initrd = files.initrd;
    row.sizeBytes = files.sizeBytes;
  } else {
    auto imported = CORRAL_TRY(req.kind == "disk" ? lib.importDisk(req.name, req.path, opts)
                                                  : lib.importIso(req.name, req.path, opts));
    row.path = imported.path;
    row.format = imported.format;
    row.virtualSize = imported.virtualSize;
    row.sizeBytes = imported.sizeBytes;
    row.sha256 = imported.sha256;
  }
  row.state = "ready";
  auto done = CORRAL_TRY(store_.updateImage(row));
  rb.commit();
  spdlog::info("image={} imported kind={} size={} sha256={}", row.name, row.kind, row.sizeBytes, row.sha256);
  return done;
}

Result<std::vector<store::ImageRecord>> Images::list(const Principal& who) {
  auto all = CORRAL_TRY(store_.listImages());
  std::erase_if(all, [&](const store::ImageRecord& img) { return !canSeeImage(who, img); });
  return all;
}

Result<store::ImageRecord> Images::get(const Principal& who, const std::string& name) {
  CORRAL_TRY(util::validateImageName("name", name));
  auto img = CORRAL_TRY(store_.findImage(name));
  if (!img || !canSeeImage(who, *img)) return Error::notFound(fmt::format("image {} not found", name));
  return std::move(*img);
}

Result<void> Images::remove(const Principal& who, const std::string& name) {
  if (!who.admin) return Error::forbidden("only admins delete images");
  CORRAL_TRY(util::validateImageName("name", name));
  auto img = CORRAL_TRY(store_.findImage(name));
  if (!img) return Error::notFound(fmt::format("image {} not found", name));
  if (img->state == "importing")
    return Error::failedPrecondition(fmt::format("image {} is being imported; wait for its operation", name));
  CORRAL_TRY(store_.deleteImage(name));
  CORRAL_TRY(storage_.library().remove(name));
  spdlog::info("image={} deleted by={}", name, who.login);
  return ok();
}

Result<void> Images::dropUnfinished() {
  auto all = CORRAL_TRY(store_.listImages());
  for (const auto& img : all) {
    if (img.state != "importing") continue;
    spdlog::warn("image={}: import interrupted by a daemon restart; removed", img.name);
    (void)storage_.library().remove(img.name);
    CORRAL_TRY(store_.deleteImage(img.name));
  }
  return ok();
}

}  // namespace corral::core
