"""exim_bench.py - policy styles and local_scan measured through a real Exim 4.96 daemon.

Run through tests/bench/exim-run.sh, as root. Not part of the pass/fail suite.

DESCRIPTION  Private Exim daemons (tests/exim/exim_harness.py: `main_config`, `Exim`) on
             loopback, a real mtapy-workerd and the build's mtapy_exim.so, staged in a 0755
             temp folder as tests/conftest.py does. Per repetition and mode (unpinned: the
             scheduler's choice; pinned: `taskset -c 0` on every daemon and client), in a
             rotated order:
  Issue 3 (RCPT ACL decides; one small message per SMTP session, delivered into a maildir;
  raw-socket client that closes without QUIT; RCPT reply time = RCPT sent -> reply read):
    floor       no policy statement
    floor_now   the same with LD_BIND_NOW=1 in the Exim daemon's environment (control for
                preload_now: Exim's own symbols are then bound before each fork too)
    dlfunc      deny condition = ${dlfunc{mtapy_exim.so}{python}{check}{$local_part}}
    preload     the same, the shim in the Exim daemon's LD_PRELOAD (mapped before each fork)
    preload_now the same plus LD_BIND_NOW=1 (symbols bound in the daemon, not in each child)
    mtapy_rs    the acl pool's own ${readsocket} listener ([pools.acl] readsocket;
                "check ${quote:$local_part}"), answered by its workers directly
    twisted_rs  ${readsocket} to a Twisted LineReceiver daemon (answers "no", closes)
    perl        Exim's embedded Perl, perl_at_start = true, ${perl{check}{$local_part}}
  With --before-shim SO (another build's mtapy_exim.so, e.g. of the commit before a change):
    preload_before  the preload style through that shim, against the same daemon
  With --old-build (a build of the old design, before 98fae6c: one daemon socket, the daemon
  forwards every call), also, against that build's own daemon, shim and pylib:
    old_preload the preload style through the old shim and daemon
    old_rs      the old daemon's ${readsocket} listener ([daemon] readsocket, "acl:check ...")
    Every ACL denies unless the answer is exactly the expected "no"/"false", so a silent
    ${readsocket} fallback or an error shows as a non-250 reply (counted as a failure).
  Issue 4 (local_scan_path = mtapy_exim.so; 1 client; three Exims side by side, N rounds of
  one session of M messages to each, order rotated per round; queue_only, so each message is
  received and spooled but not delivered; spools emptied after each size):
    ls_floor    no local_scan
    ls_pass     def local_scan(info, headers, fd): pass
    ls_read     reads the whole body with os.read(fd, 1 MiB) and adds one header with the
                time it spent reading (perf_counter_ns), so its own reading time is known
  Listener alone (no Exim; rawpp lines, a C client doing what Exim's ${readsocket} does:
  connect, write the line, shutdown(SHUT_WR), read to EOF, close; 1 and 8 client processes):
    alone_mtapy_rs, alone_twisted_rs (and alone_old_rs): requests/s, p50, server CPU per request.
  Figures per run: RCPT reply p50/p99, sessions/s at 1 and 8 clients; per message: time from
  MAIL sent to the 250 after the final dot, and the "dot reply" (last byte of the body sent
  -> 250, where local_scan runs), msgs/s. Tables give medians of per-run figures; ratios are
  computed per run, then the median is taken (the method of docs/design.md section 4).
SEE ALSO     exim-run.sh, RESULTS.md ("Through real Exim"), ../exim/exim_harness.py
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time

HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[1]
sys.path[:0] = [str(TOP / "tests"), str(TOP / "tests" / "exim")]

from conftest import Daemon, copy_pylib, ensure_user, free_port, pool_toml, wait_for  # noqa: E402
from exim_harness import EXIM, Exim, listening, main_config  # noqa: E402
from bench import RESULT, cpu_seconds, fmt as bench_fmt, med, old_commit, source_of  # noqa: E402  (bench.py)

POOL_USER = "mtapy-t1"
CLIENTS = ("Debian-exim", "root")
RCPT = b"RCPT TO:<user1@mtapy.test>\r\n"
STYLES = ("floor", "floor_now", "dlfunc", "preload", "preload_now", "mtapy_rs", "twisted_rs", "perl")
OLD_STYLES = ("old_preload", "old_rs")  # with --old-build; main() appends them to STYLES
BEFORE_SO = "mtapy_exim-before.so"  # --before-shim, staged beside the build's shim
LISTENERS = ("mtapy_rs", "twisted_rs")  # driven alone (rawpp lines); "old_rs" with --old-build
PROGRAMS = ("workerd/mtapy-workerd", "workerd/mtapy-worker", "workerd/mtapyctl",
            "shim/mtapy_exim.so")
SCANS = ("ls_floor", "ls_pass", "ls_read")
SIZES = {"2k": 2 * 1024, "100k": 100 * 1024, "1m": 1024 * 1024}

ACL_POLICY = """\
def check(local_part):
    return False
"""
LS_PASS = """\
def local_scan(info, headers, fd):
    pass
"""
LS_READ = """\
import os
import time


def local_scan(info, headers, fd):
    started = time.perf_counter_ns()
    while os.read(fd, 1 << 20):
        pass
    headers.add("X-Read-Ns", str(time.perf_counter_ns() - started))
"""
PERL = """\
sub check { return "no"; }
1;
"""
# The seed's rate limiter style: a Twisted line daemon, one connection per ${readsocket}.
TWISTED = """\
import os, sys
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

COUNT = [0]


class Check(LineReceiver):
    delimiter = b"\\n"

    def lineReceived(self, line):
        if line == b"COUNT":
            self.transport.write(str(COUNT[0]).encode())
        else:
            COUNT[0] += 1
            self.transport.write(b"no")
        self.transport.loseConnection()


factory = Factory.forProtocol(Check)
path = sys.argv[1]
reactor.listenUNIX(path, factory, mode=0o666)
reactor.run()
"""
# Fallback if python3-twisted is missing: socketserver, a thread per connection.
SOCKETSERVER = """\
import socketserver, sys, threading

COUNT = [0]
LOCK = threading.Lock()


class Check(socketserver.StreamRequestHandler):
    def handle(self):
        line = self.rfile.readline().rstrip(b"\\n")
        if line == b"COUNT":
            self.wfile.write(str(COUNT[0]).encode())
            return
        with LOCK:
            COUNT[0] += 1
        self.wfile.write(b"no")


class Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


