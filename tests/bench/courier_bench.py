r"""courier_bench.py - Courier global filters driven as Courier's submit drives them, in one run.

DESCRIPTION  Not pass/fail. Compares, in the same runs, the programs courierfilter would start:
               floor         courier-floor.c: the protocol alone, "200 Ok" at once (sequential)
               pythonfilter  upstream courier-pythonfilter: one Python process, a thread per
                             message (the peer; needs --pythonfilter, see PEER)
               mtapy         mtapy-courierfilter -> a pool of mtapy-workerd (as root)
             Each program is started as courierfilter starts one: stdin a pipe (closed to stop
             it), fd 3 a pipe's write end; it is ready when fd 3 is closed and its socket
             (SPOOL/allfilters/NAME, a private folder) exists. The driver is submitbench.c
             (benchlib's run_load): per message a connection, "DATA\nCONTROL\n\n", the reply
             read until the filter closes. Messages are a data file and one control file laid
             out as Courier 1.0.16 writes them (pylib/tests/test_courier_control.py), 2 KB and
             100 KB, every message the same pair of files (page cache warm, as a message
             submit has just written). Filters, the same module files for every program:
               noop          do_filter returns ''
               subject       parses the data file with `email`; '550 ...' if the Subject
                             contains "spam", else '' (bench messages have none; a spam
                             message is checked to be refused before each program is timed)
             Per repetition and mode (unpinned; pinned: `taskset -c 0` on the filter program,
             mtapy's daemon (its workers inherit it) and the driver), programs in a rotated
             order, each measured at 1 and 8 clients for both sizes. Per measurement: a short
             probe sets the message count to about --seconds of load; warm-up messages are
             not timed. REPS repetitions, interleaved.
FIGURES      msg/s, p50/p90/p99 and mean µs (connect -> reply read to EOF; the mean is
             clients / msg/s by Little's law, the same for a fair and an unfair server at one
             throughput, where the unfair one has the lower p50), CPU µs per message of the
             program's processes (/proc/PID/stat utime+stime: threads included, dead ones
             too; for mtapy the filter program, the daemon and its workers: the pids are a
             callable of each side) and of the driver (its reaped client processes),
             warm-up included. "own work": the filter's do_filter alone, timed in a loop in a
             plain python3 process on the same file (process_time / calls), in the same run;
             framework CPU = program CPU per message - own work (in a filter program the
             filter may cost more than in the loop: colder caches). Not used: pythonfilter's
             own "CPU TIME ACCOUNTING" lines (RUSAGE_THREAD of a running thread misses its time
             since it was last scheduled; most messages log 0). Tables: median of per-run
             figures; ratios per run, then the median (range in brackets).
PEER         upstream's program, `pythonfilter` at the top of a git checkout:
               git clone https://github.com/gordonmessmer/courier-pythonfilter DIR
             (GPL: used for the run, never copied into mtapy; without it the peer is reported
             "not run"). The bench needs DIR/pythonfilter and DIR/courier/{config,control}.py;
             its filter modules are the bench's own (a `pythonfilter` package on PYTHONPATH).
             It is pointed at a private folder by a fake `courier-config` first on PATH
             (courier.config runs it at import): localstatedir = the bench's spool, where it
             makes allfilters/pythonfilter; sysconfdir = the bench's etc, where its
             pythonfilter.conf is found (after /etc and /usr/local/etc: the bench refuses to
             run the peer if either has one). Its stderr (one accounting line per message)
             goes to a file, as courierfilter's goes to syslog.
USAGE        /usr/bin/python3 tests/bench/courier_bench.py [--pythonfilter DIR] [--reps 3]
                 [--seconds 2] [--warmup 50] [--sides floor,pythonfilter,mtapy]
                 [--sizes 2k,100k] [--filters noop,subject] [--json FILE] [--keep-stage]
             DIR may also come from $COURIER_PYTHONFILTER. Root is needed for the mtapy side
             only (its daemon starts workers as another user); MTAPY_BUILD as the other benches.
SEE ALSO     courier-floor.c, submitbench.c, exim_bench.py (the daemon helpers MtapySide uses)
"""

