"""mtapy.state - state shared by every worker of a pool, its MTA instances and, with Redis, hosts.

DESCRIPTION  A worker's module-level variables belong to that worker and its generation; what
             must be counted across workers, reloads and daemon restarts goes here:

                 from mtapy import state
                 n = state.incr("rcpt:" + sender, ttl=3600)      # atomic; the new value
                 if state.hit("sender:" + sender, 100, 3600):   # the 101st in the hour
                     ...
                 seen = state.table("greylist", ttl=86400)       # a dict with expiry
                 seen[triplet] = "1"

             Every write is atomic across all workers of the pool. Keys and values are str
             or bytes (a value comes back as it went in; a counter as an int). `ttl`, in
             seconds, applies when a key is created (or re-created after it expired); later
             writes keep its expiry. Failures (a full store, Redis unreachable) raise
             StateError: the call fails and the pool's on_error applies, so nothing is
             silently counted wrong.
BACKENDS     A pool's `state` setting in workerd.toml, handed to its workers by the daemon:
               embedded (default)  LMDB in STATE_DIR/POOL, a folder only the pool's user can
                                   open: shared by its workers through the file, kept across
                                   worker crashes, reloads and daemon restarts; a worker
                                   killed mid-write never leaves the lock held (LMDB's writer
                                   lock is a robust mutex; dead readers' slots are reclaimed).
                                   Written without fsync: a process crash loses nothing; a
                                   machine crash may undo the last writes (on a filesystem
                                   that keeps write order, as ext4 does by default).
               "redis://host:port/db", "unix:///path?db=N"  Redis, for several hosts: the
                                   same atomicity (each operation is one command or one Lua
                                   script), 1 s timeouts, no retry (a retry could count twice).
SEE ALSO     README.md "Shared state", mtapy/filters/ratelimit.py (the seed's rate limiter),
             pylib/native/lmdb-store.h (the embedded store's records)
"""

import math
import os
import threading
import time
from typing import Any, NamedTuple, Optional, Union

Key = Union[str, bytes]
Value = Union[str, bytes]

_store = None
_url = ""
_pool = ""


class StateError(Exception):
    """The shared state could not be read or written; the call fails (on_error)."""


class Hit(NamedTuple):
    """What hit() found: true when this hit passed the limit."""

    passed: bool
    count: int      # hits in the current window, this one included
    started: float  # when the window began (epoch seconds): the first hit of it

    def __bool__(self):
        return self.passed


def configure(url: str, pool: str = "") -> None:
    """Use the store at `url` for pool `pool` (opened on first use).

    Workers need not call it: mtapy-workerd gives them $MTAPY_STATE and $MTAPY_POOL.
    """
    global _url, _pool, _store
    _url, _pool, _store = url, pool, None


def _backend():
    global _store
    if _store is None:
        with _opening:  # a policy's threads open one store: LMDB allows one per process
            if _store is None:
                url = _url or os.environ.get("MTAPY_STATE", "")
                pool = _pool or os.environ.get("MTAPY_POOL", "")
                if url.startswith("lmdb://"):
                    _store = _Lmdb(url[len("lmdb://"):])
                elif url.startswith(("redis://", "rediss://", "unix://")):
                    _store = _Redis(url, f"mtapy:{pool}:".encode())
                else:
                    raise StateError(f"no usable shared state {url!r} (workerd.toml: the pool's "
                                     "state)")
    return _store


def _forget_after_fork():
    # A forked child opens its own: an LMDB environment serves only the process that opened it.
    global _store
    _store = None


_opening = threading.Lock()
os.register_at_fork(after_in_child=_forget_after_fork)


def incr(key: Key, by: int = 1, ttl: Optional[float] = None) -> int:
    """Add `by` to the counter `key` (0 when absent or expired); return the new value."""
    return _backend().incr(_bytes(key), int(by), ttl)


def get(key: Key, default: Any = None) -> Any:
    """The value of `key` (str, bytes or, for a counter, int), or `default`."""
    return _backend().get(_bytes(key), default)


