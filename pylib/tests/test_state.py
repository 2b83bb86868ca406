"""mtapy.state: atomic across processes, expiring, and the same on LMDB and on a real Redis."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import time

import pytest

from mtapy import state


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A private redis-server on a Unix socket (Debian's redis-server package)."""
    folder = tmp_path_factory.mktemp("redis")
    sock = folder / "redis.sock"
    server = subprocess.Popen(
        [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0",
         "--unixsocket", str(sock), "--save", "", "--appendonly", "no", "--dir", str(folder)],
        stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"unix://{sock}"
    server.terminate()
    server.wait(10)


@pytest.fixture(params=["lmdb", "redis"])
def store(request, tmp_path, redis_url):
    url = f"lmdb://{tmp_path}" if request.param == "lmdb" else redis_url
    state.configure(url, pool=f"test-{os.getpid()}-{time.monotonic_ns()}")
    yield url
    state.configure("")


def test_values_come_back_as_they_went_in(store):
    state.set("s", "text é")
    state.set("b", b"\xff\x00")
    assert state.get("s") == "text é" and state.get("b") == b"\xff\x00"
    assert state.incr("n") == 1 and state.incr("n", by=5) == 6 and state.get("n") == 6
    assert state.get("missing", "default") == "default"
    assert state.delete("s") and not state.delete("s") and state.get("s") is None
    with pytest.raises(TypeError):
        state.set("x", 3)


def test_ttl_expires_and_is_kept_by_later_writes(store):
    assert state.incr("c", ttl=0.3) == 1
    time.sleep(0.15)
    assert state.incr("c", ttl=0.3) == 2  # the expiry of the first write stands
    time.sleep(0.25)
    assert state.get("c") is None and state.incr("c") == 1
    state.set("v", "x", ttl=0.2)
    assert state.add("v", "y") is False and state.get("v") == "x"
    time.sleep(0.3)
    assert state.add("v", "y") is True and state.get("v") == "y"


def test_hit_passes_on_the_call_after_the_limit_and_starts_over_after_the_window(store):
    answers = [bool(state.hit("k", 3, 0.4)) for _ in range(5)]
    assert answers == [False, False, False, True, True]
    assert state.peek("k").count == 5
    assert not state.hit("other", 3, 0.4)  # other keys are their own
    time.sleep(0.5)
    assert not state.hit("k", 3, 0.4) and state.peek("k").count == 1


def test_a_table_is_a_dict_with_expiry(store):
    seen = state.table("greylist", ttl=0.3)
    seen["a"] = "1"
    assert "a" in seen and seen["a"] == "1" and seen.get("b") is None
    assert state.get("a") is None  # its keys are apart from the others
    del seen["a"]
    with pytest.raises(KeyError):
        seen["a"]
    seen["b"] = b"2"
    time.sleep(0.4)
    assert "b" not in seen


def _count(url, pool, calls, out):
    state.configure(url, pool)
    out.put([bool(state.hit("race", 100, 60)) for _ in range(calls)] +
            [state.incr("total") for _ in range(calls)])


def test_concurrent_processes_count_exactly(store):
    pool = state._pool
    out = multiprocessing.get_context("fork").Queue()
    workers = [multiprocessing.get_context("fork").Process(target=_count,
                                                           args=(store, pool, 50, out))
               for _ in range(8)]
    for w in workers:
        w.start()
    results = [out.get(timeout=60) for _ in workers]
    for w in workers:
        w.join(30)
    passes = [r for result in results for r in result[:50]]
    totals = sorted(r for result in results for r in result[50:])
    assert passes.count(False) == 100 and passes.count(True) == 300  # the 101st, exactly
    assert totals == list(range(1, 401))  # every increment seen once


def _hold_the_write_lock(path, ready):
    import lmdb

    env = lmdb.open(path, map_size=1 << 24, writemap=True)  # as mtapy.state opens it
    txn = env.begin(write=True)
    txn.put(b"half", b"written")
    ready.set()
    time.sleep(60)


def test_a_writer_killed_holding_the_lock_does_not_block_the_others(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    holder = ctx.Process(target=_hold_the_write_lock, args=(str(tmp_path), ready))
    holder.start()
    assert ready.wait(10)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    state.configure(f"lmdb://{tmp_path}", "p")
    started = time.monotonic()
    assert state.incr("after") == 1 and state.get("half") is None  # its write is undone
    assert time.monotonic() - started < 2
    state.configure("")


def test_redis_unreachable_fails_the_call_and_counts_nothing(tmp_path):
    state.configure(f"unix://{tmp_path}/nobody.sock", "p")
    with pytest.raises(state.StateError, match="Redis"):
        state.incr("k")
    state.configure("")


def test_a_ttl_is_set_when_the_key_is_made_and_never_reset_even_at_zero(store):
    state.incr("c", ttl=0.5)
    state.incr("c", by=-1)  # back to 0: still the same key, with its expiry
    state.incr("c", ttl=100)
    time.sleep(0.7)
    assert state.get("c") is None
    state.incr("tiny", ttl=0.0004)  # below a millisecond: expires, not "never"
    state.set("tiny-set", "x", ttl=0.0004)
    time.sleep(0.05)
    assert state.get("tiny") is None and state.get("tiny-set") is None


FILL_THE_DISK = """
import os, sys
from mtapy import state
disk = sys.argv[1]
os.mkdir(disk + "/p")
state.configure("lmdb://" + disk + "/p", "p")
state.set("first", "x")  # opened: its map's blocks are the pool's now
with open(disk + "/filler", "wb", buffering=0) as filler:  # then the disk fills up
    try:
        while True:
            filler.write(bytes(1 << 20))
    except OSError:
        pass
written = 0
try:
    while True:
        state.set(f"k{written}", "x" * 4000)
        written += 1
except state.StateError as e:
    print(f"{written} written, then: {e}")
assert state.get("k0") == "x" * 4000 and state.get("first") == "x"  # nothing lost
os.truncate(disk + "/filler", os.path.getsize(disk + "/filler") - (1 << 20))
os.mkdir(disk + "/q")  # a new store, with room for its files but not for its map
state.configure("lmdb://" + disk + "/q", "q")
try:
    state.incr("n")
except state.StateError as e:
    print(f"another store: {e}")
"""


def test_a_full_disk_is_a_state_error_and_never_a_crash(tmp_path):
    # The store writes through a shared map, where a page the disk cannot hold would kill
    # the worker with SIGBUS. A 40 MB tmpfs of its own (a private mount namespace) fills up.
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) to mount a small tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = 'mount -t tmpfs -o size=40m tmpfs "$1" && exec "$2" -c "$3" "$1"'
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                        str(disk), "/usr/bin/python3", FILL_THE_DISK],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "MTAPY_STATE_MAP_MB": "16"})
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)  # -7 would be SIGBUS
    full, refused = r.stdout.splitlines()
    written, error = full.split(" written, then: ")
    assert int(written) > 1000 and "the pool's state is full" in error  # all 16 MB usable
    assert "no room for its 16 MB" in refused and "free space there" in refused