import argparse
import json
import os
import pathlib
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import exim_bench as eb  # noqa: E402  (staging and the mtapy daemon, for MtapySide)
from bench import med, run as run_driver  # noqa: E402  (RESULT parsing, CPU per call)

PYTHON = "/usr/bin/python3"
SIZES = {"2k": 2 * 1024, "100k": 100 * 1024}
CLIENT_COUNTS = (1, 8)

# The filter modules, as courier-pythonfilter modules (do_filter(body_path, control_paths)).
FILTERS = {
    "noop": """\
def do_filter(body_path, control_paths):
    return ''
""",
    "subject": """\
import email


def do_filter(body_path, control_paths):
    with open(body_path, 'rb') as body:
        message = email.message_from_binary_file(body)
    if 'spam' in str(message.get('Subject', '')):
        return '550 5.7.1 spam refused'
    return ''
""",
}

# Courier 1.0.16's control file for one recipient (pylib/tests/test_courier_control.py);
# upstream pythonfilter reads the M record of every message for its accounting log line.
CONTROL = (b"ssender@example.net\n"
           b"fdns; client.example.net (softdnserr [::ffff:127.0.0.1])\n"
           b"e\nt\n"
           b"M000000000000017C.000000006B01885B.000000C8\n"
           b"rsomeone@example.com\nR\nN\n"
           b"ORELAYCLIENT=\nOTCPREMOTEIP=::ffff:127.0.0.1\nuauthsmtp\n"
           b"E1795867355\np1795291355\nW1795276955\n")


def data_file(size, subject):
    """A message as Courier keeps it in its data file: LF line ends, no dot, its Received."""
    head = (b"Received: from client.example.net (softdnserr [::ffff:127.0.0.1])\n"
            b"  by mx.example.com with ESMTP; Wed, 02 Dec 2026 18:00:00 +0000\n"
            b"  id 000000000000017C.000000006B01885B.000000C8\n"
            b"From: sender@example.net\nTo: someone@example.com\n"
            b"Subject: " + subject + b"\nDate: Wed, 02 Dec 2026 18:00:00 +0000\n"
            b"Message-ID: <bench@example.net>\nMIME-Version: 1.0\n"
            b"Content-Type: text/plain; charset=us-ascii\n\n")
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\n"
    return head + (line * (size // len(line) + 1))[: size - len(head)]


def log(*words):
    eb.log(*words)


# --- the stage -------------------------------------------------------------------------------


def build_programs(bin_dir):
    for name in ("courier-floor", "submitbench"):
        subprocess.run(["gcc", "-O2", "-Wall", "-Wno-unused-function", "-Wl,-z,now", "-o",
                        str(bin_dir / name), str(HERE / f"{name}.c")], check=True)


def make_stage(root_dir):
    """A 0755 folder: bin (C programs, the fake courier-config), spool (messages; the
    filters' socket folder), etc (pythonfilter.conf), pyfilters/pythonfilter (the filters)."""
    root = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-courier-bench-", dir=root_dir))
    for sub in ("bin", "spool/tmp", "spool/allfilters", "spool/filters", "etc",
                "pyfilters/pythonfilter", "run"):
        (root / sub).mkdir(parents=True)
    build_programs(root / "bin")
    # courier.config reads its paths from `courier-config` at import; sbindir names no
    # courier, so its version probe fails quietly.
    (root / "bin" / "courier-config").write_text(
        "#!/bin/sh\n"
        f"echo prefix={root}\necho sbindir={root}/nonexistent\n"
        f"echo sysconfdir={root}/etc\necho localstatedir={root}/spool\n"
        "echo mailuser=daemon\necho mailgroup=daemon\n")
    (root / "bin" / "courier-config").chmod(0o755)
    (root / "pyfilters" / "pythonfilter" / "__init__.py").write_text("")
    for name, text in FILTERS.items():
        (root / "pyfilters" / "pythonfilter" / f"bench_{name}.py").write_text(text)
    for size_name, size in SIZES.items():
        (root / "spool" / "tmp" / f"D-{size_name}").write_bytes(data_file(size, b"bench"))
        (root / "spool" / "tmp" / f"D-{size_name}-spam").write_bytes(data_file(size, b"cheap spam"))
    (root / "spool" / "tmp" / "C").write_bytes(CONTROL)
    # Readable by a pool's user (mtapy's workers read the spool and the filter modules).
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return root


def message(stage, size_name, spam=False):
    tmp = stage / "spool" / "tmp"
    return str(tmp / f"D-{size_name}{'-spam' if spam else ''}"), str(tmp / "C")


# --- filter programs, started as courierfilter starts them ----------------------------------


class NotRun(Exception):
    """A side that cannot run here; the report says why."""


class FilterProgram:
    """A filter program with stdin a pipe and fd 3 a pipe's write end. Ready when fd 3 is
    closed and SOCKET exists; stopped by closing its stdin (finish, then exit)."""

    def __init__(self, argv, socket_path, log_path, env=None, extra_pids=lambda: [],
                 then_stop=lambda: None):
        self.argv, self.socket, self.log_path = argv, pathlib.Path(socket_path), log_path
        self.env, self.extra_pids, self.then_stop = env, extra_pids, then_stop
        self.process = None

    def start(self, timeout=30):
        ready_r, ready_w = os.pipe()
        log_file = open(self.log_path, "ab")
        try:
            # fd 3 in the child: dup2 makes it inheritable; every fd Python made is
            # close-on-exec, so close_fds=False leaks nothing else.
            self.process = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=log_file,
                                            stderr=subprocess.STDOUT, env=self.env,
                                            close_fds=False,
                                            preexec_fn=lambda: os.dup2(ready_w, 3))
        finally:
            os.close(ready_w)
            log_file.close()
        try:
            deadline = time.monotonic() + timeout
            while True:  # courierfilter's wait: EOF on fd 3
                if select.select([ready_r], [], [], 0.1)[0] and not os.read(ready_r, 64):
                    break
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"{self.argv[-1]} did not get ready: {self.log()[-2000:]}")
        finally:
            os.close(ready_r)
        if not self.socket.exists():
            self.stop()
            raise RuntimeError(f"{self.argv} closed fd 3 but {self.socket} does not exist: "
                               f"{self.log()[-2000:]}")
        return self

    def pids(self):
        return [self.process.pid] + list(self.extra_pids())

    def log(self):
        return pathlib.Path(self.log_path).read_text(errors="replace")

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.stdin.close()  # courierfilter's stop: EOF on stdin
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.then_stop()  # e.g. the daemon behind the filter program


