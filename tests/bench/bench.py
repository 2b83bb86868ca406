"""bench.py - mtapy's performance benchmarks against floors measured in the same run.

Run through tests/bench/run.sh (it compiles the bench programs and passes --bin). As root:
the daemon starts its workers as an unprivileged user, so everything they read is staged in
a 0755 temp folder, as tests/conftest.py does.

Per repetition and mode (unpinned: the scheduler's choice; pinned: `taskset -c 0` on every
process, servers and daemon included, which its workers inherit), in this order:
  raw_c1        rawpp: 64 B ping-pong over a Unix SOCK_STREAM socket, blocking, 1 client
  rpc1_c1/c16   rpc1: EzRpcServer with embedded CPython, EzRpcClient per client process
  mtapy_c1/c16  shimbench: real mtapy_exim.so -> a worker of a real mtapy-workerd's pool (one
                hop: the pool's SOCK_DGRAM socket, SOCKET_DIR/pools/bench.sock), process_limit 2
  old_c1/c16    with --old-build: the same against a build of the old design (shim -> daemon ->
                worker -> daemon -> shim; [daemon] socket), run alongside in the same servers
  iso_base      200 quick calls through mtapy, nothing else running
  iso_block     the same while another client's call sleeps 1 s in the policy
  fc_raw        fork -> child raw connect + 64 B ping-pong (floor)
  fc_preload    fork -> child calls through the shim that the parent dlopen()ed (no call)
  old_fc_preload  the same through the old build's shim and daemon (with --old-build)
  fc_dlopen     fork -> child dlopen()s the shim, then calls
  fc_phases     fork-phases: as fc_preload, the child timing fork -> running, its first and
                second call, and counting its page faults in each call
  *_before      with --before-shim: fc_preload and fc_phases through that shim instead (another
                build's mtapy_exim.so, e.g. of the commit before a change), same daemon and run
With --first-call-only, only the fc_* tests run (and the before shim's).
  rss_*         VmRSS of the daemon, its workers and the rpc1 server (and the old daemon's)
CPU per call: /proc/PID/stat utime+stime of the daemon and of its workers before and after
each test, divided by the calls made (warm-up included).
Tables give the median over repetitions of each run's figure; ratios are computed per run and
then the median is taken (the method of docs/design.md section 4).
"""

import argparse
import datetime
import os
import pathlib
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

TOP = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "tests"))
from conftest import copy_pylib, ensure_user  # noqa: E402  (the end-to-end tests' helpers)
POOL_USER = "mtapy-t1"  # the end-to-end tests' user (tests/conftest.py); made if missing

POLICY = """\
import time

def f(a, b):
    return a + b

def slow():
    time.sleep(1)
    return "slept"
"""

RESULT = re.compile(r"RESULT p50_us=(\S+) p99_us=(\S+) max_us=(\S+) calls_per_s=(\S+) calls=(\d+)"
                    r"(?: p90_us=(\S+) mean_us=(\S+))?")
PHASES = re.compile(r"PHASES fork_us=(\S+) first_us=(\S+) second_us=(\S+) "
                    r"first_faults=(\S+) second_faults=(\S+)")
ISOLATION = re.compile(r"ISOLATION slow_rc=(-?\d+) slow_ms=(\S+) overlapped=(\d)")


def log(*words):
    print(*words, file=sys.stderr, flush=True)


PROGRAMS = ("workerd/mtapy-workerd", "workerd/mtapy-worker", "workerd/mtapyctl",
            "shim/mtapy_exim.so")


def source_of(build):
    """The source folder a CMake build folder was configured from (its CMakeCache.txt)."""
    m = re.search(r"^CMAKE_HOME_DIRECTORY:INTERNAL=(.*)$",
                  (build / "CMakeCache.txt").read_text(), re.M)
    if not m:
        raise RuntimeError(f"{build}/CMakeCache.txt names no source folder")
    return pathlib.Path(m[1])


