// FakeQmpServer: a QMP peer for tests that replays a script on a unix socket, on
// its own thread, with plain blocking I/O (so it shares nothing with the client
// under test). It accepts one connection and walks the script: sending lines,
// expecting commands, answering them. Any command the script did not expect (a
// different "execute" or "arguments", or any command after the script ended) fails
// the running test with ADD_FAILURE and closes the connection, so that the client
// sees it and the test cannot hang.
//
// Transcript files (tests/data/qemu/qmp/<name>.jsonl), one entry a line:
//   # ...        a comment; blank lines are ignored too
//   S: {json}    the server sends this line (with QEMU's "\r\n"). When the object
//                has an "id", it is replaced by the id of the last C: command, so
//                recorded replies fit whatever ids the client picks.
//   C: {json}    the server expects the client's next command to have this
//                "execute" and "arguments" (absent == {}); its "id" is ignored.
// Recorded transcripts keep QEMU's own bytes for greetings and events.
//
// Scripts can also be built in code, with the steps a transcript cannot say:
// holding a reply until the test releases it, dribbling bytes one per write,
// sending raw garbage, closing mid-command, serving a batch of concurrent commands.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral::testing {

class FakeQmpServer {
 public:
  using Json = nlohmann::json;

  // Binds and listens at once (connect() right after construction succeeds); the
  // script runs after start().
  explicit FakeQmpServer(std::filesystem::path socketPath);
  // Stops the thread and removes the socket; never fails the test by itself.
  ~FakeQmpServer();
  FakeQmpServer(const FakeQmpServer&) = delete;
  FakeQmpServer& operator=(const FakeQmpServer&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // ---- Script steps, appended in order; call before start().
  FakeQmpServer& loadTranscript(std::string_view name);  // tests/data/qemu/qmp/<name>.jsonl
  FakeQmpServer& greet();                                 // QEMU 7.2's recorded greeting
  FakeQmpServer& send(const Json& message);               // one line; "id" replaced as for S:
  FakeQmpServer& sendRaw(std::string bytes);              // exactly these bytes
  FakeQmpServer& expect(std::string execute, Json arguments = nullptr);
  FakeQmpServer& reply(Json returnValue);                 // {"return": v, "id": <last>}
  FakeQmpServer& replyError(std::string errorClass, std::string desc);
  FakeQmpServer& expectAndReply(std::string execute, Json returnValue) {
    return expect(std::move(execute)).reply(std::move(returnValue));
  }
  FakeQmpServer& handshake() { return greet().expectAndReply("qmp_capabilities", Json::object()); }
  // Blocks the script until release() is called (a delayed reply without a sleep).
  FakeQmpServer& hold();
  // Reads `count` commands named `execute` in any order, then answers each with
  // `returnValue` (null: the command's own arguments, echoed) in the reverse order
  // of arrival (replies out of order on purpose).
  FakeQmpServer& serveBatch(std::string execute, Json returnValue, int count);
  // From here on, every send goes out one byte per write() (or, off, in one write).
  FakeQmpServer& dribble(bool on);
  // Closes the connection (QEMU dying mid-command).
  FakeQmpServer& closeConnection();

  void start();
  void release();
  // True once the whole script has run; false if `timeout` passed first.
  bool waitFinished(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The commands the client sent, in order.
  std::vector<Json> received() const;

 private:
  struct Step {
    enum class Kind { SendRaw, SendJson, Expect, Hold, Batch, Dribble, Close } kind;
    std::string raw;
    Json json;
    int count = 0;
    bool flag = false;
  };

  void run();
  bool runStep(const Step& step);
  std::optional<std::string> readLine();  // nullopt on EOF or stop
  bool writeAll(std::string_view bytes);
  bool sendJson(Json message);
  bool checkCommand(const std::string& line, const Step& step);

  std::filesystem::path path_;
  int listenFd_ = -1;
  int connFd_ = -1;
  int stopPipe_[2] = {-1, -1};
  std::vector<Step> script_;
  std::thread thread_;
  std::string inBuf_;
  Json lastId_;
  bool dribble_ = false;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  bool released_ = false;
  bool stopping_ = false;
  bool finished_ = false;
  std::vector<Json> received_;
};

}  // namespace corral::testing
