// ConsoleHub: serial fan-out and VNC streams; see console_hub.h.
#include "core/console_hub.h"

#include <array>
#include <atomic>
#include <deque>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "qemu/machine.h"

namespace corral::core {

namespace asio = boost::asio;
using UnixSocket = asio::local::stream_protocol::socket;

// ---------------------------------------------------------------- serial

class ConsoleHub::SerialSession final : public ConsoleSession {
 public:
  SerialSession(std::weak_ptr<ConsoleHub> hub, uint64_t id) : hub_(std::move(hub)), id_(id) {}
  ~SerialSession() override { close(); }

  bool input(std::string bytes) override {
    if (closed_.load()) return false;
    auto hub = hub_.lock();
    return hub && hub->serialInput(std::move(bytes));
  }

  void close() override {
    if (closed_.exchange(true)) return;
    if (auto hub = hub_.lock()) hub->detachSerial(id_);
  }

 private:
  std::weak_ptr<ConsoleHub> hub_;
  uint64_t id_;
  std::atomic<bool> closed_{false};
};

void ConsoleHub::deliver(std::string_view bytes) {
  std::lock_guard lock(viewersMu_);
  std::erase_if(viewers_, [&](const SerialViewerSlot& v) {
    if (v.viewer->output(bytes)) return false;
    ++dropped_;  // it closed itself, or was dropped for not reading: nothing more to tell it
    return true;
  });
}

void ConsoleHub::detachSerial(uint64_t id) {
  std::lock_guard lock(viewersMu_);
  std::erase_if(viewers_, [id](const SerialViewerSlot& v) { return v.id == id; });
}

bool ConsoleHub::serialInput(std::string bytes) {
  std::lock_guard lock(machineMu_);
  return machine_ != nullptr && machine_->consoleWrite(std::move(bytes));
}

Result<std::unique_ptr<ConsoleSession>> ConsoleHub::attachSerial(std::shared_ptr<ConsoleViewer> viewer,
                                                                 size_t historyBytes) {
  std::lock_guard lock(machineMu_);
  if (machine_ == nullptr) return Error::failedPrecondition("the guest is not running");
  uint64_t id = 0;
  // Under the drain's feed lock no chunk is half delivered: each one is either
  // in the history read here or reaches the viewer live, never both or neither.
  machine_->withConsoleQuiet([&] {
    std::string history = historyBytes > 0 ? machine_->consoleLogTail(historyBytes) : std::string();
    std::lock_guard vlock(viewersMu_);
    if (!history.empty() && !viewer->output(history)) return;
    id = nextId_++;
    viewers_.push_back(SerialViewerSlot{id, viewer});
  });
  if (id == 0) return Error::unavailable("the viewer closed before its console history was sent");
  return std::unique_ptr<ConsoleSession>(new SerialSession(weak_from_this(), id));
}

// ---------------------------------------------------------------- VNC

class ConsoleHub::VncStream final : public std::enable_shared_from_this<VncStream> {
 public:
  VncStream(asio::io_context& io, std::weak_ptr<ConsoleHub> hub, std::shared_ptr<ConsoleViewer> viewer)
      : strand_(asio::make_strand(io)), socket_(strand_), hub_(std::move(hub)), viewer_(std::move(viewer)) {}

  Result<void> connect(const std::string& path) {
    boost::system::error_code ec;
    socket_.connect(asio::local::stream_protocol::endpoint(path), ec);  // before any async work exists
    if (ec) return Error::unavailable(fmt::format("the guest's VNC server at {}: {}", path, ec.message()));
    asio::post(strand_, [self = shared_from_this()] { self->readMore(); });
    return {};
  }

  bool input(std::string bytes) {
    if (finished_.load()) return false;
    size_t pending = pending_ += bytes.size();
    if (pending > kMaxVncPendingBytes) {
      end(fmt::format("the viewer sent {} bytes that the guest's VNC server has not read", pending));
      return false;
    }
    asio::post(strand_, [self = shared_from_this(), bytes = std::move(bytes)]() mutable {
      if (self->finished_.load()) return;
      self->queue_.push_back(std::move(bytes));
      if (self->queue_.size() == 1) self->writeNext();
    });
    return true;
  }

  // From any thread; reason "" when the viewer itself asked (it is not told).
  void end(std::string reason) {
    asio::post(strand_, [self = shared_from_this(), reason = std::move(reason)] { self->finish(reason); });
  }

 private:
  void readMore() {
    socket_.async_read_some(asio::buffer(buf_), asio::bind_executor(strand_, [self = shared_from_this()](
                                                                                 boost::system::error_code ec, size_t n) {
      if (self->finished_.load()) return;
      if (n > 0 && !self->viewer_->output(std::string_view(self->buf_.data(), n))) return self->finish("");
      if (ec) {
        return self->finish(ec == asio::error::eof ? "the guest's VNC server closed the connection"
                                                   : fmt::format("the guest's VNC socket: {}", ec.message()));
      }
      self->readMore();
    }));
  }