import os
server = Server(sys.argv[1], Check)
os.chmod(sys.argv[1], 0o666)
server.serve_forever()
"""


def log(*words):
    print(*words, file=sys.stderr, flush=True)


def have_twisted():
    return subprocess.run(["/usr/bin/python3", "-c", "import twisted.internet"],
                          capture_output=True).returncode == 0


# --- staging ---------------------------------------------------------------------------------


def make_stage(build, root_dir, bench_bin, old_build=None, before_shim=None):
    root = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-exim-bench-", dir=root_dir))
    root.chmod(0o755)
    copy_pylib(TOP / "pylib", build, root / "pylib")
    (root / "bin").mkdir()
    for program in PROGRAMS:
        shutil.copy2(build / program, root / "bin")
    shutil.copy2(bench_bin / "rawpp", root / "bin")
    if before_shim:
        shutil.copy2(before_shim, root / "bin" / BEFORE_SO)
    if old_build:  # the old design: its own binaries and its own pylib
        copy_pylib(source_of(old_build) / "pylib", old_build, root / "pylib-old")
        (root / "bin-old").mkdir()
        for program in PROGRAMS:
            shutil.copy2(old_build / program, root / "bin-old")
    policies = root / "policies"
    policies.mkdir()
    for name, text in [("acl.py", ACL_POLICY), ("ls_pass.py", LS_PASS), ("ls_read.py", LS_READ),
                       ("check.pl", PERL), ("twisted_daemon.py", TWISTED),
                       ("socketserver_daemon.py", SOCKETSERVER)]:
        (policies / name).write_text(text)
    (root / "run").mkdir()
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    return root


class PinnedDaemon(Daemon):
    """conftest's Daemon, started behind a CPU prefix (its workers inherit the affinity), with
    the programs of the stage's BIN_DIR."""

    def __init__(self, stage, name, pools, daemon_extra, prefix, bin_dir="bin"):
        super().__init__(stage, name, pools, daemon_extra)
        self.prefix, self.bin_dir = prefix, stage / bin_dir

    def ctl(self, *args, timeout=30):
        return subprocess.run([str(self.bin_dir / "mtapyctl"), "-s", str(self.admin), *args],
                              capture_output=True, text=True, timeout=timeout)

    def start(self):
        log_file = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            self.prefix + [str(self.bin_dir / "mtapy-workerd"), "--config", str(self.config)],
            stdout=log_file, stderr=subprocess.STDOUT)
        if not wait_for(lambda: self.process.poll() is None and self.admin.exists()
                        and self.ready(), timeout=20):
            raise RuntimeError(f"mtapy-workerd did not become ready: {self.log()}")
        return self

    def pids(self):
        pid = self.process.pid
        try:
            children = pathlib.Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            children = []
        return [pid] + [int(c) for c in children]

    def shim_conf_for(self, pool):
        path = self.dir / f"shim-{pool}.conf"
        path.write_text(f"socket_dir = {self.socket_dir}\npool = {pool}\ntimeout = 5s\n")
        path.chmod(0o644)
        return path


class OldDaemon(PinnedDaemon):
    """The old design's daemon (--old-build): [daemon] socket and [daemon] readsocket, its own
    programs (bin-old) and pylib (pylib-old)."""

    def __init__(self, stage, name, pools, prefix):
        super().__init__(stage, name, pools, "", prefix, "bin-old")
        self.socket = self.dir / "mtapy.sock"
        self.config.write_text(textwrap.dedent(f"""\
            [daemon]
            socket = "{self.socket}"
            admin_socket = "{self.admin}"
            readsocket = "{self.readsocket}"
            pylib = "{stage / 'pylib-old'}"
            log_level = "info"

            """) + pools)

    def shim_conf_for(self, pool):
        path = self.dir / f"shim-{pool}.conf"
        path.write_text(f"socket = {self.socket}\npool = {pool}\ntimeout = 5s\n")
        path.chmod(0o644)
        return path


POOL_OPTIONS = dict(clients=CLIENTS, user=POOL_USER, process_limit=2, timeout="10s",
                    max_use=100000000, max_use_jitter=0)


def start_mtapy(stage, name, prefix):
    policies = stage / "policies"
    readsocket = stage / "run" / name / "readsocket.sock"  # conftest's Daemon.readsocket
    pools = (pool_toml("acl", policies / "acl.py", readsocket=str(readsocket), **POOL_OPTIONS)
             + pool_toml("ls_pass", policies / "ls_pass.py", **POOL_OPTIONS)
             + pool_toml("ls_read", policies / "ls_read.py", **POOL_OPTIONS))
    return PinnedDaemon(stage, name, pools, "", prefix).start()


def start_old_mtapy(stage, name, prefix):
    """The old design's daemon with the acl pool only (the RCPT styles old_preload, old_rs)."""
    pools = pool_toml("acl", stage / "policies" / "acl.py", **POOL_OPTIONS)
    return OldDaemon(stage, name, pools, prefix).start()


def start_line_daemon(stage, name, prefix):
    """The Twisted (or socketserver) ${readsocket} daemon; returns (Popen, socket path)."""
    script = "twisted_daemon.py" if have_twisted() else "socketserver_daemon.py"
    directory = stage / "run" / name
    directory.mkdir(mode=0o755, exist_ok=True)
    path = directory / "line.sock"
    out = open(directory / "line-daemon.log", "ab")
    process = subprocess.Popen(prefix + ["/usr/bin/python3", str(stage / "policies" / script),
                                         str(path)], stdout=out, stderr=subprocess.STDOUT)
    if not wait_for(lambda: path.exists() and line_count(path) is not None, timeout=20):
        raise RuntimeError(f"line daemon did not start: {(directory / 'line-daemon.log').read_text()}")
    return process, path


def line_count(path):
    """Requests the line daemon has answered (its COUNT request), or None."""
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(b"COUNT\n")
            data = b""
            while chunk := s.recv(100):
                data += chunk
        return int(data)
    except (OSError, ValueError):
        return None


# --- Exim configs ----------------------------------------------------------------------------

ACL_TAIL = """\
  accept domains = +local_domains
  deny   message = relay not permitted

acl_data:
  accept
"""


