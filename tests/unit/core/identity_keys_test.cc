// Proves core::Identity's SSH key rules against a real SQLite store: a user
// adds, lists and removes their own keys; an admin does so for anyone; another
// user gets NotFound as for an unknown user; keys are validated (field "key")
// and stored canonically with their fingerprint; the name defaults to the
// comment and is validated; a duplicate is AlreadyExists; and
// authorizedKeysFor gives a user's keys, or a group's members' keys once each.
#include <openssl/evp.h>

#include <initializer_list>

#include <gtest/gtest.h>

#include "support/ssh_keys.h"

#include "core/identity.h"
#include "support/temp_dir.h"
#include "util/ssh_key.h"

namespace corral::core {
namespace {

std::string edKey(char fill, const std::string& comment = "") { return testing::ed25519KeyLine(fill, comment); }

class IdentityKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = store::openSqliteStore((dir_ / "corral.db").string());
    ASSERT_TRUE(s.ok()) << s.error().describe();
    store_ = std::move(*s);
    IdentityOptions opts;
    opts.passwordCost = {1, 64, 1};
    id_ = std::make_unique<Identity>(*store_, opts);
    root_ = *id_->fromUnixPeer(0);
    for (const char* login : {"alice", "bob", "carol"}) {
      NewUser u;
      u.login = login;
      ASSERT_TRUE(id_->createUser(root_, u).ok());
    }
    alice_ = *id_->fromLogin("alice");
    bob_ = *id_->fromLogin("bob");
  }

  corral::testing::TempDir dir_;
  std::unique_ptr<store::Store> store_;
  std::unique_ptr<Identity> id_;
  Principal root_, alice_, bob_;
};

template <class T>
ErrorCode codeOf(const Result<T>& r) {
  EXPECT_FALSE(r.ok());
  return r.ok() ? ErrorCode::Internal : r.error().code;
}

TEST_F(IdentityKeysTest, AUserAddsListsAndRemovesTheirOwnKeys) {
  // Extra blanks in the pasted line: what is stored is the canonical line.
  auto added = id_->addSshKey(alice_, "alice", "  " + edKey('a', "alice@laptop") + "  ", "");
  ASSERT_TRUE(added.ok()) << added.error().describe();
  EXPECT_GT(added->id, 0);
  EXPECT_EQ(added->login, "alice");
  EXPECT_EQ(added->name, "alice@laptop") << "the name defaults to the comment";
  EXPECT_EQ(added->key, edKey('a', "alice@laptop"));
  EXPECT_EQ(added->fingerprint, util::parseSshPublicKey(edKey('a'))->fingerprint);
  EXPECT_FALSE(added->createdAt.empty());

  auto named = id_->addSshKey(alice_, "alice", edKey('b', "x"), "work laptop");
  ASSERT_TRUE(named.ok()) << named.error().describe();
  EXPECT_EQ(named->name, "work laptop");

  auto list = id_->sshKeys(alice_, "alice");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].id, added->id);
  EXPECT_EQ((*list)[1].id, named->id);

  ASSERT_TRUE(id_->removeSshKey(alice_, "alice", added->id).ok());
  list = id_->sshKeys(alice_, "alice");
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, named->id);
  EXPECT_EQ(codeOf(id_->removeSshKey(alice_, "alice", added->id)), ErrorCode::NotFound);
}

TEST_F(IdentityKeysTest, OthersGetNotFoundAndAdminsManageAnyone) {
  auto key = id_->addSshKey(alice_, "alice", edKey('a', "a"), "");
  ASSERT_TRUE(key.ok());
  // bob sees alice's keys as he sees alice: not at all, like a user who does not exist.
  EXPECT_EQ(codeOf(id_->sshKeys(bob_, "alice")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->addSshKey(bob_, "alice", edKey('b'), "")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->removeSshKey(bob_, "alice", key->id)), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->sshKeys(bob_, "nobody")), ErrorCode::NotFound);
  // Nor can he remove it through his own login: the id is not his.
  EXPECT_EQ(codeOf(id_->removeSshKey(bob_, "bob", key->id)), ErrorCode::NotFound);
  EXPECT_EQ(id_->sshKeys(alice_, "alice")->size(), 1u);

  // An admin: anyone's, and an unknown user is still NotFound.
  auto byAdmin = id_->addSshKey(root_, "bob", edKey('c', "given"), "");
  ASSERT_TRUE(byAdmin.ok()) << byAdmin.error().describe();
  EXPECT_EQ(byAdmin->login, "bob");
  EXPECT_EQ(id_->sshKeys(root_, "alice")->size(), 1u);
  EXPECT_TRUE(id_->removeSshKey(root_, "alice", key->id).ok());
  EXPECT_EQ(codeOf(id_->addSshKey(root_, "nobody", edKey('d'), "")), ErrorCode::NotFound);
}

