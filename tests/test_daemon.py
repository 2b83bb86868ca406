"""mtapy-workerd end to end: pools, privilege separation, failures and recovery.

Each test runs a real mtapy-workerd as root with pools of real worker processes under the
unprivileged users mtapy-t1 and mtapy-t2, and calls it the way Exim does: through the real
mtapy_exim.so loaded by tests/tools/dlfunc-harness (which plays Exim's ${dlfunc}), or through
mtapyctl where an admin would. dlfunc results: OK 0, DEFER 1, FAIL 2, ERROR 3, FAIL_FORCED 4;
the shim reports every failure as FAIL (DEFER would also write Exim's panic log).
"""

import errno
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time

import pytest
import random

from conftest import BUILD, pool_toml, wait_for, write_policy

OK, FAIL, FAIL_FORCED = 0, 2, 4

POLICY = """
    import os
    def whoami():
        return f"{os.getuid()} {__name__}"
"""


# ---- helpers -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def harness(stage):
    """dlfunc-harness staged beside the shim, world-executable, so any test user can run it."""
    target = stage / "bin" / "dlfunc-harness"
    shutil.copy2(BUILD / "tests" / "dlfunc-harness", target)
    target.chmod(0o755)
    return target


def shim_conf(d, pool=None, timeout="5s"):
    """A shim.conf for daemon `d`, naming `pool` if given; returns its path."""
    path = d.dir / f"shim-{pool or 'any'}-{timeout}.conf"
    path.write_text(f"socket_dir = {d.dir}\ntimeout = {timeout}\n" +
                    (f"pool = {pool}\n" if pool else ""))
    path.chmod(0o644)
    return path


def as_user(name):
    """The setpriv prefix that runs a command as user `name` with no supplementary groups."""
    pw = pwd.getpwnam(name)
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]


def to_bytes(value):
    return value if isinstance(value, bytes) else str(value).encode()


def exim_call(harness, conf, fn, *args, user=None, timeout=30):
    """Call python(FN, ARGS) in mtapy_exim.so as Exim would; returns (rc, yield bytes or None)."""
    command = [str(harness), str(harness.parent / "mtapy_exim.so"), "call",
               to_bytes(fn), *map(to_bytes, args)]
    r = subprocess.run((as_user(user) if user else []) + command, capture_output=True,
                       env={**os.environ, "MTAPY_SHIM_CONF": str(conf)}, timeout=timeout)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    head, _, rest = r.stdout.partition(b"\n")
    assert head.startswith(b"rc=") and rest.endswith(b"\n"), r.stdout
    value = rest[:-1]
    return int(head[3:]), (None if value == b"(null)" else value)


def repeat_summary(out):
    """The words of the last line of `dlfunc-harness ... repeat`: calls=N failures=K ..."""
    lines = out.decode(errors="replace").splitlines()
    return tuple(lines[-1].split()) if len(lines) >= 3 else ()


def launch(d):
    """Start daemon `d` without waiting for workers (a pool whose policy fails never idles)."""
    with open(d.log_path, "ab") as log:
        d.process = subprocess.Popen(
            [str(d.stage / "bin" / "mtapy-workerd"), "--config", str(d.config)],
            stdout=log, stderr=subprocess.STDOUT)
    assert wait_for(lambda: d.process.poll() is not None or
                    (d.admin.exists() and d.ctl("status").returncode == 0)), d.log()
    assert d.process.poll() is None, d.log()
    return d


def log_lines(d, *needles):
    return [line for line in d.log().splitlines() if all(n in line for n in needles)]


# ---- who may call, and as whom the policy runs -----------------------------------------------

def test_policy_runs_as_the_pool_user_with_exim_module_name(make_daemon, stage, users):
    policy = write_policy(stage, "who.py", POLICY)
    d = make_daemon(pool_toml("a", policy, user="mtapy-t1") +
                    pool_toml("b", policy, user="mtapy-t2"))
    assert d.call("a", "whoami") == (0, f"{users['mtapy-t1'].pw_uid} __exim__", "")
    assert d.call("b", "whoami") == (0, f"{users['mtapy-t2'].pw_uid} __exim__", "")


