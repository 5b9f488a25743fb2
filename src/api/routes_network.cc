#include "api/routes_network.h"

#include "api/json_model.h"
#include "api/route_util.h"

namespace corral::api {

using nlohmann::json;

void addNetworkRoutes(Router& router, core::VmManager& m) {
  core::Networks& nets = m.networks();
  router.add("GET", "/api/v1/networks", authed([&nets](const Request&, const core::Principal& who) {
               auto all = nets.list(who);
               if (!all.ok()) return Response::error(all.error());
               json out = json::array();
               for (const auto& n : *all) out.push_back(toJson(n));
               return Response::json(200, {{"networks", out}});
             }));
  router.add("POST", "/api/v1/networks", authed([&nets](const Request& req, const core::Principal& who) {
               return withBody(req, parseNetworkRequest,
                               [&](const core::NetworkRequest& r) { return render(nets.create(who, r), 201); });
             }));
  router.add("GET", "/api/v1/networks/{name}", authed([&nets](const Request& req, const core::Principal& who) {
               return render(nets.show(who, req.params.at("name")));
             }));
  router.add("DELETE", "/api/v1/networks/{name}", authed([&nets](const Request& req, const core::Principal& who) {
               return noContentOr(nets.remove(who, req.params.at("name")));
             }));

  router.add("GET", "/api/v1/vms/{name}/nics", authed([&m](const Request& req, const core::Principal& who) {
               auto nics = m.nics(who, req.params.at("name"));
               if (!nics.ok()) return Response::error(nics.error());
               json out = json::array();
               for (const auto& n : *nics) out.push_back(toJson(n));
               return Response::json(200, {{"nics", out}});
             }));
  router.add("POST", "/api/v1/vms/{name}/nics", authed([&m](const Request& req, const core::Principal& who) {
               return withBody(
                   req, [](const json& b) { return parseNicRequest(b, ""); },
                   [&](const core::NicRequest& r) { return render(m.addNic(who, req.params.at("name"), r), 201); });
             }));
  router.add("DELETE", "/api/v1/vms/{name}/nics/{nic}", authed([&m](const Request& req, const core::Principal& who) {
               return noContentOr(m.removeNic(who, req.params.at("name"), req.params.at("nic")));
             }));
}

}  // namespace corral::api