def test_a_forked_child_opens_its_own_store_and_the_parent_keeps_reading(tmp_path):
    # LMDB: an environment serves only the process that opened it. A child freeing the one
    # it inherited used to free the parent's reader slot (MDB_BAD_RSLOT in the parent).
    state.configure(f"lmdb://{tmp_path}", "p")
    assert state.incr("n") == 1 and state.get("n") == 1
    child = os.fork()
    if child == 0:
        code = 1
        try:
            state.configure(f"lmdb://{tmp_path}", "p")
            code = 0 if state.incr("n") == 2 and state.get("n") == 2 else 1
        finally:
            os._exit(code)
    assert os.waitpid(child, 0)[1] == 0
    assert state.get("n") == 2 and state.incr("n") == 3
    state.configure("")


def test_two_stores_on_one_folder_in_a_process_share_one_environment(tmp_path):
    first, second = state._Lmdb(str(tmp_path)), state._Lmdb(str(tmp_path) + "/")
    assert first.incr(b"n", 1, None) == 1 and second.incr(b"n", 1, None) == 2
    del second  # closing a second environment would free the first one's reader slot
    assert first.get(b"n", None) == 2


def test_a_counter_out_of_64_bits_is_a_state_error_not_a_wrong_count(tmp_path):
    state.configure(f"lmdb://{tmp_path}", "p")
    assert state.incr("big", by=2 ** 63 - 1) == 2 ** 63 - 1
    with pytest.raises(state.StateError, match="counter would leave"):
        state.incr("big")
    assert state.get("big") == 2 ** 63 - 1
    state.configure("")


def test_a_store_that_did_not_open_raises_instead_of_crashing(tmp_path):
    probe = ("import _mtapy_lmdb\n"
             "s = _mtapy_lmdb.Store.__new__(_mtapy_lmdb.Store)\n"
             "try:\n    s.get(b'k')\nexcept ValueError as e:\n    print(e)\n")
    r = subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "did not open" in r.stdout, (r.returncode, r.stderr)


def test_a_redis_url_that_does_not_parse_is_a_state_error_without_the_password():
    state.configure("redis://pool-a:pw9/x7q@localhost:6379/0", "p")  # redis-py quoted "pw9"
    with pytest.raises(state.StateError, match="does not parse") as failure:
        state.incr("k")
    assert "pw9" not in str(failure.value) and "x7q" not in str(failure.value)
    state.configure("")
