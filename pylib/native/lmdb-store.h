// lmdb-store.h - the pool's embedded shared state: mtapy.state's records in one LMDB environment
// DESCRIPTION  Every worker of a pool opens the same folder; LMDB shares it through the file
//              and its lock file, so a write is atomic across all of them, and a worker killed
//              mid-write never leaves the writer's lock held (a robust mutex). Each record is:
//                expiry   float64, little-endian; 0 = never
//                tag      one byte: 's' str, 'b' bytes, 'i' counter, 'h' hit window
//                payload  a counter's decimal text; a hit window's start (float64) and
//                         count (int64); a value's bytes
//              The layout is mtapy.state's since its first release (written then through
//              python3-lmdb), so a store kept from then opens unchanged.
//              Expired records read as absent; every 256th write also deletes the expired
//              ones among the next 64 records, so the file does not grow without end.
//              Writes go straight into the shared map (MDB_WRITEMAP): a commit is no syscall
//              at all, and no fsync (a process crash loses nothing; a machine crash may undo
//              the last writes). A page the disk has no room for would be a SIGBUS in a map,
//              so the whole map's blocks are reserved when the store opens, and a full disk
//              is a StoreError then.
//              One LmdbStore per folder and process (LMDB's rule: closing a second one
//              would free the first one's reader slot; python-module.c++ shares one); after
//              fork() only the parent uses it.
// DIAGNOSTICS  StoreError, worded for the admin (a full map, a full disk, an unreadable
//              folder, a key LMDB cannot hold, a counter out of range, use after fork).
// SEE ALSO     python-module.c++ (mtapy.state's binding), pylib/mtapy/state.py
#pragma once

#include <lmdb.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace mtapy::state {

struct StoreError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A hit window: when its first hit came (epoch seconds) and how many came since.
struct Window {
  double started;
  int64_t count;
};

class LmdbStore {
 public:
  LmdbStore(const std::string& folder, size_t mapBytes);
  ~LmdbStore();
  LmdbStore(const LmdbStore&) = delete;
  LmdbStore& operator=(const LmdbStore&) = delete;

  // The tag and payload of `key`'s record, if it has not expired at `now`.
  std::optional<std::string> get(std::string_view key, double now);
  // Stores tag+payload `body`, expiring `ttl` s from now (0: never); with onlyNew, only
  // where no live record is. Whether it stored.
  bool put(std::string_view key, std::string_view body, double ttl, bool onlyNew, double now);
  // Whether a live record was there.
  bool erase(std::string_view key, double now);
  // Adds `by` to the counter (0 when absent, expired or not a counter) and returns it; the
  // expiry is set when the counter is made, and kept by later additions.
  int64_t incr(std::string_view key, int64_t by, double ttl, double now);
  // Counts a hit in `key`'s window, which starts at its first hit and lasts `window` s.
  Window hit(std::string_view key, double window, double now);
  // The current window as hit() left it.
  std::optional<Window> peekHit(std::string_view key, double now);
  // Whether this process opened it (not a forked child of the one that did).
  bool ownedHere() const { return getpid() == owner_; }

 private:
  template <typename Change>
  auto write(double now, Change change);
  template <typename Read>
  auto read(Read read);
  void sweep(MDB_txn* txn, double now);

  pid_t owner_ = getpid();  // LMDB: an environment is used only by the process that opened it
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* reader_ = nullptr;  // one read transaction, reset between reads
  uint64_t writes_ = 0;
  std::string sweepFrom_;  // where the next sweep starts
};

}  // namespace mtapy::state
