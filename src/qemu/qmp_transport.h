// QmpTransport: the bottom of the QMP client (STYLE.md §3). It owns one unix-socket
// connection to a QEMU monitor and does the framing (one JSON object per line), the
// greeting and capability negotiation, the matching of replies to commands by "id",
// per-command timeouts and the queue of events nobody has consumed yet.
//
// It knows no command beyond qmp_capabilities: typed commands are Monitor's
// (monitor.h), and what an event means to a VM is MonitorEvents' (monitor_events.h).
// It does not start or watch QEMU (qemu::Machine does) and does not retry a refused
// connect: the caller knows whether QEMU is still alive to wait for.
//
// Errors say which of four things happened (QmpError::Kind): QEMU refused the command
// (with its error class and description), the connection was lost, the reply did not
// come in time, or the peer broke the protocol. A broken protocol is fatal to the
// connection: the stream can no longer be trusted, so it is closed and every pending
// command fails.
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/streambuf.hpp>
#include <nlohmann/json.hpp>

#include "util/result.h"

namespace corral::qemu {

// One failure of a QMP exchange. It IS a corral::Error (code and message already
// filled in), so CORRAL_TRY on a QmpResult propagates it into any Result<T>; the
// extra fields let qemu/ and core/ react to the kind without parsing messages.
struct QmpError : Error {
  enum class Kind {
    Refused,       // QEMU answered {"error": ...}: errorClass and description are QEMU's
    Disconnected,  // the connection is gone (QEMU exited, closed, or we closed it)
    Timeout,       // no reply (or event) within the time given
    Protocol,      // the peer sent something that is not QMP; the connection was dropped
  };

  Kind kind = Kind::Protocol;
  std::string command;      // the QMP command (or "event NAME" for waits, "connect")
  std::string errorClass;   // Refused only: "GenericError", "CommandNotFound", ...
  std::string description;  // Refused: QEMU's "desc"; otherwise what happened

  // Refused maps to FailedPrecondition: QEMU understood the command and declined it
  // in its current state (no balloon device, unknown node); the guest is not at fault
  // and neither is the protocol.
  static QmpError refused(std::string command, std::string errorClass, std::string description);
  static QmpError disconnected(std::string command, std::string why);
  static QmpError timeout(std::string command, std::chrono::milliseconds after);
  static QmpError protocol(std::string command, std::string why);
  // The same failure, told about another command (when one loss fails many).
  QmpError forCommand(std::string otherCommand) const;

  // The plain Error, sliced on purpose (what crosses layer boundaries).
  const Error& toError() const { return *this; }
};

std::string_view toString(QmpError::Kind kind);

// Result<T> with a QmpError: the same shape as corral::Result, convertible into it.
template <class T>
class [[nodiscard]] QmpResult {
 public:
  QmpResult(T value) : v_(std::in_place_index<0>, std::move(value)) {}     // NOLINT: implicit
  QmpResult(QmpError error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { assert(ok()); return std::get<0>(v_); }
  const T& value() const& { assert(ok()); return std::get<0>(v_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(v_)); }
  T take() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  const QmpError& error() const& { assert(!ok()); return std::get<1>(v_); }
  QmpError&& error() && { assert(!ok()); return std::get<1>(std::move(v_)); }

  operator Result<T>() && {  // NOLINT: implicit by design
    if (ok()) return Result<T>(std::get<0>(std::move(v_)));
    return Result<T>(static_cast<Error>(std::get<1>(std::move(v_))));
  }

 private:
  std::variant<T, QmpError> v_;
};

template <>
class [[nodiscard]] QmpResult<void> {
 public:
  QmpResult() = default;
  QmpResult(QmpError error) : e_(std::move(error)) {}  // NOLINT: implicit by design
  bool ok() const { return !e_.has_value(); }
  explicit operator bool() const { return ok(); }
  void take() && {}
  const QmpError& error() const& { assert(!ok()); return *e_; }
  QmpError&& error() && { assert(!ok()); return std::move(*e_); }
  operator Result<void>() && {  // NOLINT: implicit by design
    if (ok()) return {};
    return Result<void>(static_cast<Error>(std::move(*e_)));
  }

 private:
  std::optional<QmpError> e_;
};

// What QEMU said about itself in its greeting.
struct QmpGreeting {
  int major = 0;
  int minor = 0;
  int micro = 0;
  std::string package;                    // e.g. "Debian 1:7.2+dfsg-7+deb12u18+b3"
  std::vector<std::string> capabilities;  // e.g. {"oob"}; none is enabled by us
  nlohmann::json raw;                     // the whole greeting object
};

class QmpTransport : public std::enable_shared_from_this<QmpTransport> {
 public:
  using Json = nlohmann::json;
  using Millis = std::chrono::milliseconds;

  // No deadline. Any timeout <= 0 means the same.
  static constexpr Millis kNoTimeout{0};
  // QEMU sends one object per line; a line longer than this is a Protocol error
  // (a runaway peer must not make the daemon buffer without bound).
  static constexpr std::size_t kDefaultMaxLineBytes = 16 * 1024 * 1024;
  // Events nobody waits for are kept for a later waitEvent; past this many the
  // oldest are dropped (a long-lived daemon hears RTC_CHANGE and friends forever).
  static constexpr std::size_t kDefaultMaxQueuedEvents = 1024;

  struct Options {
    std::size_t maxLineBytes = kDefaultMaxLineBytes;
    std::size_t maxQueuedEvents = kDefaultMaxQueuedEvents;
  };