def rcpt_acls(style, readsocket_path, line_path, old_readsocket_path=None):
    """acl_connect/mail/rcpt/data for STYLE; the policy is the RCPT ACL's first statement."""
    refused = "         message   = refused by policy\n"
    statement = {
        "floor": "",
        "floor_now": "",
        "dlfunc": "  deny   condition = ${dlfunc{MTAPY_SO}{python}{check}{$local_part}}\n" + refused,
        "preload": "  deny   condition = ${dlfunc{MTAPY_SO}{python}{check}{$local_part}}\n" + refused,
        "preload_now": "  deny   condition = ${dlfunc{MTAPY_SO}{python}{check}{$local_part}}\n" + refused,
        "preload_before": "  deny   condition = ${dlfunc{MTAPY_SO}{python}{check}{$local_part}}\n"
                          + refused,
        "mtapy_rs": ("  deny   condition = ${if !eq{${readsocket{%s}{check ${quote:$local_part}\\n}"
                     "{5s}{}{DEFER}}}{false}}\n" % readsocket_path) + refused,
        "old_preload": "  deny   condition = ${dlfunc{MTAPY_SO}{python}{check}{$local_part}}\n" + refused,
        "old_rs": ("  deny   condition = ${if !eq{${readsocket{%s}{acl:check ${quote:$local_part}\\n}"
                   "{5s}{}{DEFER}}}{false}}\n" % old_readsocket_path) + refused,
        "twisted_rs": ("  deny   condition = ${if !eq{${readsocket{%s}{$local_part\\n}{5s}{}{DEFER}}}"
                       "{no}}\n" % line_path) + refused,
        "perl": "  deny   condition = ${perl{check}{$local_part}}\n" + refused,
    }[style]
    return ("acl_connect:\n  accept\n\nacl_mail:\n  accept\n\nacl_rcpt:\n"
            + statement + ACL_TAIL)


def scan_acls():
    return "acl_connect:\n  accept\n\nacl_mail:\n  accept\n\nacl_rcpt:\n" + ACL_TAIL


def add_main_options(config, options):
    """Put OPTIONS (text) among the main options, before the ACL settings."""
    return config.replace("acl_smtp_connect", options + "\nacl_smtp_connect", 1)


class BenchExim(Exim):
    """exim_harness's Exim, started behind a CPU prefix and with extra daemon environment."""

    def __init__(self, directory, text, shim_conf, port, mode, prefix, extra_env=None):
        self.prefix, self.extra_env = prefix, extra_env or {}
        super().__init__(directory, text, shim_conf, port, mode)

    def start(self):
        # `env` after taskset: an LD_PRELOAD given to taskset would be loaded into taskset too.
        extra = [f"{k}={v}" for k, v in self.extra_env.items()]
        subprocess.run(self.prefix + ["env"] + extra + [EXIM, "-C", str(self.conf), "-bd", "-oX",
                                                        str(self.port), "-oP", str(self.pidfile)],
                       check=True, env=self.env())
        if not wait_for(lambda: listening(self.port) and self.pidfile.exists(), timeout=20):
            raise RuntimeError(f"Exim did not start listening on {self.port}: {self.paniclog()}")
        self.pid = int(self.pidfile.read_text().split()[0])
        return self

    def cpu(self):
        """CPU seconds of the daemon and the children it has reaped (utime+stime+cutime+cstime)."""
        fields = pathlib.Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def clear_spool(self):
        for sub in ("input", "msglog"):
            folder = self.dir / "spool" / sub
            if folder.exists():
                for f in folder.iterdir():
                    if f.is_file():
                        f.unlink()


def build_exim(stage, name, text_for, shim_conf, prefix, extra_env=None, bin_dir="bin",
               so_name="mtapy_exim.so"):
    directory = stage / "run" / name
    port = free_port()
    text = text_for(main_config(directory, port, stage / bin_dir / so_name,
                                "/nonexistent", "bench", "@ACLS@"))
    return BenchExim(directory, text, shim_conf, port, name, prefix, extra_env)


def style_exim(stage, run, style, mtapy, line_path, prefix, old=None):
    def text_for(config):
        config = config.replace("@ACLS@", rcpt_acls(style, mtapy.readsocket, line_path,
                                                    old.readsocket if old else None))
        if style == "perl":
            config = add_main_options(config, f"perl_startup = do '{stage / 'policies' / 'check.pl'}'"
                                              "\nperl_at_start = true")
        return config
    env = {"LD_BIND_NOW": "1"} if style == "floor_now" else None
    if style.startswith("preload"):
        env = {"LD_PRELOAD": str(stage / "bin" / "mtapy_exim.so")}
        if style == "preload_now":
            env["LD_BIND_NOW"] = "1"
        if style == "preload_before":  # ${dlfunc} must name the preloaded file: Exim keys by path
            env = {"LD_PRELOAD": str(stage / "bin" / BEFORE_SO)}
            return build_exim(stage, f"{run}-{style}", text_for, mtapy.shim_conf_for("acl"),
                              prefix, env, so_name=BEFORE_SO)
    if style.startswith("old_"):  # the old build's shim (MTAPY_SO), shim.conf and daemon
        if style == "old_preload":
            env = {"LD_PRELOAD": str(stage / "bin-old" / "mtapy_exim.so")}
        return build_exim(stage, f"{run}-{style}", text_for, old.shim_conf_for("acl"), prefix, env,
                          bin_dir="bin-old")
    return build_exim(stage, f"{run}-{style}", text_for, mtapy.shim_conf_for("acl"), prefix, env)


def scan_exim(stage, run, scan, mtapy, prefix):
    def text_for(config):
        config = config.replace("@ACLS@", scan_acls())
        options = "queue_only = true\nmessage_size_limit = 80M"
        if scan != "ls_floor":
            options += "\nlocal_scan_path = MTAPY_SO\nlocal_scan_timeout = 60s"
        return add_main_options(config, options)
    pool = scan if scan != "ls_floor" else "ls_pass"
    return build_exim(stage, f"{run}-{scan}", text_for, mtapy.shim_conf_for(pool), prefix)


# --- SMTP clients ----------------------------------------------------------------------------


