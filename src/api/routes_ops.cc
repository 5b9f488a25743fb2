// Operations and events routes. See routes_ops.h for who sees what.
#include "api/routes_ops.h"

#include <charconv>
#include <chrono>
#include <memory>
#include <utility>

#include <fmt/format.h>

namespace corral::api {
namespace {

using nlohmann::json;

constexpr size_t kDefaultLimit = 100;
constexpr size_t kMaxLimit = 1000;
constexpr int64_t kDefaultWaitSeconds = 60;
constexpr int64_t kMaxWaitSeconds = 600;  // accepted, for older clients...
constexpr int64_t kWaitCapSeconds = 60;   // ...but no wait lasts longer than this

// A whole decimal number in [min, max] from the query, or def when absent.
Result<int64_t> queryInt(const Request& req, const std::string& name, int64_t def, int64_t min, int64_t max) {
  auto it = req.query.find(name);
  if (it == req.query.end()) return def;
  const std::string& s = it->second;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    return Error::invalidInput(name, s, "must be a whole number");
  if (v < min || v > max) return Error::invalidInput(name, s, fmt::format("must be between {} and {}", min, max));
  return v;
}

Result<std::shared_ptr<const core::Principal>> principalOf(const Request& req) {
  if (!req.principal) return Error::unauthenticated("this route needs an authenticated caller");
  return req.principal;
}

// Whether the caller may see op: an admin, its requester, or, for a vm.*
// operation, someone who may see that VM now.
bool maySee(const core::Principal& p, const CanSeeVm& canSeeVm, const store::OperationRecord& op) {
  if (p.admin || op.requester == p.login) return true;
  if (op.kind.rfind("vm.", 0) != 0 || op.target.empty()) return false;
  return canSeeVm && canSeeVm(p, op.target);
}

Error notFound(const std::string& id) { return Error::notFound(fmt::format("operation {} not found", id)); }

// The operation if the caller may see it; NotFound (as for an unknown id) if not.
Result<store::OperationRecord> visibleOp(core::Operations& ops, const CanSeeVm& canSeeVm, const Request& req) {
  auto p = CORRAL_TRY(principalOf(req));
  const std::string& id = req.params.at("id");
  auto op = ops.get(id);
  if (!op.ok()) return op;
  if (!maySee(*p, canSeeVm, *op)) return notFound(id);
  return op;
}

Response listOps(core::Operations& ops, const VisibleVms& visibleVms, const Request& req) {
  auto p = principalOf(req);
  if (!p.ok()) return Response::error(p.error());
  auto limit = queryInt(req, "limit", kDefaultLimit, 1, kMaxLimit);
  if (!limit.ok()) return Response::error(limit.error());
  const auto& principal = **p;
  Result<std::vector<store::OperationRecord>> rows = Error::internal("unset");
  if (principal.admin) {
    rows = ops.list(size_t(*limit));
  } else {
    auto vms = visibleVms(principal);
    if (!vms.ok()) return Response::error(vms.error());
    rows = ops.listFor(principal.login, *vms, size_t(*limit));
  }
  if (!rows.ok()) return Response::error(rows.error());
  json out = json::array();
  for (const auto& op : *rows) out.push_back(toJsonFor(op, principal));
  return Response::json(200, {{"operations", std::move(out)}});
}

// Answered when the operation ends or the timeout passes, holding no thread
// meanwhile; a timeout above kWaitCapSeconds is cut to it (the client asks
// again), and one caller has at most Operations::kMaxWaitsPerWaiter waits open.
Response waitOp(core::Operations& ops, const CanSeeVm& canSeeVm, const Request& req) {
  // Parameters first: a bad timeout is the caller's mistake whatever the id.
  auto seconds = queryInt(req, "timeout", kDefaultWaitSeconds, 0, kMaxWaitSeconds);
  if (!seconds.ok()) return Response::error(seconds.error());
  auto op = visibleOp(ops, canSeeVm, req);
  if (!op.ok()) return Response::error(op.error());
  auto p = principalOf(req);
  if (!p.ok()) return Response::error(p.error());
  const std::string waiter = (*p)->login.empty() ? "-" : (*p)->login;
  const std::string requestId = req.requestId;
  return Response::deferred([&ops, id = op->id, seconds = std::min(*seconds, kWaitCapSeconds), waiter, who = *p,
                             requestId](const Response::Answer& answer) {
    auto asked = ops.waitAsync(id, std::chrono::seconds(seconds), waiter,
                               [answer, requestId, who](Result<store::OperationRecord> ended) {
                                 answer(ended.ok() ? Response::json(200, toJsonFor(*ended, *who))
                                                   : Response::error(ended.error(), requestId));
                               });
    if (!asked.ok()) answer(Response::error(asked.error(), requestId));
  });
}

Result<WsAccept> events(core::EventBus& bus, const Request& req) {
  auto p = CORRAL_TRY(principalOf(req));
  return WsAccept([&bus, p](std::shared_ptr<WebSocket> ws) {
    // The bus holds only a weak reference: the socket's life is the
    // transport's, and onClose below takes the subscription away with it.
    std::weak_ptr<WebSocket> weak = ws;
    uint64_t id = bus.subscribe([weak, p](const core::Event& e) {
      if (!core::canAccess(*p, e.vm)) return;
      auto s = weak.lock();
      if (!s || s->closed()) return;
      // Never blocks: a peer that stops reading is closed by the transport.
      s->send(e.toJson().dump());
    });
    ws->onMessage([](std::string, bool) {});  // the stream is one-way; input is ignored
    ws->onClose([&bus, id] { bus.unsubscribe(id); });
  });
}

}  // namespace

json toJson(const store::OperationRecord& op) {
  json result = nullptr;
  if (!op.result.empty()) {
    result = json::parse(op.result, nullptr, /*allow_exceptions=*/false);
    // Rows are written by Operations as JSON; a row that is not (another writer,
    // a hand edit) is shown as its text rather than failing the whole list.
    if (result.is_discarded()) result = op.result;
  }
  return json{{"id", op.id},
              {"kind", op.kind},
              {"target", op.target},
              {"requester", op.requester},
              {"state", op.state},
              {"progress", op.progress},
              {"bytes_done", op.bytesDone},
              {"bytes_total", op.bytesTotal},
              {"result", std::move(result)},
              {"created_at", op.createdAt},
              {"updated_at", op.updatedAt}};
}

json toJsonFor(const store::OperationRecord& op, const core::Principal& who) {
  json j = toJson(op);
  if (who.admin || op.state != "failed" || !j["result"].is_object()) return j;
  json& message = j["result"]["message"];
  if (message.is_string()) {
    const std::string text = message.get<std::string>();
    if (size_t nl = text.find('\n'); nl != std::string::npos)
      message = text.substr(0, nl) + " (details in corrald's log, for administrators)";
  }
  return j;
}

void addOperationRoutes(Router& router, core::Operations& ops, core::EventBus& bus, CanSeeVm canSeeVm,
                        VisibleVms visibleVms) {
  auto see = std::make_shared<const CanSeeVm>(std::move(canSeeVm));
  auto vms = std::make_shared<const VisibleVms>(std::move(visibleVms));
  router.add("GET", "/api/v1/operations", [&ops, vms](const Request& req) { return listOps(ops, *vms, req); });
  router.add("GET", "/api/v1/operations/{id}", [&ops, see](const Request& req) {
    auto op = visibleOp(ops, *see, req);
    return op.ok() ? Response::json(200, toJsonFor(*op, *req.principal)) : Response::error(op.error());
  });
  router.add("GET", "/api/v1/operations/{id}/wait", [&ops, see](const Request& req) { return waitOp(ops, *see, req); });
  router.addWebSocket("/api/v1/events", [&bus](const Request& req) { return events(bus, req); });
}

}  // namespace corral::api