def exported_symbols(program):
    """Names `program` exports to plugins (nm -D --defined-only), without libc's or main."""
    out = subprocess.run(["nm", "-D", "--defined-only", str(program)], capture_output=True,
                         text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    return {n for n in names if "@" not in n and not n.startswith("_") and n != "main"}


def test_the_exim_shim_loads_with_only_the_symbols_stock_exim_exports(harness):
    exim = shutil.which("exim4") or "/usr/sbin/exim4"
    if os.path.exists(exim):  # the harness offers exactly what Exim offers, no more
        assert exported_symbols(harness) == exported_symbols(exim)
    # RTLD_NOW, as Debian's local_scan_path loader: every undefined symbol must resolve now.
    r = subprocess.run([str(harness), str(harness.parent / "mtapy_exim.so"), "load"],
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout) == (0, "ok\n"), r.stderr


EXTENSIONS = """
    import importlib, os, sysconfig

    def import_every_extension():
        # Every C extension of the standard library: each resolves the C API against the
        # worker, the program that embeds CPython, as it would against /usr/bin/python3.
        folder = os.path.join(sysconfig.get_path("stdlib"), "lib-dynload")
        failed = []
        for name in sorted(os.listdir(folder)):
            try:
                importlib.import_module(name.split(".")[0])
            except ImportError as e:
                failed.append(f"{name}: {e}")
        return "; ".join(failed) or "all imported"
"""


def test_the_worker_exports_the_python_api_and_none_of_its_own_code(make_daemon, stage):
    # Its own code exported would let an extension module with a function of the same name
    # bind to the worker's (the dynamic linker looks in the program first).
    out = subprocess.run(["nm", "-D", "--defined-only", str(stage / "bin" / "mtapy-worker")],
                         capture_output=True, text=True, check=True).stdout
    symbols = [line.split()[-2:] for line in out.splitlines() if line.strip()]
    # Left exported by the linker, rightly: weak copies (W, V) of what libkj and libstdc++
    # define too, so that the process has one of each (kj::Exception's typeinfo, say).
    own = sorted(name for kind, name in symbols
                 if "mtapy" in name or (name.startswith("_Z") and kind not in "WV"))
    assert not own, f"{len(own)} of the worker's own symbols exported, e.g. {own[:5]}"
    d = make_daemon(pool_toml("a", write_policy(stage, "extensions.py", EXTENSIONS)))
    assert d.call("a", "import_every_extension")[:2] == (0, "all imported")


SCOREBOARD_TAMPERING = """
    import ctypes, mmap, os, time

    # proto/scoreboard.h, as the worker sees it on fd 5
    class Call(ctypes.Structure):
        _fields_ = [("number", ctypes.c_uint64), ("startedNs", ctypes.c_int64),
                    ("deadlineNs", ctypes.c_int64), ("requestId", ctypes.c_uint64),
                    ("kind", ctypes.c_uint32), ("callerUid", ctypes.c_uint32),
                    ("connection", ctypes.c_int32), ("addressLength", ctypes.c_uint32),
                    ("address", ctypes.c_char * 108), ("function", ctypes.c_char * 64),
                    ("messageId", ctypes.c_char * 64)]

    class FunctionCount(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char * 64), ("calls", ctypes.c_uint64),
                    ("failures", ctypes.c_uint64)]

    class Slot(ctypes.Structure):
        _fields_ = [("seq", ctypes.c_uint32), ("state", ctypes.c_uint32),
                    ("keeperPid", ctypes.c_int32), ("call", Call), ("calls", ctypes.c_uint64),
                    ("failures", ctypes.c_uint64), ("functions", FunctionCount * 16),
                    ("latencyNext", ctypes.c_uint32), ("latencyMicros", ctypes.c_uint32 * 256)]

    def shrink():
        try:
            os.ftruncate(5, 0)
            return "shrunk"
        except OSError as e:
            return f"refused {e.errno}"

    def misdirect(path):
        table = mmap.mmap(5, os.fstat(5).st_size)
        for i in range(int.from_bytes(table[4:8], "little")):
            slot = Slot.from_buffer(table, 8 + i * ctypes.sizeof(Slot))
            if slot.state == 3 and slot.call.function == b"misdirect":  # this call's slot
                slot.call.address = path.encode()
                slot.call.addressLength = len(path)
        time.sleep(10)  # past the timeout: the daemon answers "the caller" itself

    def ping():
        return "pong"
"""


def test_a_policy_writing_its_scoreboard_neither_crashes_the_daemon_nor_aims_it(
        make_daemon, stage, tmp_path, harness):
    # The pool's table is mapped read-write by its workers, so by its policy: shrinking it
    # would crash the root daemon at its next read (SIGBUS), and the caller's address in it
    # must not let the policy make the daemon send, as root, to any socket it names.
    policy = write_policy(stage, "tamper.py", SCOREBOARD_TAMPERING)
    d = make_daemon(pool_toml("a", policy, timeout="1s") + pool_toml("b", policy))
    assert d.call("a", "shrink")[:2] == (0, f"refused {errno.EPERM}")
    root_only = tmp_path / "root-only"
    root_only.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as victim:
        victim.bind(str(root_only / "victim.sock"))
        victim.settimeout(3)
        # (the real caller, whose address the policy overwrote, gets no answer: its timeout)
        conf = shim_conf(d, pool="a", timeout="2s")
        assert exim_call(harness, conf, "misdirect", str(root_only / "victim.sock"))[0] == FAIL
        with pytest.raises(socket.timeout):
            victim.recv(65536)
    assert d.process.poll() is None, d.log()
    assert d.call("b", "ping")[:2] == (0, "pong") and d.call("a", "ping")[:2] == (0, "pong")


def test_loading_the_shim_is_silent_whatever_shim_conf_says(harness, tmp_path):
    # Loaded into Exim, the shim reads shim.conf and rehearses a call before any is made
    # (shim/exim/expand.c++); a wrong file or a missing daemon is for the calls to report.
    conf = tmp_path / "shim.conf"
    for text in ("sokket = /x\n", "socket_dir = /nonexistent\n"):
        conf.write_text(text)
        r = subprocess.run([str(harness), str(harness.parent / "mtapy_exim.so"), "load"],
                           capture_output=True, text=True,
                           env={**os.environ, "MTAPY_SHIM_CONF": str(conf)})
        assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", ""), text
    conf.write_text("sokket = /x\n")
    rc, message = exim_call(harness, conf, "anything")
    assert rc == FAIL and b"shim.conf:1: unknown key sokket" in message, (rc, message)


def test_allowed_uids_get_answers_through_the_exim_shim(make_daemon, stage, users, harness):
    policy = write_policy(stage, "who-shim.py", POLICY)
    d = make_daemon(pool_toml("a", policy, user="mtapy-t1", clients=("root", "mtapy-t2")))
    expected = f"{users['mtapy-t1'].pw_uid} __exim__".encode()
    conf = shim_conf(d)  # no pool named: the daemon picks the caller's one pool
    assert exim_call(harness, conf, "whoami") == (OK, expected)
    assert exim_call(harness, conf, "whoami", user="mtapy-t2") == (OK, expected)


def test_a_uid_not_allowed_for_a_pool_is_refused_by_the_kernel_with_the_fix(make_daemon, stage,
                                                                           users, harness):
    policy = write_policy(stage, "who-refused.py", POLICY)
    d = make_daemon(pool_toml("a", policy, user="mtapy-t1", clients=("root",)) +
                    pool_toml("b", policy, user="mtapy-t1", clients=("mtapy-t2",)))
    uid = str(users["mtapy-t2"].pw_uid)
    rc, message = exim_call(harness, shim_conf(d, pool="a"), "whoami", user="mtapy-t2")
    assert rc == FAIL and f"uid {uid} may not call".encode() in message, (rc, message)
    assert b"add it to that pool's clients" in message
    # The socket's ACL refused it: no worker of pool a saw the call.
    assert "calls 0," in d.ctl("status").stdout.split("pool b")[0]
    # The same uid still reaches the pool that lists it.
    assert exim_call(harness, shim_conf(d, pool="b"), "whoami", user="mtapy-t2")[0] == OK


def test_the_policy_cannot_read_a_root_only_file(make_daemon, stage):
    secret = stage / "run" / "root-only-secret"
    secret.write_text("root's secret\n")
    secret.chmod(0o600)
    policy = write_policy(stage, "snoop.py", f"""
        def snoop():
            try:
                with open({str(secret)!r}) as f:
                    return "read: " + f.read()
            except PermissionError as e:
                return "PermissionError"
    """)
    d = make_daemon(pool_toml("a", policy))
    assert d.call("a", "snoop") == (0, "PermissionError", "")


# ---- the Exim-Python contract: return values, arguments, names ------------------------------

VALUES_POLICY = """
    class Shown:
        def __str__(self):
            return "shown via str()"

    def text(): return "plain text, 한국어"
    def yes(): return True
    def no(): return False
    def nothing(): return None
    def raw(): return b"\\xff\\xfe 8-bit \\x80"
    def whole(): return 42
    def real(): return 1.5
    def thing(): return Shown()
    def empty(): return ""
    def broken(): raise ValueError("the policy broke")
"""


def test_return_values_map_to_exim_results(make_daemon, stage, harness):
    policy = write_policy(stage, "values.py", VALUES_POLICY)
    d = make_daemon(pool_toml("a", policy))
    conf = shim_conf(d)
    expected = {
        "text": (OK, "plain text, 한국어".encode()),
        "yes": (OK, b"true"),
        "no": (OK, b"false"),
        "nothing": (FAIL_FORCED, None),
        "raw": (OK, b"\xff\xfe 8-bit \x80"),
        "whole": (OK, b"42"),
        "real": (OK, b"1.5"),
        "thing": (OK, b"shown via str()"),
        "empty": (OK, b""),
    }
    got = {fn: exim_call(harness, conf, fn) for fn in expected}
    assert got == expected
    # mtapyctl: 0 value, 1 forced failure.
    assert d.call("a", "yes")[:2] == (0, "true")
    assert d.call("a", "nothing")[0] == 1


def test_a_policy_exception_fails_the_expansion_with_its_message_and_logs_the_traceback(
        make_daemon, stage, harness):
    policy = write_policy(stage, "raises.py", VALUES_POLICY)
    d = make_daemon(pool_toml("a", policy))
    rc, message = exim_call(harness, shim_conf(d), "broken")
    assert rc == FAIL and b"ValueError: the policy broke" in message, (rc, message)
    assert b"Traceback" not in message  # one line for Exim's log; the traceback is ours
    assert wait_for(lambda: 'raise ValueError("the policy broke")' in d.log()), d.log()
    assert "Traceback (most recent call last)" in d.log() and str(policy) in d.log()
    assert d.call("a", "broken")[0] == 2


ARGS_POLICY = """
    def show(*args):
        return " ".join(a.encode("utf-8", "surrogateescape").hex() or "-" for a in args)
    def count(*args):
        return f"{len(args)} {args!r}"
    def echo(arg):
        return arg
"""


def test_arguments_arrive_byte_exact_and_round_trip(make_daemon, stage, harness):
    policy = write_policy(stage, "args.py", ARGS_POLICY)
    d = make_daemon(pool_toml("a", policy))
    conf = shim_conf(d)
    korean = "한국어 스팸".encode()
    args = [b"\xff\xfe", korean, b"", b"plain", b"\x80x\xc3("]
    assert exim_call(harness, conf, "show", *args) == (
        OK, " ".join(a.hex() or "-" for a in args).encode())
    assert exim_call(harness, conf, "count", "", "x", "") == (OK, b"3 ('', 'x', '')")
    assert exim_call(harness, conf, "count") == (OK, b"0 ()")
    # Six arguments after the function name: the most Exim 4.96 can pass safely.
    assert exim_call(harness, conf, "count", *"123456") == (
        OK, b"6 ('1', '2', '3', '4', '5', '6')")
    for raw in (b"\xff\xfe", korean, b"mixed \xe9t\xe9 " + korean, b""):
        assert exim_call(harness, conf, "echo", raw) == (OK, raw)


def test_dotted_names_resolve_through_attributes(make_daemon, stage, harness):
    policy = write_policy(stage, "dotted.py", """
        class limits:
            @staticmethod
            def check(sender):
                return f"checked {sender}"

        class Counter:
            def __init__(self):
                self.hits = 0
            def hit(self):
                self.hits += 1
                return self.hits

        counter = Counter()
        nested = limits
    """)
    d = make_daemon(pool_toml("a", policy, process_limit=1))
    conf = shim_conf(d)
    assert exim_call(harness, conf, "limits.check", "a@b.example") == (OK, b"checked a@b.example")
    assert exim_call(harness, conf, "nested.check", "x") == (OK, b"checked x")
    assert [exim_call(harness, conf, "counter.hit")[1] for _ in range(3)] == [b"1", b"2", b"3"]
    rc, message = exim_call(harness, conf, "limits.nope")
    assert rc == FAIL and b"limits.nope" in message, (rc, message)


# ---- workers that die, hang or fail to load -----------------------------------------------------

CRASH_POLICY = """
    import ctypes, os, time
    def exits():
        os._exit(1)
    def segfaults():
        ctypes.string_at(0)
    def sleepy():
        time.sleep(5)
        return "too late"
    def fine():
        return "fine"
    def broken():
        raise RuntimeError("no")
"""


@pytest.mark.parametrize("fn, exit_text", [("exits", "exited with status 1"),
                                           ("segfaults", "killed by signal 11")])
def test_a_worker_that_dies_mid_call_defers_and_the_next_call_succeeds(make_daemon, stage,
                                                                       harness, fn, exit_text):
    policy = write_policy(stage, f"crash-{fn}.py", CRASH_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=1, timeout="5s"), name=f"dies-{fn}")
    conf = shim_conf(d)
    rc, message = exim_call(harness, conf, fn)
    assert rc == FAIL and b"mtapy: worker pid" in message, (rc, message)
    assert exim_call(harness, conf, "fine") == (OK, b"fine")
    assert wait_for(lambda: log_lines(d, "pool a: worker pid", exit_text)), d.log()


