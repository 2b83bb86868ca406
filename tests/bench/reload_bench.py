"""reload_bench.py - reload under load: failed calls, latency in the reload window, time to new code.

DESCRIPTION  Not pass/fail. Starts a private mtapy-workerd (pool of process_limit 2, a policy
             whose version() answers a version read from a module beside it) and 16 clients
             calling version() through the real shim (dlfunc-harness, as Exim loads it) for
             the whole run. After a steady stretch, it reloads RELOADS times, each to the other
             version, spaced SPACING seconds apart. Per run it reports: failed calls (rc != OK
             or a value of neither version); p50/p99 of calls that started inside a reload
             window (`mtapyctl reload` asked -> returned) against steady calls (before the first
             reload); the time from asking to the first answer of the new version, and to the
             reload's return. Runs unpinned and pinned (taskset -c 0 on the daemon, its workers
             and the clients), REPS times interleaved; tables give the median of per-run
             figures and of per-run ratios.
USAGE        as root: MTAPY_BUILD=build /usr/bin/python3 tests/bench/reload_bench.py [--reps 3]
             [--clients 16] [--reloads 10] [--spacing 1.5] [--steady 5]
"""

import argparse
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import exim_bench as eb  # noqa: E402  (its staging and daemon)

BUILD = pathlib.Path(os.environ.get("MTAPY_BUILD", eb.TOP / "build")).resolve()

POLICY = """\
from helper import VERSION

def version():
    return VERSION
"""


def stage_install():
    """exim_bench's stage, plus dlfunc-harness and a policy folder of its own."""
    bench_bin = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-reload-bin-"))
    subprocess.run(["gcc", "-O2", "-o", str(bench_bin / "rawpp"), str(HERE / "rawpp.c")],
                   check=True)
    root = eb.make_stage(BUILD, "/tmp", bench_bin)
    shutil.copy2(BUILD / "tests" / "dlfunc-harness", root / "bin")
    (root / "policy").mkdir(mode=0o755)
    (root / "policy" / "policy.py").write_text(POLICY)
    (root / "policy" / "policy.py").chmod(0o644)
    return root


def set_version(root, version):
    helper = root / "policy" / "helper.py"
    helper.write_text(f"VERSION = {version!r}\n")
    helper.chmod(0o644)


def start_daemon(root, name, pin):
    pool = eb.pool_toml("a", root / "policy" / "policy.py", clients=["root"], user=eb.POOL_USER,
                        process_limit=2, max_use=100000000, timeout="5s")
    daemon = eb.PinnedDaemon(root, name, pool, "", pin).start()
    ctl = [str(root / "bin" / "mtapyctl"), "-s", str(daemon.admin)]
    return daemon, ctl, daemon.shim_conf_for("a")


def one_run(root, name, pinned, a):
    pin = ["taskset", "-c", "0"] if pinned else []
    set_version(root, "v1")
    daemon, ctl, conf = start_daemon(root, name, pin)
    seconds = a.steady + a.reloads * a.spacing + 2
    env = {**os.environ, "MTAPY_SHIM_CONF": str(conf), "DLFUNC_HARNESS_EVERY": "1",
           "DLFUNC_HARNESS_STAMP": "1", "DLFUNC_HARNESS_SECONDS": str(seconds)}
    # Into files: a pipe nobody reads until the end would stall the clients.
    outputs = [tempfile.TemporaryFile() for _ in range(a.clients)]
    clients = [subprocess.Popen(pin + [str(root / "bin" / "dlfunc-harness"),
                                       str(root / "bin" / "mtapy_exim.so"), "repeat",
                                       "1000000000", "version"],
                                stdout=out, env=env) for out in outputs]
    began = time.monotonic()
    time.sleep(a.steady)
    reloads = []
    for n in range(a.reloads):
        version = "v2" if n % 2 == 0 else "v1"
        set_version(root, version)
        asked = time.monotonic()
        r = subprocess.run(ctl + ["reload"], capture_output=True, text=True, timeout=120)
        done = time.monotonic()
        if r.returncode != 0:
            raise RuntimeError(f"reload failed: {r.stdout}{r.stderr}")
        reloads.append((asked, done, version))
        time.sleep(max(0.0, began + a.steady + a.spacing * (n + 1) - time.monotonic()))
    calls = []
    for c, out in zip(clients, outputs):
        c.wait(timeout=120)
        out.seek(0)
        for line in out.read().decode(errors="replace").splitlines():
            found = re.fullmatch(r"each at=(\d+) took=(\d+) rc=(\d+) (.*)", line)
            if found:
                calls.append((int(found[1]) / 1e6, int(found[2]), int(found[3]), found[4]))
    daemon.stop()
    failed = sum(1 for c in calls if c[2] != 0 or c[3] not in ("v1", "v2"))
    steady = [c[1] for c in calls if c[0] < reloads[0][0]]
    window = [c[1] for c in calls if any(asked <= c[0] < done for asked, done, _ in reloads)]
    to_new, to_return = [], []
    for asked, done, version in reloads:
        answered = [c[0] + c[1] / 1e6 for c in calls if c[0] >= asked and c[3] == version]
        if answered:
            to_new.append((min(answered) - asked) * 1000)
        to_return.append((done - asked) * 1000)
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] if len(xs) > 1 else float("nan")
    return {
        "calls": len(calls), "failed": failed,
        "steady_p50": q(steady, 50), "steady_p99": q(steady, 99),
        "window_p50": q(window, 50), "window_p99": q(window, 99),
        "to_new_ms": statistics.median(to_new), "to_return_ms": statistics.median(to_return),
        "calls_per_s": len(calls) / seconds,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--reloads", type=int, default=10)
    parser.add_argument("--spacing", type=float, default=1.5)
    parser.add_argument("--steady", type=float, default=5)
    a = parser.parse_args()
    eb.ensure_user(eb.POOL_USER)
    root = stage_install()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    runs = {False: [], True: []}
    try:
        for rep in range(a.reps):
            for pinned in ((False, True) if rep % 2 == 0 else (True, False)):
                runs[pinned].append(one_run(root, f"r{rep}-{'p' if pinned else 'u'}", pinned, a))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    print(f"#### Reload under load ({started}; {a.clients} shim clients, process_limit 2, "
          f"{a.reloads} reloads {a.spacing} s apart after {a.steady} s steady; "
          f"median of {a.reps} runs)\n")
    print("| mode | calls (calls/s) | failed calls | steady p50 / p99 µs | in reload window "
          "p50 / p99 µs | window ÷ steady p50 / p99 | reload asked → new code answers, ms | "
          "asked → reload returns (old gone), ms |")
    print("|---|---|---|---|---|---|---|---|")
    for pinned in (False, True):
        rs = runs[pinned]
        ratio50 = statistics.median(r["window_p50"] / r["steady_p50"] for r in rs)
        ratio99 = statistics.median(r["window_p99"] / r["steady_p99"] for r in rs)
        print(f"| {'pinned' if pinned else 'unpinned'} | {med(rs, 'calls'):,.0f} "
              f"({med(rs, 'calls_per_s'):,.0f}) | {sum(r['failed'] for r in rs)} of "
              f"{sum(r['calls'] for r in rs):,} | {med(rs, 'steady_p50'):.0f} / "
              f"{med(rs, 'steady_p99'):.0f} | {med(rs, 'window_p50'):.0f} / "
              f"{med(rs, 'window_p99'):.0f} | {ratio50:.2f} / {ratio99:.2f} | "
              f"{med(rs, 'to_new_ms'):.0f} | {med(rs, 'to_return_ms'):.0f} |")


if __name__ == "__main__":
    main()