  void writeNext() {
    asio::async_write(socket_, asio::buffer(queue_.front()),
                      asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        if (self->finished_.load()) return;
                        if (ec) return self->finish(fmt::format("the guest's VNC socket: {}", ec.message()));
                        self->pending_ -= self->queue_.front().size();
                        self->queue_.pop_front();
                        if (!self->queue_.empty()) self->writeNext();
                      }));
  }

  void finish(const std::string& reason) {
    if (finished_.exchange(true)) return;
    boost::system::error_code ignored;
    socket_.close(ignored);
    queue_.clear();
    if (!reason.empty()) viewer_->ended(reason);
    viewer_.reset();  // the viewer may own this stream's session: no cycle outlives the stream
    if (auto hub = hub_.lock()) hub->forgetVnc(this);
  }

  asio::strand<asio::io_context::executor_type> strand_;
  UnixSocket socket_;  // on strand_ once connected
  std::weak_ptr<ConsoleHub> hub_;
  std::shared_ptr<ConsoleViewer> viewer_;
  std::array<char, 16 * 1024> buf_{};
  std::deque<std::string> queue_;  // on strand_
  std::atomic<size_t> pending_{0};
  std::atomic<bool> finished_{false};
};

namespace {

// What openVnc hands out: closing (or dropping) it ends the shared stream.
template <class Stream>
class VncSession final : public ConsoleSession {
 public:
  explicit VncSession(std::shared_ptr<Stream> s) : s_(std::move(s)) {}
  ~VncSession() override { close(); }
  bool input(std::string bytes) override { return s_->input(std::move(bytes)); }
  void close() override {
    if (!closed_.exchange(true)) s_->end("");
  }

 private:
  std::shared_ptr<Stream> s_;
  std::atomic<bool> closed_{false};
};

}  // namespace

Result<std::unique_ptr<ConsoleSession>> ConsoleHub::openVnc(std::shared_ptr<ConsoleViewer> viewer) {
  std::lock_guard lock(machineMu_);
  if (machine_ == nullptr) return Error::failedPrecondition("the guest is not running");
  auto stream = std::make_shared<VncStream>(io_, weak_from_this(), std::move(viewer));
  CORRAL_TRY(stream->connect(vncSocket_));
  std::erase_if(vnc_, [](const std::weak_ptr<VncStream>& w) { return w.expired(); });
  vnc_.push_back(stream);
  return std::unique_ptr<ConsoleSession>(new VncSession<VncStream>(std::move(stream)));
}

void ConsoleHub::forgetVnc(const VncStream* s) {
  std::lock_guard lock(machineMu_);
  std::erase_if(vnc_, [s](const std::weak_ptr<VncStream>& w) {
    auto p = w.lock();
    return !p || p.get() == s;
  });
}

// ---------------------------------------------------------------- lifetime

void ConsoleHub::machineStarted(qemu::Machine& machine, std::string vncSocket) {
  std::lock_guard lock(machineMu_);
  machine_ = &machine;
  vncSocket_ = std::move(vncSocket);
  machine.setConsoleTap([weak = weak_from_this()](std::string_view bytes) {
    if (auto hub = weak.lock()) hub->deliver(bytes);
  });
}

void ConsoleHub::machineGone(const std::string& reason) {
  std::vector<std::weak_ptr<VncStream>> streams;
  {
    std::lock_guard lock(machineMu_);
    if (machine_ != nullptr) machine_->setConsoleTap(nullptr);
    machine_ = nullptr;
    vncSocket_.clear();
    streams.swap(vnc_);
  }
  std::vector<SerialViewerSlot> viewers;
  {
    std::lock_guard lock(viewersMu_);
    viewers.swap(viewers_);
  }
  // Told outside the locks: a viewer's ended() may close a socket whose close
  // handler comes back here to detach.
  for (auto& v : viewers) v.viewer->ended(reason);
  for (auto& w : streams) {
    if (auto s = w.lock()) s->end(reason);
  }
}

ConsoleHub::~ConsoleHub() {
  // VmManager ends every console before it drops a machine; this is the
  // daemon shutting down with viewers attached.
  for (auto& v : viewers_) v.viewer->ended("corrald is shutting down");
}

ConsoleHubStats ConsoleHub::stats() const {
  ConsoleHubStats s;
  {
    std::lock_guard lock(machineMu_);
    for (const auto& w : vnc_) s.vncStreams += w.expired() ? 0 : 1;
  }
  std::lock_guard lock(viewersMu_);
  s.serialViewers = viewers_.size();
  s.serialViewersDropped = dropped_;
  return s;
}

}  // namespace corral::core