TEST_F(IdentityKeysTest, KeysAndNamesAreValidated) {
  auto bad = id_->addSshKey(alice_, "alice", "from=\"10.0.0.1\" " + edKey('a'), "");
  EXPECT_EQ(codeOf(bad), ErrorCode::InvalidInput);
  EXPECT_EQ(bad.error().field, "key");
  auto badName = id_->addSshKey(alice_, "alice", edKey('a'), "tab\tname");
  EXPECT_EQ(codeOf(badName), ErrorCode::InvalidInput);
  EXPECT_EQ(badName.error().field, "name");
  EXPECT_EQ(codeOf(id_->addSshKey(alice_, "alice", edKey('a'), std::string(65, 'n'))), ErrorCode::InvalidInput);
  EXPECT_TRUE(id_->sshKeys(alice_, "alice")->empty()) << "nothing refused was stored";

  // A comment longer than a name may be is cut for the default name, and kept in the key.
  auto longComment = id_->addSshKey(alice_, "alice", edKey('a', std::string(150, 'c')), "");
  ASSERT_TRUE(longComment.ok()) << longComment.error().describe();
  EXPECT_EQ(longComment->name, std::string(64, 'c'));
  EXPECT_TRUE(longComment->key.ends_with(" " + std::string(150, 'c')));
}

TEST_F(IdentityKeysTest, TheSameKeyTwiceIsAlreadyExists) {
  ASSERT_TRUE(id_->addSshKey(alice_, "alice", edKey('a', "one"), "").ok());
  auto again = id_->addSshKey(alice_, "alice", edKey('a', "other comment"), "");
  EXPECT_EQ(codeOf(again), ErrorCode::AlreadyExists);
  EXPECT_EQ(again.error().field, "key");
  // Another user may hold the same key.
  EXPECT_TRUE(id_->addSshKey(bob_, "bob", edKey('a', "shared"), "").ok());
}

TEST_F(IdentityKeysTest, AuthorizedKeysForUsersAndGroups) {
  ASSERT_TRUE(id_->addSshKey(alice_, "alice", edKey('a', "alice1"), "").ok());
  ASSERT_TRUE(id_->addSshKey(alice_, "alice", edKey('s', "shared-by-alice"), "").ok());
  ASSERT_TRUE(id_->addSshKey(bob_, "bob", edKey('s', "shared-by-bob"), "").ok());
  ASSERT_TRUE(id_->addSshKey(bob_, "bob", edKey('b', "bob1"), "").ok());

  auto alice = id_->authorizedKeysFor("user", "alice");
  ASSERT_TRUE(alice.ok()) << alice.error().describe();
  EXPECT_EQ(*alice, (std::vector<std::string>{edKey('a', "alice1"), edKey('s', "shared-by-alice")}));
  auto root = id_->authorizedKeysFor("user", "root");
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(root->empty());

  NewGroup g;
  g.name = "team";
  ASSERT_TRUE(id_->createGroup(root_, g).ok());
  ASSERT_TRUE(id_->addMember(root_, "team", "alice").ok());
  ASSERT_TRUE(id_->addMember(root_, "team", "bob").ok());
  ASSERT_TRUE(id_->addMember(root_, "team", "carol").ok());  // no keys
  auto team = id_->authorizedKeysFor("group", "team");
  ASSERT_TRUE(team.ok()) << team.error().describe();
  // The shared key once (alice's line, the first seen); members in order.
  EXPECT_EQ(*team, (std::vector<std::string>{edKey('a', "alice1"), edKey('s', "shared-by-alice"), edKey('b', "bob1")}));

  EXPECT_EQ(codeOf(id_->authorizedKeysFor("group", "nogroup")), ErrorCode::NotFound);
  EXPECT_EQ(codeOf(id_->authorizedKeysFor("planet", "alice")), ErrorCode::InvalidInput);
}

}  // namespace
}  // namespace corral::core
