// The pure pieces of `corral console` (commands/console.cc), apart so that
// unit tests reach them: the detach key (--escape) and how a chunk of
// keystrokes splits at it, and the local address of `--vnc --listen`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "util/result.h"

namespace corral::cli {

// The detach key as a byte; nullopt: none. Takes caret notation for a control
// character ("^]", "^a" = "^A" = 0x01, "^?" = DEL), one printable character
// ("~"), or "none". Errors: InvalidInput with field "--escape".
Result<std::optional<unsigned char>> parseEscapeKey(std::string_view text);

// How a key is shown: "^]", "~"; "none" when there is none.
std::string describeEscapeKey(std::optional<unsigned char> key);

// One chunk of input: what goes to the guest (everything before the key) and
// whether the key was in it (everything after it is dropped: the user is
// leaving).
struct EscapeSplit {
  std::string_view send;
  bool detach = false;
};
EscapeSplit splitAtEscape(std::string_view chunk, std::optional<unsigned char> key);

// "HOST:PORT" or "[V6]:PORT"; HOST must be a loopback address (127.0.0.0/8,
// ::1) or "localhost" (= 127.0.0.1): the forwarded VNC console has no password
// of its own, so anyone who reaches the port has the guest's screen and
// keyboard. Port 0 picks a free port. Errors: InvalidInput with field
// "--listen".
struct ListenAddress {
  std::string host;  // an address literal, without brackets
  uint16_t port = 0;
};
Result<ListenAddress> parseListenAddress(std::string_view text);

// "127.0.0.1:5901", "[::1]:5901".
std::string formatHostPort(const std::string &host, uint16_t port);

}  // namespace corral::cli
