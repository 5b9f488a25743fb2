// `corral console NAME [--escape KEY]`, `corral console NAME --log` and
// `corral console NAME --vnc [--listen HOST:PORT]`.
//
// Serial: mints a console token (POST .../console/token, the normal
// authentication), opens the console WebSocket with it, puts this terminal in
// raw mode and pumps stdin to the guest and the guest to stdout until the
// escape key (detach, exit 0), the daemon's close (its reason printed, exit
// 0), a signal (terminal restored first, exit 0) or a broken connection (exit
// 3). A refused upgrade exits 1 with the daemon's message.
//
// VNC: listens on a loopback TCP port and, for each viewer that connects,
// mints a token and carries RFB between the viewer and the VNC WebSocket,
// until Ctrl-C or SIGTERM. Each direction has one write in flight at a time
// and stops reading until it lands, so neither side can fill our memory.
//
// The rules about who may attach are the daemon's; this file only connects.
#include "cli/console.h"

#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <csignal>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "cli/context.h"
#include "cli/output.h"
#include "cli/parse.h"
#include "cli/terminal.h"
#include "cli/ws_duplex.h"

namespace corral::cli {

Result<std::optional<unsigned char>> parseEscapeKey(std::string_view text) {
  auto bad = [&] {
    return Error::invalidInput("--escape", std::string(text),
                               "give ^X for a control character (as ^] or ^A), one printable "
                               "character, or none");
  };
  if (text == "none") return std::optional<unsigned char>();
  if (text.size() == 2 && text[0] == '^') {
    unsigned char c = static_cast<unsigned char>(text[1]);
    if (c == '?') return std::optional<unsigned char>(0x7f);
    if (c >= 'a' && c <= 'z') c = static_cast<unsigned char>(c - 'a' + 'A');
    if (c >= '@' && c <= '_') return std::optional<unsigned char>(c - '@');
    return bad();
  }
  // A blank would be far too easy to type by accident.
  if (text.size() == 1 && text[0] > ' ' && text[0] < 0x7f)
    return std::optional<unsigned char>(static_cast<unsigned char>(text[0]));
  return bad();
}

std::string describeEscapeKey(std::optional<unsigned char> key) {
  if (!key) return "none";
  if (*key < 0x20) return std::string("^") + char(*key + '@');
  if (*key == 0x7f) return "^?";
  return std::string(1, char(*key));
}

EscapeSplit splitAtEscape(std::string_view chunk, std::optional<unsigned char> key) {
  if (!key) return {chunk, false};
  size_t at = chunk.find(char(*key));
  if (at == std::string_view::npos) return {chunk, false};
  return {chunk.substr(0, at), true};
}

Result<ListenAddress> parseListenAddress(std::string_view text) {
  auto bad = [&](std::string_view why) { return Error::invalidInput("--listen", std::string(text), why); };
  std::string_view host, port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find("]:");
    if (close == std::string_view::npos) return bad("give HOST:PORT, an IPv6 address in brackets ([::1]:5901)");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("give HOST:PORT (127.0.0.1:5901; port 0 picks a free one)");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("give an IPv6 address in brackets ([::1]:5901)");
  }
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port)) > 65535)
    return bad("the port must be a number from 0 to 65535");
  ListenAddress out;
  out.port = static_cast<uint16_t>(std::stoul(std::string(port)));
  out.host = host == "localhost" ? std::string("127.0.0.1") : std::string(host);
  boost::system::error_code ec;
  auto addr = boost::asio::ip::make_address(out.host, ec);
  if (ec || !addr.is_loopback())
    return bad(
        "the address must be a loopback address (127.0.0.1, ::1 or "
        "localhost): the forwarded VNC console has no password of its "
        "own");
  return out;
}

std::string formatHostPort(const std::string &host, uint16_t port) {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

namespace {

namespace asio = boost::asio;
using Tcp = asio::ip::tcp;

std::string vmPath(const std::string &name) { return "/api/v1/vms/" + encodePathSegment(name); }

int usageError(const Error &e) {
  std::cerr << "corral: " << e.message << '\n';
  return kExitUsage;
}

// All of data to fd, blocking; false when fd is gone (a closed pipe: SIGPIPE
// is ignored while a console runs).
bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n > 0) {
      data.remove_prefix(size_t(n));
    } else if (n < 0 && errno == EAGAIN) {
      // Someone else made it non-blocking; wait instead of spinning.
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
    } else if (n < 0 && errno != EINTR) {
      return false;
    }
  }
  return true;
}