class FloorSide:
    """courier-floor: answers "200 Ok" at once; the filter is not run (one row per size)."""
    name = "floor"
    runs_filters = False

    def __init__(self, a):
        pass

    def check(self):
        pass

    def start(self, stage, run, filt, prefix):
        path = stage / "spool" / "allfilters" / "floor"
        return FilterProgram(prefix + [str(stage / "bin" / "courier-floor"), str(path)], path,
                             stage / "run" / f"{run}-floor.log").start()


class PythonfilterSide:
    """Upstream courier-pythonfilter, pointed at the stage by the fake courier-config."""
    name = "pythonfilter"
    runs_filters = True

    def __init__(self, a):
        self.dir = pathlib.Path(a.pythonfilter) if a.pythonfilter else None

    def check(self):
        if self.dir is None:
            raise NotRun("no --pythonfilter DIR (or $COURIER_PYTHONFILTER): a git checkout of "
                         "https://github.com/gordonmessmer/courier-pythonfilter")
        missing = [p for p in ("pythonfilter", "courier/config.py", "courier/control.py")
                   if not (self.dir / p).exists()]
        if missing:
            raise NotRun(f"{self.dir} has no {', '.join(missing)}")
        shadows = [c for c in ("/etc/pythonfilter.conf", "/usr/local/etc/pythonfilter.conf")
                   if os.path.exists(c)]
        if shadows:
            raise NotRun(f"{shadows[0]} exists; upstream would read it before the bench's")

    def start(self, stage, run, filt, prefix):
        (stage / "etc" / "pythonfilter.conf").write_text(f"bench_{filt}\n")
        env = {**os.environ, "PATH": f"{stage / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
               "PYTHONPATH": str(stage / "pyfilters"), "PYTHONDONTWRITEBYTECODE": "1"}
        return FilterProgram(prefix + [PYTHON, str(self.dir / "pythonfilter")],
                             stage / "spool" / "allfilters" / "pythonfilter",
                             stage / "run" / f"{run}-pythonfilter-{filt}.log", env).start()


