// Walks every (from, to) pair of the VM state machine against the table in
// vm_state.h, so that a changed rule is a deliberate, visible test change.
#include "core/vm_state.h"

#include <set>
#include <utility>

#include <gtest/gtest.h>

namespace corral::core {
namespace {

using S = VmState;

TEST(VmState, EveryPairMatchesTheTable) {
  const std::set<std::pair<S, S>> allowed = {
      {S::Stopped, S::Starting},  {S::Starting, S::Running}, {S::Starting, S::Paused},
      {S::Starting, S::Crashed},  {S::Starting, S::Stopped}, {S::Running, S::Paused},
      {S::Running, S::Stopping},  {S::Running, S::Stopped},  {S::Running, S::Crashed},
      {S::Paused, S::Running},    {S::Paused, S::Stopping},  {S::Paused, S::Stopped},
      {S::Paused, S::Crashed},    {S::Stopping, S::Stopped}, {S::Stopping, S::Crashed},
      {S::Crashed, S::Starting},  {S::Crashed, S::Stopped},
  };
  for (S from : kAllVmStates)
    for (S to : kAllVmStates)
      EXPECT_EQ(canTransition(from, to), allowed.count({from, to}) == 1) << toString(from) << " -> " << toString(to);
}

TEST(VmState, NamesRoundTrip) {
  for (S s : kAllVmStates) EXPECT_EQ(parseVmState(toString(s)), s);
  EXPECT_FALSE(parseVmState("exploded").has_value());
  for (auto p : {OnCrash::Restart, OnCrash::Stop, OnCrash::Preserve}) EXPECT_EQ(parseOnCrash(toString(p)), p);
  EXPECT_FALSE(parseOnCrash("panic").has_value());
}

TEST(VmState, ProcessExistsOnlyBetweenStartingAndStopping) {
  EXPECT_FALSE(hasProcess(S::Stopped));
  EXPECT_FALSE(hasProcess(S::Crashed));
  EXPECT_TRUE(hasProcess(S::Starting));
  EXPECT_TRUE(hasProcess(S::Running));
  EXPECT_TRUE(hasProcess(S::Paused));
  EXPECT_TRUE(hasProcess(S::Stopping));
}

}  // namespace
}  // namespace corral::core