def test_a_call_past_its_timeout_defers_dumps_the_stack_and_the_pool_recovers(make_daemon, stage,
                                                                             harness):
    policy = write_policy(stage, "slow.py", CRASH_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=1, timeout="1s"))
    conf = shim_conf(d)
    started = time.monotonic()
    rc, message = exim_call(harness, conf, "sleepy")
    took = time.monotonic() - started
    assert rc == FAIL and b"did not answer within 1000 ms" in message, (rc, message)
    assert 1.0 <= took < 2.0, took
    assert exim_call(harness, conf, "fine") == (OK, b"fine")
    # faulthandler's dump names the policy file and the function that hung.
    assert wait_for(lambda: f'File "{policy}"' in d.log() and "in sleepy" in d.log()), d.log()
    assert log_lines(d, "sleepy overran its deadline")


def test_failures_answer_on_error_value_only_when_the_pool_is_fail_open(make_daemon, stage,
                                                                        harness):
    policy = write_policy(stage, "open.py", CRASH_POLICY)
    d = make_daemon(pool_toml("open", policy, timeout="1s", on_error="accept",
                              on_error_value="yes") +
                    pool_toml("closed", policy, timeout="1s"))
    fail_open, fail_closed = shim_conf(d, pool="open"), shim_conf(d, pool="closed")
    for fn in ("broken", "exits", "sleepy"):
        assert exim_call(harness, fail_open, fn) == (OK, b"yes"), fn
        assert exim_call(harness, fail_closed, fn)[0] == FAIL, fn
    assert exim_call(harness, fail_open, "fine") == (OK, b"fine")  # answers stay answers
    assert exim_call(harness, fail_open, "nothing.here") == (OK, b"yes")
    # Fail-open still logs each failure.
    assert log_lines(d, "pool open: broken failed")


def test_a_policy_that_fails_to_import_throttles_its_pool_not_the_daemon(make_daemon, stage,
                                                                         harness):
    bad = write_policy(stage, "bad-import.py", """
        import os
        import mtapy_no_such_module_for_tests
    """)
    good = write_policy(stage, "good.py", CRASH_POLICY)
    d = launch(make_daemon(pool_toml("bad", bad, timeout="5s", throttle_time="2s") +
                           pool_toml("good", good), start=False))
    assert wait_for(lambda: "THROTTLED" in d.ctl("status").stdout), d.ctl("status").stdout
    conf = shim_conf(d, pool="bad")
    for _ in range(3):
        started = time.monotonic()
        rc, message = exim_call(harness, conf, "fine")
        assert time.monotonic() - started < 1.0
        assert rc == FAIL and b"bad" in message, (rc, message)
    assert d.call("good", "fine") == (0, "fine", "")
    assert exim_call(harness, shim_conf(d, pool="good"), "fine") == (OK, b"fine")
    assert "No module named 'mtapy_no_such_module_for_tests'" in d.log()
    assert f'File "{bad}"' in d.log()
    assert d.process.poll() is None


def test_an_answer_too_large_to_forward_defers_and_the_pool_recovers(make_daemon, stage,
                                                                     harness):
    # 70 MiB is past the daemon's 64 MiB message limit: the daemon cannot read the worker's
    # answer, so that worker is useless and must be replaced, not kept.
    policy = write_policy(stage, "huge.py", """
        def huge():
            return "x" * (70 << 20)
        def fine():
            return "fine"
    """)
    d = make_daemon(pool_toml("a", policy, process_limit=1, timeout="1s"))
    conf = shim_conf(d)
    rc, message = exim_call(harness, conf, "huge")
    assert rc == FAIL, (rc, message[:200])
    assert exim_call(harness, conf, "fine") == (OK, b"fine"), d.ctl("status").stdout + d.log()