class Conn:
    """A raw SMTP connection: send a line, read one (possibly multi-line) reply code."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        while True:
            end = self.buf.find(b"\r\n")
            while end >= 0:
                line, self.buf = self.buf[:end], self.buf[end + 2:]
                if len(line) < 4 or line[3:4] != b"-":
                    return int(line[:3])
                end = self.buf.find(b"\r\n")
            chunk = self.sock.recv(65536)
            if not chunk:
                return 0
            self.buf += chunk

    def cmd(self, line):
        self.sock.sendall(line)
        return self.reply()

    def close(self):
        self.sock.close()  # no QUIT: Exim holds the QUIT reply 200 ms


def small_message():
    return (b"From: alice@client.test\r\nTo: user1@mtapy.test\r\nSubject: bench\r\n\r\n"
            b"hello\r\n.\r\n")


def rcpt_session(port, message):
    """One session; returns (RCPT reply ns, session ns, ok)."""
    started = time.perf_counter_ns()
    c = Conn(port)
    try:
        ok = c.reply() == 220 and c.cmd(b"EHLO client.test\r\n") == 250 \
            and c.cmd(b"MAIL FROM:<alice@client.test>\r\n") == 250
        t0 = time.perf_counter_ns()
        code = c.cmd(RCPT)
        t1 = time.perf_counter_ns()
        ok = ok and code == 250 and c.cmd(b"DATA\r\n") == 354 and c.cmd(message) == 250
    finally:
        c.close()
    return t1 - t0, time.perf_counter_ns() - started, ok


def make_body(size):
    """A message of SIZE bytes (CRLF lines of 78 bytes, headers included), dot-terminated."""
    head = b"From: alice@client.test\r\nTo: user1@mtapy.test\r\nSubject: bench\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789\r\n"
    body = (line * (size // len(line) + 1))[: size - len(head) - 2] + b"\r\n"
    return head + body + b".\r\n"


def scan_session(port, message, count):
    """COUNT messages in one session; per message (ns from MAIL sent to the dot's 250, ns from
    the last body byte sent to that 250, ok)."""
    out = []
    c = Conn(port)
    try:
        ok = c.reply() == 220 and c.cmd(b"EHLO client.test\r\n") == 250
        for _ in range(count):
            t0 = time.perf_counter_ns()
            ok = ok and c.cmd(b"MAIL FROM:<alice@client.test>\r\n") == 250 \
                and c.cmd(RCPT) == 250 and c.cmd(b"DATA\r\n") == 354
            c.sock.sendall(message)
            t1 = time.perf_counter_ns()
            ok = ok and c.reply() == 250
            t2 = time.perf_counter_ns()
            out.append((t2 - t0, t2 - t1, ok))
    finally:
        c.close()
    return out


def in_children(n, pinned, work):
    """Run WORK(i) in N forked processes that start together; returns [(result, start, end)]."""
    start_at = time.monotonic() + 0.2
    readers = []
    for i in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                if pinned:
                    os.sched_setaffinity(0, {0})
                time.sleep(max(0, start_at - time.monotonic()))
                begin = time.monotonic()
                result = work(i)
                data = json.dumps([result, begin, time.monotonic()]).encode()
                with os.fdopen(w, "wb") as f:
                    f.write(data)
            except BaseException as e:  # noqa: BLE001 - report anything, then leave
                print(f"client {i}: {e!r}", file=sys.stderr)
                code = 1
            os._exit(code)
        os.close(w)
        readers.append((pid, r))
    results = []
    for pid, r in readers:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if status != 0 or not data:
            raise RuntimeError(f"client process {pid} failed")
        results.append(json.loads(data))
    return results


def rcpt_load(port, clients, seconds, pinned):
    """CLIENTS processes run sessions until SECONDS have passed; RCPT times and sessions/s."""
    message = small_message()

    def work(_):
        deadline = time.monotonic() + seconds
        samples = []
        while time.monotonic() < deadline:
            samples.append(rcpt_session(port, message))
        return samples

    results = in_children(clients, pinned, work)
    samples = [s for r in results for s in r[0]]
    wall = max(r[2] for r in results) - min(r[1] for r in results)
    rcpt = [s[0] / 1000 for s in samples]
    return {"p50": pct(rcpt, 50), "p99": pct(rcpt, 99), "sps": len(samples) / wall,
            "sessions": len(samples), "failed": sum(1 for s in samples if not s[2]),
            "session_p50": pct([s[1] / 1000 for s in samples], 50)}


def scan_load(ports, size, rounds, per_session, pinned):
    """ROUNDS rounds, each one session of PER_SESSION messages to every Exim in PORTS
    ({config: port}), the order rotated per round, so that drift in the machine's load falls
    on every config alike. msgs/s = messages / the config's summed session times."""
    message = make_body(size)
    names = list(ports)

    def work(_):
        out = {name: [] for name in names}
        for i in range(rounds):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                t0 = time.perf_counter_ns()
                msgs = scan_session(ports[name], message, per_session)
                out[name].append([time.perf_counter_ns() - t0, msgs])
        return out

    def session_dot_p50(session):
        return pct([m[1] / 1000 for m in session[1]], 50)

    (result, _, _), = in_children(1, pinned, work)
    stats = {}
    for name, sessions in result.items():
        msgs = [m for _, session in sessions for m in session]
        busy = sum(ns for ns, _ in sessions) / 1e9
        per_msg = [m[0] / 1000 for m in msgs]
        dot = [m[1] / 1000 for m in msgs]
        stats[name] = {"msg_p50": pct(per_msg, 50), "msg_p99": pct(per_msg, 99),
                       "dot_p50": pct(dot, 50), "dot_p99": pct(dot, 99), "mps": len(msgs) / busy,
                       "mean_ms": busy * 1000 / len(msgs), "messages": len(msgs),
                       "failed": sum(1 for m in msgs if not m[2]),
                       "session_dot_p50": [session_dot_p50(s) for s in sessions]}
    floor = stats[names[0]]["session_dot_p50"]
    for name in names:  # paired: this config's session against the floor's of the same round
        stats[name]["paired_added"] = med([c - f for c, f in
                                           zip(stats[name]["session_dot_p50"], floor)])
    return stats


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def read_ns_in_spool(exim):
    """The X-Read-Ns values ls_read left in the spooled -H files (µs)."""
    values = []
    for f in (exim.dir / "spool" / "input").glob("*-H"):
        m = re.search(rb"X-Read-Ns: (\d+)", f.read_bytes())
        if m:
            values.append(int(m[1]) / 1000)
    return values


# --- one run -----------------------------------------------------------------------------------


def one_run(stage, rep, mode, a):
    pinned = mode == "pinned"
    prefix = ["taskset", "-c", "0"] if pinned else []
    run = f"{mode}-{rep}"
    mtapy = start_mtapy(stage, run, prefix)
    old = start_old_mtapy(stage, run + "-old", prefix) if a.old_build else None
    line_proc, line_path = start_line_daemon(stage, run, prefix)
    res = {}
    try:
        time.sleep(0.3)
        if not a.skip_alone:
            listeners = {"mtapy_rs": (mtapy.readsocket, "check user1", "false", mtapy.pids),
                         "twisted_rs": (line_path, "user1", "no", lambda: [line_proc.pid])}
            if old:
                listeners["old_rs"] = (old.readsocket, "acl:check user1", "false", old.pids)
            names = list(listeners)
            k = rep % len(names)
            for name in names[k:] + names[:k]:
                res["alone_" + name] = listener_alone(stage, listeners[name], prefix, a)
                log(f"  {run} alone {name}: {res['alone_' + name]}")
        k = rep % len(STYLES)
        for style in [] if a.skip_rcpt else STYLES[k:] + STYLES[:k]:
            res[style] = rcpt_style(stage, run, style, mtapy, (line_proc.pid, line_path), prefix,
                                    pinned, a, old)
        if not a.skip_scan:
            res.update(scan_configs(stage, run, mtapy, prefix, pinned, a))
    finally:
        line_proc.terminate()
        line_proc.wait(10)
        mtapy.stop()
        if old:
            old.stop()
    return res


