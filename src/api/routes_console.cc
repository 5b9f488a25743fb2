// Console routes; see routes_console.h. A console WebSocket authenticates by its
// ?token= alone (browsers cannot send headers with a WebSocket, and a token is
// bound to one user, VM and console kind for minutes), and its checks run before
// the upgrade is answered, so every refusal is an ordinary HTTP error.
#include "api/routes_console.h"

#include <chrono>
#include <memory>
#include <string>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "api/route_util.h"
#include "core/console_access.h"

namespace corral::api {
namespace {

using nlohmann::json;

// A WebSocket as a console's viewer. Weak: the transport owns the socket, and a
// hub or stream holding its viewer must not keep a closed socket alive.
class WsViewer final : public core::ConsoleViewer {
 public:
  explicit WsViewer(std::weak_ptr<WebSocket> ws) : ws_(std::move(ws)) {}
  bool output(std::string_view bytes) override {
    auto ws = ws_.lock();
    return ws && ws->send(std::string(bytes), /*binary=*/true);
  }
  void ended(const std::string& reason) override {
    if (auto ws = ws_.lock()) ws->close(reason);
  }

 private:
  std::weak_ptr<WebSocket> ws_;
};

Result<core::ConsoleKind> kindFromBody(const json& body) {
  if (!body.is_object()) return Error::invalidInput("body", body.dump(), "must be a JSON object");
  auto it = body.find("kind");
  if (it == body.end() || it->is_null()) return core::ConsoleKind::Serial;
  if (!it->is_string()) return Error::invalidInput("kind", it->dump(), "must be \"serial\" or \"vnc\"");
  auto k = core::parseConsoleKind(it->get<std::string>());
  if (!k) return Error::invalidInput("kind", it->get<std::string>(), "must be \"serial\" or \"vnc\"");
  return *k;
}

std::string consolePath(const std::string& vm, core::ConsoleKind kind) {
  return fmt::format("/api/v1/vms/{}/console/{}", vm, core::consoleKindName(kind));
}

Response mintToken(core::VmManager& vms, core::ConsoleTokens& tokens, core::Identity& identity, const Request& req,
                   const core::Principal& who) {
  return withBody(req, kindFromBody, [&](core::ConsoleKind kind) {
    const std::string& name = req.params.at("name");
    auto minted = core::mintConsoleToken(vms, tokens, identity, who, name, kind);
    if (!minted.ok()) return Response::error(minted.error());
    spdlog::info("console token vm={} kind={} for={} via={}", name, core::consoleKindName(kind), who.login, who.via);
    return Response::json(
        200, json{{"token", minted->token},
                  {"kind", core::consoleKindName(kind)},
                  {"expires_at", core::formatRfc3339(std::chrono::system_clock::time_point(
                                     std::chrono::seconds(minted->expiresAt)))},
                  {"path", consolePath(name, kind)}});
  });
}

// Wires an open console session to the socket: its messages are input, its
// close ends the session.
void attachToSocket(const std::shared_ptr<WebSocket>& ws, Result<std::unique_ptr<core::ConsoleSession>> opened) {
  if (!opened.ok()) {
    ws->onMessage([](std::string, bool) {});
    ws->onClose([] {});
    ws->close(opened.error().message);
    return;
  }
  std::shared_ptr<core::ConsoleSession> session = std::move(opened).take();
  ws->onMessage([session](std::string data, bool) { session->input(std::move(data)); });
  ws->onClose([session] { session->close(); });
}

WsHandler consoleSocket(core::VmManager& vms, core::ConsoleTokens& tokens, core::Identity& identity,
                        core::ConsoleKind kind, ConsoleRouteOptions opts) {
  return [&vms, &tokens, &identity, kind, opts](const Request& req) -> Result<WsAccept> {
    std::string name = req.params.at("name");
    auto token = req.query.find("token");
    auto who = CORRAL_TRY(core::redeemConsoleToken(vms, tokens, identity,
                                                   token == req.query.end() ? std::string() : token->second, name,
                                                   kind));
    spdlog::info("console open vm={} kind={} user={} req={}", name, core::consoleKindName(kind), who.login,
                 req.requestId);
    return WsAccept([&vms, kind, opts, who = std::move(who), name](std::shared_ptr<WebSocket> ws) {
      auto viewer = std::make_shared<WsViewer>(ws);
      attachToSocket(ws, kind == core::ConsoleKind::Serial ? vms.attachSerial(who, name, viewer, opts.historyBytes)
                                                 : vms.openVnc(who, name, viewer));
    });
  };
}

}  // namespace

void addConsoleRoutes(Router& router, core::VmManager& vms, core::ConsoleTokens& tokens, core::Identity& identity,
                      ConsoleRouteOptions opts) {
  router.add("POST", "/api/v1/vms/{name}/console/token",
             authed([&vms, &tokens, &identity](const Request& req, const core::Principal& who) {
               return mintToken(vms, tokens, identity, req, who);
             }));
  router.addWebSocket("/api/v1/vms/{name}/console/serial",
                      consoleSocket(vms, tokens, identity, core::ConsoleKind::Serial, opts),
                      /*selfAuthenticated=*/true);
  router.addWebSocket("/api/v1/vms/{name}/console/vnc",
                      consoleSocket(vms, tokens, identity, core::ConsoleKind::Vnc, opts),
                      /*selfAuthenticated=*/true);
  router.add("POST", "/api/v1/admin/console-key/rotate",
             authed([&tokens](const Request&, const core::Principal& who) {
               if (auto r = adminOnly(who, "may rotate the console token key"); !r.ok())
                 return Response::error(r.error());
               auto r = tokens.rotate();
               if (r.ok()) spdlog::warn("console token key rotated by {}: every outstanding token is void", who.login);
               return noContentOr(r);
             }));
}

}  // namespace corral::api