# ---- the policy socket under abuse -------------------------------------------------------------

def raw_datagrams(path, payloads):
    """Send each payload as one datagram to the pool socket at `path` (as root, a client)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("")  # an address of our own, so that a worker could answer
    s.connect(str(path))
    for payload in payloads:
        s.send(payload)
    return s


def test_malformed_requests_do_not_disturb_other_clients(make_daemon, stage, harness):
    policy = write_policy(stage, "steady.py", """
        import time
        def tick(n):
            time.sleep(0.005)
            return n
    """)
    d = make_daemon(pool_toml("a", policy, timeout="5s"))
    conf = shim_conf(d, pool="a")
    # A well-formed client keeps calling for about 1.5 s meanwhile.
    steady = subprocess.Popen(
        [str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "300", "tick", "ok"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "MTAPY_SHIM_CONF": str(conf)})
    abuse = [
        b"\xde\xad\xbe\xef" * 64,                          # garbage
        struct.pack("<II", 0, 100),                        # claims 100 words, has none
        struct.pack("<II", 0x7FFFFFFF, 1) + b"\0" * 64,    # absurd segment count
        struct.pack("<II", 0, 0xFFFFFFF0),                 # absurd segment size
        struct.pack("<II", 0, 2) + b"\xff" * 16,           # framed, but not a Request
        b"",                                               # empty
        struct.pack("<IIII", 0xFFFFFFFF, 0x4C4C4950, 0, 0),  # "spilled" without its memfd
    ]
    held = []
    while steady.poll() is None:
        held.append(raw_datagrams(d.pool_socket("a"), abuse))
        time.sleep(0.01)
    out, err = steady.communicate()
    assert out.startswith(b"rc=0\nok\n"), (out, err)
    assert repeat_summary(out)[:2] == ("calls=300", "failures=0"), (out, err)
    assert d.process.poll() is None, d.log()
    assert exim_call(harness, conf, "tick", "after") == (OK, b"after")
    assert "exited" not in d.log() and "killed" not in d.log(), d.log()  # no worker died
    for s_ in held:
        s_.close()


# ---- stopping, configuration, the admin socket ----------------------------------------------

def test_sigterm_lets_an_in_flight_call_finish(make_daemon, stage, harness):
    policy = write_policy(stage, "inflight.py", """
        import time
        def slow():
            time.sleep(1)
            return "finished"
    """)
    d = make_daemon(pool_toml("a", policy, timeout="5s"))
    call = subprocess.Popen(
        [str(harness), str(harness.parent / "mtapy_exim.so"), "call", "slow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d))})
    assert wait_for(lambda: " busy," in d.ctl("status").stdout, timeout=5), d.log()
    d.process.send_signal(signal.SIGTERM)
    out, err = call.communicate(timeout=10)
    assert out == b"rc=0\nfinished\n", (out, err)
    assert d.process.wait(timeout=10) == 0, d.log()


def test_sigterm_also_answers_calls_queued_behind_a_retiring_worker(make_daemon, stage, harness):
    # max_use = 1: the busy worker retires after its call, so the queued one needs a new worker.
    policy = write_policy(stage, "queued.py", """
        import time
        def slow():
            time.sleep(0.5)
            return "finished"
        def quick():
            return "quick"
    """)
    d = make_daemon(pool_toml("a", policy, process_limit=1, max_use=1, timeout="1s"))
    env = {**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d))}
    run = [str(harness), str(harness.parent / "mtapy_exim.so"), "call"]
    first = subprocess.Popen(run + ["slow"], stdout=subprocess.PIPE, env=env)
    assert wait_for(lambda: " busy," in d.ctl("status").stdout, timeout=5), d.log()
    second = subprocess.Popen(run + ["quick"], stdout=subprocess.PIPE, env=env)
    time.sleep(0.2)  # it waits in the pool socket's queue (the kernel does not count it for us)
    stopping = time.monotonic()
    d.process.send_signal(signal.SIGTERM)
    assert first.communicate(timeout=10)[0] == b"rc=0\nfinished\n"
    assert second.communicate(timeout=10)[0] == b"rc=0\nquick\n", d.log()
    assert d.process.wait(timeout=10) == 0
    assert time.monotonic() - stopping < 2, d.log()


def test_a_long_lived_mta_process_survives_a_daemon_restart(make_daemon, stage, harness):
    policy = write_policy(stage, "restart.py", POLICY)
    d = make_daemon(pool_toml("a", policy))
    conf = shim_conf(d)
    # One process, one kept connection, two calls 2 s apart: the daemon restarts in between.
    session = subprocess.Popen(
        [str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "2", "whoami"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "MTAPY_SHIM_CONF": str(conf), "DLFUNC_HARNESS_PAUSE_MS": "2000"})
    time.sleep(0.3)
    assert d.stop() == 0
    rc, message = exim_call(harness, conf, "whoami")  # meanwhile: defer, do not hang
    assert rc == FAIL and b"cannot reach mtapy-workerd" in message, (rc, message)
    d.start()
    out, err = session.communicate(timeout=10)
    assert repeat_summary(out)[:2] == ("calls=2", "failures=0"), (out, err)


def test_check_config_reports_every_error_with_its_line(stage, users, tmp_path):
    policy = write_policy(stage, "checked.py", POLICY)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[daemon]\n'                                   # 1
        'socket_dir = "/run/mtapy-test"\n'             # 2
        'log_level = "chatty"\n'                       # 3
        '[pools.a]\n'                                  # 4
        'clients = ["root"]\n'                         # 5
        'user = "mtapy-no-such-user"\n'                # 6
        f'policy = "{policy}"\n'                       # 7
        'timeout = "soon"\n'                           # 8
        'wibble = 1\n'                                 # 9
        '[pools.b]\n'                                  # 10
        'clients = ["root"]\n'                         # 11
        'user = "mtapy-t1"\n'                          # 12
        'policy = "/nonexistent/policy.py"\n'          # 13
        'on_error = "maybe"\n')                        # 14
    r = subprocess.run([str(stage / "bin" / "mtapy-workerd"), "--check-config", "--config",
                        str(bad)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1, r
    output = r.stdout + r.stderr
    for line, word in [(3, "log_level"), (6, "mtapy-no-such-user"), (8, "timeout"),
                       (9, "wibble"), (13, "/nonexistent/policy.py"), (14, "on_error")]:
        assert any(l.startswith(f"{bad}:{line}:") and word in l for l in output.splitlines()), \
            (line, word, output)
    assert len([l for l in output.splitlines() if l.startswith(f"{bad}:")]) == 6, output

    good = tmp_path / "good.toml"
    good.write_text(f'[pools.a]\nclients = ["root"]\nuser = "mtapy-t1"\npolicy = "{policy}"\n')
    r = subprocess.run([str(stage / "bin" / "mtapy-workerd"), "--check-config", "--config",
                        str(good)], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r


def test_the_admin_socket_is_for_root_only_and_the_policy_socket_is_not(make_daemon, stage,
                                                                        users, harness):
    policy = write_policy(stage, "admin.py", POLICY)
    d = make_daemon(pool_toml("a", policy, user="mtapy-t2", clients=("root", "mtapy-t1")))
    mode = os.stat(d.admin)
    assert stat.S_ISSOCK(mode.st_mode) and stat.S_IMODE(mode.st_mode) == 0o600, oct(mode.st_mode)
    assert mode.st_uid == 0
    ctl = [str(stage / "bin" / "mtapyctl"), "-s", str(d.admin)]
    r = subprocess.run(as_user("mtapy-t1") + ctl + ["call", "a", "whoami"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0 and r.stdout == "", r
    # Even through a socket file opened up by mistake, the daemon checks the caller's uid.
    os.chmod(d.admin, 0o666)
    r = subprocess.run(as_user("mtapy-t1") + ctl + ["status"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 3 and "root only" in r.stderr, r
    # The policy socket serves the same uid, because the pool lists it.
    assert exim_call(harness, shim_conf(d), "whoami", user="mtapy-t1") == (
        OK, f"{users['mtapy-t2'].pw_uid} __exim__".encode())


def test_status_reports_real_call_latency_even_on_one_cpu(make_daemon, stage, harness):
    # Workers time their own calls (the daemon no longer sees them); admins need real figures.
    policy = write_policy(stage, "fast.py", "def f(a, b):\n    return a + b\n")
    d = make_daemon(pool_toml("a", policy), start=False)
    with open(d.log_path, "ab") as log:
        d.process = subprocess.Popen(
            ["taskset", "-c", "0", str(stage / "bin" / "mtapy-workerd"), "--config",
             str(d.config)], stdout=log, stderr=subprocess.STDOUT)
    assert wait_for(d.ready), d.log()
    r = subprocess.run(["taskset", "-c", "0", str(harness), str(harness.parent / "mtapy_exim.so"),
                        "repeat", "500", "f", "user@example.com", "192.0.2.1"],
                       capture_output=True, env={**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d))})
    assert b"failures=0" in r.stdout, r.stdout
    client_p50 = float(re.search(rb"median_us=([\d.]+)", r.stdout).group(1))
    status = d.ctl("status").stdout
    worker_p50 = int(re.search(r"latency p50 (\d+) us", status).group(1))
    assert 0 < worker_p50 <= client_p50, (worker_p50, client_p50)
    assert "calls 500," in status and "function f: 500 calls, 0 failures" in status, status


def test_the_shim_leaves_signal_handling_as_the_mta_had_it(make_daemon, stage, harness):
    policy = write_policy(stage, "sig.py", "def f():\n    return 'x'\n")
    d = make_daemon(pool_toml("a", policy))
    env = {**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d)), "DLFUNC_HARNESS_SIGNALS": "1"}
    r = subprocess.run([str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "3", "f"],
                       capture_output=True, env=env)
    assert b"failures=0" in r.stdout, r
    lines = r.stderr.decode().splitlines()
    before = [line.split(None, 1)[1] for line in lines if line.startswith("before ")]
    after = [line.split(None, 1)[1] for line in lines if line.startswith("after ")]
    assert len(before) == 3 and before == after, r.stderr.decode()


def test_a_daemon_that_never_answers_makes_the_shim_defer_in_bounded_time(stage, harness, tmp_path):
    # A stuck peer: takes the datagram, never answers.
    path = stage / "run" / "silent.sock"
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    silent.bind(str(path))
    os.chmod(path, 0o666)
    conf = tmp_path / "shim.conf"
    conf.write_text(f"socket = {path}\ntimeout = 1s\n")
    started = time.monotonic()
    rc, message = exim_call(harness, conf, "f")
    took = time.monotonic() - started
    silent.close()
    assert rc == FAIL and b"timed out" in message, (rc, message)
    assert 1.0 <= took < 3.0, took


SCAN_POLICY = """
    import hashlib, os
    from elspy import RejectMessage, TempRejectMessage

    def local_scan(info, headers, fd):
        body = os.read(fd, 1 << 20)
        subject = headers.get("Subject", "")
        if "spam" in subject:
            raise RejectMessage("no spam here")
        if "later" in subject:
            raise TempRejectMessage("come back later")
        info.recipients_list.remove("b@example.org")
        info.recipients_list.append("c@example.org")
        headers.remove("X-Drop")
        headers.add("X-Seen", f"{hashlib.sha256(body).hexdigest()[:16]} {info.sender_address}")
