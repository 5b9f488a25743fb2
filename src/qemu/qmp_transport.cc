#include "qemu/qmp_transport.h"

#include <condition_variable>
#include <utility>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "qemu/event_match.h"

namespace corral::qemu {

namespace asio = boost::asio;
using Json = nlohmann::json;

namespace {

QmpError makeError(QmpError::Kind kind, std::string command, std::string errorClass,
                   std::string description) {
  QmpError e;
  e.kind = kind;
  const std::string_view cmd = command.empty() ? std::string_view("QMP") : std::string_view(command);
  switch (kind) {
    case QmpError::Kind::Refused:
      e.code = ErrorCode::FailedPrecondition;
      e.message = fmt::format("QEMU refused {}: {} ({})", cmd, description, errorClass);
      break;
    case QmpError::Kind::Disconnected:
      e.code = ErrorCode::Unavailable;
      e.message = fmt::format("QMP connection lost during {}: {}", cmd, description);
      break;
    case QmpError::Kind::Timeout:
      e.code = ErrorCode::Timeout;
      e.message = fmt::format("QMP {} timed out: {}", cmd, description);
      break;
    case QmpError::Kind::Protocol:
      e.code = ErrorCode::Internal;
      e.message = fmt::format("QMP protocol broken during {}: {}", cmd, description);
      break;
  }
  e.command = std::move(command);
  e.errorClass = std::move(errorClass);
  e.description = std::move(description);
  return e;
}

// A short, printable excerpt of a bad line for error messages.
std::string excerpt(std::string_view line) {
  constexpr std::size_t kMax = 80;
  std::string out;
  for (char c : line.substr(0, kMax)) out.push_back((c >= 0x20 && c < 0x7f) ? c : '?');
  if (line.size() > kMax) out += "...";
  return out;
}

bool hasDeadline(QmpTransport::Millis timeout) {
  // Past ~10 years a deadline means "none" (and now()+max would overflow).
  return timeout.count() > 0 && timeout < std::chrono::hours(24 * 365 * 10);
}

std::string eventWaitName(std::string_view name) { return fmt::format("wait for event {}", name); }

// The rendezvous of a synchronous call: one allocation, shared with the callback so
// that a caller giving up early never leaves the callback a dangling pointer.
template <class T>
struct SyncSlot {
  std::mutex mutex;
  std::condition_variable cv;
  std::optional<QmpResult<T>> result;

