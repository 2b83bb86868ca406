"""courier.ttldb - courier-pythonfilter's ttldb (TtlDb), one database for every worker of a pool.

DESCRIPTION  Upstream's stateful filters (greylist, comeagain, auto_whitelist, dialback) keep
             tokens with a time to live:

                 from . import ttldb                      # or: import ttldb / import TtlDb
                 db = ttldb.TtlDb("correspondents", ttl, purge_interval)
                 db.purge()
                 db.lock()
                 try:
                     if digest not in db: ...
                     db[digest] = time.time()             # the token's last use
                 finally:
                     db.unlock()

             Upstream opens a dbm file per process (a second process cannot open it for
             writing) and lock() is a thread lock; here a TtlDb is a view of the pool's shared
             state (mtapy.state), so all workers of a pool, their restarts and, with Redis,
             several hosts see one database, and lock() excludes every other worker.
VALUES       A value is the time of the token's last use (seconds since the epoch); it is
             stored as whole seconds and read back as a str ("1700000000"), so float(db[k])
             and int(db[k]) work as with upstream's dbm (which gave bytes) and SQL (str).
EXPIRY       A token expires `ttl` seconds after its value (as given, not the whole seconds
             kept): it then reads as absent, exactly, and the store drops it (LMDB sweeps
             expired records, Redis expires the key). So purge() has nothing left to do and
             returns at once; `purge_interval` is kept only as an attribute. (Upstream's
             tokens lived up to purge_interval longer, until the next purge().)
LOCKING      lock() takes a lease in the shared state (an atomic add with a ttl of
             LOCK_LEASE seconds) and unlock() gives it back. A worker killed while holding it
             blocks the others for at most LOCK_LEASE seconds, never forever; a holder that
             overruns the lease is logged at unlock(). lock() waits at most 2 * LOCK_LEASE,
             then raises LockError. Locks of different databases are independent; take them
             in one order everywhere (upstream's greylist does).
CONFIG       The [ttldb] section of pythonfilter-modules.conf (type = 'dbm' with dir, or an SQL
             server) is not read: the pool's `state` in workerd.toml decides where the data
             lives. Tokens of upstream's dbm or SQL databases are not carried over: greylisting
             and the whitelists start empty once.
ERRORS       OpenError when the pool has no usable shared state; LockError as above; a store
             failure during a call raises mtapy.state.StateError (the chain's on_exception
             applies). All are TtlDbError except StateError.
SEE ALSO     mtapy/state.py, mtapy/filter_chain.py (how upstream's filters get this module),
             README.md "Courier"
"""

import os
import socket
import sys
import threading
import time
from typing import Union

from mtapy import state

Key = Union[str, bytes]

LOCK_LEASE = 10.0  # seconds a lock() holds without unlock(); bounds a dead worker's lock


class TtlDbError(Exception):
    """Base class of this module's errors."""


class LockError(TtlDbError):
    """lock()/unlock() used wrongly, or the lock could not be had in time."""


class OpenError(TtlDbError):
    """The database cannot be used: the pool has no usable shared state."""


class TtlDb:
    """A database of tokens `name`, each expiring `ttl` seconds after its value (its last use).

    Upstream's signature: TtlDb(name, ttl, purge_interval). The name is the database's: two
    TtlDb of one name, in any workers of the pool, are one database.
    """

    def __init__(self, name: str, ttl: float, purge_interval: float):
        self.name = name
        self.ttl = ttl
        self.purge_interval = purge_interval
        self._prefix = f"ttldb\0{name}\0".encode("utf-8", "surrogateescape")
        self._lock_key = f"ttldb-lock\0{name}"
        self._held = threading.local()  # this thread's lease token, if it holds the lock
        try:
            state.get(self._lock_key)  # opens the store now, so a filter's init_filter fails
        except state.StateError as e:
            raise OpenError(f"ttldb {name!r}: {e}") from None

    def _key(self, key: Key) -> bytes:
        return self._prefix + (key.encode("utf-8", "surrogateescape") if isinstance(key, str)
                               else bytes(key))

    def lock(self) -> None:
        """Exclude every other worker from this database until unlock()."""
        if getattr(self._held, "token", None):
            raise LockError(f"ttldb {self.name!r}: lock() twice without unlock()")
        token = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{time.time()!r}"
        deadline = time.monotonic() + 2 * LOCK_LEASE
        pause = 0.0005
        while not state.add(self._lock_key, token, ttl=LOCK_LEASE):
            if time.monotonic() > deadline:
                raise LockError(f"ttldb {self.name!r}: the lock stayed taken for "
                                f"{2 * LOCK_LEASE:g} s; a filter holds it too long (see "
                                "courier.ttldb.LOCK_LEASE)")
            time.sleep(pause)
            pause = min(pause * 2, 0.02)
        self._held.token = token
        self._held.since = time.monotonic()

    def unlock(self) -> None:
        """Give the lock back."""
        token = getattr(self._held, "token", None)
        if not token:
            raise LockError(f"ttldb {self.name!r}: unlock() without lock()")
        self._held.token = None
        # Only our own lease is removed: past LOCK_LEASE another worker may hold it now.
        if state.get(self._lock_key) == token:
            state.delete(self._lock_key)
        else:
            print(f"ttldb {self.name!r}: the lock was held {time.monotonic() - self._held.since:.1f}"
                  f" s, longer than its lease (courier.ttldb.LOCK_LEASE = {LOCK_LEASE:g} s); "
                  "another worker may have used the database meanwhile: raise LOCK_LEASE",
                  file=sys.stderr)

    def purge(self) -> None:
        """Upstream removed outlived tokens here; they expire by themselves now."""

    def __contains__(self, key: Key) -> bool:
        return state.get(self._key(key)) is not None

    has_key = __contains__  # upstream's older name

    def __getitem__(self, key: Key) -> str:
        found = state.get(self._key(key))
        if found is None:
            raise KeyError(key)
        return found

    def __setitem__(self, key: Key, value: Union[float, int, str]) -> None:
        last_used = float(value)
        left = last_used + self.ttl - time.time()
        if left > 0:
            state.set(self._key(key), str(int(last_used)), ttl=left)
        else:  # already outlived its ttl: upstream's next purge() would have removed it
            state.delete(self._key(key))

    def __delitem__(self, key: Key) -> None:
        if not state.delete(self._key(key)):
            raise KeyError(key)