// Mints a console token of `kind` for VM `name` and sets *wsPath to the
// WebSocket path with the token. callApi's exit codes; its errors printed.
int mintConsoleToken(const Context &ctx, const std::string &name, const std::string &kind, std::string *wsPath) {
  HttpResponse resp;
  if (int rc = callApi(ctx, "POST", vmPath(name) + "/console/token", nlohmann::json{{"kind", kind}}, &resp,
                       std::chrono::seconds(60)))
    return rc;
  auto j = nlohmann::json::parse(resp.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("token") || !j["token"].is_string() ||
      j["token"].get_ref<const std::string &>().empty()) {
    std::cerr << "corral: the daemon's answer holds no console token (HTTP " << resp.status << ")\n";
    return kExitApiError;
  }
  // The daemon says where the console is; a path of another shape is not
  // followed (the token must only ever go to the console).
  std::string path = vmPath(name) + "/console/" + kind;
  if (j.contains("path") && j["path"].is_string()) {
    const auto &p = j["path"].get_ref<const std::string &>();
    if (p.rfind("/api/v1/vms/", 0) == 0 && p.find_first_of("?#") == std::string::npos) path = p;
  }
  *wsPath = path + tokenQuery(j["token"].get<std::string>());
  return kExitOk;
}

// A WebSocket that ended in an error: its line on stderr, its exit code.
int reportWsError(const Target &target, const Error &e, std::string_view what) {
  if (e.field == "upgrade") {
    std::cerr << e.message << '\n';
    return kExitApiError;
  }
  if (e.field == "exchange")
    std::cerr << "corral: lost " << what << " (" << target.where() << "): " << e.message << '\n';
  else if (target.isUnix())
    std::cerr << unreachableMessage(target.socketPath, e.message) << '\n';
  else
    std::cerr << remoteUnreachableMessage(target.name, target.url, e.message) << '\n';
  return kExitUnreachable;
}

const char *signalName(int signo) {
  switch (signo) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    case SIGHUP:
      return "SIGHUP";
    case SIGQUIT:
      return "SIGQUIT";
    default:
      return "a signal";
  }
}

// A console viewer does not ping the daemon as often as a browser would; a
// minute without any frame (the daemon's pings included) means the remote is
// gone.
WsOptions consoleWsOptions() {
  WsOptions o;
  o.idleTimeout = std::chrono::seconds(60);
  return o;
}

int runSerial(const Context &ctx, const std::string &name, std::optional<unsigned char> key) {
  int code = kExitOk;
  auto target = ctx.resolveTarget(&code);
  if (!target) return code;
  std::string path;
  if (int rc = mintConsoleToken(ctx, name, "serial", &path)) return rc;
  std::signal(SIGPIPE, SIG_IGN);

  enum class Leaving { No, Escape, InputEnded, OutputClosed, Signal };
  Leaving leaving = Leaving::No;
  int signo = 0;
  std::optional<Result<WsEnded>> outcome;
  asio::io_context io;
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.add(SIGQUIT);
  RawMode raw;
  std::shared_ptr<WsDuplex> ws;

  InputReader input(io, STDIN_FILENO, [&](std::string chunk) {
    if (leaving != Leaving::No || !ws) return;
    if (chunk.empty()) {  // stdin ended: `echo cmd | corral console` detaches
      leaving = Leaving::InputEnded;
      ws->close("the viewer detached");
      return;
    }
    EscapeSplit split = splitAtEscape(chunk, key);
    if (!split.send.empty())
      ws->send(std::string(split.send), [&] {
        if (leaving == Leaving::No) input.next();
      });
    else if (!split.detach)
      input.next();
    if (split.detach) {
      leaving = Leaving::Escape;
      input.stop();
      ws->close("the viewer detached");
    }
  });

  WsHandlers h;
  h.onOpen = [&] {
    if (auto r = raw.enter(STDIN_FILENO); !r)
      writeAll(STDERR_FILENO, fmt::format("corral: {}; keys are line-buffered\r\n", r.error().message));
    writeAll(STDERR_FILENO,
             key ? fmt::format("Connected to {} (escape character is {})\r\n", name, describeEscapeKey(key))
                 : fmt::format("Connected to {} (no escape character)\r\n", name));
    input.start();
  };
  h.onMessage = [&](std::string data, bool) {
    if (leaving == Leaving::OutputClosed) return;
    if (!writeAll(STDOUT_FILENO, data) && leaving == Leaving::No) {
      leaving = Leaving::OutputClosed;
      input.stop();
      ws->close("the viewer's output closed");
    }
  };
  h.onEnd = [&](Result<WsEnded> r) {
    outcome = std::move(r);
    signals.cancel();
    input.stop();
  };
  signals.async_wait([&](const boost::system::error_code &ec, int s) {
    if (ec) return;
    leaving = Leaving::Signal;
    signo = s;
    raw.restore();
    input.stop();
    ws->abort();
  });
  ws = WsDuplex::start(io, *target, path, std::move(h), consoleWsOptions());
  io.run();
  raw.restore();

  if (leaving == Leaving::Signal) {
    writeAll(STDERR_FILENO, fmt::format("\r\ncorral: {}: detached from {}.\r\n", signalName(signo), name));
    return kExitOk;
  }
  if (!outcome) return kExitOk;  // not reached: io.run() returns after onEnd
  if (!outcome->ok()) return reportWsError(*target, outcome->error(), fmt::format("the console of {}", name));
  const WsEnded &end = outcome->value();
  if (end.by == WsEnded::By::Server) {
    writeAll(STDERR_FILENO,
             fmt::format("\r\nConsole closed: {}\r\n", end.reason.empty() ? std::string("by corrald") : end.reason));
    return kExitOk;
  }
  if (leaving == Leaving::Escape || leaving == Leaving::InputEnded)
    writeAll(STDERR_FILENO, fmt::format("\r\nDetached from {}.\r\n", name));
  return kExitOk;
}

