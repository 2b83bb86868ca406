// lmdb-store-test.c++ - the embedded store's records: windows, counters, expiry, the sweep, limits
// Times are given, not waited for: `now` is an argument of every operation.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "pylib/native/lmdb-store.h"

#include <doctest/doctest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

using mtapy::state::LmdbStore;
using mtapy::state::StoreError;

namespace {

constexpr size_t kMap = 1 << 20;

struct Folder {
  std::string path;
  Folder() {
    char name[] = "/tmp/lmdb-store-test-XXXXXX";
    path = mkdtemp(name);
  }
  ~Folder() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("a window passes its limit on the hit after it and starts over after it ends") {
  Folder folder;
  LmdbStore store(folder.path, kMap);
  for (int64_t n = 1; n <= 3; ++n) CHECK(store.hit("k", 10, 100 + n).count == n);
  auto window = store.hit("k", 10, 109.9);
  CHECK(window.count == 4);
  CHECK(window.started == 101);
  CHECK(store.hit("other", 10, 109.9).count == 1);
  window = store.hit("k", 10, 111);  // past 101 + 10
  CHECK(window.count == 1);
  CHECK(window.started == 111);
  CHECK(store.peekHit("k", 112)->count == 1);
  CHECK(!store.peekHit("k", 121));
  CHECK(!store.peekHit("missing", 112));
}

TEST_CASE("a counter keeps the expiry it was made with") {
  Folder folder;
  LmdbStore store(folder.path, kMap);
  CHECK(store.incr("c", 1, 5, 100) == 1);
  CHECK(store.incr("c", -1, 1000, 104) == 0);  // still the same counter, expiring at 105
  CHECK(store.get("c", 104.9) == std::string("i0"));
  CHECK(!store.get("c", 105));
  CHECK(store.incr("c", 7, 0, 106) == 7);  // made again, now without expiry
  CHECK(store.get("c", 1e12) == std::string("i7"));
  store.put("text", "sx", 0, false, 100);
  CHECK(store.incr("text", 2, 0, 100) == 2);  // a value is not a counter: it starts at 0
}

TEST_CASE("values, only_new and delete see only live records") {
  Folder folder;
  LmdbStore store(folder.path, kMap);
  CHECK(store.put("v", "bold", 10, true, 100));
  CHECK(!store.put("v", "bnew", 10, true, 105));
  CHECK(store.get("v", 105) == std::string("bold"));
  CHECK(store.put("v", "bnew", 10, true, 110));  // the first one expired at 110
  CHECK(store.get("v", 111) == std::string("bnew"));
  CHECK(store.erase("v", 111));
  CHECK(!store.erase("v", 111));
  store.put("gone", "bx", 1, false, 100);
  CHECK(!store.erase("gone", 200));  // there, but expired
}

TEST_CASE("writes sweep expired records, a few at a time") {
  Folder folder;
  LmdbStore store(folder.path, kMap);
  for (int i = 0; i < 40; ++i) store.put("old" + std::to_string(i), "bx", 10, false, 100);
  store.put("kept", "bx", 0, false, 100);
  for (int i = 0; i < 256; ++i) store.incr("n", 1, 0, 500);  // one sweep, at 500
  // Asked as of a time before they expired, swept records are gone, the rest still there.
  int left = 0;
  for (int i = 0; i < 40; ++i) left += store.get("old" + std::to_string(i), 105).has_value();
  CHECK(left == 0);
  CHECK(store.get("kept", 105));
}

TEST_CASE("records outlive the store that wrote them") {
  Folder folder;
  { LmdbStore(folder.path, kMap).hit("k", 60, 100); }
  LmdbStore again(folder.path, kMap);
  CHECK(again.hit("k", 60, 101).count == 2);
}

TEST_CASE("a full map, a key LMDB cannot hold and a missing folder are StoreErrors") {
  Folder folder;
  LmdbStore store(folder.path, 64 << 10);
  CHECK_THROWS_WITH_AS(
      for (int i = 0; i < 1000; ++i) store.put("k" + std::to_string(i), std::string(1000, 'b'),
                                                0, false, 100),
      doctest::Contains("the pool's state is full"), StoreError);
  CHECK(store.get("k0", 100));  // what was written is kept
  CHECK_THROWS_WITH_AS(store.incr(std::string(600, 'k'), 1, 0, 100),
                       doctest::Contains("1 to 511 bytes"), StoreError);
  CHECK_THROWS_WITH_AS(LmdbStore(folder.path + "/no/such", kMap),
                       doctest::Contains("cannot open the pool's state in"), StoreError);
}