def listener_alone(stage, listener, prefix, a):
    """A ${readsocket} listener driven by rawpp lines at 1 and 8 clients: p50/p99 µs, req/s,
    the server's CPU µs per request (warm-up included)."""
    path, line, expect, pids = listener
    out = {}
    for clients in (1, 8):
        warmup = max(20, a.alone_warmup // clients)
        made = a.alone_calls // clients * clients + warmup * clients
        server = pids()
        cpu0 = cpu_seconds(server)
        r = subprocess.run(prefix + [str(stage / "bin" / "rawpp"), "lines", str(path), str(clients),
                                     str(a.alone_calls), str(warmup), line, expect],
                           capture_output=True, text=True, timeout=300)
        cpu1 = cpu_seconds(server)
        m = RESULT.search(r.stdout)
        if r.returncode != 0 or not m:
            raise RuntimeError(f"rawpp lines {path} failed ({r.returncode}): {r.stdout} {r.stderr}")
        out[f"c{clients}"] = {"p50": float(m[1]), "p99": float(m[2]), "rps": float(m[4]),
                              "cpu_server": (cpu1 - cpu0) * 1e6 / made}
    return out


def rcpt_style(stage, run, style, mtapy, line, prefix, pinned, a, old=None):
    line_pid, line_path = line
    exim = style_exim(stage, run, style, mtapy, line_path, prefix, old).start()
    out = {}
    try:
        maps = pathlib.Path(f"/proc/{exim.pid}/maps").read_text()
        if ("/mtapy_exim" in maps) != ("preload" in style):
            raise RuntimeError(f"{style}: the shim is {'' if '/mtapy_exim' in maps else 'not '}"
                               "mapped in the Exim daemon")
        rcpt_load(exim.port, 1, a.warmup, pinned)
        server = {"mtapy_rs": mtapy.pids, "dlfunc": mtapy.pids, "preload": mtapy.pids,
                  "preload_now": mtapy.pids, "preload_before": mtapy.pids,
                  "old_preload": old and old.pids,
                  "old_rs": old and old.pids,
                  "twisted_rs": lambda: [line_pid]}.get(style, lambda: [])
        for clients, seconds in ((1, a.seconds1), (8, a.seconds8)):
            count0 = line_count(line_path) if style == "twisted_rs" else None
            pids = server()
            cpu0, exim0 = cpu_seconds(pids), exim.cpu()
            r = rcpt_load(exim.port, clients, seconds, pinned)
            time.sleep(0.2)  # let the last deliveries finish and be reaped
            r["cpu_server"] = (cpu_seconds(pids) - cpu0) * 1e6 / r["sessions"]
            r["cpu_exim"] = (exim.cpu() - exim0) * 1e3 / r["sessions"]
            if count0 is not None:
                r["server_count"] = line_count(line_path) - count0
            out[f"c{clients}"] = r
            log(f"  {run} {style} c{clients}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()))
        panic = exim.paniclog()
        if panic:
            log(f"  {run} {style}: paniclog: {panic[:500]}")
    finally:
        exim.stop()
        shutil.rmtree(exim.dir, ignore_errors=True)
    return out


def scan_configs(stage, run, mtapy, prefix, pinned, a):
    """The three local_scan Exims side by side, their sessions interleaved (scan_load)."""
    exims = {}
    out = {}
    try:
        for scan in SCANS:
            exims[scan] = scan_exim(stage, run, scan, mtapy, prefix).start()
        ports = {scan: e.port for scan, e in exims.items()}
        scan_load(ports, SIZES["2k"], 1, 5, pinned)  # warm-up (and the workers' imports)
        for e in exims.values():
            e.clear_spool()
        for size_name, size in SIZES.items():
            stats = scan_load(ports, size, a.scan_sessions, a.per_session, pinned)
            for scan, exim in exims.items():
                r = stats[scan]
                if scan == "ls_read":
                    reads = read_ns_in_spool(exim)
                    r["own_read_p50"] = pct(reads, 50)
                    r["own_read_n"] = len(reads)
                queued = len(list((exim.dir / "spool" / "input").glob("*-D")))
                if queued != r["messages"]:
                    r["queued_mismatch"] = queued
                exim.clear_spool()
                out[f"{scan}_{size_name}"] = r
                log(f"  {run} {scan} {size_name}: " + ", ".join(f"{k}={v:.4g}" for k, v in r.items()
                                                                  if not isinstance(v, list)))
        for scan, exim in exims.items():
            if exim.paniclog():
                log(f"  {run} {scan}: paniclog: {exim.paniclog()[:500]}")
    finally:
        for exim in exims.values():
            exim.stop()
            shutil.rmtree(exim.dir, ignore_errors=True)
    return out


# --- report ------------------------------------------------------------------------------------


def fmt(v, digits=2):
    return bench_fmt(v, digits)


def sfmt(v, digits=3):
    """A difference with its sign."""
    if v != v:
        return "n/a"
    return ("+" if v >= 0 else "−") + fmt(abs(v), digits)


LABELS = {
    "floor": "floor: no policy",
    "floor_now": "control: floor with LD_BIND_NOW=1",
    "dlfunc": "**mtapy `${dlfunc}`** (shim dlopen()ed per SMTP process)",
    "preload": "**mtapy `${dlfunc}`, shim in the daemon's LD_PRELOAD**",
    "preload_now": "mtapy `${dlfunc}`, LD_PRELOAD + LD_BIND_NOW=1",
    "mtapy_rs": "mtapy's `${readsocket}` listener (the pool's workers)",
    "twisted_rs": "`${readsocket}` → Python line daemon ({daemon}), connection per call",
    "perl": "Exim embedded Perl, `perl_at_start = true`",
    "preload_before": "the same through the before shim (--before-shim), LD_PRELOAD",
    "old_preload": "{old}: `${dlfunc}`, its shim in LD_PRELOAD",
    "old_rs": "{old}: its daemon's `${readsocket}` listener",
}


def alone_report(runs, w, col, rng, daemon, old_name):
    """The ${readsocket} listeners driven alone (no Exim)."""
    modes = ("unpinned", "pinned")
    names = [n for n in LISTENERS + ("old_rs",) if "alone_" + n in runs["unpinned"][0]]
    w("#### `${readsocket}` listeners alone (no Exim; rawpp lines: connect, line, shutdown, "
      "read to EOF, close; median of per-run figures)\n")
    w("| listener | mode | 1 client: req/s, p50 / p99 µs, server CPU µs/req | "
      "8 clients: req/s, p50 / p99 µs, server CPU µs/req |")
    w("|---|---|---|---|")
    for n in names:
        label = LABELS[n].replace("{daemon}", daemon).replace("{old}", old_name)
        for mode in modes:
            cells = []
            for c in ("c1", "c8"):
                cells.append(f"{fmt(col(mode, lambda r: r['alone_' + n][c]['rps']), 0)}, "
                             f"{fmt(col(mode, lambda r: r['alone_' + n][c]['p50']), 1)} / "
                             f"{fmt(col(mode, lambda r: r['alone_' + n][c]['p99']), 1)}, "
                             f"{fmt(col(mode, lambda r: r['alone_' + n][c]['cpu_server']), 1)}")
            w(f"| {label} | {mode} | {cells[0]} | {cells[1]} |")
    w("")
    w("| ratio (median of per-run ratios, range) | unpinned | pinned | target |")
    w("|---|---|---|---|")
    for c, target in (("c1", "≥ 2"), ("c8", "≥ 1.5")):
        f = lambda r, c=c: r["alone_mtapy_rs"][c]["rps"] / r["alone_twisted_rs"][c]["rps"]
        w(f"| mtapy listener req/s / {daemon} req/s, {c[1:]} client{'s' if c == 'c8' else ''} | "
          f"{rng('unpinned', f)} | {rng('pinned', f)} | {target} |")
    if "old_rs" in names:
        for c in ("c1", "c8"):
            f = lambda r, c=c: r["alone_mtapy_rs"][c]["rps"] / r["alone_old_rs"][c]["rps"]
            w(f"| mtapy listener req/s / {old_name}'s, {c[1:]} client{'s' if c == 'c8' else ''} | "
              f"{rng('unpinned', f)} | {rng('pinned', f)} | – |")
    w("")


def rcpt_report(runs, w, col, rng, daemon, old_name=""):
    """Issue 3 tables."""
    modes = ("unpinned", "pinned")
    w("#### Issue 3: RCPT ACL decides, one small message per session (median of per-run figures)\n")
    w("RCPT reply time in ms (RCPT sent → reply read); added = this style's p50 − the floor's "
      "p50 in the same run; sessions/s ÷ floor per run.\n")
    for mode in modes:
        w(f"**{mode}**\n")
        w("| style | RCPT p50 / p99, 1 client | added p50, 1 client | sessions/s, 1 client (÷ floor) "
          "| RCPT p50 / p99, 8 clients | added p50, 8 clients | sessions/s, 8 clients (÷ floor) "
          "| Exim CPU ms/session, 1 client | policy server CPU µs/call, 1 client |")
        w("|---|---|---|---|---|---|---|---|---|")
        for s in STYLES:
            cells = [LABELS[s].replace("{daemon}", daemon).replace("{old}", old_name)]
            for c in ("c1", "c8"):
                cells.append(f"{fmt(col(mode, lambda r: r[s][c]['p50'] / 1000))} / "
                             f"{fmt(col(mode, lambda r: r[s][c]['p99'] / 1000))}")
                cells.append("–" if s == "floor" else
                             sfmt(col(mode, lambda r: (r[s][c]['p50'] - r['floor'][c]['p50']) / 1000), 3))
                cells.append(f"{fmt(col(mode, lambda r: r[s][c]['sps']), 1)} "
                             f"({fmt(col(mode, lambda r: r[s][c]['sps'] / r['floor'][c]['sps']))})")
            cells.append(fmt(col(mode, lambda r: r[s]["c1"]["cpu_exim"]), 1))
            cells.append(fmt(col(mode, lambda r: r[s]["c1"]["cpu_server"]), 0)
                         if s in ("dlfunc", "preload", "preload_now", "preload_before", "mtapy_rs",
                                  "twisted_rs", "old_preload", "old_rs") else "–")
            w("| " + " | ".join(cells) + " |")
        w("")

    def added(r, s, c="c1"):
        return r[s][c]["p50"] - r["floor"][c]["p50"]

    def safe_ratio(x, y):
        return x / y if y > 0 else float("nan")

    w("#### Issue 3 ratios (median of per-run ratios, per-run range in brackets)\n")
    w("| ratio | unpinned | pinned | target |")
    w("|---|---|---|---|")
    ratios = [
        ("**mtapy preloaded added RCPT p50 / Perl added, 1 client**",
         lambda r: safe_ratio(added(r, "preload"), added(r, "perl")), "≤ 1.0"),
        ("**mtapy preloaded added / Perl added, 8 clients**",
         lambda r: safe_ratio(added(r, "preload", "c8"), added(r, "perl", "c8")), "≤ 2"),
        ("mtapy dlfunc (not preloaded) added / Perl added, 1 client",
         lambda r: safe_ratio(added(r, "dlfunc"), added(r, "perl")), "–"),
        ("mtapy dlfunc added / Python readsocket daemon added, 1 client",
         lambda r: safe_ratio(added(r, "dlfunc"), added(r, "twisted_rs")), "– (earlier: ≤ 0.5)"),
        ("mtapy preloaded added / Python readsocket daemon added, 1 client",
         lambda r: safe_ratio(added(r, "preload"), added(r, "twisted_rs")), "– (earlier: ≤ 0.5)"),
        ("mtapy preloaded + LD_BIND_NOW added / Perl added, 1 client",
         lambda r: safe_ratio(added(r, "preload_now"), added(r, "perl")), "–"),
        ("mtapy preloaded + LD_BIND_NOW added / preloaded added, 1 client",
         lambda r: safe_ratio(added(r, "preload_now"), added(r, "preload")), "–"),
        ("(preload_now − floor_now) / (preload − floor), RCPT p50, 1 client",
         lambda r: safe_ratio(r["preload_now"]["c1"]["p50"] - r["floor_now"]["c1"]["p50"],
                              added(r, "preload")), "–"),
        ("mtapy preloaded added / dlfunc added, 1 client",
         lambda r: safe_ratio(added(r, "preload"), added(r, "dlfunc")), "–"),
        ("mtapy readsocket added / Python readsocket daemon added, 1 client",
         lambda r: safe_ratio(added(r, "mtapy_rs"), added(r, "twisted_rs")), "–"),
        ("mtapy dlfunc added / Perl added, 8 clients",
         lambda r: safe_ratio(added(r, "dlfunc", "c8"), added(r, "perl", "c8")), "–"),
        ("mtapy dlfunc added / Python readsocket daemon added, 8 clients",
         lambda r: safe_ratio(added(r, "dlfunc", "c8"), added(r, "twisted_rs", "c8")), "–"),
        ("mtapy readsocket added / Perl added, 1 client",
         lambda r: safe_ratio(added(r, "mtapy_rs"), added(r, "perl")), "–"),
        ("mtapy readsocket added / Python readsocket daemon added, 8 clients",
         lambda r: safe_ratio(added(r, "mtapy_rs", "c8"), added(r, "twisted_rs", "c8")), "–"),
    ]
    if "preload_before" in STYLES:
        ratios += [
            ("before shim preloaded added / Perl added, 1 client",
             lambda r: safe_ratio(added(r, "preload_before"), added(r, "perl")), "–"),
            ("before shim preloaded added / Perl added, 8 clients",
             lambda r: safe_ratio(added(r, "preload_before", "c8"), added(r, "perl", "c8")), "–"),
            ("**mtapy preloaded added / before shim preloaded added, 1 client**",
             lambda r: safe_ratio(added(r, "preload"), added(r, "preload_before")), "–"),
            ("mtapy preloaded added / before shim preloaded added, 8 clients",
             lambda r: safe_ratio(added(r, "preload", "c8"), added(r, "preload_before", "c8")), "–"),
        ]
    if "old_preload" in STYLES:
        ratios += [
            (f"{old_name} preloaded added / Perl added, 1 client",
             lambda r: safe_ratio(added(r, "old_preload"), added(r, "perl")), "–"),
            (f"{old_name} preloaded added / Perl added, 8 clients",
             lambda r: safe_ratio(added(r, "old_preload", "c8"), added(r, "perl", "c8")), "–"),
            (f"**mtapy preloaded added / {old_name} preloaded added, 1 client**",
             lambda r: safe_ratio(added(r, "preload"), added(r, "old_preload")), "–"),
            (f"mtapy preloaded added / {old_name} preloaded added, 8 clients",
             lambda r: safe_ratio(added(r, "preload", "c8"), added(r, "old_preload", "c8")), "–"),
            (f"mtapy readsocket added / {old_name} readsocket added, 1 client",
             lambda r: safe_ratio(added(r, "mtapy_rs"), added(r, "old_rs")), "–"),
        ]
    for label, f, target in ratios:
        w(f"| {label} | {rng('unpinned', f)} | {rng('pinned', f)} | {target} |")
    w("")
    w("Added RCPT p50 per run, ms (1 client; run N: unpinned first when N is odd):\n")
    w("| run | " + " | ".join(STYLES[1:]) + " | floor p50 |")
    w("|---|" + "---|" * len(STYLES))
    for mode in modes:
        for i, r in enumerate(runs[mode]):
            w(f"| {mode} {i + 1} | " + " | ".join(sfmt(added(r, s) / 1000, 3) for s in STYLES[1:])
              + f" | {fmt(r['floor']['c1']['p50'] / 1000, 3)} |")
    w("")
    fails = {(m, s, c): sum(r[s][c]["failed"] for r in runs[m]) for m in modes for s in STYLES
             for c in ("c1", "c8")}
    total = sum(r[s][c]["sessions"] for m in modes for r in runs[m] for s in STYLES
                for c in ("c1", "c8"))
    counted = [(r["twisted_rs"][c].get("server_count"), r["twisted_rs"][c]["sessions"])
               for m in modes for r in runs[m] for c in ("c1", "c8")]
    w(f"Sessions timed: {total:,}; non-250 replies: {sum(fails.values())} "
      f"({', '.join(f'{m} {s} {c}: {n}' for (m, s, c), n in fails.items() if n) or 'none'}). "
      f"Line daemon requests counted on its side = sessions timed in "
      f"{sum(1 for n, s in counted if n == s)} of {len(counted)} measurements "
      f"({'; '.join(f'{n} vs {s}' for n, s in counted if n != s) or 'all equal'}).")
    w("")



def scan_report(runs, a, w, col):
    """Issue 4 tables."""
    modes = ("unpinned", "pinned")
    w(f"#### Issue 4: local_scan, {a.scan_sessions} sessions × {a.per_session} messages per config "
      "and size, sessions interleaved across the three Exims, 1 client, queue_only (received and "
      "spooled, not delivered)\n")
    w("Per message: MAIL sent → 250 after the final dot (p50); dot reply: last body byte sent → "
      "that 250 (p50; local_scan runs here); added = median over the rounds of (this config's "
      "session dot-reply p50 − ls_floor's session dot-reply p50 in the same round), i.e. paired "
      "within a round; msgs/s ÷ ls_floor per run; own read = the ls_read policy's own os.read "
      "loop, timed inside the policy (p50); overhead = added − own read (target ≤ 1 ms at "
      "1 MB). All: median of per-run figures.\n")
    for mode in modes:
        w(f"**{mode}**\n")
        w("| size | config | per message p50 / p99 ms | dot reply p50 / p99 ms | added ms "
          "| msgs/s (÷ floor) | mean ms/message | own read ms | overhead ms |")
        w("|---|---|---|---|---|---|---|---|---|")
        for size in SIZES:
            for scan in SCANS:
                key = f"{scan}_{size}"
                fl = f"ls_floor_{size}"
                cells = [size, scan,
                         f"{fmt(col(mode, lambda r: r[key]['msg_p50'] / 1000), 3)} / "
                         f"{fmt(col(mode, lambda r: r[key]['msg_p99'] / 1000), 3)}",
                         f"{fmt(col(mode, lambda r: r[key]['dot_p50'] / 1000), 3)} / "
                         f"{fmt(col(mode, lambda r: r[key]['dot_p99'] / 1000), 3)}"]
                cells.append("–" if scan == "ls_floor" else
                             sfmt(col(mode, lambda r: r[key]['paired_added'] / 1000), 3))
                cells.append(f"{fmt(col(mode, lambda r: r[key]['mps']), 1)} "
                             f"({fmt(col(mode, lambda r: r[key]['mps'] / r[fl]['mps']))})")
                cells.append(fmt(col(mode, lambda r: r[key]['mean_ms']), 3))
                if scan == "ls_read":
                    cells.append(fmt(col(mode, lambda r: r[key]['own_read_p50'] / 1000), 3))
                    cells.append(fmt(col(mode, lambda r: (r[key]['paired_added']
                                                          - r[key]['own_read_p50']) / 1000), 3))
                else:
                    cells += ["–", "–"]
                w("| " + " | ".join(cells) + " |")
        w("")
    w("#### Issue 4 per run: added ms, paired (ls_pass / ls_read / ls_read − own read), and in "
      "brackets the unpaired difference of the run's dot-reply p50s (ls_pass / ls_read)\n")
    w("| run | " + " | ".join(SIZES) + " |")
    w("|---|" + "---|" * len(SIZES))
    for mode in modes:
        for i, r in enumerate(runs[mode]):
            cells = []
            for size in SIZES:
                fl = r[f"ls_floor_{size}"]["dot_p50"]
                p, rd = r[f"ls_pass_{size}"], r[f"ls_read_{size}"]
                cells.append(f"{sfmt(p['paired_added'] / 1000, 3)} / {sfmt(rd['paired_added'] / 1000, 3)}"
                             f" / {sfmt((rd['paired_added'] - rd['own_read_p50']) / 1000, 3)}"
                             f" ({sfmt((p['dot_p50'] - fl) / 1000, 3)} / {sfmt((rd['dot_p50'] - fl) / 1000, 3)})")
            w(f"| {mode} {i + 1} | " + " | ".join(cells) + " |")
    w("")
    bad = [(m, i + 1, k, v.get("failed"), v.get("queued_mismatch"), v.get("own_read_n"))
           for m in modes for i, r in enumerate(runs[m]) for k, v in r.items()
           if k.startswith("ls_") and (v.get("failed") or "queued_mismatch" in v
                                       or (k.startswith("ls_read") and v.get("own_read_n") != v["messages"]))]
    w(f"Every message got 250 and was found in the spool (ls_read: with its X-Read-Ns header): "
      f"**{'yes' if not bad else 'NO: ' + repr(bad)}**.")
    w("")


def report(runs, a, meta):
    lines = []
    w = lines.append

    def col(mode, f):
        return med([f(r) for r in runs[mode]])

    def rng(mode, f):
        """Median (range) of per-run values; a ratio whose denominator was <= 0 in a run (e.g.
        Perl's added time within noise at 8 clients) is left out and counted."""
        values = [f(r) for r in runs[mode]]
        good = [v for v in values if v == v]
        if not good:
            return "n/a"
        text = "{} ({}–{})".format(fmt(med(good)), fmt(min(good)), fmt(max(good)))
        if len(good) < len(values):
            text += f" [{len(values) - len(good)} of {len(values)} runs n/a: denominator ≤ 0]"
        return text

    daemon = meta["line_daemon"]
    old_name = f"old design ({meta['old_commit'].split()[0]})" if a.old_build else ""
    if not a.skip_alone:
        alone_report(runs, w, col, rng, daemon, old_name)
    if not a.skip_rcpt:
        rcpt_report(runs, w, col, rng, daemon, old_name)
    if not a.skip_scan:
        scan_report(runs, a, w, col)
    w("#### Conditions\n")
    w(f"- {meta['started']:%Y-%m-%d %H:%M %Z}; {platform.node()}, {os.cpu_count()} vCPU, kernel "
      f"{platform.release()}; load average before {meta['load_before']}, after {meta['load_after']}; "
      f"wall time {meta['wall']:.0f} s.")
    w(f"- {a.reps} repetitions × (unpinned, pinned), interleaved; style order rotated per repetition. "
      f"Issue 3: per style {a.warmup:g} s of warm-up sessions, then {a.seconds1:g} s at 1 client and "
      f"{a.seconds8:g} s at 8 clients (client processes run sessions until the time is up). "
      f"Issue 4: 5 warm-up messages per Exim, then per size {a.scan_sessions} rounds of one session "
      f"× {a.per_session} messages to each of the three Exims (interleaved, order rotated per round); "
      f"msgs/s = messages ÷ the config's summed session times; spools emptied after each size.")
    w(f"- Line daemon: {daemon}. mtapy pools: process_limit 2, max_use 100000000, timeout 10s; "
      "shim timeout 5s. Exim: tests/exim/exim_harness.py `main_config` (maildir delivery, "
      "`deliver_drop_privilege`, `log_selector = +subject +received_recipients`), stage in "
      f"{meta['stage_root']}.")
    if a.old_build:
        w(f"- Old design: {a.old_build} (built from {meta['old_commit']}), its own shim, daemon "
          "(pool acl only, same settings) and pylib, running alongside the new daemon in every run.")
    if not a.skip_alone:
        w(f"- Listeners alone: {a.alone_calls:,} timed requests per listener and client count "
          f"after {a.alone_warmup} warm-up requests (8 clients: split evenly), listener order "
          "rotated per repetition, before the RCPT styles of the run.")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", required=True, type=pathlib.Path)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--warmup", type=float, default=0.3, help="seconds of warm-up sessions per style")
    p.add_argument("--seconds1", type=float, default=2.5, help="seconds at 1 client per style")
    p.add_argument("--seconds8", type=float, default=2.5, help="seconds at 8 clients per style")
    p.add_argument("--scan-sessions", type=int, default=8)
    p.add_argument("--per-session", type=int, default=20)
    p.add_argument("--stage-root", default="/dev/shm", help="where the stage (and Exim spools) go")
    p.add_argument("--json", type=pathlib.Path, help="also write the raw per-run figures here")
    p.add_argument("--skip-rcpt", action="store_true", help="leave out issue 3 (RCPT styles)")
    p.add_argument("--skip-scan", action="store_true", help="leave out issue 4 (local_scan)")
    p.add_argument("--skip-alone", action="store_true", help="leave out the listeners alone")
    p.add_argument("--alone-calls", type=int, default=5000)
    p.add_argument("--alone-warmup", type=int, default=200)
    p.add_argument("--bin", required=True, type=pathlib.Path, help="compiled bench programs (rawpp)")
    p.add_argument("--old-build", type=pathlib.Path,
                   help="also measure this build of the old design (daemon forwards each call)")
    p.add_argument("--before-shim", type=pathlib.Path,
                   help="also measure the preload style through this mtapy_exim.so")
    a = p.parse_args()
    global STYLES
    if a.before_shim:
        STYLES = STYLES + ("preload_before",)
    if a.old_build:
        STYLES = STYLES + OLD_STYLES
    if os.geteuid() != 0:
        sys.exit("exim_bench.py: run as root")
    ensure_user(POOL_USER)
    started = datetime.datetime.now().astimezone()
    t0 = time.monotonic()
    load_before = " ".join(open("/proc/loadavg").read().split()[:3])
    stage = make_stage(a.build, a.stage_root, a.bin, a.old_build, a.before_shim)
    runs = {"unpinned": [], "pinned": []}
    try:
        for rep in range(a.reps):
            order = ("unpinned", "pinned") if rep % 2 == 0 else ("pinned", "unpinned")
            for mode in order:
                log(f"run {rep + 1}/{a.reps} {mode}")
                runs[mode].append(one_run(stage, rep, mode, a))
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    if a.json:
        a.json.write_text(json.dumps(runs, indent=1))
    meta = {"started": started, "load_before": load_before,
            "load_after": " ".join(open("/proc/loadavg").read().split()[:3]),
            "wall": time.monotonic() - t0, "stage_root": a.stage_root,
            "old_commit": old_commit(a.old_build) if a.old_build else "",
            "line_daemon": "Twisted LineReceiver" if have_twisted() else "socketserver, thread per connection"}
    print(report(runs, a, meta))


if __name__ == "__main__":
    main()