"""


def test_mtapyctl_scan_runs_local_scan_without_an_mta(make_daemon, stage, tmp_path):
    policy = write_policy(stage, "scan.py", SCAN_POLICY)
    d = make_daemon(pool_toml("a", policy, user="mtapy-t2"))
    message = tmp_path / "m.eml"

    def scan(subject):
        message.write_bytes(f"Subject: {subject}\r\nX-Drop: 1\r\n\r\nbody\r\n".encode())
        r = d.ctl("scan", "a", str(message), "--from", "s@example.org", "--to", "a@example.org",
                  "--to", "b@example.org")
        return r.returncode, r.stdout

    body_hash = hashlib.sha256(b"body\n").hexdigest()[:16]  # CRLF read as Exim stores it
    assert scan("hello") == (0, "verdict: accept\nadd recipient: c@example.org\n"
                                "remove recipient: b@example.org\n"
                                f"add header: X-Seen: {body_hash} s@example.org\n"
                                "remove header: X-Drop\n")
    assert scan("cheap spam") == (1, "verdict: reject\nmessage: no spam here\n")
    assert scan("later") == (2, "verdict: tempreject\nmessage: come back later\n")
    r = d.ctl("scan", "a", str(message), "--from", "s@example.org")
    assert r.returncode == 64 and "--to" in r.stderr


PID_POLICY = """
    import os, time
    def pid():
        return str(os.getpid())
    def slow():
        time.sleep(1)
        return "slow"
"""


def test_workers_retire_after_max_use_without_failing_a_call(make_daemon, stage):
    policy = write_policy(stage, "pid.py", PID_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=1, max_use=2))
    answers = [d.call("a", "pid") for _ in range(6)]
    assert all(rc == 0 for rc, _, _ in answers), answers
    pids = [out for _, out, _ in answers]
    assert len(set(pids)) == 3 and pids[0] == pids[1] and pids[2] == pids[3], pids


def test_a_full_queue_makes_callers_wait_only_until_their_deadline(make_daemon, stage, harness):
    # queue_limit is the length of the pool socket's queue: with the only worker busy and the
    # queue full, a caller waits for room until its own deadline, then defers.
    policy = write_policy(stage, "queue.py", PID_POLICY + """
    def slower():
        time.sleep(2)
        return "slower"
