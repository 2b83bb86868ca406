"""courier.filters._window - upstream's rate window: messages of a key in its last minutes.

DESCRIPTION  Upstream's ratelimit counts each message in the bucket of its minute and sums
             the buckets of the current minute and the `interval` - 1 before it. Here a bucket
             is a counter in the pool's shared state, expiring once no window can include it,
             so the count is one across all workers. Exact, but for a message counted at the
             instant a minute turns, which may land in the older bucket just after a worker in
             the new minute read it (upstream, one process, had no such instant). A message
             costs one write and `interval` - 1 reads (with Redis, as many round trips).
"""

import time

from mtapy import state


def count(name: str, key: str, interval: int) -> int:
    """Count one message of `key` for limiter `name`; the messages in its window, this one too."""
    minute = int(time.time() // 60)
    bucket = lambda m: f"{name}\0{key}\0{m}"
    ttl = (interval + 1) * 60  # the bucket is summed until `interval` minutes after its own
    counted = state.incr(bucket(minute), ttl=ttl)
    return counted + sum(state.get(bucket(m), 0) for m in range(minute - interval + 1, minute))