class MtapySide:
    """mtapy: (a) mtapy-workerd with a pool whose policy is the bench's filter module (its
    do_filter is the pool's one Courier filter), started with exim_bench's PinnedDaemon (as
    ratelimit_bench and reload_bench start theirs), staged with the pylib of the source the
    build came from; (b) mtapy-courierfilter, started as courierfilter starts a filter, with
    the settings that lead it to that pool. CPU: the filter program, the daemon, its workers.

    The filter's name is argv[0]'s, its socket goes to $localstatedir/allfilters/NAME, the
    pool and the daemon's socket_dir come from $MTAPY_SHIM_CONF."""
    name = "mtapy"
    runs_filters = True
    PROGRAM = "shim/mtapy-courierfilter"  # in the build folder

    def __init__(self, a):
        self.build = pathlib.Path(os.environ.get("MTAPY_BUILD", eb.TOP / "build")).resolve()
        self.eb_stage = None

    def check(self):
        if not (self.build / self.PROGRAM).exists():
            raise NotRun(f"no {self.build / self.PROGRAM}: build mtapy first")
        if os.geteuid() != 0:
            raise NotRun("run as root (mtapy-workerd starts its workers as another user)")
        eb.ensure_user(eb.POOL_USER)

    def policy(self, stage, filt):
        """The pool's policy: the bench's filter module, whose do_filter the pool calls."""
        return (f"import sys\nsys.path.insert(0, {str(stage / 'pyfilters')!r})\n"
                f"from pythonfilter.bench_{filt} import do_filter  # noqa: F401\n")

    def argv(self):
        # courierfilter runs a filter by its name in filters/active: argv[0].
        return [str(self.eb_stage / "bin" / "mtapy")]

    def env(self, stage, daemon):
        return {**os.environ, "localstatedir": str(stage / "spool"),
                "sysconfdir": str(stage / "etc"),
                "MTAPY_SHIM_CONF": str(daemon.shim_conf_for("courier"))}

    def stage_daemon(self, stage):
        """The daemon, worker, mtapyctl and the build's own pylib, staged once."""
        subprocess.run(["gcc", "-O2", "-o", str(stage / "bin" / "rawpp"), str(HERE / "rawpp.c")],
                       check=True)
        self.eb_stage = eb.make_stage(self.build, str(stage), stage / "bin")
        source = eb.source_of(self.build) / "pylib"
        if source.resolve() != (eb.TOP / "pylib").resolve():  # a build of another checkout
            shutil.rmtree(self.eb_stage / "pylib")
            eb.copy_pylib(source, self.build, self.eb_stage / "pylib")
        shutil.copy2(self.build / self.PROGRAM, self.eb_stage / "bin" / "mtapy")
        for path in [self.eb_stage, *self.eb_stage.rglob("*")]:
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)

    def start(self, stage, run, filt, prefix):
        if self.eb_stage is None:
            self.stage_daemon(stage)
        policy = self.eb_stage / "policies" / f"courier_{filt}.py"
        policy.write_text(self.policy(stage, filt))
        policy.chmod(0o644)
        pool = eb.pool_toml("courier", policy, **eb.POOL_OPTIONS)
        daemon = eb.PinnedDaemon(self.eb_stage, f"{run}-{filt}", pool, "", prefix)
        try:
            daemon.start()
            return FilterProgram(prefix + self.argv(), stage / "spool" / "allfilters" / "mtapy",
                                 daemon.dir / "courierfilter.log", self.env(stage, daemon),
                                 extra_pids=daemon.pids, then_stop=daemon.stop).start()
        except BaseException:
            daemon.stop()
            raise


SIDES = {"floor": FloorSide, "pythonfilter": PythonfilterSide, "mtapy": MtapySide}


# --- measurements ----------------------------------------------------------------------------


