// A test's WebSocket client for corrald's console sockets, over the unix socket.
// It reads on its own thread into a bounded tail (and a byte count), so a test
// can attach many viewers to a flooding guest without keeping every byte, and
// can stop reading on purpose to play a viewer that does not keep up.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace corral::testing {

class WsTestClient {
 public:
  // Connects to corrald's socket and asks for the upgrade of target
  // ("/api/v1/vms/x/console/serial?token=..."). Never null: status() says how
  // the upgrade went (0 when the connection failed; body() says why then).
  static std::unique_ptr<WsTestClient> open(const std::string& socketPath, const std::string& target,
                                            const std::map<std::string, std::string>& headers = {},
                                            bool startReading = true);
  ~WsTestClient();
  WsTestClient(const WsTestClient&) = delete;
  WsTestClient& operator=(const WsTestClient&) = delete;

  int status() const { return status_; }   // 101 when upgraded, else the HTTP status of the refusal
  const std::string& body() const { return body_; }  // a refusal's body (the error JSON)

  bool send(const std::string& data, bool binary = true);
  // Starts (or resumes) the read loop; a client opened with startReading=false
  // reads nothing until then.
  void startReading();

  // Waits until the received bytes' tail contains needle (or the socket ended).
  bool waitFor(const std::string& needle, std::chrono::milliseconds timeout);
  // Waits until at least total bytes have been received in all.
  bool waitForBytes(uint64_t total, std::chrono::milliseconds timeout);
  // Waits until the server closed the socket (close frame or EOF).
  bool waitClosed(std::chrono::milliseconds timeout);
  std::string tail() const;          // the newest kTailBytes received
  uint64_t bytesReceived() const { return bytes_.load(); }
  bool closed() const { return closed_.load(); }
  std::string closeReason() const;   // the close frame's reason, "" when none

  // Ends the connection without a close handshake (a crashed viewer).
  void abort();

  static constexpr size_t kTailBytes = 64 << 10;

 private:
  WsTestClient() = default;
  struct Impl;
  void readLoop();

  std::unique_ptr<Impl> impl_;
  int status_ = 0;
  std::string body_;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string tail_;
  std::string closeReason_;
  std::atomic<uint64_t> bytes_{0};
  std::atomic<bool> closed_{false};
  std::atomic<bool> reading_{false};
};

}  // namespace corral::testing
