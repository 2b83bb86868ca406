"""Fixtures for pylib's unit tests: pylib on sys.path, a real spamd on loopback, state.

pool_state is a pool's shared state (LMDB in the test's folder) for courier.ttldb and the
rate limits; clean_imports keeps the aliases of upstream's names a filter chain makes
(pythonfilter, ttldb, TtlDb) to one test. The spamd fixture starts Debian's spamd (package spamassassin) on a free TCP port and a Unix
socket, with network tests off, once per session; tests that need it skip, saying why, only
when spamd is missing or does not come up.
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

PYLIB = pathlib.Path(__file__).resolve().parent.parent
# pylib's C++ modules (pylib/native/) are in the build's pylib folder. Both folders are on
# the path of this process and of every Python process a test starts.
NATIVE = pathlib.Path(os.environ.get("MTAPY_BUILD", PYLIB.parent / "build")).resolve() / "pylib"
for folder in (NATIVE, PYLIB):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(PYLIB), str(NATIVE)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(address, family, deadline):
    """Poll until `address` accepts connections; False if the deadline passes first."""
    while time.monotonic() < deadline:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(address)
                return True
            except OSError:
                time.sleep(0.1)
    return False


@pytest.fixture(scope="session")
def spamd(tmp_path_factory):
    """A running spamd: {"host", "port", "socket"}; skips if spamd cannot start."""
    binary = shutil.which("spamd") or (
        "/usr/sbin/spamd" if os.path.exists("/usr/sbin/spamd") else None
    )
    if binary is None:
        pytest.skip("spamd is not installed (apt-get install -y spamassassin)")
    work = tmp_path_factory.mktemp("spamd")
    work.chmod(0o777)
    port, sock_path, pidfile = free_port(), str(work / "spamd.sock"), work / "spamd.pid"
    command = [
        binary,
        "-d",
        "--pidfile",
        str(pidfile),
        "-L",
        "-x",
        "--max-children=2",
        "--min-children=1",
        f"--listen=127.0.0.1:{port}",
        f"--listen={sock_path}",
        f"--syslog={work / 'spamd.log'}",
    ]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]
    started = subprocess.run(command, capture_output=True, text=True, timeout=120)
    deadline = time.monotonic() + 60
    up = started.returncode == 0 and wait_for(("127.0.0.1", port), socket.AF_INET, deadline)
    up = up and wait_for(sock_path, socket.AF_UNIX, deadline)
    if not up:
        _stop(pidfile)
        log = (
            (work / "spamd.log").read_text(errors="replace")[-2000:]
            if (work / "spamd.log").exists()
            else ""
        )
        pytest.skip(f"spamd did not start: rc={started.returncode} {started.stderr[-500:]} {log}")
    yield {"host": "127.0.0.1", "port": port, "socket": sock_path}
    _stop(pidfile)


def _stop(pidfile):
    """Stop the spamd this fixture started (by the pid it wrote), if any."""
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


UPSTREAM_NAMES = ("pythonfilter", "ttldb", "TtlDb")


@pytest.fixture
def pool_state(tmp_path):
    """The pool's state: LMDB in the test's folder; its URL, for workers."""
    from mtapy import state  # after pylib is on sys.path

    url = f"lmdb://{tmp_path / 'state'}"
    state.configure(url, "courier-test")
    yield url
    state.configure("")


@pytest.fixture
def clean_imports():
    """Upstream's names unimported, and as before afterwards: chains alias them."""
    owned = lambda name: name.split(".")[0] in UPSTREAM_NAMES
    saved = {name: module for name, module in sys.modules.items() if owned(name)}
    for name in saved:
        del sys.modules[name]
    yield
    for name in [name for name in sys.modules if owned(name)]:
        del sys.modules[name]
    sys.modules.update(saved)
