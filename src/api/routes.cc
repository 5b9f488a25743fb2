#include "api/routes.h"

#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "api/json_model.h"
#include "api/route_util.h"
#include "api/routes_identity.h"
#include "api/routes_ops.h"
#include "api/routes_network.h"
#include "api/routes_storage.h"

namespace corral::api {
namespace {

using nlohmann::json;

constexpr size_t kDefaultLogBytes = 256 * 1024;


// The VM list, cached twice over. Each VM's JSON is serialised once per
// version (a record's version moves on every change to it). And the whole body
// is kept per caller identity while the store's change mark stays the same, so
// that listing 1,000 VMs that nobody touched costs one cheap store query. A
// mark read before the list can only make an entry look older than it is:
// never stale.
class VmListCache {
 public:
  Response list(core::VmManager& m, const core::Principal& who) {
    auto mark = m.listMark();
    if (!mark.ok()) return Response::error(mark.error());
    std::string key = fmt::format("{}|{}|{}", who.login, who.admin, fmt::join(who.groups, ","));
    Response r;
    r.status = 200;
    {
      std::lock_guard lock(mu_);
      if (auto it = bodies_.find(key); it != bodies_.end() && it->second.first == *mark) {
        r.body = it->second.second;
        return r;
      }
    }
    auto vms = m.list(who);
    if (!vms.ok()) return Response::error(vms.error());
    std::string& out = r.body;
    out.reserve(vms->size() * 512 + 16);
    out += "{\"vms\":[";
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < vms->size(); ++i) {
      const auto& vm = (*vms)[i];
      auto& entry = byId_[vm.id];
      if (entry.first != vm.version || entry.second.empty()) entry = {vm.version, toJson(vm).dump()};
      if (i > 0) out += ',';
      out += entry.second;
    }
    out += "]}";
    // Deleted VMs' entries go when the cache has grown well past the list.
    if (who.admin && byId_.size() > 2 * vms->size() + 64) {
      std::unordered_set<int64_t> live;
      for (const auto& vm : *vms) live.insert(vm.id);
      std::erase_if(byId_, [&](const auto& kv) { return !live.count(kv.first); });
    }
    if (bodies_.size() >= kMaxBodies) bodies_.clear();
    bodies_[key] = {*mark, out};
    return r;
  }