def old_commit(build):
    r = subprocess.run(["git", "-C", str(source_of(build)), "log", "-1", "--format=%h %s"],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "?"


def make_stage(build, bench_bin, old_build=None, before_shim=None):
    root = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-bench-"))
    root.chmod(0o755)
    copy_pylib(TOP / "pylib", build, root / "pylib")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for program in PROGRAMS:
        shutil.copy2(build / program, bin_dir)
    if old_build:  # the old design: its own binaries and its own pylib
        copy_pylib(source_of(old_build) / "pylib", old_build, root / "pylib-old")
        (root / "bin-old").mkdir()
        for program in PROGRAMS:
            shutil.copy2(old_build / program, root / "bin-old")
    for program in ("rawpp", "rpc1", "shimbench"):
        shutil.copy2(bench_bin / program, bin_dir)
    if before_shim:
        shutil.copy2(before_shim, bin_dir / "mtapy_exim-before.so")
    (root / "policy.py").write_text(POLICY)
    (root / "run").mkdir()
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return root


POOL_TOML = """\
[pools.bench]
clients = ["root"]
user = "{user}"
policy = "{policy}"
process_limit = 2
timeout = "10s"
max_use = 100000000
max_use_jitter = 0
"""


class Servers:
    """rawpp server, rpc1 server and mtapy-workerd (with old=True also the old build's daemon),
    all started with the same CPU prefix."""

    def __init__(self, stage, name, prefix, old=False):
        self.stage, self.prefix, self.old = stage, prefix, old
        self.dir = stage / "run" / name
        self.dir.mkdir(mode=0o755)
        self.raw_sock = self.dir / "raw.sock"
        self.rpc1_sock = self.dir / "rpc1.sock"
        self.admin = self.dir / "admin.sock"
        self.config = self.dir / "workerd.toml"
        pool = POOL_TOML.format(user=POOL_USER, policy=stage / "policy.py")
        # The one-hop design: the pool's socket is SOCKET_DIR/pools/bench.sock.
        self.config.write_text(textwrap.dedent(f"""\
            [daemon]
            socket_dir = "{self.dir}"
            admin_socket = "{self.admin}"
            pylib = "{stage / 'pylib'}"
            log_level = "info"

            """) + pool)
        self.shim_conf = self.dir / "shim.conf"
        self.shim_conf.write_text(f"socket_dir = {self.dir}\ntimeout = 5s\npool = bench\n")
        files = [self.config, self.shim_conf]
        if old:  # the old design: one daemon socket, the daemon forwards each call
            self.old_dir = self.dir / "old"
            self.old_dir.mkdir(mode=0o755)
            self.old_socket = self.old_dir / "mtapy.sock"
            self.old_admin = self.old_dir / "admin.sock"
            self.old_config = self.old_dir / "workerd.toml"
            self.old_config.write_text(textwrap.dedent(f"""\
                [daemon]
                socket = "{self.old_socket}"
                admin_socket = "{self.old_admin}"
                pylib = "{stage / 'pylib-old'}"
                log_level = "info"

                """) + pool)
            self.old_shim_conf = self.old_dir / "shim.conf"
            self.old_shim_conf.write_text(f"socket = {self.old_socket}\ntimeout = 5s\npool = bench\n")
            files += [self.old_config, self.old_shim_conf]
        for p in files:
            p.chmod(0o644)
        self.procs = {}

    def bin(self, name):
        return str(self.stage / "bin" / name)

    def old_bin(self, name):
        return str(self.stage / "bin-old" / name)

    def start(self):
        self.log = open(self.dir / "servers.log", "ab")
        self.procs["raw"] = subprocess.Popen(self.prefix + [self.bin("rawpp"), "server", str(self.raw_sock)],
                                             stdout=self.log, stderr=subprocess.STDOUT)
        self.procs["rpc1"] = subprocess.Popen(self.prefix + [self.bin("rpc1"), "server", str(self.rpc1_sock)],
                                              stdout=self.log, stderr=subprocess.STDOUT)
        self.procs["daemon"] = subprocess.Popen(
            self.prefix + [self.bin("mtapy-workerd"), "--config", str(self.config)],
            stdout=self.log, stderr=subprocess.STDOUT)
        if self.old:
            self.procs["old_daemon"] = subprocess.Popen(
                self.prefix + [self.old_bin("mtapy-workerd"), "--config", str(self.old_config)],
                stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.dir / 'servers.log'}")
            if self.raw_sock.exists() and self.rpc1_sock.exists() and self.admin.exists() \
                    and self.ready() and (not self.old or (self.old_admin.exists()
                                                           and self.ready(old=True))):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"servers did not become ready; see {self.dir / 'servers.log'}")

    def status(self, old=False):
        ctl = self.old_bin("mtapyctl") if old else self.bin("mtapyctl")
        admin = self.old_admin if old else self.admin
        return subprocess.run([ctl, "-s", str(admin), "status"],
                              capture_output=True, text=True, timeout=30)

    def ready(self, old=False):
        """Both workers of the pool idle."""
        r = self.status(old)
        return r.returncode == 0 and len(re.findall(r"\bidle\b", r.stdout)) >= 2

    def worker_pids(self, daemon="daemon"):
        pid = self.procs[daemon].pid
        try:
            children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return []
        return [int(c) for c in children]

    def daemon_p50(self, old=False):
        """The pool's p50 in µs as `mtapyctl status` reports it (last 1024 calls). New design:
        each worker's own time per call (request taken -> answer sent, in the scoreboard). Old
        design: the daemon's KJ timer from request read to reply."""
        m = re.search(r"latency p50 (\d+)", self.status(old).stdout)
        return float(m[1]) if m else None

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.log.close()


def rss_kb(pid):
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """utime + stime of live processes (not their children), in seconds."""
    total = 0
    for pid in pids:
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLK_TCK