// One viewer: its TCP connection and its VNC WebSocket.
class VncBridge : public std::enable_shared_from_this<VncBridge> {
 public:
  VncBridge(Tcp::socket viewer, std::string peer, std::string vm, std::function<void(VncBridge *)> onDone)
      : viewer_(std::move(viewer)), peer_(std::move(peer)), vm_(std::move(vm)), onDone_(std::move(onDone)) {}

  void start(asio::io_context &io, const Target &target, std::string path) {
    target_ = target;
    auto self = shared_from_this();
    WsHandlers h;
    h.onOpen = [self] { self->readViewer(); };
    h.onMessage = [self](std::string data, bool) { self->toViewer(std::move(data)); };
    h.onEnd = [self](Result<WsEnded> r) { self->wsEnded(std::move(r)); };
    ws_ = WsDuplex::start(io, target, std::move(path), std::move(h), consoleWsOptions());
  }

  void stop() {
    if (ws_) ws_->abort();
    boost::system::error_code ignored;
    viewer_.close(ignored);
  }

 private:
  void readViewer() {
    auto self = shared_from_this();
    viewer_.async_read_some(asio::buffer(buf_), [self](const boost::system::error_code &ec, size_t n) {
      if (ec) {
        self->ws_->close("the VNC viewer disconnected");
        return;
      }
      self->ws_->send(std::string(self->buf_.data(), n), [self] { self->readViewer(); });
    });
  }

  void toViewer(std::string data) {
    ws_->pauseReading();
    writing_ = true;
    auto buf = std::make_shared<std::string>(std::move(data));
    auto self = shared_from_this();
    asio::async_write(viewer_, asio::buffer(*buf), [self, buf](const boost::system::error_code &ec, size_t) {
      self->writing_ = false;
      if (self->wsDone_) return self->closeViewer();
      if (ec) return self->ws_->close("the VNC viewer went away");
      self->ws_->resumeReading();
    });
  }

  void wsEnded(Result<WsEnded> r) {
    wsDone_ = true;
    if (!r.ok())
      reportWsError(target_, r.error(), fmt::format("the VNC console of {}", vm_));
    else if (r->by == WsEnded::By::Server)
      std::cerr << "corral: VNC console of " << vm_ << " closed"
                << (r->reason.empty() ? std::string() : ": " + r->reason) << '\n';
    if (!writing_)  // else the write in flight lands first
      closeViewer();
  }

  void closeViewer() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    viewer_.shutdown(Tcp::socket::shutdown_both, ignored);
    viewer_.close(ignored);
    std::cerr << "corral: viewer " << peer_ << " disconnected" << std::endl;
    onDone_(this);
  }

  Tcp::socket viewer_;
  std::string peer_, vm_;
  std::function<void(VncBridge *)> onDone_;
  Target target_;
  std::shared_ptr<WsDuplex> ws_;
  std::array<char, 65536> buf_{};
  bool writing_ = false, wsDone_ = false, closed_ = false;
};