 private:
  static constexpr size_t kMaxBodies = 16;  // callers whose last list is kept
  std::mutex mu_;
  std::unordered_map<int64_t, std::pair<int64_t, std::string>> byId_;        // id -> (version, JSON)
  std::unordered_map<std::string, std::pair<std::string, std::string>> bodies_;  // caller -> (mark, body)
};


Response consoleLog(core::VmManager& m, const Request& req, const core::Principal& who) {
  size_t bytes = kDefaultLogBytes;
  if (auto it = req.query.find("bytes"); it != req.query.end()) {
    try {
      bytes = std::stoul(it->second);
    } catch (const std::exception&) {
      return Response::error(Error::invalidInput("bytes", it->second, "must be a number"));
    }
  }
  auto log = m.consoleLog(who, req.params.at("name"), bytes);
  if (!log.ok()) return Response::error(log.error());
  Response r = Response::text(200, std::move(*log));
  r.contentType = "text/plain; charset=utf-8";
  return r;
}

// 202 Accepted with the operation that runs work; Location names it.
Response accepted(core::Operations& ops, std::string kind, std::string target, const core::Principal& who,
                  std::function<Result<store::VmRecord>()> work) {
  auto op = ops.start(std::move(kind), std::move(target), who.login,
                      [work = std::move(work)](const core::Operations::Progress&) -> Result<json> {
                        auto vm = CORRAL_TRY(work());
                        return toJson(vm);
                      });
  if (!op.ok()) return Response::error(op.error());
  return acceptedOperation(*op);
}

// start, stop and reboot take as long as the guest does: checked at once (404,
// 409), then run as an operation.
using LongAction = std::function<Result<store::VmRecord>(core::VmManager&, const core::Principal&,
                                                         const std::string&, const json&)>;
Handler longAction(core::VmManager& m, core::Operations& ops, std::string verb, LongAction act) {
  return authed([&m, &ops, verb = std::move(verb), act = std::move(act)](const Request& req, const core::Principal& who) {
    auto body = req.jsonBody();
    if (!body.ok()) return Response::error(body.error());
    const std::string& name = req.params.at("name");
    // A forced stop kills now, before its operation queues behind whatever holds the VM.
    bool force = false;
    if (verb == "stop") {
      auto opts = parseStop(*body);
      if (!opts.ok()) return Response::error(opts.error());
      force = opts->force;
    }
    if (auto vm = m.checkAction(who, name, force ? "force-stop" : verb); !vm.ok()) return Response::error(vm.error());
    if (force) {
      if (auto killed = m.forceOff(who, name); !killed.ok()) return Response::error(killed.error());
    }
    return accepted(ops, "vm." + verb, name, who,
                    [&m, act, who = req.principal, name, b = *body] { return act(m, *who, name, b); });
  });
}

// POST /vms/{name}/actions/{pause,resume}: quick, answered with the VM.
using Action = Result<store::VmRecord> (core::VmManager::*)(const core::Principal&, const std::string&);
Handler action(core::VmManager& m, Action a) {
  return authed([&m, a](const Request& req, const core::Principal& who) { return renderVm((m.*a)(who, req.params.at("name"))); });
}

Response createVm(core::VmManager& m, core::Operations& ops, const Request& req, const core::Principal& who) {
  return withBody(req, parseCreateVm, [&](const core::CreateVmRequest& r) {
    if (!r.start) {
      auto vm = m.create(who, r);
      if (!vm.ok()) return Response::error(vm.error());
      return renderVmWithDisks(*vm, m.disks(who, vm->name), 201);
    }
    // create-and-start is one unit (nothing is left when the start fails) and as
    // long as a start: an operation.
    return accepted(ops, "vm.create", r.name, who, [&m, who = req.principal, r] { return m.create(*who, r); });
  });
}

Response modifyVm(core::VmManager& m, const Request& req, const core::Principal& who) {
  auto expected = parseIfMatch(req.header("if-match"));
  if (!expected.ok()) return Response::error(expected.error());
  return withBody(req, parseModifyVm, [&](core::ModifyVmRequest r) {
    r.expectedVersion = *expected;
    return renderVm(m.modify(who, req.params.at("name"), r));
  });
}

Response quotaAnswer(Result<json> r) { return r.ok() ? Response::json(200, *r) : Response::error(r.error()); }

// GET, PUT (every limit: one left out goes back to the default) and PATCH (just
// the limits given) /quotas/{users|groups}/{name}.
void addQuotaRoutes(Router& router, core::VmManager& m, const std::string& plural, const std::string& kind) {
  std::string pattern = "/api/v1/quotas/" + plural + "/{name}";
  router.add("GET", pattern, authed([&m, kind](const Request& req, const core::Principal& who) {
               return quotaAnswer(m.quota(who, kind, req.params.at("name")));
             }));
  router.add("PUT", pattern, authed([&m, kind](const Request& req, const core::Principal& who) {
               return withBody(req, parseQuota, [&](store::QuotaRecord q) {
                 q.subjectKind = kind;
                 q.subject = req.params.at("name");
                 return quotaAnswer(m.setQuota(who, q));
               });
             }));
  router.add("PATCH", pattern, authed([&m, kind](const Request& req, const core::Principal& who) {
               return withBody(req, parseQuotaChanges, [&](const std::map<std::string, std::optional<int64_t>>& c) {
                 return quotaAnswer(m.patchQuota(who, kind, req.params.at("name"), c));
               });
             }));
}

}  // namespace

