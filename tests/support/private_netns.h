// Unit tests that touch network interfaces run in a network namespace of their
// own, so nothing they make (bridges, taps, dnsmasq, nftables) reaches the
// host's: their main() is
//   int main(int argc, char** argv) { return corral::testing::runTestsInPrivateNetns(argc, argv); }
// and each test fails at once when privateNetnsProblem() is not empty.
#pragma once

#include <string>

namespace corral::testing {

// Initialises gtest, moves this process into a fresh network namespace with
// loopback up (before any thread starts: unshare() moves only the calling
// thread; later threads and children inherit it) and runs every test.
int runTestsInPrivateNetns(int argc, char** argv);

// "" once in a private namespace; else why not ("needs root ...").
const std::string& privateNetnsProblem();

}  // namespace corral::testing