int runVnc(const Context &ctx, const std::string &name, const ListenAddress &listen) {
  int code = kExitOk;
  auto target = ctx.resolveTarget(&code);
  if (!target) return code;
  // Fails here, before listening, when the VM is not there for this user.
  std::string probe;
  if (int rc = mintConsoleToken(ctx, name, "vnc", &probe)) return rc;
  std::signal(SIGPIPE, SIG_IGN);

  asio::io_context io;
  Tcp::acceptor acceptor(io);
  Tcp::endpoint want(asio::ip::make_address(listen.host), listen.port);
  boost::system::error_code ec;
  acceptor.open(want.protocol(), ec);
  if (!ec) acceptor.set_option(Tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor.bind(want, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::cerr << "corral: --listen " << formatHostPort(listen.host, listen.port) << ": cannot listen: " << ec.message()
              << '\n';
    return kExitUsage;
  }
  auto local = acceptor.local_endpoint();
  std::cout << "VNC console of " << name << " at " << formatHostPort(local.address().to_string(), local.port())
            << " (Ctrl-C to stop)" << std::endl;

  std::map<VncBridge *, std::shared_ptr<VncBridge>> bridges;
  bool stopping = false;
  asio::steady_timer retry(io);
  std::function<void()> acceptNext = [&] {
    acceptor.async_accept([&](const boost::system::error_code &aec, Tcp::socket viewer) {
      if (stopping) return;
      if (aec) {
        // Out of descriptors, say: try again in a moment, never spin.
        std::cerr << "corral: accepting a viewer: " << aec.message() << '\n';
        retry.expires_after(std::chrono::seconds(1));
        retry.async_wait([&](const boost::system::error_code &tec) {
          if (!tec && !stopping) acceptNext();
        });
        return;
      }
      boost::system::error_code pec;
      auto ep = viewer.remote_endpoint(pec);
      std::string peer = pec ? std::string("?") : formatHostPort(ep.address().to_string(), ep.port());
      std::cerr << "corral: viewer " << peer << " connected" << std::endl;
      // A token per viewer: each lives minutes, a viewer may stay for hours.
      // Minting blocks this loop for one local round trip, only when a
      // viewer arrives.
      std::string path;
      if (mintConsoleToken(ctx, name, "vnc", &path) == kExitOk) {
        auto b = std::make_shared<VncBridge>(std::move(viewer), peer, name,
                                             [&bridges](VncBridge *done) { bridges.erase(done); });
        bridges[b.get()] = b;
        b->start(io, *target, std::move(path));
      }
      acceptNext();
    });
  };
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  signals.async_wait([&](const boost::system::error_code &sec, int) {
    if (sec) return;
    stopping = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    retry.cancel();
    auto open = bridges;  // stop() ends bridges, which leave the map
    for (auto &[ptr, b] : open) b->stop();
  });
  acceptNext();
  io.run();
  std::cerr << "corral: stopped forwarding the VNC console of " << name << '\n';
  return kExitOk;
}

struct ConsoleArgs {
  std::string name;
  std::string escape = "^]";
  std::string listen = "127.0.0.1:0";
  bool log = false;
  bool vnc = false;
};

}  // namespace

void addConsoleCommands(CLI::App &app, Context &ctx) {
  auto a = std::make_shared<ConsoleArgs>();
  auto *cmd = app.add_subcommand("console",
                                 "Attach this terminal to a VM's serial console (--log: print "
                                 "its history; --vnc: forward its screen to a local port)");
  cmd->add_option("NAME", a->name, "VM name")->required();
  auto *logOpt = cmd->add_flag("--log", a->log, "Print the console history so far and exit");
  auto *vncOpt = cmd->add_flag("--vnc", a->vnc, "Forward the graphical console to a local TCP port for a VNC viewer");
  auto *listenOpt = cmd->add_option("--listen", a->listen, "With --vnc: HOST:PORT on loopback (port 0: a free one)")
                        ->capture_default_str();
  auto *escapeOpt = cmd->add_option("--escape", a->escape,
                                    "The detach key: ^X (a control character), one "
                                    "printable character, or none")
                        ->capture_default_str();
  logOpt->excludes(vncOpt);
  listenOpt->needs(vncOpt);
  escapeOpt->excludes(logOpt);
  escapeOpt->excludes(vncOpt);
  cmd->callback([&ctx, a] {
    ctx.action = [&ctx, a]() -> int {
      if (a->log) {
        HttpResponse resp;
        if (int rc = callApi(ctx, "GET", vmPath(a->name) + "/log", std::nullopt, &resp)) return rc;
        std::fwrite(resp.body.data(), 1, resp.body.size(), stdout);
        std::fflush(stdout);
        return kExitOk;
      }
      if (a->vnc) {
        auto listen = parseListenAddress(a->listen);
        if (!listen) return usageError(listen.error());
        return runVnc(ctx, a->name, *listen);
      }
      auto key = parseEscapeKey(a->escape);
      if (!key) return usageError(key.error());
      return runSerial(ctx, a->name, *key);
    };
  });
}

}  // namespace corral::cli