  void set(QmpResult<T>&& r) {
    {
      std::lock_guard lock(mutex);
      result.emplace(std::move(r));
    }
    cv.notify_one();
  }
};

// Waits for the slot. The transport always answers within the command's own
// timeout; the grace period only guards against an io_context nobody runs.
template <class T>
QmpResult<T> waitSlot(SyncSlot<T>& slot, QmpTransport::Millis timeout, std::string_view what) {
  std::unique_lock lock(slot.mutex);
  if (hasDeadline(timeout)) {
    auto grace = timeout + std::chrono::seconds(5);
    if (!slot.cv.wait_for(lock, grace, [&] { return slot.result.has_value(); })) {
      return QmpError::timeout(std::string(what), grace);
    }
  } else {
    slot.cv.wait(lock, [&] { return slot.result.has_value(); });
  }
  return std::move(*slot.result);
}

}  // namespace

QmpError QmpError::refused(std::string command, std::string errorClass, std::string description) {
  return makeError(Kind::Refused, std::move(command), std::move(errorClass), std::move(description));
}
QmpError QmpError::disconnected(std::string command, std::string why) {
  return makeError(Kind::Disconnected, std::move(command), {}, std::move(why));
}
QmpError QmpError::timeout(std::string command, std::chrono::milliseconds after) {
  return makeError(Kind::Timeout, std::move(command), {},
                   fmt::format("no answer within {} ms", after.count()));
}
QmpError QmpError::protocol(std::string command, std::string why) {
  return makeError(Kind::Protocol, std::move(command), {}, std::move(why));
}
QmpError QmpError::forCommand(std::string otherCommand) const {
  return makeError(kind, std::move(otherCommand), errorClass, description);
}

std::string_view toString(QmpError::Kind kind) {
  switch (kind) {
    case QmpError::Kind::Refused: return "refused";
    case QmpError::Kind::Disconnected: return "disconnected";
    case QmpError::Kind::Timeout: return "timeout";
    case QmpError::Kind::Protocol: return "protocol";
  }
  return "protocol";
}

std::shared_ptr<QmpTransport> QmpTransport::create(asio::io_context& io, Options options) {
  return std::shared_ptr<QmpTransport>(new QmpTransport(io, options));
}

QmpTransport::QmpTransport(asio::io_context& io, Options options)
    : io_(io),
      strand_(asio::make_strand(io)),
      socket_(strand_),
      readBuf_(options.maxLineBytes),
      options_(options) {}

QmpTransport::~QmpTransport() {
  // Handlers hold a shared_ptr, so nothing runs on the strand any more: either the
  // connection was closed, or the io_context was stopped with work still queued.
  // Either way no reply can come; tell every caller rather than leave it waiting.
  try {
    auto why = QmpError::disconnected({}, "QMP client destroyed");
    auto pending = std::move(pending_);
    for (auto& [id, p] : pending) {
      if (p.done) p.done(why.forCommand(p.command));
    }
    auto waiters = std::move(waiters_);
    for (auto& w : waiters) {
      if (w.done) w.done(why.forCommand(eventWaitName(w.name)));
    }
    if (connectDone_) std::exchange(connectDone_, nullptr)(why.forCommand("connect"));
  } catch (...) {
    // A callback threw; destructors never throw (STYLE.md §5).
  }
}

// ---------------------------------------------------------------- public, any thread

void QmpTransport::connect(std::string path, Millis timeout, ConnectCallback done) {
  asio::post(strand_, [self = shared_from_this(), path = std::move(path), timeout,
                       done = std::move(done)]() mutable {
    self->doConnect(std::move(path), timeout, std::move(done));
  });
}

void QmpTransport::execute(std::string command, Json arguments, Millis timeout, ReplyCallback done) {
  asio::post(strand_, [self = shared_from_this(), command = std::move(command),
                       arguments = std::move(arguments), timeout, done = std::move(done)]() mutable {
    self->doExecute(std::move(command), std::move(arguments), timeout, std::move(done));
  });
}

void QmpTransport::waitEvent(std::string name, Json match, Millis timeout, ReplyCallback done) {
  asio::post(strand_, [self = shared_from_this(), name = std::move(name), match = std::move(match),
                       timeout, done = std::move(done)]() mutable {
    self->doWaitEvent(std::move(name), std::move(match), timeout, std::move(done));
  });
}

std::uint64_t QmpTransport::onEvent(EventCallback handler) {
  // The id is taken here so the caller has it at once; only the strand touches the list.
  static std::atomic<std::uint64_t> nextId{1};
  std::uint64_t id = nextId.fetch_add(1);
  asio::post(strand_, [self = shared_from_this(), id, handler = std::move(handler)]() mutable {
    self->eventHandlers_.emplace_back(id, std::move(handler));
  });
  return id;
}

void QmpTransport::removeEventHandler(std::uint64_t id) {
  asio::post(strand_, [self = shared_from_this(), id] {
    std::erase_if(self->eventHandlers_, [id](const auto& h) { return h.first == id; });
  });
}

void QmpTransport::onDisconnect(DisconnectCallback handler) {
  asio::post(strand_, [self = shared_from_this(), handler = std::move(handler)]() mutable {
    self->disconnectHandlers_.push_back(std::move(handler));
  });
}

void QmpTransport::clearEvents() {
  asio::post(strand_, [self = shared_from_this()] { self->events_.clear(); });
}

void QmpTransport::close() {
  asio::post(strand_, [self = shared_from_this()] {
    self->doClose(QmpError::disconnected({}, "connection closed by corral"), false);
  });
}

std::optional<QmpGreeting> QmpTransport::greeting() const {
  std::lock_guard lock(greetingMutex_);
  return greeting_;
}

QmpResult<QmpGreeting> QmpTransport::connectSync(std::string path, Millis timeout) {
  assert(!io_.get_executor().running_in_this_thread() && "connectSync on the io_context thread");
  auto slot = std::make_shared<SyncSlot<QmpGreeting>>();
  connect(std::move(path), timeout, [slot](QmpResult<QmpGreeting> r) { slot->set(std::move(r)); });
  return waitSlot(*slot, timeout, "connect");
}

QmpResult<Json> QmpTransport::executeSync(std::string command, Json arguments, Millis timeout) {
  assert(!io_.get_executor().running_in_this_thread() && "executeSync on the io_context thread");
  auto slot = std::make_shared<SyncSlot<Json>>();
  std::string name = hasDeadline(timeout) ? command : std::string();
  // At debug level every command is logged with its time, under the request id
  // of the action that sent it (util/logging.h): the last hop of that action.
  std::string logged = spdlog::should_log(spdlog::level::debug) ? command : std::string();
  auto started = std::chrono::steady_clock::now();
  execute(std::move(command), std::move(arguments), timeout,
          [slot](QmpResult<Json> r) { slot->set(std::move(r)); });
  auto r = waitSlot(*slot, timeout, name);
  if (!logged.empty()) {
    std::chrono::duration<double, std::milli> ms = std::chrono::steady_clock::now() - started;
    spdlog::debug("qmp {} {:.1f}ms {}", logged, ms.count(), r.ok() ? "ok" : toString(r.error().kind));
  }
  return r;
}

QmpResult<Json> QmpTransport::waitEventSync(std::string name, Json match, Millis timeout) {
  assert(!io_.get_executor().running_in_this_thread() && "waitEventSync on the io_context thread");
  auto slot = std::make_shared<SyncSlot<Json>>();
  std::string what = eventWaitName(name);
  waitEvent(std::move(name), std::move(match), timeout,
            [slot](QmpResult<Json> r) { slot->set(std::move(r)); });
  return waitSlot(*slot, timeout, what);
}

// ---------------------------------------------------------------- on the strand

void QmpTransport::doConnect(std::string path, Millis timeout, ConnectCallback done) {
  if (state_ != State::Idle) {
    done(QmpError::disconnected("connect", state_ == State::Closed ? "transport already closed"
                                                                   : "connect called twice"));
    return;
  }
  asio::local::stream_protocol::endpoint endpoint;
  try {
    endpoint = asio::local::stream_protocol::endpoint(path);
  } catch (const std::exception& e) {
    done(QmpError::disconnected("connect", fmt::format("bad socket path {}: {}", path, e.what())));
    return;
  }
  state_ = State::Connecting;
  connectDone_ = std::move(done);
  auto self = shared_from_this();
  if (hasDeadline(timeout)) {
    connectTimer_ = std::make_unique<asio::steady_timer>(strand_, timeout);
    connectTimer_->async_wait([self, timeout](const boost::system::error_code& ec) {
      if (ec || !self->connectDone_) return;
      self->fail(QmpError::timeout("connect", timeout));
    });
  }
  socket_.async_connect(endpoint, [self, path](const boost::system::error_code& ec) {
    if (self->state_ != State::Connecting) return;
    if (ec) {
      self->fail(QmpError::disconnected("connect",
                                        fmt::format("cannot connect to {}: {}", path, ec.message())));
      return;
    }
    self->state_ = State::Greeting;
    self->startRead();
  });
}

void QmpTransport::doExecute(std::string command, Json arguments, Millis timeout, ReplyCallback done) {
  const bool negotiating = state_ == State::Negotiating && command == "qmp_capabilities";
  if (state_ != State::Ready && !negotiating) {
    done(QmpError::disconnected(std::move(command), state_ == State::Closed ? "connection is closed"
                                                                            : "not connected yet"));
    return;
  }
  const std::uint64_t id = nextId_++;

  Json msg = Json::object();
  msg["execute"] = command;
  if (!arguments.is_null() && !(arguments.is_object() && arguments.empty())) {
    msg["arguments"] = std::move(arguments);
  }
  msg["id"] = id;
  // Replace, not throw, on invalid UTF-8: names were validated upstream, and a
  // mangled name gets a clean refusal from QEMU instead of an exception here.
  std::string line = msg.dump(-1, ' ', false, Json::error_handler_t::replace);
  line.push_back('\n');

  Pending p{std::move(command), std::move(done), nullptr};
  if (hasDeadline(timeout)) {
    p.timer = std::make_unique<asio::steady_timer>(strand_, timeout);
    p.timer->async_wait([self = shared_from_this(), id, timeout](const boost::system::error_code& ec) {
      if (!ec) self->onCommandTimeout(id, timeout);
    });
  }
  pending_.emplace(id, std::move(p));
  sendLine(std::move(line));
}

void QmpTransport::onCommandTimeout(std::uint64_t id, Millis after) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;  // the reply won the race
  Pending p = std::move(it->second);
  pending_.erase(it);
  abandoned_.insert(id);
  abandonedOrder_.push_back(id);
  if (abandonedOrder_.size() > options_.maxQueuedEvents) {
    abandoned_.erase(abandonedOrder_.front());
    abandonedOrder_.pop_front();
  }
  p.done(QmpError::timeout(std::move(p.command), after));
}