def check_verdicts(stage, program, filt, size_name):
    """The bench message is accepted; with the subject filter, the spam one is refused."""
    for spam in (False, True):
        r = subprocess.run([str(stage / "bin" / "submitbench"), "once", str(program.socket),
                            *message(stage, size_name, spam)], capture_output=True, text=True,
                           timeout=60)
        want = "5" if spam and filt == "subject" else "2"
        if r.returncode != 0 or not r.stdout.startswith(want):
            raise RuntimeError(f"{program.argv}: {filt} {size_name} spam={spam}: reply "
                               f"{r.stdout!r} {r.stderr!r}, expected {want}xx")


def load(stage, program, size_name, clients, calls, warmup, prefix):
    data, control = message(stage, size_name)
    cmd = prefix + [str(stage / "bin" / "submitbench"), "load", str(program.socket),
                    str(clients), str(calls), str(warmup), data, control, "2"]
    made = calls // clients * clients + warmup * clients
    return run_driver(cmd, server_pids={"prog": program.pids()}, calls_for_cpu=made)


def measure(stage, program, size_name, clients, prefix, a):
    probe = load(stage, program, size_name, clients, 20 * clients, 5, prefix)
    calls = int(min(a.max_calls, max(200, probe["cps"] * a.seconds)))
    return load(stage, program, size_name, clients, calls, a.warmup, prefix)


def own_work(stage, filt, size_name, prefix, seconds=0.5):
    """µs of CPU per do_filter call, in a loop in a plain python3 (warm: the best case)."""
    code = (f"import sys, time\nsys.path.insert(0, {str(stage / 'pyfilters')!r})\n"
            f"from pythonfilter.bench_{filt} import do_filter\n"
            f"args = {message(stage, size_name)[0]!r}, [{message(stage, size_name)[1]!r}]\n"
            "for _ in range(20): do_filter(*args)\n"
            "n, t0 = 0, time.process_time()\n"
            f"while time.process_time() - t0 < {seconds}:\n"
            "    do_filter(*args); n += 1\n"
            "print((time.process_time() - t0) * 1e6 / n)\n")
    r = subprocess.run(prefix + [PYTHON, "-c", code], capture_output=True, text=True, check=True)
    return float(r.stdout)