  using ConnectCallback = std::function<void(QmpResult<QmpGreeting>)>;
  using ReplyCallback = std::function<void(QmpResult<Json>)>;
  using EventCallback = std::function<void(const Json& event)>;
  using DisconnectCallback = std::function<void(const QmpError& why)>;

  // The transport runs on a strand of `io`; `io` must outlive it and be run by at
  // least one thread for anything to happen. Owned through shared_ptr so that
  // completion handlers keep it alive.
  static std::shared_ptr<QmpTransport> create(boost::asio::io_context& io, Options options);
  static std::shared_ptr<QmpTransport> create(boost::asio::io_context& io) { return create(io, Options{}); }

  // Fails every pending command and waiter with Disconnected; never throws.
  ~QmpTransport();
  QmpTransport(const QmpTransport&) = delete;
  QmpTransport& operator=(const QmpTransport&) = delete;

  // ---- Asynchronous API: callable from any thread. Every callback runs on the
  // transport's strand, must not block, and may call back into the transport.

  // Connects to the QMP socket at `path`, reads the greeting and negotiates
  // capabilities (none enabled), all within `timeout`. Call once.
  void connect(std::string path, Millis timeout, ConnectCallback done);

  // Sends {"execute": command, "arguments": arguments, "id": N} and calls `done`
  // with the reply's "return" value, or the error. `arguments` null or {} is left
  // out. A reply arriving after the timeout fired is dropped quietly.
  void execute(std::string command, Json arguments, Millis timeout, ReplyCallback done);

  // Calls `done` with the first event named `name` that eventMatches `match` (null:
  // any): first from the events no one has consumed yet, oldest first, then as they
  // arrive. Events skipped stay queued for the next waiter (STYLE.md §5). Waiters are
  // served in the order they asked.
  void waitEvent(std::string name, Json match, Millis timeout, ReplyCallback done);

  // Every event, before any waiter sees it (so core/ hears SHUTDOWN, STOP, RESUME).
  // Returns an id for removeEventHandler. Handlers must outlive their registration.
  std::uint64_t onEvent(EventCallback handler);
  void removeEventHandler(std::uint64_t id);

  // Called once when an established connection ends for any reason but close().
  void onDisconnect(DisconnectCallback handler);

  // Drops the events queued for waiters.
  void clearEvents();

  // Closes the connection; pending commands and waiters fail with Disconnected.
  // Idempotent, callable from any thread.
  void close();

  // ---- Synchronous API for worker threads. Each posts to the strand and blocks
  // until done. Precondition: NOT called from a thread running `io` (that thread
  // would wait for itself); asserted in debug builds.
  QmpResult<QmpGreeting> connectSync(std::string path, Millis timeout);
  QmpResult<Json> executeSync(std::string command, Json arguments, Millis timeout);
  QmpResult<Json> waitEventSync(std::string name, Json match, Millis timeout);

  // The greeting of the current connection, once connect succeeded.
  std::optional<QmpGreeting> greeting() const;

 private:
  enum class State { Idle, Connecting, Greeting, Negotiating, Ready, Closed };

  struct Pending {
    std::string command;
    ReplyCallback done;
    std::unique_ptr<boost::asio::steady_timer> timer;  // null without a deadline
  };
  struct Waiter {
    std::uint64_t id;
    std::string name;
    Json match;
    ReplyCallback done;
    std::unique_ptr<boost::asio::steady_timer> timer;
  };

  QmpTransport(boost::asio::io_context& io, Options options);

  void doConnect(std::string path, Millis timeout, ConnectCallback done);
  void doExecute(std::string command, Json arguments, Millis timeout, ReplyCallback done);
  void doWaitEvent(std::string name, Json match, Millis timeout, ReplyCallback done);
  void doClose(QmpError why, bool notifyDisconnect);

  void startRead();
  void onLine(std::string_view line);
  void onGreeting(Json&& greeting);
  void onReply(Json&& reply);
  void onEventReceived(Json&& event);
  void fail(QmpError why);  // protocol or connection failure: close and notify
  void onCommandTimeout(std::uint64_t id, Millis after);
  void onWaiterTimeout(std::uint64_t waiterId, Millis after);
  void sendLine(std::string&& line);
  void startWrite();

  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::local::stream_protocol::socket socket_;
  boost::asio::streambuf readBuf_;
  Options options_;

  // Everything below is touched only on strand_ (except greeting, see greetingMutex_).
  State state_ = State::Idle;
  std::string writing_;  // bytes of the async_write in flight
  std::string queued_;   // bytes waiting for it to finish, written in one go next
  bool writeInFlight_ = false;

  std::uint64_t nextId_ = 1;
  std::unordered_map<std::uint64_t, Pending> pending_;
  // Ids whose timeout fired: their late reply is dropped rather than taken for a
  // protocol violation. Bounded by the same cap as the event queue.
  std::unordered_set<std::uint64_t> abandoned_;
  std::deque<std::uint64_t> abandonedOrder_;

  std::deque<Json> events_;  // not consumed by any waiter yet, oldest first
  std::deque<Waiter> waiters_;
  std::uint64_t nextWaiterId_ = 1;
  std::vector<std::pair<std::uint64_t, EventCallback>> eventHandlers_;
  std::vector<DisconnectCallback> disconnectHandlers_;

  ConnectCallback connectDone_;
  std::unique_ptr<boost::asio::steady_timer> connectTimer_;

  mutable std::mutex greetingMutex_;
  std::optional<QmpGreeting> greeting_;
};

}  // namespace corral::qemu