void QmpTransport::doWaitEvent(std::string name, Json match, Millis timeout, ReplyCallback done) {
  // Queued events first, also after the connection ended: the SHUTDOWN that came
  // just before QEMU exited is exactly what a caller waits for.
  for (auto it = events_.begin(); it != events_.end(); ++it) {
    auto n = it->find("event");
    if (n != it->end() && *n == name && eventMatches(*it, match)) {
      Json event = std::move(*it);
      events_.erase(it);
      done(std::move(event));
      return;
    }
  }
  if (state_ == State::Closed) {
    done(QmpError::disconnected(eventWaitName(name), "connection is closed"));
    return;
  }
  Waiter w{nextWaiterId_++, std::move(name), std::move(match), std::move(done), nullptr};
  if (hasDeadline(timeout)) {
    w.timer = std::make_unique<asio::steady_timer>(strand_, timeout);
    w.timer->async_wait([self = shared_from_this(), id = w.id, timeout](const boost::system::error_code& ec) {
      if (!ec) self->onWaiterTimeout(id, timeout);
    });
  }
  waiters_.push_back(std::move(w));
}

void QmpTransport::onWaiterTimeout(std::uint64_t waiterId, Millis after) {
  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (it->id != waiterId) continue;
    Waiter w = std::move(*it);
    waiters_.erase(it);
    w.done(QmpError::timeout(eventWaitName(w.name), after));
    return;
  }
}

