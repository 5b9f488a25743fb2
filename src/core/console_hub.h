// ConsoleHub: one VM's interactive consoles. The serial console is multiplexed:
// any number of viewers see the same output live, after the recent history, and
// each viewer's keystrokes reach the guest. Graphical consoles are one stream per
// viewer to QEMU's VNC server on the VM's runtime-dir unix socket.
//
// Nothing here ever waits for a viewer: output is handed to ConsoleViewer::output,
// which must queue or refuse at once (api/'s WebSocket drops a viewer that stops
// reading). The guest is never blocked by viewers and viewers never by each other.
//
// Lifetime: VmManager owns one hub per VM entry and tells it when a machine comes
// (machineStarted) and goes (machineGone: every viewer is ended with a reason).
//
// Locks, always taken in this order: machineMu_ (the machine pointer), then the
// console drain's feed lock (Machine::withConsoleQuiet, which the drain also
// holds while it calls the tap), then viewersMu_.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/io_context.hpp>

#include "util/result.h"

namespace corral::qemu {
class Machine;
}

namespace corral::core {

// A console's other end as core sees it (api/ adapts a WebSocket to it).
class ConsoleViewer {
 public:
  virtual ~ConsoleViewer() = default;
  // Output for the viewer; must not block. false: the viewer is gone (closed, or
  // dropped for not keeping up) and gets nothing more.
  virtual bool output(std::string_view bytes) = 0;
  // The console ended (the guest stopped, the VM was deleted, the socket broke);
  // at most once, and no output follows.
  virtual void ended(const std::string& reason) = 0;
};

// A viewer's handle on an open console. Detaches (or closes the VNC stream) when
// destroyed.
class ConsoleSession {
 public:
  virtual ~ConsoleSession() = default;
  // Keystrokes (serial) or RFB bytes (VNC) for the guest. false when they were
  // dropped: the console ended, or (serial) the guest is not reading its input.
  virtual bool input(std::string bytes) = 0;
  // Idempotent; no output reaches the viewer after it returns... except for a
  // call already in progress on another thread.
  virtual void close() = 0;
};

struct ConsoleHubStats {
  size_t serialViewers = 0;
  size_t vncStreams = 0;
  uint64_t serialViewersDropped = 0;  // since the hub was made
};

class ConsoleHub : public std::enable_shared_from_this<ConsoleHub> {
 public:
  explicit ConsoleHub(boost::asio::io_context& io) : io_(io) {}
  ~ConsoleHub();
  ConsoleHub(const ConsoleHub&) = delete;
  ConsoleHub& operator=(const ConsoleHub&) = delete;

  // The VM's machine is running now (launch or reattach): its console output is
  // fanned out from here on. The machine must stay alive until machineGone().
  void machineStarted(qemu::Machine& machine, std::string vncSocket);
  // Before the machine is destroyed: every viewer and stream is ended with reason.
  void machineGone(const std::string& reason);

  // Attaches a serial viewer: the newest historyBytes of the console log, then
  // live output. FailedPrecondition when the guest is not running.
  Result<std::unique_ptr<ConsoleSession>> attachSerial(std::shared_ptr<ConsoleViewer> viewer, size_t historyBytes);
  // Opens a stream to the guest's VNC server for one viewer. FailedPrecondition
  // when the guest is not running, Unavailable when its VNC socket refuses.
  Result<std::unique_ptr<ConsoleSession>> openVnc(std::shared_ptr<ConsoleViewer> viewer);

  ConsoleHubStats stats() const;

  // VNC bytes from a viewer not yet taken by QEMU beyond this close the stream
  // (RFB cannot skip bytes, so there is nothing else to do with them).
  static constexpr size_t kMaxVncPendingBytes = 4 << 20;

 private:
  struct SerialViewerSlot {
    uint64_t id;
    std::shared_ptr<ConsoleViewer> viewer;
  };
  class SerialSession;
  class VncStream;

  void deliver(std::string_view bytes);  // the machine's console tap
  void detachSerial(uint64_t id);
  bool serialInput(std::string bytes);
  void forgetVnc(const VncStream* s);

  boost::asio::io_context& io_;

  mutable std::mutex machineMu_;
  qemu::Machine* machine_ = nullptr;  // guarded by machineMu_
  std::string vncSocket_;             // guarded by machineMu_
  std::vector<std::weak_ptr<VncStream>> vnc_;  // guarded by machineMu_

  mutable std::mutex viewersMu_;
  std::vector<SerialViewerSlot> viewers_;  // guarded by viewersMu_
  uint64_t nextId_ = 1;                    // guarded by viewersMu_
  uint64_t dropped_ = 0;                   // guarded by viewersMu_
};

}  // namespace corral::core
