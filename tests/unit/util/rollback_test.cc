// Proves util::Rollback runs its undos newest first when not committed, runs
// nothing after commit(), and keeps going (without throwing) past an undo that
// throws.
#include "util/rollback.h"

#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace corral::util {
namespace {

TEST(Rollback, UndoesInReverseOrder) {
  std::vector<int> order;
  {
    Rollback rb;
    for (int i = 1; i <= 3; ++i) rb.add([&order, i] { order.push_back(i); });
    EXPECT_EQ(rb.size(), 3u);
  }
  EXPECT_EQ(order, (std::vector<int>{3, 2, 1}));
}

TEST(Rollback, CommitSkipsTheUndos) {
  int undone = 0;
  {
    Rollback rb;
    rb.add([&] { ++undone; });
    rb.add([&] { ++undone; });
    rb.commit();
  }
  EXPECT_EQ(undone, 0);
}

TEST(Rollback, ThrowingUndoDoesNotEscapeAndOthersStillRun) {
  std::vector<std::string> ran;
  auto scope = [&] {
    Rollback rb;
    rb.add([&] { ran.push_back("first"); });
    rb.add([&] {
      ran.push_back("throws");
      throw std::runtime_error("disk busy");
    });
    rb.add([&] {
      ran.push_back("also throws");
      throw 42;
    });
  };
  EXPECT_NO_THROW(scope());
  EXPECT_EQ(ran, (std::vector<std::string>{"also throws", "throws", "first"}));
}

TEST(Rollback, RollbackNowRunsOnceAndMoveHandsOver) {
  int undone = 0;
  {
    Rollback rb;
    rb.add([&] { ++undone; });
    rb.rollbackNow();
    EXPECT_EQ(undone, 1);
    EXPECT_EQ(rb.size(), 0u);
  }
  EXPECT_EQ(undone, 1);

  {
    Rollback outer;
    {
      Rollback inner;
      inner.add([&] { ++undone; });
      outer = std::move(inner);
    }
    EXPECT_EQ(undone, 1);  // the moved-from one ran nothing
  }
  EXPECT_EQ(undone, 2);
}

}  // namespace
}  // namespace corral::util