def set(key: Key, value: Value, ttl: Optional[float] = None) -> None:  # noqa: A001 (API name)
    """Store `value` (str or bytes) under `key`, expiring after `ttl` seconds if given."""
    _backend().set(_bytes(key), _tagged(value), ttl, False)


def add(key: Key, value: Value = b"", ttl: Optional[float] = None) -> bool:
    """Store `value` only if `key` is absent (or expired); True if this call stored it.

    Across all workers exactly one caller gets True: e.g. send one alert per window.
    """
    return _backend().set(_bytes(key), _tagged(value), ttl, True)


def delete(key: Key) -> bool:
    """Remove `key`; True if it was there."""
    return _backend().delete(_bytes(key))


def hit(key: Key, limit: int, window: float) -> Hit:
    """Count a hit on `key`; passed once more than `limit` hits fall in one window.

    The window starts at the first hit and lasts `window` seconds; the next hit after it
    starts a new one (the seed rate limiter's semantics: with limit 100, hit 101 passes).
    """
    started, count = (_store or _backend()).hit(_bytes(key), float(window), time.time())
    # tuple.__new__, not Hit(...): a NamedTuple's constructor is Python code, and this is
    # the rate limiter's every call.
    return tuple.__new__(Hit, (count > limit, count, started))


def peek(key: Key) -> Optional[Hit]:
    """The current window of `key` as hit() left it (passed meaning "over 0"), or None."""
    found = _backend().peek_hit(_bytes(key), time.time())
    return None if found is None else Hit(found[1] > 0, found[1], found[0])


class table:  # noqa: N801 - reads like dict()
    """A dict-like view of the keys `name` + NUL + key, each expiring `ttl` s after it is set."""

    def __init__(self, name: str, ttl: Optional[float] = None):
        self._prefix = _bytes(name) + b"\0"
        self._ttl = ttl

    def __getitem__(self, key: Key) -> Any:
        found = get(self._prefix + _bytes(key), _MISSING)
        if found is _MISSING:
            raise KeyError(key)
        return found

    def get(self, key: Key, default: Any = None) -> Any:
        return get(self._prefix + _bytes(key), default)

    def __setitem__(self, key: Key, value: Value) -> None:
        set(self._prefix + _bytes(key), value, self._ttl)

    def __delitem__(self, key: Key) -> None:
        if not delete(self._prefix + _bytes(key)):
            raise KeyError(key)

    def __contains__(self, key: Key) -> bool:
        return get(self._prefix + _bytes(key), _MISSING) is not _MISSING


_MISSING = object()

# Stored values: one tag byte, then the payload. Counters are plain integers in Redis.
_STR, _BYTES, _INT = b"s", b"b", b"i"


def _bytes(key: Key) -> bytes:
    if isinstance(key, str):
        return key.encode("utf-8", "surrogateescape")
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"state keys are str or bytes, not {type(key).__name__}")


def _tagged(value: Value) -> bytes:
    if isinstance(value, str):
        return _STR + value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _BYTES + bytes(value)
    raise TypeError(f"state values are str or bytes, not {type(value).__name__}")


def _untagged(stored: bytes) -> Any:
    tag, payload = stored[:1], stored[1:]
    if tag == _STR:
        return payload.decode("utf-8", "surrogateescape")
    if tag == _BYTES:
        return payload
    if tag == _INT:
        return int(payload)
    return payload