""")
    d = make_daemon(pool_toml("a", policy, process_limit=1, queue_limit=1, timeout="5s"))
    env = {**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d, timeout="3s"))}
    run = [str(harness), str(harness.parent / "mtapy_exim.so"), "call"]
    busy = subprocess.Popen(run + ["slower"], stdout=subprocess.PIPE, env=env)
    assert wait_for(lambda: " busy," in d.ctl("status").stdout), d.ctl("status").stdout
    queued = subprocess.Popen(run + ["pid"], stdout=subprocess.PIPE, env=env)
    time.sleep(0.2)
    started = time.monotonic()
    rc, message = exim_call(harness, shim_conf(d, timeout="500ms"), "pid")
    took = time.monotonic() - started
    assert rc == FAIL and b"queue is full" in message, (rc, message)
    assert 0.4 < took < 1.0, took  # its own 0.5 s deadline, not the busy call's 2 s
    assert busy.communicate(timeout=10)[0] == b"rc=0\nslower\n"
    assert queued.communicate(timeout=10)[0].startswith(b"rc=0\n")


def test_the_daemon_tells_systemd_it_is_ready(make_daemon, stage, tmp_path):
    # Type=notify in deploy/mtapy-workerd.service: READY=1 once the sockets listen.
    policy = write_policy(stage, "notify.py", "def f():\n    return 'x'\n")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(10)
    d = make_daemon(pool_toml("a", policy), start=False)
    with open(d.log_path, "ab") as log:
        d.process = subprocess.Popen(
            [str(stage / "bin" / "mtapy-workerd"), "--config", str(d.config)],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")})
    assert notify.recv(100) == b"READY=1"
    assert d.admin.exists()


def test_a_forked_mta_child_makes_its_own_connection_and_leaves_the_parents_alone(
        make_daemon, stage, harness):
    # Exim forks delivery processes from the receiving process, connection and all.
    policy = write_policy(stage, "conn.py", PID_POLICY)
    d = make_daemon(pool_toml("a", policy))
    r = subprocess.run([str(harness), str(harness.parent / "mtapy_exim.so"), "forked", "pid"],
                       capture_output=True, text=True,
                       env={**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d))})
    lines = [line.split() for line in r.stdout.splitlines()]
    assert [line[:2] for line in lines] == [["parent", "rc=0"], ["child", "rc=0"],
                                            ["parent-again", "rc=0"]], r.stdout + r.stderr
    sockets = [set(line[3].split("=")[1].strip(",").split(",")) for line in lines]
    assert sockets[0] and not sockets[0] & sockets[1], r.stdout  # the child's own connection
    assert sockets[2] == sockets[0], r.stdout  # the parent kept its own


ISOLATION_POLICY = """
    import os
    def isolation():
        try:
            os.close(os.open("/dev/tty", os.O_RDWR))
            tty = "tty"
        except OSError:
            tty = "no-tty"
        fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        session = "own-session" if os.getsid(0) == os.getpid() else "daemon-session"
        return f"{tty} {session} {fds}"
"""


def test_workers_get_no_terminal_and_no_inherited_descriptors(make_daemon, stage, tmp_path):
    # Policy code must not reach root's terminal (TIOCSTI) or files the daemon inherited.
    policy = write_policy(stage, "isolation.py", ISOLATION_POLICY)
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)
    d = make_daemon(pool_toml("a", policy), start=False)
    with open(secret) as inherited, open(d.log_path, "ab") as log:
        d.process = subprocess.Popen(
            [str(stage / "bin" / "mtapy-workerd"), "--config", str(d.config)],
            stdout=log, stderr=subprocess.STDOUT, pass_fds=[inherited.fileno()],
            start_new_session=False)
    assert wait_for(d.ready), d.log()
    rc, out, _ = d.call("a", "isolation")
    # 0 stdin (/dev/null), 1-2 the pipe to the daemon's log, 3 the daemon's channel, 4 the
    # pool's call socket, 5 the scoreboard, 6 the worker's epoll, and the fd listdir() opened
    assert rc == 0 and out.startswith("no-tty own-session [0, 1, 2, 3, 4, 5, 6, "), out
    assert len(out.split(",")) == 8, out


def test_a_pool_that_cannot_spawn_a_worker_retries_after_throttle_time(make_daemon, stage):
    policy = write_policy(stage, "spawn.py", PID_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=1, throttle_time="1s"), start=False)
    with open(d.log_path, "ab") as log:  # few descriptors, so that spawning can fail
        d.process = subprocess.Popen(
            ["prlimit", "--nofile=24:24", str(stage / "bin" / "mtapy-workerd"), "--config",
             str(d.config)], stdout=log, stderr=subprocess.STDOUT)
    assert wait_for(d.ready), d.log()
    rc, pid, _ = d.call("a", "pid")
    hogs = []
    for _ in range(30):  # use up the daemon's descriptors with idle admin connections
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(d.admin))
        hogs.append(s)
    assert wait_for(lambda: "accept failed: Too many open files" in d.log()), d.log()
    os.kill(int(pid), signal.SIGKILL)
    assert wait_for(lambda: "cannot start a worker" in d.log()), d.log()
    for s in hogs:
        s.close()
    assert wait_for(lambda: d.call("a", "pid")[0] == 0, timeout=10), d.log()


STRANGER = """
import socket, sys
refused = held = 0
sockets = []
for i in range(1000):
    for path, kind in ((sys.argv[1], socket.SOCK_DGRAM), (sys.argv[2], socket.SOCK_STREAM)):
        s = socket.socket(socket.AF_UNIX, kind)
        try:
            s.connect(path)
            sockets.append(s)
            held += 1
        except PermissionError:
            refused += 1
            s.close()
print("refused:", refused, "held:", held)
"""


FORGER = """
    import sys

    def forge():
        sys.stderr.write("hello\\nmtapy-workerd[1] critical: pool b: forged\\n\\x1b[31mred\\n")
        sys.stderr.flush()
        return "written"
"""


ENVIRONMENT = """
    import json, os

    def environment():
        return json.dumps({k: os.environ.get(k) for k in
                           ("NOTIFY_SOCKET", "LISTEN_FDS", "HOME", "USER", "LOGNAME", "LANG")})
"""


def test_workers_get_their_user_s_identity_and_none_of_the_service_manager_s_variables(
        make_daemon, stage, monkeypatch):
    # Under systemd the daemon has NOTIFY_SOCKET (and, socket-activated, LISTEN_FDS): a policy
    # must not speak to systemd as the daemon, nor think itself root at HOME=/root.
    for name, value in (("NOTIFY_SOCKET", "/run/systemd/notify"), ("LISTEN_FDS", "1"),
                        ("HOME", "/root"), ("USER", "root"), ("LANG", "C.UTF-8")):
        monkeypatch.setenv(name, value)
    d = make_daemon(pool_toml("a", write_policy(stage, "environment.py", ENVIRONMENT)))
    rc, out, _ = d.call("a", "environment")
    home = pwd.getpwnam("mtapy-t1").pw_dir
    assert (rc, json.loads(out)) == (0, {"NOTIFY_SOCKET": None, "LISTEN_FDS": None, "HOME": home,
                                         "USER": "mtapy-t1", "LOGNAME": "mtapy-t1",
                                         "LANG": "C.UTF-8"})


def test_what_a_policy_prints_cannot_pass_for_the_daemon_s_own_log_lines(make_daemon, stage):
    d = make_daemon(pool_toml("a", write_policy(stage, "forger.py", FORGER)))
    assert d.call("a", "forge")[:2] == (0, "written")
    assert wait_for(lambda: "forged" in d.log())
    log = d.log()
    assert not any(line.startswith("mtapy-workerd[1]") for line in log.splitlines()), log
    assert "\x1b" not in log and "\\x1b[31mred" in log
    assert "\n    | mtapy-workerd[1] critical: pool b: forged" in log


def test_a_readsocket_in_a_folder_others_may_write_is_refused(make_daemon, stage, users):
    # There, that user could swap the socket for a link to any file, and the daemon, setting
    # the socket's permissions by its path at a reload, would open that file to the clients.
    policy = write_policy(stage, "rs-folder.py", POLICY)
    theirs = stage / "run" / "users-folder"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, users["mtapy-t2"].pw_uid, -1)
    with pytest.raises(RuntimeError, match="a socket's folder must be root's"):
        make_daemon(pool_toml("a", policy, readsocket=str(theirs / "rs.sock")))
    shared = stage / "run" / "group-writable"
    shared.mkdir()
    shared.chmod(0o775)
    with pytest.raises(RuntimeError, match="a socket's folder must be root's"):
        make_daemon(pool_toml("a", policy, readsocket=str(shared / "rs.sock")))


def test_a_local_user_who_is_no_client_is_refused_by_the_kernel(make_daemon, stage, harness):
    policy = write_policy(stage, "stranger-policy.py", PID_POLICY)
    d = make_daemon(pool_toml("a", policy, readsocket=str(stage / "run" / "stranger-rs.sock")))
    before = d.ctl("status").stdout
    script = write_policy(stage, "stranger.py", STRANGER)
    # 1,000 tries at each of the pool's sockets while a client keeps calling.
    steady = subprocess.Popen(
        [str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "200", "pid"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "MTAPY_SHIM_CONF": str(shim_conf(d))})
    r = subprocess.run(as_user("nobody") + ["/usr/bin/python3", str(script),
                                            str(d.pool_socket("a")),
                                            str(stage / "run" / "stranger-rs.sock")],
                       capture_output=True, text=True, timeout=60)
    assert "refused: 2000 held: 0" in r.stdout, r
    out, err = steady.communicate(timeout=30)
    assert repeat_summary(out)[:2] == ("calls=200", "failures=0"), (out, err)
    # No worker saw the stranger: the only calls are the client's 200.
    assert "calls 200," in d.ctl("status").stdout, (before, d.ctl("status").stdout)
    assert "refused" not in d.log(), d.log()


CLOSING_POLICY = """
    import os
    def local_scan(info, headers, fd):
        body = os.fdopen(fd, "rb").read()  # the elspy-era idiom closes the descriptor
        headers.add("X-Worker", f"{os.getpid()} {len(body)}")