def side_run(stage, side, run, prefix, a):
    out = {}
    for filt in a.filters if side.runs_filters else ["none"]:
        program = side.start(stage, run, filt, prefix)
        try:
            for size_name in a.sizes:
                check_verdicts(stage, program, filt if side.runs_filters else "noop", size_name)
                for clients in CLIENT_COUNTS:
                    r = measure(stage, program, size_name, clients, prefix, a)
                    key = f"{side.name}/{filt}/{size_name}/c{clients}"
                    out[key] = r
                    log(f"  {run} {key}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()))
        finally:
            program.stop()
    return out


def one_run(stage, sides, rep, mode, a):
    prefix = ["taskset", "-c", "0"] if mode == "pinned" else []
    run = f"r{rep}-{mode}"
    res = {}
    for filt in a.filters:
        for size_name in a.sizes:
            res[f"own/{filt}/{size_name}"] = own_work(stage, filt, size_name, prefix)
    k = rep % len(sides)
    for side in sides[k:] + sides[:k]:
        res.update(side_run(stage, side, run, prefix, a))
    return res


# --- report ----------------------------------------------------------------------------------

MODES = ("unpinned", "pinned")
fmt = eb.fmt


def spread(values):
    """Median (range) of per-run values; NaN values (a missing figure) left out."""
    good = [v for v in values if v == v]
    if not good:
        return "n/a"
    return f"{fmt(med(good))} ({fmt(min(good))}–{fmt(max(good))})"


def rows_of(runs):
    """(side, filter) pairs in the order measured, from the first run's keys."""
    seen = []
    for key in runs[MODES[0]][0]:
        parts = key.split("/")
        if len(parts) == 4 and (parts[0], parts[1]) not in seen:
            seen.append((parts[0], parts[1]))
    return seen


def framework(r, side, filt, size, clients="c1"):
    """CPU µs/msg of the program's processes less the filter's own work (loop-timed)."""
    own = 0.0 if filt == "none" else r[f"own/{filt}/{size}"]
    return r[f"{side}/{filt}/{size}/{clients}"]["cpu_prog"] - own


def report(runs, not_run, a, meta):
    lines = []
    w = lines.append
    rows = rows_of(runs)
    sides = [s for s in ("floor", "pythonfilter", "mtapy") if any(r[0] == s for r in rows)]
    w(f"#### Courier global filters, driven like submit ({meta['started']}; median of "
      f"{a.reps} runs per mode)\n")
    for name, why in not_run.items():
        w(f"- **{name}: not run**: {why}")
    if not_run:
        w("")
    for mode in MODES:
        rs = runs[mode]

        def col(f):
            return med([f(r) for r in rs])

        w(f"**{mode}**\n")
        w("| program | filter | size | 1 client: msg/s, p50 / p99 µs | 8 clients: msg/s, "
          "p50 / p90 / p99 µs, mean µs | program CPU µs/msg, 1 / 8 clients | framework CPU µs/msg, 1 / 8 "
          "clients | filter's own µs (loop) | driver CPU µs/msg, 1 / 8 clients |")
        w("|---|---|---|---|---|---|---|---|---|")
        for side, filt in rows:
            for size in a.sizes:
                k = f"{side}/{filt}/{size}"
                cells = [side, filt, size]
                for c, figures in (("c1", ("p50", "p99")), ("c8", ("p50", "p90", "p99"))):
                    cells.append(f"{col(lambda r: r[f'{k}/{c}']['cps']):,.0f}, " + " / ".join(
                        fmt(col(lambda r: r[f"{k}/{c}"][f]), 1) for f in figures)
                        + (f", {fmt(col(lambda r: r[f'{k}/{c}']['mean']), 1)}" if c == "c8" else ""))
                cells.append(" / ".join(fmt(col(lambda r: r[f"{k}/{c}"]["cpu_prog"]), 1)
                                        for c in ("c1", "c8")))
                cells.append(" / ".join(fmt(col(lambda r: framework(r, side, filt, size, c)), 1)
                                        for c in ("c1", "c8")))
                cells.append("–" if filt == "none" else
                             fmt(col(lambda r: r[f"own/{filt}/{size}"]), 1))
                cells.append(" / ".join(fmt(col(lambda r: r[f"{k}/{c}"]["cpu_client"]), 1)
                                        for c in ("c1", "c8")))
                w("| " + " | ".join(cells) + " |")
        w("")
    pairs = [(n, d) for n, d in (("mtapy", "pythonfilter"), ("pythonfilter", "floor"),
                                 ("mtapy", "floor")) if n in sides and d in sides]
    if pairs:
        w("| ratio (median of per-run ratios, range) | filter | size | unpinned | pinned | "
          "target |")
        w("|---|---|---|---|---|---|")
        for num, den in pairs:
            for filt in a.filters:
                for size in a.sizes:
                    dfilt = "none" if den == "floor" else filt
                    n, d = f"{num}/{filt}/{size}", f"{den}/{dfilt}/{size}"
                    # The targets are for mtapy against upstream.
                    at_most = "≤ 1" if num == "mtapy" and den == "pythonfilter" else "–"
                    items = [
                        ("framework CPU/msg, 1 client",
                         lambda r: framework(r, num, filt, size) / framework(r, den, dfilt, size),
                         at_most),
                        ("framework CPU/msg, 8 clients",
                         lambda r: framework(r, num, filt, size, "c8")
                         / framework(r, den, dfilt, size, "c8"), "–"),
                        ("p50, 1 client", lambda r: r[f"{n}/c1"]["p50"] / r[f"{d}/c1"]["p50"],
                         at_most),
                        ("p50, 8 clients", lambda r: r[f"{n}/c8"]["p50"] / r[f"{d}/c8"]["p50"],
                         at_most),
                        ("p99, 8 clients", lambda r: r[f"{n}/c8"]["p99"] / r[f"{d}/c8"]["p99"], "–"),
                        ("mean latency, 8 clients",
                         lambda r: r[f"{n}/c8"]["mean"] / r[f"{d}/c8"]["mean"], "–"),
                        ("msg/s, 8 clients", lambda r: r[f"{n}/c8"]["cps"] / r[f"{d}/c8"]["cps"],
                         "≥ 2" if num == "mtapy" and den == "pythonfilter" else "–"),
                    ]
                    if den == "floor" and filt != a.filters[0]:
                        continue  # against the floor, the filter that costs least says it
                    for label, f, target in items:
                        w(f"| {num} ÷ {den}: {label} | {filt if den != 'floor' else filt + ' vs none'}"
                          f" | {size} | {spread([f(r) for r in runs['unpinned']])} | "
                          f"{spread([f(r) for r in runs['pinned']])} | {target} |")
        w("")
        w("Per run (run N: unpinned first when N is odd): p50 µs at 1 client / msg/s at 8 "
          "clients\n")
        w("| run | " + " | ".join(f"{s} {f} {z}" for s, f in rows for z in a.sizes) + " |")
        w("|---|" + "---|" * (len(rows) * len(a.sizes)))
        for mode in MODES:
            for i, r in enumerate(runs[mode]):
                w(f"| {mode} {i + 1} | " + " | ".join(
                    f"{fmt(r[f'{s}/{f}/{z}/c1']['p50'], 1)} / {r[f'{s}/{f}/{z}/c8']['cps']:,.0f}"
                    for s, f in rows for z in a.sizes) + " |")
        w("")
    w("#### Conditions\n")
    w(f"- {meta['started']}; {platform.node()}, {os.cpu_count()} vCPU, kernel "
      f"{platform.release()}; load average before {meta['load_before']}, after "
      f"{meta['load_after']}; wall time {meta['wall']:.0f} s. Other work may share the vCPUs.")
    w(f"- {a.reps} repetitions × (unpinned, pinned), interleaved; program order rotated per "
      f"repetition. Per measurement ~{a.seconds:g} s of messages (a probe sets the count; at most "
      f"{a.max_calls:,}) after {a.warmup} warm-up messages per client; the same data and control "
      "file for every message.")
    w(f"- Peer: {meta['peer']}. Its stderr (an accounting line per message) goes to a file.")
    w(f"- mtapy: {meta['mtapy']}.")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pythonfilter", default=os.environ.get("COURIER_PYTHONFILTER"),
                   help="a checkout of gordonmessmer/courier-pythonfilter")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=2.0, help="of load per measurement")
    p.add_argument("--max-calls", type=int, default=30000)
    p.add_argument("--warmup", type=int, default=50, help="warm-up messages per client")
    p.add_argument("--sides", default="floor,pythonfilter,mtapy")
    p.add_argument("--sizes", default=",".join(SIZES))
    p.add_argument("--filters", default=",".join(FILTERS))
    p.add_argument("--stage-root", default="/tmp")
    p.add_argument("--json", type=pathlib.Path, help="also write the per-run figures here")
    p.add_argument("--keep-stage", action="store_true", help="leave the stage (logs) behind")
    a = p.parse_args()
    a.sizes, a.filters = a.sizes.split(","), a.filters.split(",")
    sides, not_run = [], {}
    for name in a.sides.split(","):
        side = SIDES[name](a)
        try:
            side.check()
            sides.append(side)
        except NotRun as why:
            not_run[name] = str(why)
            log(f"{name}: not run: {why}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.monotonic()
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    stage = make_stage(a.stage_root)
    runs = {"unpinned": [], "pinned": []}
    try:
        for rep in range(a.reps):
            for mode in (MODES if rep % 2 == 0 else MODES[::-1]):
                log(f"run {rep + 1}/{a.reps} {mode}")
                runs[mode].append(one_run(stage, sides, rep, mode, a))
    finally:
        if a.keep_stage:
            log(f"stage left in {stage}")
        else:
            shutil.rmtree(stage, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(runs, indent=1))
    peer = "not run"
    if a.pythonfilter:
        source = pathlib.Path(a.pythonfilter) / "SOURCE"
        peer = f"{a.pythonfilter}" + (f" ({' '.join(source.read_text().split())})"
                                      if source.exists() else "")
    mtapy = not_run.get("mtapy") or (f"{MtapySide.PROGRAM} and mtapy-workerd of "
                                     f"{MtapySide(a).build}; pool process_limit 2")
    meta = {"mtapy": mtapy, "started": started, "load_before": load_before, "wall": time.monotonic() - t0,
            "load_after": " ".join(open("/proc/loadavg").read().split()[:3]), "peer": peer}
    print(report(runs, not_run, a, meta))


if __name__ == "__main__":
    main()
