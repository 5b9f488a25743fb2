#include "api/routes.h"

#include <fmt/format.h>

#include "api/json_model.h"

namespace corral::api {
namespace {

using nlohmann::json;

constexpr size_t kDefaultLogBytes = 256 * 1024;

template <class T>
Response render(Result<T> r, int status = 200) {
  if (!r.ok()) return Response::error(r.error());
  return Response::json(status, toJson(*r));
}

Response listVms(core::VmManager& m) {
  auto vms = m.list();
  if (!vms.ok()) return Response::error(vms.error());
  json out = json::array();
  for (const auto& vm : *vms) out.push_back(toJson(vm));
  return Response::json(200, {{"vms", out}});
}

Response listImages(core::VmManager& m) {
  auto images = m.listImages();
  if (!images.ok()) return Response::error(images.error());
  json out = json::array();
  for (const auto& img : *images) out.push_back(toJson(img));
  return Response::json(200, {{"images", out}});
}

Response consoleLog(core::VmManager& m, const Request& req) {
  size_t bytes = kDefaultLogBytes;
  if (auto it = req.query.find("bytes"); it != req.query.end()) {
    try {
      bytes = std::stoul(it->second);
    } catch (const std::exception&) {
      return Response::error(Error::invalidInput("bytes", it->second, "must be a number"));
    }
  }
  auto log = m.consoleLog(req.params.at("name"), bytes);
  if (!log.ok()) return Response::error(log.error());
  Response r = Response::text(200, std::move(*log));
  r.contentType = "text/plain; charset=utf-8";
  return r;
}

// Parses the JSON body with `parse`, then answers with `act(parsed value)`.
template <class Parse, class Act>
Response withBody(const Request& req, Parse parse, Act act) {
  auto body = req.jsonBody();
  if (!body.ok()) return Response::error(body.error());
  auto parsed = parse(*body);
  if (!parsed.ok()) return Response::error(parsed.error());
  return act(*parsed);
}

Response noContentOr(const Result<void>& r) { return r.ok() ? Response::noContent() : Response::error(r.error()); }

// POST /vms/{name}/actions/{verb} handlers share this shape.
using Action = Result<store::VmRecord> (core::VmManager::*)(const std::string&);
Handler action(core::VmManager& m, Action a) {
  return [&m, a](const Request& req) { return render((m.*a)(req.params.at("name"))); };
}

}  // namespace

void addRoutes(Router& router, core::VmManager& m, NodeFacts nodeFacts) {
  router.add("GET", "/api/v1/node", [nodeFacts](const Request&) { return Response::json(200, nodeFacts()); });

  router.add("GET", "/api/v1/images", [&m](const Request&) { return listImages(m); });
  router.add("POST", "/api/v1/images", [&m](const Request& req) {
    return withBody(req, parseImportImage, [&](const auto& r) { return render(m.importImage(r), 201); });
  });
  router.add("GET", "/api/v1/images/{name}", [&m](const Request& req) { return render(m.getImage(req.params.at("name"))); });
  router.add("DELETE", "/api/v1/images/{name}",
             [&m](const Request& req) { return noContentOr(m.removeImage(req.params.at("name"))); });

  router.add("GET", "/api/v1/vms", [&m](const Request&) { return listVms(m); });
  router.add("POST", "/api/v1/vms", [&m](const Request& req) {
    return withBody(req, parseCreateVm, [&](const auto& r) { return render(m.create(r), 201); });
  });
  router.add("GET", "/api/v1/vms/{name}", [&m](const Request& req) { return render(m.get(req.params.at("name"))); });
  router.add("DELETE", "/api/v1/vms/{name}",
             [&m](const Request& req) { return noContentOr(m.remove(req.params.at("name"))); });
  router.add("GET", "/api/v1/vms/{name}/log", [&m](const Request& req) { return consoleLog(m, req); });

  router.add("POST", "/api/v1/vms/{name}/actions/start", action(m, &core::VmManager::start));
  router.add("POST", "/api/v1/vms/{name}/actions/stop", [&m](const Request& req) {
    return withBody(req, parseStop, [&](const auto& opts) { return render(m.stop(req.params.at("name"), opts)); });
  });
  router.add("POST", "/api/v1/vms/{name}/actions/reboot", action(m, &core::VmManager::reboot));
  router.add("POST", "/api/v1/vms/{name}/actions/pause", action(m, &core::VmManager::pause));
  router.add("POST", "/api/v1/vms/{name}/actions/resume", action(m, &core::VmManager::resume));
}

}  // namespace corral::api