void addRoutes(Router& router, core::VmManager& m, core::Operations& ops, NodeFacts nodeFacts) {
  router.add("GET", "/api/v1/node", authed([nodeFacts](const Request&, const core::Principal& who) {
               return Response::json(200, nodeFacts(who));
             }));

  auto cache = std::make_shared<VmListCache>();
  router.add("GET", "/api/v1/vms",
             authed([&m, cache](const Request&, const core::Principal& who) { return cache->list(m, who); }));
  router.add("POST", "/api/v1/vms", authed([&m, &ops](const Request& req, const core::Principal& who) {
               return createVm(m, ops, req, who);
             }));
  router.add("PATCH", "/api/v1/vms/{name}", authed([&m](const Request& req, const core::Principal& who) {
               return modifyVm(m, req, who);
             }));
  router.add("DELETE", "/api/v1/vms/{name}", authed([&m](const Request& req, const core::Principal& who) {
               return noContentOr(m.remove(who, req.params.at("name")));
             }));
  router.add("GET", "/api/v1/vms/{name}/log",
             authed([&m](const Request& req, const core::Principal& who) { return consoleLog(m, req, who); }));
  router.add("GET", "/api/v1/vms/{name}/dump", authed([&m](const Request& req, const core::Principal& who) {
               auto d = m.dump(who, req.params.at("name"));
               return d.ok() ? Response::json(200, *d) : Response::error(d.error());
             }));

  router.add("POST", "/api/v1/vms/{name}/actions/start",
             longAction(m, ops, "start", [](core::VmManager& vm, const core::Principal& who, const std::string& name,
                                            const json& body) -> Result<store::VmRecord> {
               return vm.start(who, name, CORRAL_TRY(parseBoot(body)));
             }));
  router.add("POST", "/api/v1/vms/{name}/actions/stop",
             longAction(m, ops, "stop", [](core::VmManager& vm, const core::Principal& who, const std::string& name,
                                           const json& body) -> Result<store::VmRecord> {
               auto opts = CORRAL_TRY(parseStop(body));
               return vm.stop(who, name, opts);
             }));
  router.add("POST", "/api/v1/vms/{name}/actions/reboot",
             longAction(m, ops, "reboot", [](core::VmManager& vm, const core::Principal& who, const std::string& name,
                                             const json& body) -> Result<store::VmRecord> {
               return vm.reboot(who, name, CORRAL_TRY(parseBoot(body)));
             }));
  router.add("POST", "/api/v1/vms/{name}/actions/pause", action(m, &core::VmManager::pause));
  router.add("POST", "/api/v1/vms/{name}/actions/resume", action(m, &core::VmManager::resume));

  router.add("GET", "/api/v1/quota", authed([&m](const Request&, const core::Principal& who) {
               return quotaAnswer(m.quota(who, "user", who.login));
             }));
  addQuotaRoutes(router, m, "users", "user");
  addQuotaRoutes(router, m, "groups", "group");
}

void addAllRoutes(Router& router, const Services& s) {
  addRoutes(router, s.vms, s.ops, s.nodeFacts);
  router.add("GET", "/api/v1/node/verify", authed([verify = s.nodeVerify](const Request&, const core::Principal& who) {
               if (auto r = adminOnly(who, "verify the node"); !r.ok()) return Response::error(r.error());
               if (!verify) return Response::error(Error::unavailable("node verification is not available here"));
               return Response::json(200, verify());
             }));
  addStorageRoutes(router, s.vms, s.images);
  addNetworkRoutes(router, s.vms);
  addIdentityRoutes(router, s.identity);
  addConsoleRoutes(router, s.vms, s.consoleTokens, s.identity, s.console);
  addDiagRoutes(router, s.report);
  addMetricsRoutes(router, s.metrics);
  core::VmManager& vms = s.vms;
  addOperationRoutes(
      router, s.ops, s.events,
      [&vms](const core::Principal& who, const std::string& name) { return vms.get(who, name).ok(); },
      [&vms](const core::Principal& who) -> Result<std::vector<std::string>> {
        std::vector<std::string> names;
        for (const auto& vm : CORRAL_TRY(vms.list(who))) names.push_back(vm.name);
        return names;
      });
}

}  // namespace corral::api