"""


def test_a_policy_that_closes_the_body_descriptor_keeps_its_worker(make_daemon, stage, tmp_path):
    policy = write_policy(stage, "closing.py", CLOSING_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=1))
    message = tmp_path / "m.eml"
    message.write_bytes(b"Subject: x\n\nbody\n")
    outputs = [d.ctl("scan", "a", str(message), "--from", "a@b", "--to", "c@d").stdout
               for _ in range(3)]
    workers = {re.search(r"X-Worker: (\d+) 5", out)[1] for out in outputs}
    assert len(workers) == 1, outputs  # one worker served all three: none died
    assert "unreadable request" not in d.log() and "exited" not in d.log(), d.log()


THREAD_POLICY = """
    import threading, time
    ticks = 0
    def tick():
        global ticks
        while True:
            ticks += 1
            time.sleep(0.02)
    threading.Thread(target=tick, daemon=True).start()
    def count():
        return ticks
"""


def test_a_policys_own_threads_run_while_the_worker_waits(make_daemon, stage):
    policy = write_policy(stage, "threads.py", THREAD_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=1))
    before = int(d.call("a", "count")[1])
    time.sleep(0.5)
    after = int(d.call("a", "count")[1])
    assert after - before >= 10, (before, after)  # ~25 ticks of 20 ms


def test_a_policy_whose_import_hangs_is_killed_and_throttles_its_pool(make_daemon, stage):
    policy = write_policy(stage, "hang.py", "import time\ntime.sleep(3600)\n")
    d = launch(make_daemon(pool_toml("a", policy, process_limit=1, start_timeout="1s",
                                     throttle_time="30s", timeout="10s"), start=False))
    assert wait_for(lambda: "did not load its policy within 1000 ms" in d.log(), 5), d.log()
    assert wait_for(lambda: "THROTTLED" in d.ctl("status").stdout, 5), d.ctl("status").stdout
    started = time.monotonic()
    rc, _, err = d.call("a", "anything")
    assert rc == 2 and "fail to start" in err and time.monotonic() - started < 1, err


def test_sighup_does_not_stop_the_daemon(make_daemon, stage):
    policy = write_policy(stage, "hup.py", PID_POLICY)
    d = make_daemon(pool_toml("a", policy))
    d.process.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "SIGHUP" in d.log()), d.log()
    assert d.process.poll() is None and d.call("a", "pid")[0] == 0


def test_a_policys_log_lines_reach_the_daemons_log(make_daemon, stage):
    policy = write_policy(stage, "logs.py", """
        import logging
        log = logging.getLogger("elspy")
        def f():
            log.info("hello from the policy")
            return "ok"
    """)
    d = make_daemon(pool_toml("a", policy))
    assert d.call("a", "f")[0] == 0
    assert wait_for(lambda: "logs.py: elspy: hello from the policy" in d.log()), d.log()


# ---- faults on the one-hop path: every call still gets an answer --------------------------------

FAULT_POLICY = """
    import ctypes, os, time
    def pid():
        return str(os.getpid())
    def hang():
        time.sleep(30)
        return "too late"
    def exits():
        os._exit(3)
    def segfaults():
        ctypes.string_at(0)
    def echo(x):
        return x
    def slow_echo(x):
        time.sleep(0.005)  # so that kills land mid-call
        return x
"""


def call_in_background(harness, conf, fn, *args):
    return subprocess.Popen([str(harness), str(harness.parent / "mtapy_exim.so"), "call", fn,
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "MTAPY_SHIM_CONF": str(conf)})


def busy_worker_pid(d):
    found = re.search(r"worker pid (\d+) busy", d.ctl("status").stdout)
    return int(found[1]) if found else None


@pytest.mark.parametrize("fail_open", [False, True], ids=["tempfail", "fail-open"])
@pytest.mark.parametrize("fault", ["sigkill", "sigstop", "os_exit", "segfault"])
def test_a_worker_lost_mid_call_is_answered_with_on_error_in_time(make_daemon, stage, harness,
                                                                  fault, fail_open):
    policy = write_policy(stage, "faults.py", FAULT_POLICY)
    options = dict(on_error="accept", on_error_value="open") if fail_open else {}
    d = make_daemon(pool_toml("a", policy, process_limit=2, timeout="1s", **options),
                    name=f"fault-{fault}-{fail_open}")
    conf = shim_conf(d, timeout="5s")
    fn = {"sigkill": "hang", "sigstop": "hang", "os_exit": "exits", "segfault": "segfaults"}[fault]
    started = time.monotonic()
    call = call_in_background(harness, conf, fn)
    if fault in ("sigkill", "sigstop"):
        assert wait_for(lambda: busy_worker_pid(d), timeout=5), d.ctl("status").stdout
        os.kill(busy_worker_pid(d), signal.SIGKILL if fault == "sigkill" else signal.SIGSTOP)
    out, err = call.communicate(timeout=10)
    took = time.monotonic() - started
    assert took < 1.0 + 1.0, took  # within timeout + 1 s
    if fail_open:
        assert out == b"rc=0\nopen\n", (out, err)
    else:
        assert out.startswith(b"rc=2\nmtapy: "), (out, err)  # FAIL: Exim answers 451
    # The pool recovers: the next calls are answered by the policy.
    assert wait_for(lambda: exim_call(harness, conf, "echo", "back") == (OK, b"back")), d.log()


def readsocket_line(path, line, timeout=10):
    """What Exim's ${readsocket} reads: connect, send the line, half-close, read to EOF."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        s.sendall(line.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: s.recv(4096), b""))