void QmpTransport::sendLine(std::string&& line) {
  queued_ += line;
  if (!writeInFlight_) startWrite();
}

void QmpTransport::startWrite() {
  // Everything queued while the last write was in flight goes out in one write.
  writing_.swap(queued_);
  queued_.clear();
  writeInFlight_ = true;
  asio::async_write(socket_, asio::buffer(writing_),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->writeInFlight_ = false;
                      if (self->state_ == State::Closed) return;
                      if (ec) {
                        self->fail(QmpError::disconnected({}, fmt::format("write failed: {}", ec.message())));
                        return;
                      }
                      if (!self->queued_.empty()) self->startWrite();
                    });
}

void QmpTransport::startRead() {
  asio::async_read_until(
      socket_, readBuf_, '\n',
      [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
        if (self->state_ == State::Closed) return;
        if (ec == asio::error::not_found) {
          self->fail(QmpError::protocol(
              {}, fmt::format("a line longer than {} bytes", self->options_.maxLineBytes)));
          return;
        }
        if (ec) {
          self->fail(QmpError::disconnected(
              {}, ec == asio::error::eof ? std::string("QEMU closed the connection") : ec.message()));
          return;
        }
        // streambuf's readable bytes are one contiguous block: parse them in place.
        const char* data = static_cast<const char*>(self->readBuf_.data().data());
        self->onLine(std::string_view(data, n - 1));
        self->readBuf_.consume(n);
        if (self->state_ != State::Closed) self->startRead();
      });
}

void QmpTransport::onLine(std::string_view line) {
  Json msg = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (msg.is_discarded()) {
    fail(QmpError::protocol({}, fmt::format("not JSON: {}", excerpt(line))));
    return;
  }
  if (!msg.is_object()) {
    fail(QmpError::protocol({}, fmt::format("not a JSON object: {}", excerpt(line))));
    return;
  }
  if (state_ == State::Greeting) {
    onGreeting(std::move(msg));
  } else if (msg.contains("return") || msg.contains("error")) {
    onReply(std::move(msg));
  } else if (msg.contains("event")) {
    onEventReceived(std::move(msg));
  } else {
    fail(QmpError::protocol({}, fmt::format("neither reply nor event: {}", excerpt(line))));
  }
}