def children_cpu():
    import resource
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def run(cmd, env=None, timeout=300, server_pids=None, calls_for_cpu=0):
    """Run one bench program; parse its RESULT line. With server_pids ({role: [pid]}) and
    calls_for_cpu, also the CPU µs per call of the client (with its forked children), of each
    server role (cpu_ROLE) and of all server roles together (cpu_server)."""
    server_pids = server_pids or {}
    server0 = {role: cpu_seconds(pids) for role, pids in server_pids.items()}
    client0 = children_cpu()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    server1 = {role: cpu_seconds(pids) for role, pids in server_pids.items()}
    client1 = children_cpu()
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    m = PHASES.search(r.stdout)
    if m:
        return dict(zip(("fork", "first", "second", "first_faults", "second_faults"),
                        map(float, m.groups())))
    m = RESULT.search(r.stdout)
    if not m:
        raise RuntimeError(f"no RESULT from {' '.join(cmd)}:\n{r.stdout}\n{r.stderr}")
    out = {"p50": float(m[1]), "p99": float(m[2]), "max": float(m[3]), "cps": float(m[4])}
    if m[6]:
        out.update(p90=float(m[6]), mean=float(m[7]))
    m = ISOLATION.search(r.stdout)
    if m:
        out.update(slow_rc=int(m[1]), slow_ms=float(m[2]), overlapped=int(m[3]))
    if calls_for_cpu:
        out["cpu_client"] = (client1 - client0) * 1e6 / calls_for_cpu
        for role in server_pids:
            out["cpu_" + role] = (server1[role] - server0[role]) * 1e6 / calls_for_cpu
        out["cpu_server"] = sum(server1[role] - server0[role] for role in server_pids) * 1e6 / calls_for_cpu
    return out