@pytest.mark.parametrize("fail_open", [False, True], ids=["tempfail", "fail-open"])
@pytest.mark.parametrize("fault", ["sigkill", "os_exit", "segfault"])
def test_a_readsocket_caller_whose_worker_dies_mid_call_gets_on_error_not_an_empty_answer(
        make_daemon, stage, harness, fault, fail_open):
    # An empty answer is what Exim reads when the connection just closes: "eq{...}{true}" is
    # then false and a deny does not fire, so a crash would accept the mail.
    policy = write_policy(stage, "faults.py", FAULT_POLICY)
    options = dict(on_error="accept", on_error_value="open") if fail_open else {}
    path = stage / "run" / f"rs-fault-{fault}-{fail_open}.sock"
    d = make_daemon(pool_toml("a", policy, process_limit=2, timeout="2s", readsocket=str(path),
                              **options))
    fn = {"sigkill": "hang", "os_exit": "exits", "segfault": "segfaults"}[fault]
    answers = []
    caller = threading.Thread(target=lambda: answers.append(readsocket_line(path, fn)))
    started = time.monotonic()
    caller.start()
    if fault == "sigkill":
        assert wait_for(lambda: busy_worker_pid(d), timeout=5), d.ctl("status").stdout
        os.kill(busy_worker_pid(d), signal.SIGKILL)
    caller.join(10)
    assert time.monotonic() - started < 2.0, answers  # not the timeout: at once
    assert answers == [b"open"] if fail_open else answers[0].startswith(b"DEFER: "), answers
    assert wait_for(lambda: readsocket_line(path, "echo back") == b"back"), d.log()


def test_sixteen_clients_with_workers_killed_at_random_get_right_answers_or_on_error(
        make_daemon, stage, harness):
    policy = write_policy(stage, "chaos.py", FAULT_POLICY)
    d = make_daemon(pool_toml("a", policy, process_limit=4, timeout="2s"))
    conf = shim_conf(d, timeout="3s")
    # Each client process calls echo(client-N) for 10 s and prints every result, into a file:
    # a pipe read only at the end would fill and stall it.
    outputs = [tempfile.TemporaryFile() for _ in range(16)]
    clients = [subprocess.Popen(
        [str(harness), str(harness.parent / "mtapy_exim.so"), "repeat", "1000000", "slow_echo",
         f"client-{i}"], stdout=outputs[i], stderr=subprocess.DEVNULL,
        env={**os.environ, "MTAPY_SHIM_CONF": str(conf), "DLFUNC_HARNESS_EVERY": "1",
             "DLFUNC_HARNESS_SECONDS": "10"})
        for i in range(16)]
    end = time.monotonic() + 10
    kills = 0
    while time.monotonic() < end:
        pids = [int(p) for p in re.findall(r"worker pid (\d+) (?:busy|idle)",
                                           d.ctl("status").stdout)]
        if pids:
            try:
                os.kill(random.choice(pids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
        time.sleep(random.uniform(0.05, 0.3))
    assert kills >= 10
    answers = deferred = 0
    for i, c in enumerate(clients):
        c.wait(timeout=30)
        outputs[i].seek(0)
        for line in outputs[i].read().decode(errors="replace").splitlines():
            if not line.startswith("each "):
                continue
            if line == f"each rc=0 client-{i}":
                answers += 1
            else:  # on_error: FAIL (rc 2) with mtapy's reason, never a wrong or empty value
                assert line.startswith("each rc=2 mtapy: "), line
                deferred += 1
    assert answers > 1000 and deferred >= 1, (answers, deferred, kills)
    assert d.process.poll() is None, d.log()
    assert exim_call(harness, conf, "echo", "after") == (OK, b"after")


def test_a_policy_cannot_flood_or_forge_the_daemons_log(make_daemon, stage):
    policy = write_policy(stage, "noisy.py", """
        import os, sys
        def noisy():
            for i in range(5000):
                print(f"noise {i}", flush=True)
            return "done"
        def log_fd():
            return os.readlink("/proc/self/fd/2")
    """)
    d = make_daemon(pool_toml("a", policy, process_limit=1))
    assert d.call("a", "noisy")[:2] == (0, "done")
    assert d.call("a", "log_fd")[1].startswith("pipe:"), "stderr must be a pipe, not the log"
    # Read as fast as it writes, it floods and lines are dropped; read late (a loaded machine),
    # it arrives in few big entries. Either way, the entries per second are bounded.
    assert wait_for(lambda: "lines of worker output" in d.log() or "noise 4999" in d.log()), \
        d.log()
    # Bounded: at most 100 entries a second per pool (a loaded machine prints more slowly, so
    # the bound is on entries per second, not on the total).
    stamps = [time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))
              for line in log_lines(d, "pool a worker pid") if line[:4].isdigit()]
    assert stamps and len(stamps) <= 100 * (max(stamps) - min(stamps) + 2), len(stamps)
    # Every line that does reach the log says which pool and worker wrote it.
    assert "worker pid" in d.log().split("noise 0")[0].splitlines()[-1]


def test_what_a_policy_forks_does_not_outlive_its_worker(make_daemon, stage):
    policy = write_policy(stage, "forks.py", """
        import subprocess
        def spawn():
            return str(subprocess.Popen(["sleep", "300"]).pid)
    """)
    d = make_daemon(pool_toml("a", policy, process_limit=1))
    child = int(d.call("a", "spawn")[1])
    assert os.path.exists(f"/proc/{child}")
    assert d.stop() == 0
    assert wait_for(lambda: not os.path.exists(f"/proc/{child}") or
                    open(f"/proc/{child}/stat").read().split()[2] == "Z", timeout=5)


def test_twenty_thousand_fuzzed_datagrams_crash_no_worker(make_daemon, stage, harness):
    policy = write_policy(stage, "fuzzed.py", "def f(x):\n    return x\n")
    d = make_daemon(pool_toml("a", policy, process_limit=2, queue_limit=1000))
    rng = random.Random(7)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("")
    s.connect(str(d.pool_socket("a")))
    s.setblocking(True)
    for i in range(20000):
        words = rng.randint(1, 24)
        body = bytes(rng.getrandbits(8) for _ in range(words * 8))
        # Mostly well framed (so the request parser, not the framing check, sees it).
        head = struct.pack("<II", 0, words) if rng.random() < 0.9 else body[:8]
        s.send(head + body)
    s.close()
    conf = shim_conf(d)
    assert wait_for(lambda: exim_call(harness, conf, "f", "ok") == (OK, b"ok"), timeout=20)
    assert "exited" not in d.log() and "killed by signal" not in d.log(), d.log()[-3000:]


def test_a_line_a_worker_writes_in_pieces_reaches_the_log_whole(make_daemon, stage):
    # faulthandler writes a stack dump in many small writes; the log must keep its lines whole.
    policy = write_policy(stage, "pieces.py", """
        import sys, time
        def pieces():
            for part in ("File \\"", "/some/policy.py", "\\", line 8"):
                sys.stderr.write(part)
                sys.stderr.flush()
                time.sleep(0.05)
            sys.stderr.write(" in sleepy\\n")
            sys.stderr.flush()
            return "ok"
    """)
    d = make_daemon(pool_toml("a", policy, process_limit=1))
    assert d.call("a", "pieces")[:2] == (0, "ok")
    assert wait_for(lambda: 'File "/some/policy.py", line 8 in sleepy' in d.log()), d.log()
