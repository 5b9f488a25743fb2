#include "api/routes_storage.h"

#include <filesystem>

#include "api/json_model.h"
#include "api/route_util.h"

namespace corral::api {
namespace {

using nlohmann::json;

Response listImages(core::Images& images, const core::Principal& who) {
  auto all = images.list(who);
  if (!all.ok()) return Response::error(all.error());
  json out = json::array();
  for (const auto& img : *all) out.push_back(toJson(img));
  return Response::json(200, {{"images", out}});
}

Response importAnswer(Result<store::OperationRecord> op) {
  if (!op.ok()) return Response::error(op.error());
  return acceptedOperation(*op);
}

// PUT /images/{name}/file: the body was streamed into req.uploadFile; the
// import takes the file over (renamed, so the transport does not remove it).
Response importUpload(core::Images& images, const Request& req, const core::Principal& who) {
  core::ImportImageRequest r;
  r.name = req.params.at("name");
  auto q = [&](const char* k) {
    auto it = req.query.find(k);
    return it == req.query.end() ? std::string() : it->second;
  };
  r.kind = q("kind");
  r.owner = q("owner");
  r.description = q("description");
  r.format = q("format");
  if (r.kind != "disk" && r.kind != "iso")
    return Response::error(Error::invalidInput("kind", r.kind, "an upload is a disk or an iso image (?kind=disk|iso)"));
  std::error_code ec;
  std::string owned = req.uploadFile + ".import";
  std::filesystem::rename(req.uploadFile, owned, ec);
  if (ec) return Response::error(Error::internal("cannot keep the upload: " + ec.message()));
  r.path = owned;
  r.ownsSource = true;
  return importAnswer(images.import(who, std::move(r)));
}

// GET /vms/{name}: the VM with its disks and NICs, and its ETag.
Response vmWithDisks(core::VmManager& m, const core::Principal& who, const std::string& name) {
  auto vm = m.get(who, name);
  if (!vm.ok()) return Response::error(vm.error());
  auto disks = m.disks(who, name);
  if (!disks.ok()) return Response::error(disks.error());
  auto nics = m.nics(who, name);
  if (!nics.ok()) return Response::error(nics.error());
  json j = toJson(*vm, *disks);
  j["nics"] = json::array();
  for (const auto& n : *nics) j["nics"].push_back(toJson(n));
  Response resp = Response::json(200, j);
  resp.headers["ETag"] = etag(vm->version);
  return resp;
}

}  // namespace

void addStorageRoutes(Router& router, core::VmManager& m, core::Images& images) {
  router.add("GET", "/api/v1/images",
             authed([&images](const Request&, const core::Principal& who) { return listImages(images, who); }));
  router.add("POST", "/api/v1/images", authed([&images](const Request& req, const core::Principal& who) {
               return withBody(req, parseImportImage, [&](core::ImportImageRequest r) {
                 return importAnswer(images.import(who, std::move(r)));
               });
             }));
  router.addUpload(
      "PUT", "/api/v1/images/{name}/file",
      [](const Request& req) -> std::optional<Response> {
        // Refused before a byte of the body is read.
        if (!req.principal) return Response::error(Error::unauthenticated("this route needs credentials"));
        if (auto r = adminOnly(*req.principal, "import images"); !r.ok()) return Response::error(r.error());
        return std::nullopt;
      },
      authed([&images](const Request& req, const core::Principal& who) { return importUpload(images, req, who); }));
  router.add("GET", "/api/v1/images/{name}", authed([&images](const Request& req, const core::Principal& who) {
               return render(images.get(who, req.params.at("name")));
             }));
  router.add("DELETE", "/api/v1/images/{name}", authed([&images](const Request& req, const core::Principal& who) {
               return noContentOr(images.remove(who, req.params.at("name")));
             }));

  router.add("GET", "/api/v1/vms/{name}", authed([&m](const Request& req, const core::Principal& who) {
               return vmWithDisks(m, who, req.params.at("name"));
             }));
  router.add("GET", "/api/v1/vms/{name}/disks", authed([&m](const Request& req, const core::Principal& who) {
               auto disks = m.disks(who, req.params.at("name"));
               if (!disks.ok()) return Response::error(disks.error());
               json out = json::array();
               for (const auto& d : *disks) out.push_back(toJson(d));
               return Response::json(200, {{"disks", out}});
             }));
  router.add("POST", "/api/v1/vms/{name}/disks", authed([&m](const Request& req, const core::Principal& who) {
               return withBody(req, [](const json& b) { return parseDiskRequest(b, "", false); },
                               [&](const core::DiskRequest& d) { return render(m.addDisk(who, req.params.at("name"), d), 201); });
             }));
  router.add("PATCH", "/api/v1/vms/{name}/disks/{disk}", authed([&m](const Request& req, const core::Principal& who) {
               return withBody(req, [](const json& b) -> Result<std::string> {
                 CORRAL_TRY(onlyKeys(b, {"size"}));
                 auto size = CORRAL_TRY(sizeField(b, "size"));
                 if (size.empty()) return Error::invalidInput("size", "", "is required");
                 return size;
               }, [&](const std::string& size) {
                 return render(m.resizeDisk(who, req.params.at("name"), req.params.at("disk"), size));
               });
             }));
  router.add("DELETE", "/api/v1/vms/{name}/disks/{disk}", authed([&m](const Request& req, const core::Principal& who) {
               return noContentOr(m.removeDisk(who, req.params.at("name"), req.params.at("disk")));
             }));
  router.add("POST", "/api/v1/vms/{name}/disks/{disk}/rekey",
             authed([&m](const Request& req, const core::Principal& who) {
               return render(m.rekeyDisk(who, req.params.at("name"), req.params.at("disk")));
             }));
  router.add("PUT", "/api/v1/vms/{name}/cdrom", authed([&m](const Request& req, const core::Principal& who) {
               return withBody(req, [](const json& b) -> Result<std::string> {
                 CORRAL_TRY(onlyKeys(b, {"image"}));
                 return stringField(b, "image", true);
               }, [&](const std::string& image) { return renderVm(m.insertCdrom(who, req.params.at("name"), image)); });
             }));
  router.add("DELETE", "/api/v1/vms/{name}/cdrom", authed([&m](const Request& req, const core::Principal& who) {
               return renderVm(m.ejectCdrom(who, req.params.at("name")));
             }));
}

}  // namespace corral::api
