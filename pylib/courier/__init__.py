"""courier - courier-pythonfilter's developer API, for filters run by mtapy.

DESCRIPTION  Filters written for courier-pythonfilter import courier.control, courier.config
             and courier.xfilter; this package provides them with the documented behaviour
             (its developer documentation is the contract), so such filters run unchanged in
             an mtapy pool: courier.control, courier.config, courier.xfilter, courier.ttldb
             and courier.filters (ratelimit, ratelimitauth). mtapy-courierfilter
             (shim/courier) brings each message to the pool; mtapy.filter_chain runs them.
STATEFUL     Upstream runs every filter in one multi-threaded process; mtapy runs them in a
             pool of worker processes, any of which may be restarted at any time, so state a
             filter keeps in its own process would be one copy per worker. mtapy keeps it in
             the pool's shared state (mtapy.state: LMDB shared by the pool's workers, or
             Redis for several hosts) instead:
             - ttldb (greylist, comeagain, auto_whitelist, dialback): courier.ttldb has
               upstream's API (TtlDb(name, ttl, purge_interval), lock/unlock, purge, `in`,
               has_key, [], del, TtlDbError/LockError/OpenError). All workers see one
               database per name; lock() excludes every other worker, and a worker that dies
               holding it blocks the others for at most courier.ttldb.LOCK_LEASE (10 s).
               Tokens expire exactly `ttl` seconds after their last use, so purge() has
               nothing to do. Before importing filters, the chain makes every spelling
               upstream's filters use ("from . import ttldb" in package pythonfilter,
               "import ttldb", the older "import TtlDb") give courier.ttldb, even with
               upstream's package installed. The [ttldb] section of pythonfilter-modules.conf
               is not read: the pool's `state` in workerd.toml says where the data lives.
               Upstream's dbm or SQL tokens are not carried over: greylisting and the
               whitelists start empty once.
             - ratelimit, ratelimitauth: a pythonfilter.conf line "ratelimit",
               "ratelimitauth" (or "pythonfilter.ratelimit") runs mtapy's versions,
               courier.filters.*: upstream's settings ([ratelimit.py] max_connections,
               interval, limit_network; [ratelimitauth.py] max_connections, interval) and
               421 replies, one count per client IP or AUTH user for the whole pool, in
               upstream's window (the current minute and the interval - 1 before it).
             - Other filters of upstream's keep no state between messages and run as they
               are, imported from its pythonfilter package. A filter of your own that keeps
               state should use courier.ttldb or mtapy.state, not module variables.
SEE ALSO     README.md "Courier", mtapy/state.py, mtapy/filter_chain.py
"""

import pkgutil

# Upstream's own courier package, where installed, still gives the modules mtapy has none of
# (courier.authdaemon, courier.quarantine, courier.sendmail, used by some of its filters);
# mtapy's come first.
__path__ = pkgutil.extend_path(__path__, __name__)
