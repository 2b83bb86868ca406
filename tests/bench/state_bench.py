"""state_bench.py - mtapy.state's incr(): ops/s and p50 per backend, 1 and 16 processes.

DESCRIPTION  Not pass/fail. Each process configures mtapy.state as a worker would and calls
             incr() on one shared key (the worst case: every write contends for it) and on
             keys of its own, OPS times each; per-call latency from time.perf_counter_ns().
             Backends: the embedded LMDB store (a temporary folder) and a private
             redis-server on a Unix socket, in the same run. Unpinned and pinned (every
             process, redis-server included, on CPU 0).
USAGE        /usr/bin/python3 tests/bench/state_bench.py [--ops 20000]
"""

import argparse
import multiprocessing
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
# pylib, and its C++ modules in the build (MTAPY_BUILD as the other benches).
sys.path[:0] = [str(TOP / "pylib"),
                str(pathlib.Path(os.environ.get("MTAPY_BUILD", TOP / "build")).resolve() / "pylib")]
from mtapy import state  # noqa: E402


def worker(url, ops, shared, pin, out):
    if pin:
        os.sched_setaffinity(0, {0})
    state.configure(url, "bench")
    key = "shared" if shared else f"own-{os.getpid()}"
    took = []
    for _ in range(ops):
        t = time.perf_counter_ns()
        state.incr(key)
        took.append(time.perf_counter_ns() - t)
    out.put(took)


def measure(url, processes, ops, shared, pin):
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    started = time.perf_counter()
    procs = [ctx.Process(target=worker, args=(url, ops, shared, pin, out)) for _ in range(processes)]
    for p in procs:
        p.start()
    took = [t for _ in procs for t in out.get()]
    elapsed = time.perf_counter() - started
    for p in procs:
        p.join()
    return len(took) / elapsed, statistics.median(took) / 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=20000)
    a = parser.parse_args()
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-state-bench-"))
    sock = folder / "redis.sock"
    rows = []
    try:
        for pin in (False, True):
            redis = subprocess.Popen((["taskset", "-c", "0"] if pin else []) + [
                "redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "",
                "--appendonly", "no"], stdout=subprocess.DEVNULL)
            while not sock.exists():
                time.sleep(0.01)
            lmdb_dir = folder / f"lmdb-{pin}"
            lmdb_dir.mkdir()
            for name, url in (("embedded (LMDB)", f"lmdb://{lmdb_dir}"), ("Redis", f"unix://{sock}")):
                for processes in (1, 16):
                    for shared in (True, False):
                        ops = a.ops if processes == 1 else a.ops // 4
                        rate, p50 = measure(url, processes, ops, shared, pin)
                        rows.append((name, "pinned" if pin else "unpinned", processes,
                                     "one shared key" if shared else "a key each", rate, p50))
            redis.terminate()
            redis.wait()
            sock.unlink(missing_ok=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"#### mtapy.state incr() ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{a.ops} ops per process at 1, {a.ops // 4} at 16)\n")
    print("| backend | mode | processes | keys | incr/s | p50 µs |")
    print("|---|---|---|---|---|---|")
    for name, mode, processes, keys, rate, p50 in rows:
        print(f"| {name} | {mode} | {processes} | {keys} | {rate:,.0f} | {p50:.1f} |")


if __name__ == "__main__":
    main()
