"""Shared fixtures for mtapy's end-to-end tests: a staged install, test users, a real daemon.

Run as root (the daemon starts workers as other users). The build directory comes from
$MTAPY_BUILD (default: ./build at the top of the checkout); tests/run-all.sh sets it.
"""

import itertools
import os
import pathlib
import pwd
import shutil
import socket
import subprocess
import tempfile
import textwrap
import time

import pytest

TOP = pathlib.Path(__file__).resolve().parent.parent
BUILD = pathlib.Path(os.environ.get("MTAPY_BUILD", TOP / "build"))
POOL_USERS = ("mtapy-t1", "mtapy-t2")
_daemon_numbers = itertools.count(1)  # unique run folders, even for parametrized tests


def ensure_user(name):
    """Create a system user without a home if it is missing; return its passwd entry."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", name], check=True)
        return pwd.getpwnam(name)


@pytest.fixture(scope="session")
def users():
    if os.geteuid() != 0:
        pytest.skip("end-to-end tests run as root (tests/run-all.sh)")
    return {name: ensure_user(name) for name in POOL_USERS}


def copy_pylib(source, build, dest):
    """pylib as installed: the Python packages of `source`, the C++ modules (pylib/native/)
    of `build`."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "tests", "native"))
    if (build / "pylib").is_dir():  # a build from before pylib/native has none
        shutil.copytree(build / "pylib", dest, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("native"))


@pytest.fixture(scope="session")
def stage(users):
    """A world-readable folder holding the binaries, pylib and policies, like an install.

    Workers drop to unprivileged users before they import anything, so everything they read
    must be readable by them, which a checkout under a 0700 folder is not.
    """
    root = pathlib.Path(tempfile.mkdtemp(prefix="mtapy-test-"))
    root.chmod(0o755)
    copy_pylib(TOP / "pylib", BUILD, root / "pylib")
    bin_dir = root / "bin"
    bin_dir.mkdir()
    for program in ("workerd/mtapy-workerd", "workerd/mtapy-worker", "workerd/mtapyctl",
                    "shim/mtapy_exim.so", "shim/mtapy-courierfilter"):
        shutil.copy2(BUILD / program, bin_dir)
    (root / "policies").mkdir()
    (root / "run").mkdir()
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


class Daemon:
    """A running mtapy-workerd with its own sockets, config and log."""

    def __init__(self, stage, name, pools, daemon_extra=""):
        self.stage = stage
        self.dir = stage / "run" / name
        self.dir.mkdir(mode=0o755)
        self.socket_dir = self.dir
        self.admin = self.dir / "admin.sock"
        self.readsocket = self.dir / "readsocket.sock"
        self.log_path = self.dir / "workerd.log"
        self.config = self.dir / "workerd.toml"
        self.config.write_text(textwrap.dedent(f"""\
            [daemon]
            socket_dir = "{self.dir}"
            admin_socket = "{self.admin}"
            pylib = "{stage / 'pylib'}"
            log_level = "info"
            {daemon_extra}
            {"" if "state_dir" in daemon_extra else f'state_dir = "{self.dir}/state"'}
            """) + pools)
        self.shim_conf = self.dir / "shim.conf"
        self.shim_conf.write_text(f"socket_dir = {self.dir}\ntimeout = 5s\n")
        self.shim_conf.chmod(0o644)
        self.process = None

    def start(self):
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(self.stage / "bin" / "mtapy-workerd"), "--config", str(self.config)],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mtapy-workerd exited: {self.log()}")
            if self.admin.exists() and self.ready():
                return self
            time.sleep(0.02)
        raise RuntimeError(f"mtapy-workerd did not become ready: {self.log()}")

    def ready(self):
        """True once every pool has an idle worker."""
        status = self.ctl("status")
        pools = status.stdout.split("\npool ")[1:]
        return status.returncode == 0 and bool(pools) and all(" idle," in p for p in pools)

    def stop(self, timeout=20):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"mtapy-workerd did not stop within {timeout} s of SIGTERM; "
                                     f"its log:\n{self.log()[-4000:]}") from None
        return self.process.returncode if self.process else None

    def ctl(self, *args, timeout=30):
        return subprocess.run([str(self.stage / "bin" / "mtapyctl"), "-s", str(self.admin), *args],
                              capture_output=True, text=True, timeout=timeout)

    def call(self, pool, fn, *args):
        """mtapyctl call; returns (exit status, stdout without the final newline, stderr)."""
        r = self.ctl("call", pool, fn, *args)
        return r.returncode, r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout, r.stderr

    def pool_socket(self, pool):
        return self.dir / "pools" / f"{pool}.sock"

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def make_daemon(stage, request):
    """Factory: make_daemon(pools_toml, name=...) -> started Daemon, stopped after the test."""
    started = []

    def make(pools, name=None, daemon_extra="", start=True):
        d = Daemon(stage, name or f"{request.node.name[:30]}-{next(_daemon_numbers)}", pools,
                   daemon_extra)
        started.append(d)
        return d.start() if start else d

    yield make
    for d in started:
        try:
            d.stop()
        except Exception:
            d.process.kill()


def write_policy(stage, name, source):
    """Put a policy file in the stage, readable by the pool users; return its path."""
    path = stage / "policies" / name
    path.write_text(textwrap.dedent(source))
    path.chmod(0o644)
    return path


def pool_toml(name, policy, user="mtapy-t1", clients=("root",), **options):
    """One [pools.NAME] table; options are written as given (strings quoted)."""
    lines = [f"[pools.{name}]",
             "clients = [" + ", ".join(f'"{c}"' if isinstance(c, str) else str(c)
                                       for c in clients) + "]",
             f'user = "{user}"', f'policy = "{policy}"']
    for key, value in options.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value}")
    return "\n".join(lines) + "\n"


def wait_for(predicate, timeout=10, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


_ports_given = set()


def free_port():
    """A port nothing listens on, and not one given before: the kernel may hand a port it
    just gave out again while the first taker has not bound it yet."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