void QmpTransport::onGreeting(Json&& msg) {
  auto qmp = msg.find("QMP");
  if (qmp == msg.end() || !qmp->is_object()) {
    fail(QmpError::protocol("connect", "the first message is not a QMP greeting"));
    return;
  }
  QmpGreeting g;
  const Json& version = qmp->value("version", Json::object());
  const Json& qemu = version.value("qemu", Json::object());
  g.major = qemu.value("major", 0);
  g.minor = qemu.value("minor", 0);
  g.micro = qemu.value("micro", 0);
  g.package = version.value("package", std::string());
  if (auto caps = qmp->find("capabilities"); caps != qmp->end() && caps->is_array()) {
    for (const auto& c : *caps) {
      if (c.is_string()) g.capabilities.push_back(c.get<std::string>());
    }
  }
  g.raw = std::move(msg);
  state_ = State::Negotiating;
  doExecute("qmp_capabilities", nullptr, kNoTimeout,
            [self = shared_from_this(), g = std::move(g)](QmpResult<Json> r) mutable {
              if (!self->connectDone_) return;  // timed out or closed meanwhile
              if (!r.ok()) {
                self->fail(std::move(r).error().forCommand("connect"));
                return;
              }
              self->state_ = State::Ready;
              self->connectTimer_.reset();
              {
                std::lock_guard lock(self->greetingMutex_);
                self->greeting_ = g;
              }
              std::exchange(self->connectDone_, nullptr)(std::move(g));
            });
}

void QmpTransport::onReply(Json&& msg) {
  auto idIt = msg.find("id");
  if (idIt == msg.end() || !idIt->is_number_unsigned()) {
    // QEMU answers input it could not parse with an id-less error: we sent garbage.
    std::string desc;
    if (auto e = msg.find("error"); e != msg.end() && e->is_object()) desc = e->value("desc", "");
    fail(QmpError::protocol({}, desc.empty() ? std::string("a reply without our id")
                                             : fmt::format("a reply without our id: {}", desc)));
    return;
  }
  const auto id = idIt->get<std::uint64_t>();
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    if (abandoned_.erase(id) > 0) {
      spdlog::debug("qmp: dropping the late reply to command id {} (timed out)", id);
      return;
    }
    fail(QmpError::protocol({}, fmt::format("a reply to id {}, which was never sent", id)));
    return;
  }
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer) p.timer->cancel();

  if (auto err = msg.find("error"); err != msg.end()) {
    std::string cls = "GenericError";
    std::string desc;
    if (err->is_object()) {
      if (auto c = err->find("class"); c != err->end() && c->is_string()) cls = c->get<std::string>();
      if (auto d = err->find("desc"); d != err->end() && d->is_string()) desc = d->get<std::string>();
    }
    p.done(QmpError::refused(std::move(p.command), std::move(cls), std::move(desc)));
    return;
  }
  p.done(std::move(msg["return"]));
}

void QmpTransport::onEventReceived(Json&& event) {
  auto name = event.find("event");
  if (name == event.end() || !name->is_string()) {
    fail(QmpError::protocol({}, "an event without a name"));
    return;
  }
  for (const auto& [id, handler] : eventHandlers_) handler(event);

  for (auto it = waiters_.begin(); it != waiters_.end(); ++it) {
    if (*name == it->name && eventMatches(event, it->match)) {
      Waiter w = std::move(*it);
      waiters_.erase(it);
      if (w.timer) w.timer->cancel();
      w.done(std::move(event));
      return;
    }
  }
  events_.push_back(std::move(event));
  if (events_.size() > options_.maxQueuedEvents) {
    spdlog::debug("qmp: event queue full, dropping unconsumed {}", events_.front().value("event", "?"));
    events_.pop_front();
  }
}

void QmpTransport::fail(QmpError why) {
  doClose(std::move(why), state_ == State::Ready);
}

void QmpTransport::doClose(QmpError why, bool notifyDisconnect) {
  if (state_ == State::Closed) return;
  state_ = State::Closed;
  boost::system::error_code ignored;
  socket_.close(ignored);
  if (connectTimer_) connectTimer_->cancel();

  // Move everything out first: a callback may call back into the transport.
  auto pending = std::move(pending_);
  pending_.clear();
  auto waiters = std::move(waiters_);
  waiters_.clear();
  auto connectDone = std::exchange(connectDone_, nullptr);

  for (auto& [id, p] : pending) {
    if (p.timer) p.timer->cancel();
    p.done(why.forCommand(p.command));
  }
  for (auto& w : waiters) {
    if (w.timer) w.timer->cancel();
    w.done(why.forCommand(eventWaitName(w.name)));
  }
  if (connectDone) connectDone(why.forCommand("connect"));
  if (notifyDisconnect) {
    for (const auto& handler : disconnectHandlers_) handler(why);
  }
}

}  // namespace corral::qemu