def one_run(stage, name, pinned, a):
    prefix = ["taskset", "-c", "0"] if pinned else []
    old = a.old_build is not None
    s = Servers(stage, name, prefix, old=old).start()
    env = {**os.environ, "MTAPY_SHIM_CONF": str(s.shim_conf)}
    so = s.bin("mtapy_exim.so")
    res = {}
    try:
        time.sleep(0.3)  # let the workers finish importing and settle
        daemons = ["daemon"] + (["old_daemon"] if old else [])
        for d in daemons:
            res[f"rss_{d}_start"] = rss_kb(s.procs[d].pid)
            res[f"rss_{d.replace('daemon', 'worker')}_start"] = max(rss_kb(p) or 0
                                                                   for p in s.worker_pids(d))
        res["rss_rpc1_start"] = rss_kb(s.procs["rpc1"].pid)
        warm16 = max(50, a.warmup // 16)
        daemon_side = lambda: {"daemon": [s.procs["daemon"].pid], "workers": s.worker_pids()}
        rpc1_side = lambda: {"rpc1": [s.procs["rpc1"].pid]}
        c1 = a.calls + a.warmup            # calls made, warm-up included, for CPU per call
        c16 = a.calls // 16 * 16 + 16 * warm16
        tests = [
            ("raw_c1", [s.bin("rawpp"), "client", str(s.raw_sock), str(a.calls), str(a.warmup)],
             lambda: {"raw": [s.procs["raw"].pid]}, c1),
            ("rpc1_c1", [s.bin("rpc1"), "client", str(s.rpc1_sock), "1", str(a.calls), str(a.warmup)],
             rpc1_side, c1),
            ("mtapy_c1", [s.bin("shimbench"), "load", so, "1", str(a.calls), str(a.warmup)],
             daemon_side, c1),
            ("rpc1_c16", [s.bin("rpc1"), "client", str(s.rpc1_sock), "16", str(a.calls), str(warm16)],
             rpc1_side, c16),
            ("mtapy_c16", [s.bin("shimbench"), "load", so, "16", str(a.calls), str(warm16)],
             daemon_side, c16),
        ]
        if old:  # the old design right after the new one, through its own shim and daemon
            old_so = s.old_bin("mtapy_exim.so")
            old_side = lambda: {"daemon": [s.procs["old_daemon"].pid],
                                "workers": s.worker_pids("old_daemon")}
            tests.insert(3, ("old_c1", [s.bin("shimbench"), "load", old_so, "1", str(a.calls),
                                        str(a.warmup)], old_side, c1))
            tests.append(("old_c16", [s.bin("shimbench"), "load", old_so, "16", str(a.calls),
                                      str(warm16)], old_side, c16))
        # Isolation: a.iso_pairs pairs (alone, during a block), alternating which goes first;
        # each run's figure is the median over its pairs.
        for i in range(a.iso_pairs):
            pair = [("iso_base", "0"), ("iso_block", "1")]
            for test, block in (pair if i % 2 == 0 else pair[::-1]):
                tests.append((f"{test}#{i}", [s.bin("shimbench"), "isolation", so, "200", block],
                              dict, 0))
        if a.first_call_only:
            tests = []
        tests += [
            ("fc_raw", [s.bin("rawpp"), "fork", str(s.raw_sock), str(a.forks)], dict, 0),
            ("fc_preload", [s.bin("shimbench"), "fork-preload", so, str(a.forks)], dict, 0),
            ("fc_phases", [s.bin("shimbench"), "fork-phases", so, str(a.forks)], dict, 0),
        ]
        if a.before_shim:  # right after this build's, against the same daemon
            before = s.bin("mtapy_exim-before.so")
            tests += [
                ("fc_preload_before", [s.bin("shimbench"), "fork-preload", before, str(a.forks)],
                 dict, 0),
                ("fc_phases_before", [s.bin("shimbench"), "fork-phases", before, str(a.forks)],
                 dict, 0),
            ]
        if old:
            tests.append(("old_fc_preload", [s.bin("shimbench"), "fork-preload", old_so,
                                             str(a.forks)], dict, 0))
        tests.append(("fc_dlopen", [s.bin("shimbench"), "fork-dlopen", so, str(a.forks)], dict, 0))
        old_env = {**os.environ, "MTAPY_SHIM_CONF": str(s.old_shim_conf)} if old else None
        for test, cmd, pids, cpu_calls in tests:
            res[test] = run(prefix + cmd, env=old_env if test.startswith("old_") else env,
                            server_pids=pids(), calls_for_cpu=cpu_calls)
            if test in ("mtapy_c1", "old_c1"):  # the pool's own view of its calls
                res[test]["daemon_p50"] = s.daemon_p50(old=test == "old_c1")
            log(f"  {name} {test}: {res[test]}")
        for test in ("iso_base", "iso_block") if not a.first_call_only else ():
            pairs = [res.pop(f"{test}#{i}") for i in range(a.iso_pairs)]
            res[test] = {key: med([p[key] for p in pairs]) for key in pairs[0]}
            res[test]["overlapped"] = min(p["overlapped"] for p in pairs)
            res[test]["slow_rc"] = max(p["slow_rc"] for p in pairs)
        time.sleep(0.3)
        for d in daemons:
            res[f"rss_{d}_after"] = rss_kb(s.procs[d].pid)
            res[f"rss_{d.replace('daemon', 'worker')}_after"] = max(rss_kb(p) or 0
                                                                   for p in s.worker_pids(d))
        res["rss_rpc1_after"] = rss_kb(s.procs["rpc1"].pid)
        res["workers"] = len(s.worker_pids())
    finally:
        s.stop()
    return res


SYSCALLS = ("read", "write", "readv", "writev", "recvmsg", "sendmsg", "recvfrom", "sendto",
            "epoll_wait", "epoll_pwait", "poll", "ppoll", "getpid", "futex", "epoll_ctl")
PERF_EVENTS = ",".join([f"syscalls:sys_enter_{name}" for name in SYSCALLS] +
                       ["raw_syscalls:sys_enter", "context-switches", "cpu-migrations"])


def perf_counts(path):
    """{event: count} from `perf stat -x,` output; syscall tracepoints named by the syscall."""
    counts = {}
    for line in pathlib.Path(path).read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 3 and fields[0].strip().isdigit():
            name = fields[2].replace("syscalls:sys_enter_", "").replace("raw_syscalls:sys_enter", "all syscalls")
            counts[name] = int(fields[0])
    return counts


def syscall_run(stage, a):
    """Syscalls and context switches per call of each process on the path, for mtapy and the
    one-hop floor, 1 client, unpinned and pinned: `perf stat` counting syscall tracepoints
    (in-kernel counters: unlike strace, it does not slow the processes down enough to change
    which reads find data waiting)."""
    import signal
    n = a.syscall_calls
    lines = [f"### Syscalls and context switches per call (perf stat on syscall tracepoints, "
             f"{n:,} calls, 1 client, after 2,000 warm-up calls)\n",
             "| mode | path | process | syscalls per call (by kind) | all syscalls | "
             "context switches | p50 µs (under perf) |",
             "|---|---|---|---|---|---|---|"]
    for mode in ("unpinned", "pinned"):
        prefix = ["taskset", "-c", "0"] if mode == "pinned" else []
        s = Servers(stage, "perf-" + mode, prefix).start()
        env = {**os.environ, "MTAPY_SHIM_CONF": str(s.shim_conf)}
        so = s.bin("mtapy_exim.so")
        try:
            time.sleep(0.3)
            run(prefix + [s.bin("shimbench"), "load", so, "1", "2000", "0"], env=env)
            run(prefix + [s.bin("rpc1"), "client", str(s.rpc1_sock), "1", "2000", "0"], env=env)
            for label, servers, client in [
                    ("mtapy", {"daemon": [s.procs["daemon"].pid], "workers": s.worker_pids()},
                     [s.bin("shimbench"), "load", so, "1", str(n), "0"]),
                    ("rpc1 (one capnp hop)", {"rpc1 server": [s.procs["rpc1"].pid]},
                     [s.bin("rpc1"), "client", str(s.rpc1_sock), "1", str(n), "0"])]:
                counters = {}
                for role, pids in servers.items():
                    out = s.dir / f"perf-{label}-{role}.txt".replace(" ", "_")
                    cmd = ["perf", "stat", "-x,", "-o", str(out), "-e", PERF_EVENTS,
                           "-p", ",".join(map(str, pids))]
                    counters[role] = (subprocess.Popen(cmd, stderr=subprocess.DEVNULL), out)
                time.sleep(0.5)  # attached
                client_out = s.dir / f"perf-{label}-client.txt".replace(" ", "_")
                timing = run(["perf", "stat", "-x,", "-o", str(client_out), "-e", PERF_EVENTS] +
                             prefix + client, env=env)
                for role, (counter, out) in counters.items():
                    counter.send_signal(signal.SIGINT)
                    counter.wait(30)
                roles = {"client": perf_counts(client_out)}
                roles.update({role: perf_counts(out) for role, (c, out) in counters.items()})
                for role, counts in roles.items():
                    kinds = sorted(((c / n, name) for name, c in counts.items()
                                    if name in SYSCALLS and c / n >= 0.05), reverse=True)
                    text = ", ".join(f"{name} {c:.2f}" for c, name in kinds)
                    lines.append(f"| {mode} | {label} | {role} | {text} | "
                                 f"{counts.get('all syscalls', 0) / n:.2f} | "
                                 f"{counts.get('context-switches', 0) / n:.2f} | "
                                 f"{fmt(timing['p50'])} |")
        finally:
            s.stop()
    lines.append("")
    lines.append("The client's figures include its start (exec, dlopen or EzRpcClient setup); "
                 "\"all syscalls\" counts every syscall, also kinds not listed.")
    return "\n".join(lines)


def med(values):
    values = [v for v in values if v is not None and v == v]
    return statistics.median(values) if values else float("nan")


def fmt(v, digits=1):
    if v != v:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def first_call_section(runs, a):
    """The fc_* tests: the first call in a freshly forked process, and where its time goes."""
    modes = ("unpinned", "pinned")
    old_name = f"old design ({a.old_commit.split()[0]})" if a.old_build else ""
    before = a.before_shim is not None

    def col(mode, test, key):
        return med([r[test][key] for r in runs[mode]])

    lines = []
    w = lines.append
    w(f"### First call in a freshly forked process (fork → answer in the child; {a.forks} forks per run)\n")
    w("| path | unpinned p50 / p99 µs | pinned p50 / p99 µs |")
    w("|---|---|---|")
    rows = [("fc_raw", "floor: child does raw connect + 64 B ping-pong"),
            ("fc_preload", "**parent dlopen()ed the shim (no call), child calls**")]
    if before:
        rows.append(("fc_preload_before", f"the same through the before shim ({a.before_shim})"))
    if a.old_build:
        rows.append(("old_fc_preload", f"{old_name}: parent dlopen()ed its shim, child calls"))
    rows.append(("fc_dlopen", "child dlopen()s the shim, then calls"))
    for test, label in rows:
        cells = [f"{fmt(col(m, test, 'p50'))} / {fmt(col(m, test, 'p99'))}" for m in modes]
        w(f"| {label} | {cells[0]} | {cells[1]} |")
    w("")
    w("Where it goes (`shimbench fork-phases`, the child timing itself; medians over the forks, "
      "then over the runs; faults: minor page faults of the child during the call):\n")
    w("| shim | mode | fork → child runs µs | first call µs (faults) | second call µs (faults) |")
    w("|---|---|---|---|---|")
    shims = [("fc_phases", "this build")] + ([("fc_phases_before", "before")] if before else [])
    for test, label in shims:
        for m in modes:
            w(f"| {label} | {m} | {fmt(col(m, test, 'fork'))} | {fmt(col(m, test, 'first'))} "
              f"({fmt(col(m, test, 'first_faults'), 0)}) | {fmt(col(m, test, 'second'))} "
              f"({fmt(col(m, test, 'second_faults'), 0)}) |")
    w("")
    ratios = [("first call, preloaded / raw floor (p50)",
               lambda r: r["fc_preload"]["p50"] / r["fc_raw"]["p50"])]
    if before:
        ratios += [("first call, preloaded: this build / before (p50)",
                    lambda r: r["fc_preload"]["p50"] / r["fc_preload_before"]["p50"]),
                   ("the child's first call alone: this build / before",
                    lambda r: r["fc_phases"]["first"] / r["fc_phases_before"]["first"])]
    w("| ratio (median of per-run ratios, per-run range) | unpinned | pinned |")
    w("|---|---|---|")
    for label, f in ratios:
        cells = []
        for m in modes:
            values = [f(r) for r in runs[m]]
            cells.append(f"{fmt(med(values), 2)} ({fmt(min(values), 2)}–{fmt(max(values), 2)})")
        w(f"| {label} | {cells[0]} | {cells[1]} |")
    w("")
    w("| run | fc_raw p50 | fc_preload p50 | " + ("fc_preload before p50 |" if before else ""))
    w("|---|---|---|" + ("---|" if before else ""))
    for m in modes:
        for i, r in enumerate(runs[m]):
            cells = [r["fc_raw"]["p50"], r["fc_preload"]["p50"]] + \
                ([r["fc_preload_before"]["p50"]] if before else [])
            w(f"| {m} {i + 1} | " + " | ".join(fmt(c) for c in cells) + " |")
    return lines


def report(runs, a, started, load_before, load_after):
    modes = ("unpinned", "pinned")
    old = a.old_build is not None
    old_name = f"old design ({a.old_commit.split()[0]})" if old else ""

    def col(mode, test, key):
        return med([r[test][key] for r in runs[mode]])

    def ratio(mode, f):
        values = [f(r) for r in runs[mode]]
        return med(values), min(values), max(values)

    lines = []
    w = lines.append
    w("### Latency and throughput (median of per-run figures)\n")
    w("| test | unpinned p50 / p99 µs | unpinned calls/s | pinned p50 / p99 µs | pinned calls/s |")
    w("|---|---|---|---|---|")
    rows = [
        ("raw_c1", "floor: raw Unix SOCK_STREAM ping-pong 64 B, 1 client"),
        ("rpc1_c1", "floor: one capnp hop into embedded Python (EzRpc), 1 client"),
        ("rpc1_c16", "floor: one capnp hop into embedded Python, 16 clients"),
        ("mtapy_c1", "**mtapy: shim → pool socket → worker (one hop), 1 client**"),
        ("mtapy_c16", "**mtapy: shim → pool socket → worker (one hop), 16 clients**"),
    ]
    if old:
        rows += [("old_c1", f"{old_name}: shim → workerd → worker → workerd, 1 client"),
                 ("old_c16", f"{old_name}: shim → workerd → worker → workerd, 16 clients")]
    rows += [
        ("iso_base", "isolation: 200 quick mtapy calls, alone"),
        ("iso_block", "isolation: 200 quick mtapy calls while another call sleeps 1 s"),
    ]
    for test, label in rows:
        cells = [f"{fmt(col(m, test, 'p50'))} / {fmt(col(m, test, 'p99'))} | {fmt(col(m, test, 'cps'))}"
                 for m in modes]
        w(f"| {label} | {cells[0]} | {cells[1]} |")
    w("")
    lines += first_call_section(runs, a)
    w("")
    w("### CPU per call, µs, warm-up calls included (median of per-run figures)\n")
    w("Client: the bench program and its forked clients (RUSAGE_CHILDREN). Server: the rawpp or "
      "rpc1 server; for mtapy the daemon and its 2 workers separately (/proc/PID/stat utime+stime "
      "before and after the test, divided by the calls made; 10 ms ticks: ±0.5 µs at these call "
      "counts).\n")
    w("| test | unpinned client / server (daemon + workers) | pinned client / server (daemon + workers) |")
    w("|---|---|---|")

    def cpu_cell(m, test):
        text = f"{fmt(col(m, test, 'cpu_client'))} / {fmt(col(m, test, 'cpu_server'))}"
        if test.startswith(("mtapy", "old")):
            text += f" ({fmt(col(m, test, 'cpu_daemon'))} + {fmt(col(m, test, 'cpu_workers'))})"
        return text

    rows = [("raw_c1", "raw ping-pong, 1 client"), ("rpc1_c1", "one hop, 1 client"),
            ("mtapy_c1", "mtapy, 1 client")]
    rows += [("old_c1", f"{old_name}, 1 client")] if old else []
    rows += [("rpc1_c16", "one hop, 16 clients"), ("mtapy_c16", "mtapy, 16 clients")]
    rows += [("old_c16", f"{old_name}, 16 clients")] if old else []
    for test, label in rows:
        w(f"| {label} | {cpu_cell('unpinned', test)} | {cpu_cell('pinned', test)} |")
    w("")
    w("mtapy, 1 client, p50 as `mtapyctl status` reports it (last 1024 calls): "
      f"unpinned {fmt(col('unpinned', 'mtapy_c1', 'daemon_p50'))} µs, "
      f"pinned {fmt(col('pinned', 'mtapy_c1', 'daemon_p50'))} µs: each worker's own time per "
      "call, from taking the request to sending the answer (the scoreboard; whole µs).")
    if old:
        w(f"The {old_name}'s daemon reports unpinned {fmt(col('unpinned', 'old_c1', 'daemon_p50'))} µs, "
          f"pinned {fmt(col('pinned', 'old_c1', 'daemon_p50'))} µs, read from its KJ timer "
          "(request read → reply), whose time only advances when the loop waits, so it undercounts.")
    w("")
    w("### Ratios within a run (median of per-run ratios) and targets\n")
    w("| ratio | unpinned median (per-run range) | pinned median (per-run range) | target |")
    w("|---|---|---|---|")
    ratios = [
        ("mtapy 1 client p50 / one-hop p50", lambda r: r["mtapy_c1"]["p50"] / r["rpc1_c1"]["p50"], "≤ 1.2"),
        ("mtapy 1 client p99 / one-hop p99", lambda r: r["mtapy_c1"]["p99"] / r["rpc1_c1"]["p99"], "–"),
        ("mtapy 16 clients calls/s / one-hop 16 clients calls/s",
         lambda r: r["mtapy_c16"]["cps"] / r["rpc1_c16"]["cps"], "≥ 0.8 (earlier target)"),
        ("mtapy 1 client calls/s / one-hop 1 client calls/s",
         lambda r: r["mtapy_c1"]["cps"] / r["rpc1_c1"]["cps"], "–"),
    ]
    if old:
        ratios += [
            (f"{old_name} 1 client p50 / one-hop p50",
             lambda r: r["old_c1"]["p50"] / r["rpc1_c1"]["p50"], "–"),
            (f"{old_name} 16 clients calls/s / one-hop 16 clients calls/s",
             lambda r: r["old_c16"]["cps"] / r["rpc1_c16"]["cps"], "–"),
            (f"**mtapy p50 / {old_name} p50, 1 client**",
             lambda r: r["mtapy_c1"]["p50"] / r["old_c1"]["p50"], "–"),
            (f"**mtapy calls/s / {old_name} calls/s, 16 clients**",
             lambda r: r["mtapy_c16"]["cps"] / r["old_c16"]["cps"], "–"),
            (f"mtapy server CPU per call / {old_name}'s, 1 client",
             lambda r: r["mtapy_c1"]["cpu_server"] / r["old_c1"]["cpu_server"], "–"),
            (f"first call, preloaded: mtapy / {old_name} (p50)",
             lambda r: r["fc_preload"]["p50"] / r["old_fc_preload"]["p50"], "–"),
        ]
    ratios += [
        ("one-hop p50 / raw ping-pong p50", lambda r: r["rpc1_c1"]["p50"] / r["raw_c1"]["p50"], "–"),
        ("mtapy p50 / raw ping-pong p50", lambda r: r["mtapy_c1"]["p50"] / r["raw_c1"]["p50"], "–"),
        ("mtapy server-side CPU per call / one-hop server CPU per call, 1 client",
         lambda r: r["mtapy_c1"]["cpu_server"] / r["rpc1_c1"]["cpu_server"], "–"),
        ("isolation: quick p50 during block / alone",
         lambda r: r["iso_block"]["p50"] / r["iso_base"]["p50"], "not delayed (~1)"),
        ("isolation: quick p99 during block / alone",
         lambda r: r["iso_block"]["p99"] / r["iso_base"]["p99"], "not delayed (~1)"),
        ("first call: child dlopen / preloaded (p50)",
         lambda r: r["fc_dlopen"]["p50"] / r["fc_preload"]["p50"], "–"),
    ]
    for label, f, target in ratios:
        cells = ["{} ({}–{})".format(*(fmt(v, 2) for v in ratio(m, f))) for m in modes]
        w(f"| {label} | {cells[0]} | {cells[1]} | {target} |")
    w(f"| first call, preloaded, p50 (µs) | {fmt(col('unpinned', 'fc_preload', 'p50'))} | "
      f"{fmt(col('pinned', 'fc_preload', 'p50'))} | ≤ 300 |")
    for test, label in [("mtapy_c1", "1 client"), ("mtapy_c16", "16 clients")]:
        w(f"| mtapy-workerd (the daemon) CPU per call, µs, {label} | "
          f"{fmt(col('unpinned', test, 'cpu_daemon'), 2)} | "
          f"{fmt(col('pinned', test, 'cpu_daemon'), 2)} | – |")
    if old:
        for test, label in [("old_c1", "1 client"), ("old_c16", "16 clients")]:
            w(f"| {old_name}: its daemon's CPU per call, µs, {label} | "
              f"{fmt(col('unpinned', test, 'cpu_daemon'), 2)} | "
              f"{fmt(col('pinned', test, 'cpu_daemon'), 2)} | – |")
    slow_ok = all(r["iso_block"].get("overlapped") == 1 and r["iso_block"].get("slow_rc") == 0
                  for m in modes for r in runs[m])
    slow_ms = med([r["iso_block"].get("slow_ms") for m in modes for r in runs[m]])
    w("")
    w(f"Isolation check: in every run the 1 s call was still running when the 200 quick calls "
      f"had finished, and it then returned OK: **{'yes' if slow_ok else 'NO'}** "
      f"(slow call took {fmt(slow_ms)} ms, median). Max quick-call latency during the block "
      f"(median of runs): unpinned {fmt(col('unpinned', 'iso_block', 'max'))} µs, "
      f"pinned {fmt(col('pinned', 'iso_block', 'max'))} µs.")
    w("")
    w("### Per-run figures, µs and calls/s (repetition N: unpinned first when N is odd, pinned first when even)\n")
    head = ["raw p50", "one-hop p50", "mtapy p50"] + (["old p50"] if old else []) + \
        ["one-hop 16c calls/s", "mtapy 16c calls/s"] + (["old 16c calls/s"] if old else []) + \
        ["fc_preload p50"] + (["old fc_preload p50"] if old else [])
    w("| run | " + " | ".join(head) + " |")
    w("|---|" + "---|" * len(head))
    for m in modes:
        for i, r in enumerate(runs[m]):
            cells = [r["raw_c1"]["p50"], r["rpc1_c1"]["p50"], r["mtapy_c1"]["p50"]] + \
                ([r["old_c1"]["p50"]] if old else []) + \
                [r["rpc1_c16"]["cps"], r["mtapy_c16"]["cps"]] + \
                ([r["old_c16"]["cps"]] if old else []) + [r["fc_preload"]["p50"]] + \
                ([r["old_fc_preload"]["p50"]] if old else [])
            w(f"| {m} {i + 1} | " + " | ".join(fmt(c) for c in cells) + " |")
    w("")
    w("### Memory (VmRSS from /proc/PID/status, KiB; median over all runs, both modes)\n")
    w("| process | just started (workers idle) | after the run's calls (idle) | target |")
    w("|---|---|---|---|")
    allruns = runs["unpinned"] + runs["pinned"]
    rows = [("daemon", "mtapy-workerd", "≤ 20 MB"),
            ("worker", "mtapy worker (largest of 2; policy imports only `time`)", "≤ 15 MB")]
    if old:
        rows += [("old_daemon", f"{old_name}: mtapy-workerd", "–"),
                 ("old_worker", f"{old_name}: worker (largest of 2)", "–")]
    rows.append(("rpc1", "for scale: rpc1 one-hop server (embedded CPython + capnp)", "–"))
    for key, label, target in rows:
        w(f"| {label} | {fmt(med([r['rss_' + key + '_start'] for r in allruns]), 0)} | "
          f"{fmt(med([r['rss_' + key + '_after'] for r in allruns]), 0)} | {target} |")
    w("")
    w("### Conditions\n")
    w(f"- {started:%Y-%m-%d %H:%M %Z}; {platform.node()}, {os.cpu_count()} vCPU, "
      f"kernel {platform.release()}; load average before {load_before}, after {load_after}.")
    w(f"- {a.reps} repetitions × (unpinned, pinned), interleaved; per test {a.calls:,} timed calls "
      f"after {a.warmup:,} warm-up calls (16 clients: {a.calls:,} in total, split evenly, "
      f"{max(50, a.warmup // 16)} warm-up calls each); {a.forks} forks per first-call test.")
    w("- mtapy pool: process_limit 2, max_use 100000000 (no recycling during the run), "
      "timeout 10s; shim timeout 5s; policy `def f(a, b): return a + b`.")
    if old:
        w(f"- Old design: {a.old_build} (built from {a.old_commit}), its own pylib; its daemon and "
          "2 workers run alongside the new ones in every run (idle while the others are measured), "
          "same pool settings; its tests run right after the new design's.")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, type=pathlib.Path)
    p.add_argument("--bin", required=True, type=pathlib.Path, help="compiled bench programs")
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--forks", type=int, default=200)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--syscalls", action="store_true",
                   help="only count syscalls and context switches per call (perf stat)")
    p.add_argument("--syscall-calls", type=int, default=20000)
    p.add_argument("--iso-pairs", type=int, default=5, help="isolation pairs per run")
    p.add_argument("--before-shim", type=pathlib.Path,
                   help="also measure the first call through this mtapy_exim.so (e.g. of an "
                        "earlier commit), against the same daemon")
    p.add_argument("--first-call-only", action="store_true", help="run only the fc_* tests")
    p.add_argument("--old-build", type=pathlib.Path,
                   help="also measure this build of the old design (daemon forwards each call)")
    a = p.parse_args()
    a.old_commit = old_commit(a.old_build) if a.old_build else None
    if os.geteuid() != 0:
        sys.exit("bench.py: run as root (workers run as an unprivileged user)")
    ensure_user(POOL_USER)
    started = datetime.datetime.now().astimezone()
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    stage = make_stage(a.build, a.bin, a.old_build, a.before_shim)
    if a.syscalls:
        try:
            print(syscall_run(stage, a))
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return
    runs = {"unpinned": [], "pinned": []}
    try:
        for rep in range(a.reps):
            order = ("unpinned", "pinned") if rep % 2 == 0 else ("pinned", "unpinned")
            for mode in order:
                log(f"run {rep + 1}/{a.reps} {mode}")
                runs[mode].append(one_run(stage, f"{mode}-{rep}", mode == "pinned", a))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    load_after = " ".join(open("/proc/loadavg").read().split()[:3])
    if a.first_call_only:
        print("\n".join(first_call_section(runs, a)))
        print(f"\n{started:%Y-%m-%d %H:%M %Z}; {a.reps} repetitions × (unpinned, pinned), "
              f"interleaved; {a.forks} forks per test; load average before {load_before}, "
              f"after {load_after}.")
    else:
        print(report(runs, a, started, load_before, load_after))


if __name__ == "__main__":
    main()
