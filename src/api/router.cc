// Route matching, Request/Response helpers and request ids. See router.h.
#include "api/router.h"

#include <atomic>
#include <cctype>
#include <future>
#include <random>
#include <set>

#include <fmt/format.h>

#include "api/http_error.h"

namespace corral::api {
namespace {

std::vector<std::string_view> splitPath(std::string_view path) {
  std::vector<std::string_view> out;
  // "/a/b/" and "/a/b" are the same resource; "/" is zero segments.
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  while (!path.empty()) {
    size_t slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

bool isParam(std::string_view seg) { return seg.size() >= 2 && seg.front() == '{' && seg.back() == '}'; }

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<nlohmann::json> Request::jsonBody() const {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) return nlohmann::json::object();
  // An HTML form can post text/plain, urlencoded or multipart to any origin
  // without asking; only a script can send application/json, and a browser asks
  // the server (CORS) first. So no other type is read as JSON.
  const std::string& type = header("content-type");
  std::string media = type.substr(0, type.find(';'));
  while (!media.empty() && (media.back() == ' ' || media.back() == '\t')) media.pop_back();
  for (char& c : media) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (media != "application/json")
    return Error::invalidInput("content-type", type.empty() ? "(none)" : type,
                               "must be application/json for a request with a JSON body");
  auto j = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Error::invalidInput("body", "", "is not valid JSON");
  return j;
}

Response Response::json(int status, const nlohmann::json& j) {
  Response r;
  r.status = status;
  // Replace invalid UTF-8 rather than throw: a handler echoing a user's bytes
  // must not turn into a 500.
  r.body = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  r.body += '\n';
  return r;
}

Response Response::text(int status, std::string body) {
  Response r;
  r.status = status;
  r.contentType = "text/plain; charset=utf-8";
  r.body = std::move(body);
  return r;
}

const std::string& Request::header(const std::string& lowercaseName) const {
  static const std::string kEmpty;
  auto it = headers.find(lowercaseName);
  return it == headers.end() ? kEmpty : it->second;
}

Response Response::error(const Error& e, std::string_view requestId) {
  std::string id(requestId.empty() ? currentRequestId() : requestId);
  logError(e, id);
  std::string reportId = e.code == ErrorCode::Internal ? reportInternalError(e, id) : std::string();
  Response r = json(httpStatus(e.code), errorBody(e, id, reportId));
  if (e.retryAfterSeconds > 0) r.headers["Retry-After"] = std::to_string(e.retryAfterSeconds);
  if (e.code == ErrorCode::Unauthenticated) r.headers["WWW-Authenticate"] = "Bearer realm=\"corral\"";
  return r;
}

Response Response::noContent() {
  Response r;
  r.status = 204;
  r.contentType.clear();
  return r;
}

Response Response::deferred(std::function<void(Answer)> start) {
  Response r;
  r.later = std::move(start);
  return r;
}

Response settle(Response r) {
  if (!r.later) return r;
  auto answer = std::make_shared<std::promise<Response>>();
  auto future = answer->get_future();
  auto start = std::move(r.later);
  start([answer](Response a) { answer->set_value(std::move(a)); });
  return future.get();
}

void Router::add(std::string method, std::string pattern, Handler h) {
  Route r;
  for (auto seg : splitPath(pattern)) r.segments.emplace_back(seg);
  r.method = std::move(method);
  r.pattern = std::move(pattern);
  r.handler = std::move(h);
  routes_.push_back(std::move(r));
}

void Router::addWebSocket(std::string pattern, WsHandler h, bool selfAuthenticated) {
  add("GET", std::move(pattern), [](const Request& req) {
    return Response::error(Error::invalidInput("upgrade", req.header("upgrade"),
                                               "this path is a WebSocket: send a GET with Upgrade: websocket"),
                           req.requestId);
  });
  routes_.back().wsHandler = std::move(h);
  routes_.back().wsSelfAuthenticated = selfAuthenticated;
}

const Router::Route* Router::match(Request& req, std::set<std::string>* allowed) const {
  auto segs = splitPath(req.path);
  const Route* best = nullptr;
  // Specificity: at the first segment where two matching patterns differ, the
  // literal wins. Encoded as a bit string, most significant = first segment.
  auto literalMask = [](const Route& r) {
    std::vector<bool> m;
    for (const auto& s : r.segments) m.push_back(!isParam(s));
    return m;
  };
  for (const auto& r : routes_) {
    if (r.segments.size() != segs.size()) continue;
    bool match = true;
    for (size_t i = 0; i < segs.size() && match; ++i)
      match = isParam(r.segments[i]) ? !segs[i].empty() : r.segments[i] == segs[i];
    if (!match) continue;
    allowed->insert(r.method);
    if (r.method != req.method) continue;
    if (best == nullptr || literalMask(r) > literalMask(*best)) best = &r;
  }
  if (best == nullptr) return nullptr;
  req.route = best->pattern;
  req.params.clear();
  for (size_t i = 0; i < segs.size(); ++i) {
    const auto& s = best->segments[i];
    if (isParam(s)) req.params[s.substr(1, s.size() - 2)] = percentDecode(segs[i], false);
  }
  return best;
}

void Router::addUpload(std::string method, std::string pattern, Admit admit, Handler h) {
  // The transport sends a request here to the upload path (matchUpload) before it
  // reads the body; dispatch() reaching this route means that did not happen, and
  // the handler must not run without its file.
  add(std::move(method), std::move(pattern), [](const Request& req) {
    return Response::error(Error::internal(fmt::format("upload route {} reached without a streamed body", req.path)),
                           req.requestId);
  });
  routes_.back().upload = std::make_shared<UploadRoute>(UploadRoute{std::move(admit), std::move(h)});
}

const Router::UploadRoute* Router::matchUpload(Request& req) const {
  std::set<std::string> allowed;
  const Route* r = match(req, &allowed);
  return r != nullptr ? r->upload.get() : nullptr;
}

const WsHandler* Router::matchWebSocket(Request& req, bool* selfAuthenticated) const {
  std::set<std::string> allowed;
  const Route* r = match(req, &allowed);
  if (r == nullptr || !r->wsHandler) return nullptr;
  if (selfAuthenticated != nullptr) *selfAuthenticated = r->wsSelfAuthenticated;
  return &r->wsHandler;
}

Response Router::dispatch(Request& req) const {
  std::set<std::string> allowed;
  const Route* best = match(req, &allowed);
  if (best == nullptr) {
    if (allowed.empty())
      return Response::error(Error::notFound(fmt::format("no such API path: {}", req.path)), req.requestId);
    std::string allow;
    for (const auto& m : allowed) allow += (allow.empty() ? "" : ", ") + m;
    Error e{ErrorCode::InvalidInput, fmt::format("method {} is not allowed on {} (allowed: {})", req.method,
                                                 req.path, allow), "method", req.method};
    Response resp = Response::json(405, errorBody(e, req.requestId));
    resp.headers["Allow"] = allow;
    return resp;
  }
  return best->handler(req);
}

std::vector<std::pair<std::string, std::string>> Router::routes() const {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(routes_.size());
  for (const auto& r : routes_) out.emplace_back(r.method, r.pattern);
  return out;
}

std::string newRequestId() {
  static const uint64_t prefix = [] {
    std::random_device rd;
    return (uint64_t(rd()) << 32) | rd();
  }();
  static std::atomic<uint64_t> counter{0};
  // Mixing the counter in keeps ids unique within a process; the random prefix
  // keeps them apart across daemon restarts.
  uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  uint64_t x = prefix ^ (n * 0x9E3779B97F4A7C15ULL);
  return fmt::format("{:016x}", x);
}

std::string percentDecode(std::string_view s, bool plusAsSpace) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hexValue(s[i + 1]), lo = hexValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out += char(hi * 16 + lo);
        i += 2;
        continue;
      }
    }
    out += (plusAsSpace && c == '+') ? ' ' : c;
  }
  return out;
}

std::map<std::string, std::string> parseQuery(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    if (!pair.empty()) {
      size_t eq = pair.find('=');
      std::string key = percentDecode(pair.substr(0, eq), true);
      std::string value = eq == std::string_view::npos ? "" : percentDecode(pair.substr(eq + 1), true);
      out[std::move(key)] = std::move(value);
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

}  // namespace corral::api
