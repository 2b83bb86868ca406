// lmdb-store.c++ - mtapy.state's records in LMDB (see lmdb-store.h)
#include "pylib/native/lmdb-store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <system_error>

namespace mtapy::state {
namespace {

static_assert(std::endian::native == std::endian::little, "records are little-endian");

constexpr uint64_t kSweepEvery = 256;  // writes between two sweeps
constexpr int kSweepRecords = 64;      // records one sweep looks at
constexpr size_t kExpiry = sizeof(double);
constexpr char kCounter = 'i', kHit = 'h';
constexpr size_t kHitRecord = kExpiry + 1 + sizeof(double) + sizeof(int64_t);

[[noreturn]] void fail(int rc) {
  if (rc == MDB_MAP_FULL)
    throw StoreError("the pool's state is full (raise MTAPY_STATE_MAP_MB or expire keys with a "
                     "ttl)");
  if (rc == MDB_BAD_VALSIZE)
    throw StoreError("shared state: a key must be 1 to 511 bytes long");
  throw StoreError(std::string("shared state: ") + mdb_strerror(rc));
}

void check(int rc) {
  if (rc != 0) fail(rc);
}

MDB_val valueOf(std::string_view bytes) {
  return {bytes.size(), const_cast<char*>(bytes.data())};
}

bool expired(const MDB_val& found, double now) {
  double expiry = 0;
  if (found.mv_size >= kExpiry) std::memcpy(&expiry, found.mv_data, kExpiry);
  return expiry != 0 && expiry <= now;
}

// A record's tag and payload, if it is there and has not expired at `now`.
std::optional<std::string_view> live(const MDB_val& found, double now) {
  if (found.mv_size < kExpiry + 1 || expired(found, now)) return std::nullopt;
  return std::string_view(static_cast<const char*>(found.mv_data) + kExpiry,
                          found.mv_size - kExpiry);
}

// One record: expiry, then tag+payload.
std::string record(double expiry, std::string_view body) {
  std::string out(kExpiry, '\0');
  std::memcpy(out.data(), &expiry, kExpiry);
  out.append(body);
  return out;
}

std::string hitRecord(double expiry, Window window) {
  std::string out(kHitRecord, '\0');
  char* at = out.data();
  std::memcpy(at, &expiry, kExpiry);
  at[kExpiry] = kHit;
  std::memcpy(at + kExpiry + 1, &window.started, sizeof window.started);
  std::memcpy(at + kExpiry + 1 + sizeof window.started, &window.count, sizeof window.count);
  return out;
}

std::optional<Window> windowOf(const MDB_val& found, double now) {
  auto body = live(found, now);
  if (!body || found.mv_size != kHitRecord || (*body)[0] != kHit) return std::nullopt;
  Window window;
  std::memcpy(&window.started, body->data() + 1, sizeof window.started);
  std::memcpy(&window.count, body->data() + 1 + sizeof window.started, sizeof window.count);
  return window;
}

// The record of `key` in `txn`, if any.
std::optional<MDB_val> lookup(MDB_txn* txn, MDB_dbi dbi, std::string_view key) {
  MDB_val k = valueOf(key), found;
  int rc = mdb_get(txn, dbi, &k, &found);
  if (rc == MDB_NOTFOUND) return std::nullopt;
  check(rc);
  return found;
}

void store(MDB_txn* txn, MDB_dbi dbi, std::string_view key, const std::string& value) {
  MDB_val k = valueOf(key), v = valueOf(value);
  check(mdb_put(txn, dbi, &k, &v, 0));
}

double expiryAfter(double ttl, double now) { return ttl != 0 ? now + ttl : 0; }

}  // namespace

LmdbStore::LmdbStore(const std::string& folder, size_t mapBytes) {
  mkdir(folder.c_str(), 0700);  // mtapy-workerd makes a pool's; a test's or a script's may be new
  check(mdb_env_create(&env_));
  // ~500,000 short keys fit the default 64 MB; 1024 readers: workers of every generation.
  int rc = mdb_env_set_mapsize(env_, mapBytes);
  if (rc == 0) rc = mdb_env_set_maxreaders(env_, 1024);
  // MDB_NOTLS: the read transaction belongs to this object, not to a thread.
  if (rc == 0)
    rc = mdb_env_open(env_, folder.c_str(),
                      MDB_WRITEMAP | MDB_NOSYNC | MDB_NOMETASYNC | MDB_NORDAHEAD | MDB_NOTLS, 0600);
  if (rc != 0) {
    mdb_env_close(env_);
    throw StoreError("cannot open the pool's state in " + folder + ": " + mdb_strerror(rc));
  }
  int dead = 0;
  mdb_reader_check(env_, &dead);  // slots of readers that died
  // Reserve the map's blocks (see the header); quick once they are.
  std::string file = folder + "/data.mdb";
  int fd = open(file.c_str(), O_RDWR | O_CLOEXEC);
  int reserved = fd < 0 ? errno : posix_fallocate(fd, 0, static_cast<off_t>(mapBytes));
  if (fd >= 0) close(fd);
  if (reserved != 0) {
    mdb_env_close(env_);
    throw StoreError("the disk holding the pool's state has no room for its " +
                     std::to_string(mapBytes >> 20) + " MB (" + std::strerror(reserved) +
                     "): free space there");
  }
  MDB_txn* txn;
  rc = mdb_txn_begin(env_, nullptr, 0, &txn);
  if (rc == 0) rc = mdb_dbi_open(txn, nullptr, 0, &dbi_);
  if (rc == 0) rc = mdb_txn_commit(txn);
  if (rc == 0) rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &reader_);
  if (rc != 0) {
    mdb_env_close(env_);
    throw StoreError("cannot open the pool's state in " + folder + ": " + mdb_strerror(rc));
  }
  mdb_txn_reset(reader_);
}