class _Lmdb:
    """The embedded store: LMDB in the pool's folder, kept by _mtapy_lmdb (pylib/native/).

    Its records, expiry, sweep and disk reservation are described in lmdb-store.h there. Its
    methods are this backend's, bound directly: the rate limiter's every call is then one
    call into C++.
    """

    def __init__(self, path: str):
        try:
            import _mtapy_lmdb  # built from pylib/native/, installed beside mtapy/
        except ImportError as e:
            raise StateError(f"mtapy's LMDB store is not installed ({e}): reinstall mtapy "
                             "(cmake --install)") from None
        # ~500,000 short keys (counters, windows, greylist entries); all of it on disk.
        size = int(os.environ.get("MTAPY_STATE_MAP_MB", "64")) << 20
        store = _mtapy_lmdb.Store(path, size, StateError)
        self.incr, self.set, self.delete = store.incr, store.set, store.delete
        self.hit, self.peek_hit, self._get = store.hit, store.peek_hit, store.get

    def get(self, key, default):
        body = self._get(key)
        return default if body is None else _untagged(body)


def _ms(seconds: Optional[float]) -> Optional[int]:
    """A ttl for Redis: whole milliseconds, at least 1 (0.4 ms must not mean "never")."""
    return max(1, math.ceil(seconds * 1000)) if seconds else None


class _Redis:
    """Redis: each operation is one command or one Lua script, so it is atomic there."""

    # KEYS[1]; ARGV: by, ttl in ms (0: none). The expiry is set when the key is new.
    INCR = """
        local new = redis.call('EXISTS', KEYS[1]) == 0
        local v = redis.call('INCRBY', KEYS[1], ARGV[1])
        if new and tonumber(ARGV[2]) > 0 then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        return v
    """
    # KEYS[1]; ARGV: now (s, as text), window in ms. Returns {started (text), count}.
    HIT = """
        local started = redis.call('HGET', KEYS[1], 's')
        if not started then
            redis.call('HSET', KEYS[1], 's', ARGV[1], 'c', 1)
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return {ARGV[1], 1}
        end
        return {started, redis.call('HINCRBY', KEYS[1], 'c', 1)}
    """

    def __init__(self, url: str, prefix: bytes):
        import redis  # only in pools that use it

        self._redis = redis
        self._prefix = prefix  # pools sharing a Redis see only their own keys
        # A Unix socket connects at once or fails; python3-redis 4.3 takes no connect timeout
        # for it.
        timeouts = {"socket_timeout": 1.0}
        if not url.startswith("unix://"):
            timeouts["socket_connect_timeout"] = 1.0
        try:
            self._client = redis.Redis.from_url(url, retry_on_timeout=False, **timeouts)
        except (ValueError, redis.RedisError):
            # Not its message: it can quote the URL's password.
            raise StateError("the pool's Redis URL does not parse (workerd.toml: state); "
                             "percent-encode / # ? @ in its password") from None
        self._incr = self._client.register_script(self.INCR)
        self._hit = self._client.register_script(self.HIT)

    def _do(self, operation):
        try:
            return operation()
        except self._redis.RedisError as e:
            raise StateError(f"shared state (Redis): {e}") from None

    def incr(self, key, by, ttl):
        key = self._prefix + key
        return int(self._do(lambda: self._incr(keys=[key], args=[by, _ms(ttl) or 0])))

    def get(self, key, default):
        key = self._prefix + key

        def read():
            kind = self._client.type(key)
            if kind == b"hash":
                return _INT + self._client.hget(key, "c")
            found = self._client.get(key)
            return None if found is None else found if found[:1] in (_STR, _BYTES) else _INT + found
        body = self._do(read)
        return default if body is None else _untagged(body)

    def set(self, key, body, ttl, only_new):
        key = self._prefix + key
        px = _ms(ttl)
        return bool(self._do(lambda: self._client.set(key, body, px=px, nx=only_new)))

    def delete(self, key):
        key = self._prefix + key
        return bool(self._do(lambda: self._client.delete(key)))

    def hit(self, key, window, now):
        key = self._prefix + key
        started, count = self._do(lambda: self._hit(keys=[key], args=[repr(now), _ms(window)]))
        return float(started), int(count)

    def peek_hit(self, key, now):
        key = self._prefix + key
        found = self._do(lambda: self._client.hmget(key, "s", "c"))
        return None if found[0] is None else (float(found[0]), int(found[1]))