LmdbStore::~LmdbStore() {
  // In a forked child the environment is the parent's: LMDB forbids using it, and closing it
  // would free the parent's reader slot. It is left as it is.
  if (!ownedHere()) return;
  mdb_txn_abort(reader_);
  mdb_env_close(env_);
}

namespace {

void checkOwner(const LmdbStore& store) {
  if (!store.ownedHere())
    throw StoreError("shared state: this process was forked after it opened the pool's state; "
                     "open it again in the child (mtapy.state.configure)");
}

}  // namespace

// read(txn) in the kept read transaction, reset afterwards whatever happens.
template <typename Read>
auto LmdbStore::read(Read read) {
  checkOwner(*this);
  check(mdb_txn_renew(reader_));
  struct Reset {
    MDB_txn* txn;
    ~Reset() { mdb_txn_reset(txn); }
  } reset{reader_};
  return read(reader_);
}

std::optional<std::string> LmdbStore::get(std::string_view key, double now) {
  return read([&](MDB_txn* txn) -> std::optional<std::string> {
    auto found = lookup(txn, dbi_, key);
    auto body = found ? live(*found, now) : std::nullopt;
    if (!body) return std::nullopt;
    return std::string(*body);
  });
}

// change(txn) in one write transaction, aborted if it throws. Every kSweepEvery-th write
// also sweeps.
template <typename Change>
auto LmdbStore::write(double now, Change change) {
  checkOwner(*this);
  MDB_txn* txn;
  check(mdb_txn_begin(env_, nullptr, 0, &txn));
  decltype(change(txn)) result;
  try {
    result = change(txn);
    if (++writes_ % kSweepEvery == 0) sweep(txn, now);
  } catch (...) {
    mdb_txn_abort(txn);
    throw;
  }
  check(mdb_txn_commit(txn));  // frees txn, even when it fails
  return result;
}


bool LmdbStore::put(std::string_view key, std::string_view body, double ttl, bool onlyNew,
                    double now) {
  return write(now, [&](MDB_txn* txn) {
    if (onlyNew) {
      auto found = lookup(txn, dbi_, key);
      if (found && live(*found, now)) return false;
    }
    store(txn, dbi_, key, record(expiryAfter(ttl, now), body));
    return true;
  });
}

bool LmdbStore::erase(std::string_view key, double now) {
  return write(now, [&](MDB_txn* txn) {
    auto found = lookup(txn, dbi_, key);
    if (!found) return false;
    bool wasLive = live(*found, now).has_value();
    MDB_val k = valueOf(key);
    check(mdb_del(txn, dbi_, &k, nullptr));
    return wasLive;
  });
}

int64_t LmdbStore::incr(std::string_view key, int64_t by, double ttl, double now) {
  return write(now, [&](MDB_txn* txn) {
    int64_t value = by;
    double expiry = expiryAfter(ttl, now);
    auto found = lookup(txn, dbi_, key);
    std::optional<std::string_view> body = found ? live(*found, now) : std::nullopt;
    if (body && (*body)[0] == kCounter) {
      const char* end = body->data() + body->size();
      int64_t before;
      auto parsed = std::from_chars(body->data() + 1, end, before);
      if (parsed.ec != std::errc() || parsed.ptr != end || __builtin_add_overflow(before, by, &value))
        throw StoreError("shared state: the counter would leave -2**63 .. 2**63-1: delete it or "
                         "count less");
      std::memcpy(&expiry, found->mv_data, kExpiry);  // a counter keeps its first expiry
    }
    char text[24];
    text[0] = kCounter;
    auto end = std::to_chars(text + 1, text + sizeof text, value).ptr;
    store(txn, dbi_, key, record(expiry, std::string_view(text, end - text)));
    return value;
  });
}

Window LmdbStore::hit(std::string_view key, double window, double now) {
  return write(now, [&](MDB_txn* txn) {
    auto found = lookup(txn, dbi_, key);
    std::optional<Window> current = found ? windowOf(*found, now) : std::nullopt;
    double expiry = now + window;
    Window next{now, 1};
    if (current) {
      std::memcpy(&expiry, found->mv_data, kExpiry);
      next = {current->started, current->count + 1};
    }
    store(txn, dbi_, key, hitRecord(expiry, next));
    return next;
  });
}

std::optional<Window> LmdbStore::peekHit(std::string_view key, double now) {
  return read([&](MDB_txn* txn) -> std::optional<Window> {
    auto found = lookup(txn, dbi_, key);
    return found ? windowOf(*found, now) : std::nullopt;
  });
}

void LmdbStore::sweep(MDB_txn* txn, double now) {
  MDB_cursor* cursor;
  check(mdb_cursor_open(txn, dbi_, &cursor));
  MDB_val key = valueOf(sweepFrom_), found;
  int rc = sweepFrom_.empty() ? mdb_cursor_get(cursor, &key, &found, MDB_FIRST)
                              : mdb_cursor_get(cursor, &key, &found, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND) rc = mdb_cursor_get(cursor, &key, &found, MDB_FIRST);
  int seen = 0;
  // After a delete, LMDB's cursor already stands on the next record; MDB_NEXT knows it.
  while (rc == 0 && seen++ < kSweepRecords) {
    if (expired(found, now)) rc = mdb_cursor_del(cursor, 0);
    if (rc == 0) rc = mdb_cursor_get(cursor, &key, &found, MDB_NEXT);
  }
  sweepFrom_ = rc == 0 ? std::string(static_cast<const char*>(key.mv_data), key.mv_size) : "";
  mdb_cursor_close(cursor);
  if (rc != 0 && rc != MDB_NOTFOUND) fail(rc);
}

}  // namespace mtapy::state
